"""training.callbacks: async-safe batch hooks (JAX, PyTorch), the NaN stop, and BestCheckpoint's choice and writes."""

import json

import keras
import numpy as np
import pytest

from training.callbacks import EpochBudget, StopOnNaN, TimeBudget, fit_callbacks
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
    assert _async_train([EpochBudget(deadline=1e18)]) is thread_safe  # stops at an epoch's end
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
    # the batch named is the first whose logs the callback thread sees: 0, or 1 when dispatch ran ahead
    with pytest.raises(FloatingPointError, match=r"loss is nan at batch [01]: training stopped"):
        model.fit(x, np.zeros((80, 1), np.float32), batch_size=4, epochs=3, verbose=0, validation_data=(x, x[:, :1]),
                  callbacks=[StopOnNaN(), Count()])
    assert Count.batches < 20  # 60 batches without it; async dispatch may run a step or two more


def _tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def _run_epochs(cb, model, key, values):
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {key: v})


@pytest.mark.parametrize("monitor, key, best_epoch", [
    ("val_loss", "val_loss", 1),
    ("val_loss", "val_stack2_heatmaps_loss", 1),  # exact key wins; here the multi-output name is monitored
    ("val_pck", "val_stack2_heatmaps_pck", 2),
    ("val_mean_iou", "val_mean_iou", 2),
    ("val_mae", "val_mae", 1),  # an error metric improves downwards: it kept the worst model
    ("val_mean_squared_error", "val_mean_squared_error", 1),
    ("pck", "stack2_heatmaps_pck", 2),
])
def test_best_checkpoint_mode_follows_the_monitored_quantity(tmp_path, monitor, key, best_epoch):
    from training.callbacks import BestCheckpoint

    values = [0.5, 0.2, 0.9, 0.4]  # lowest at epoch 1, highest at epoch 2
    monitored = key if monitor == "val_loss" and key != "val_loss" else monitor
    cb = BestCheckpoint(tmp_path / "best.keras", monitor=monitored)
    _run_epochs(cb, _tiny_model(), key, values)
    info = json.loads((tmp_path / "best.keras.json").read_text())
    assert (info["epoch"], info["monitor"], info["value"]) == (best_epoch, key, values[best_epoch])
    assert cb.best_epoch == best_epoch and (tmp_path / "best.keras").exists()


def test_best_checkpoint_resumes_its_own_best_only(tmp_path):
    from training.callbacks import BestCheckpoint

    model = _tiny_model()
    first = BestCheckpoint(tmp_path / "best.keras", monitor="val_pck")
    _run_epochs(first, model, "val_stack2_heatmaps_pck", [0.3, 0.6])
    again = BestCheckpoint(tmp_path / "best.keras", monitor="val_pck")  # resumed: 0.5 < 0.6 writes nothing
    _run_epochs(again, model, "val_stack2_heatmaps_pck", [0.5])
    assert json.loads((tmp_path / "best.keras.json").read_text())["value"] == 0.6
    # resumed with another monitor: the stored PCK of 0.6 is no bar to a loss of 0.7
    other = BestCheckpoint(tmp_path / "best.keras", monitor="val_loss")
    _run_epochs(other, model, "val_loss", [0.7])
    assert json.loads((tmp_path / "best.keras.json").read_text()) == {"epoch": 0, "monitor": "val_loss", "value": 0.7}


def test_best_checkpoint_that_fails_to_save_keeps_the_previous_file(tmp_path):
    from training.callbacks import BestCheckpoint

    class Unsaveable(keras.layers.Layer):
        def call(self, x):
            return x

        def get_config(self):
            raise RuntimeError("cannot serialize")

    good = _tiny_model()
    cb = BestCheckpoint(tmp_path / "best.keras", monitor="val_loss")
    _run_epochs(cb, good, "val_loss", [0.5])
    before = (tmp_path / "best.keras").read_bytes()
    inp = keras.Input((2,))
    bad = keras.Model(inp, Unsaveable()(inp))
    cb.set_model(bad)
    with pytest.raises(RuntimeError, match="cannot serialize"):
        cb.on_epoch_end(1, {"val_loss": 0.1})
    assert (tmp_path / "best.keras").read_bytes() == before  # no half-written checkpoint
    assert sorted(f.name for f in tmp_path.iterdir()) == ["best.keras", "best.keras.json"]  # no temporary left
    assert json.loads((tmp_path / "best.keras.json").read_text())["value"] == 0.5


def test_epoch_budget_stops_after_the_last_epoch_that_ends_before_the_deadline():
    """Epochs of 30 s (the first 50 s: compilation) against a deadline at 200 s: 50, 80, 110, 140, 170 end, a sixth
    would end at 200 + 30 > 200 - 5 (the reserve): training stops after the fifth epoch, at its end."""
    clock = [0.0]
    budget = EpochBudget(deadline=200.0, reserve=5.0, clock=lambda: clock[0])
    budget.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    budget.model.stop_training = False
    epoch = 0
    while not budget.model.stop_training:
        budget.on_epoch_begin(epoch)
        clock[0] += 50.0 if epoch == 0 else 30.0
        budget.on_epoch_end(epoch)
        epoch += 1
    assert epoch == 5 and budget.stopped_epoch == 4 and clock[0] == 170.0


def test_epoch_budget_in_fit_trains_whole_epochs():
    """In a real fit: a deadline already past stops after epoch 1, with every step of it trained."""
    import time

    from tests.training.helpers import tiny_pose_model
    from training.trainer import fit

    class Steps(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            Steps.steps += 1

    ds = HeatmapDataset(synthetic_pose(24, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                        heatmap_size=(8, 8), sigma=1.0, flip_pairs=())
    result = fit(tiny_pose_model(32, 4, outputs=1), ds, epochs=5, verbose=0,
                 callbacks=[EpochBudget(time.time()), Steps()])
    assert len(result.history["loss"]) == 1 and Steps.steps == 6
