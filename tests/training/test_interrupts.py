"""A Ctrl-C during training whose KeyboardInterrupt something swallowed still ends ``fit`` (training.interrupts)."""

import json

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
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if epoch == 1:
            swallowed_ctrl_c()
            self.lost = True  # still here: the KeyboardInterrupt did not come out


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
                              "seconds": time.time() - t,
                              "handler": signal.getsignal(signal.SIGINT) is signal.default_int_handler}), flush=True)
os._exit(0)  # TensorFlow interrupted mid-fit can hang in Python's finalization (the commands exit as kerazoo.cli does)
"""


@pytest.mark.backend_agnostic
def test_a_ctrl_c_lost_in_a_garbage_collector_callback_still_ends_fit():
    """Seen with `kerazoo train` on JAX: a Ctrl-C in the middle of training, and the epochs went on. Here the
    KeyboardInterrupt is raised inside a gc callback, which drops it; fit ends with it a few seconds later."""
    proc = run_python(LOST_CTRL_C, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert r["lost"], r  # the first KeyboardInterrupt was dropped ...
    assert "KeyboardInterrupt" in proc.stderr  # ... as Python says ("Exception ignored ...")
    assert r["raised"] == "KeyboardInterrupt" and r["epoch"] < 399, r  # ... and fit still ended with one
    assert r["handler"], r  # Python's own SIGINT handler is back after fit
