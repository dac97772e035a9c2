"""A Ctrl-C during training whose KeyboardInterrupt something swallowed still ends ``fit`` (training.interrupts); an
interrupted fit frees its data iterators before its error comes out."""

import json

import numpy as np
import pytest

from tests.training.helpers import run_python

LOST_CTRL_C = """
import gc, json, os, signal, sys, time
import keras
from tests.training.helpers import tiny_pose_model
from training import fit
from training.data import HeatmapDataset
from training.datasets.synthetic import synthetic_pose


def swallowed_ctrl_c():
    # Ctrl-C while a garbage-collector callback runs: Python prints its KeyboardInterrupt as "Exception ignored" and
    # drops it (JAX runs code in such callbacks), and training goes on
    def callback(phase, info):
        if phase == "start" and callback in gc.callbacks:
            gc.callbacks.remove(callback)
            os.kill(os.getpid(), signal.SIGINT)
            t = time.time()
            while time.time() - t < 0.2:  # the handler runs here, inside the callback
                pass
    gc.callbacks.append(callback)
    gc.collect()


class LoseOne(keras.callbacks.Callback):
    steps_after = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if epoch == 1:
            swallowed_ctrl_c()
            self.lost = True  # still here: the KeyboardInterrupt did not come out

    def on_train_batch_end(self, batch, logs=None):
        self.steps_after += getattr(self, "lost", False)


cb = LoseOne()
ds = HeatmapDataset(synthetic_pose(64, image_size=(32, 32), num_keypoints=4, seed=3), batch_size=8, input_size=(32, 32),
                    heatmap_size=(8, 8), sigma=1.0, flip_pairs=())
t = time.time()
try:
    fit(tiny_pose_model(32, 4, outputs=1), ds, epochs=400, verbose=0, checkpoint=False, backup=False, callbacks=[cb])
    raised = "nothing"
except KeyboardInterrupt:
    raised = "KeyboardInterrupt"
print("RESULT " + json.dumps({"raised": raised, "lost": getattr(cb, "lost", False), "epoch": cb.epoch,
                              "steps_after": cb.steps_after,
                              "seconds": time.time() - t,
                              "handler": signal.getsignal(signal.SIGINT) is signal.default_int_handler}), flush=True)
os._exit(0)  # TensorFlow interrupted mid-fit can hang in Python's finalization (the commands exit as kerazoo.cli does)
"""


@pytest.mark.backend_agnostic
def test_a_ctrl_c_lost_in_a_garbage_collector_callback_still_ends_fit():
    """Seen with `kerazoo train` on JAX: a Ctrl-C in the middle of training, and the epochs went on. Here the
    KeyboardInterrupt is raised inside a gc callback, which drops it; fit ends with it at the next step's end (was:
    raised again 2 s later, after every step those 2 s held)."""
    proc = run_python(LOST_CTRL_C, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert r["lost"], r  # the first KeyboardInterrupt was dropped ...
    assert "KeyboardInterrupt" in proc.stderr  # ... as Python says ("Exception ignored ...")
    assert r["raised"] == "KeyboardInterrupt" and r["epoch"] == 1, r  # ... and fit still ended with one ...
    assert r["steps_after"] == 1, r  # ... at the end of the first step after the press
    assert r["handler"], r  # Python's own SIGINT handler is back after fit


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_fit_leaves_no_data_iterator_for_the_interpreters_exit(error):
    """A fit ended by Ctrl-C (or an error) left Keras' data iterators alive in reference cycles (validation's on the
    model, training's in the frames of the traceback) until Python's finalization, where TensorFlow's aborted
    ("terminate called without an active exception") or hung the exit of 2 in 6 scripts that caught the Ctrl-C.
    They are freed before fit's error comes out. The garbage collector is off here: what a cycle holds stays."""
    import gc

    import keras
    from keras.src.trainers.epoch_iterator import EpochIterator

    from tests.training.helpers import tiny_pose_model
    from training import fit
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose

    def data(n, seed):
        return HeatmapDataset(synthetic_pose(n, image_size=(32, 32), num_keypoints=4, seed=seed), batch_size=8,
                              input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), seed=1)

    class Stop(keras.callbacks.Callback):  # epoch 2, after validation made its iterator
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 2:
                raise error("stop")

    model = tiny_pose_model(32, 4, outputs=1)
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(error):
            fit(model, data(32, 3), data(16, 4), epochs=3, verbose=0, callbacks=[Stop()])
        live = [type(o).__name__ for o in gc.get_objects() if isinstance(o, EpochIterator)]
    finally:
        gc.enable()
    assert live == []
    assert model.predict_on_batch(np.zeros((1, 32, 32, 3), np.float32)).shape[0] == 1  # the model is still usable
