"""Batch-level callbacks of training.fit leave Keras' asynchronous callback dispatch on (JAX, PyTorch)."""

import keras
import numpy as np
import pytest

from training.callbacks import StopOnNaN, TimeBudget, fit_callbacks
from training.data import HeatmapDataset
from training.datasets.synthetic import synthetic_pose
from training.distribute import Placement

pytestmark = pytest.mark.backend_agnostic


def _async_train(callbacks):
    # Keras decides once, from every callback's batch hooks and `async_safe`; False means the host
    # waits for each step's logs before it dispatches the next step
    return keras.callbacks.CallbackList(callbacks)._async_train


@pytest.mark.parametrize("backup_every, expect_async", [("epoch", True), (3, False)])
def test_fit_callbacks_keep_async_dispatch(tmp_path, backup_every, expect_async):
    ds = HeatmapDataset(synthetic_pose(8, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                        heatmap_size=(8, 8))
    cbs, _, _ = fit_callbacks(tmp_path, Placement(), ds, None, "pck", checkpoint=True, backup=True,
                              backup_every=backup_every, csv_log=True, tensorboard=False, terminate_on_nan=True,
                              log=lambda m: None)
    thread_safe = keras.src.backend.IS_THREAD_SAFE  # TensorFlow: Keras never dispatches callbacks asynchronously
    assert _async_train(cbs) is (thread_safe and expect_async)  # a batch-count backup saves from its hook
    assert _async_train([StopOnNaN()]) is thread_safe
    assert _async_train([TimeBudget(deadline=1e18)]) is False  # stops mid-epoch: see StopOnNaN's docstring
    assert _async_train([keras.callbacks.TerminateOnNaN()]) is False  # why StopOnNaN exists


def test_stop_on_nan_ends_fit_with_an_error():
    class Count(keras.callbacks.Callback):
        async_safe = True
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.batches += 1

    x = np.full((80, 4), np.nan, np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(FloatingPointError, match="loss is nan at batch 0: training stopped"):
        model.fit(x, np.zeros((80, 1), np.float32), batch_size=4, epochs=3, verbose=0, validation_data=(x, x[:, :1]),
                  callbacks=[StopOnNaN(), Count()])
    assert Count.batches < 20  # 60 batches without it; async dispatch may run a step or two more
