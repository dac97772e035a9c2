"""The README's demo (examples/quickstart.py) end to end in its reduced mode, through a subprocess (on JAX,
as ./dev demo runs it)."""

import os
import re
import subprocess
import sys

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_fast_mode(tmp_path):
    # on JAX, as ./dev demo runs it (the README's command); under TensorFlow the same run took 65 s instead of 37 s
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-m", "examples.demo", "--fast", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = r.stdout
    assert "before: PCK@0.2" in out and "after 1 epochs: PCK@0.2" in out
    assert "predicts identically: max |difference| = 0.0e+00" in out
    assert "Verify: prob: max relative difference" in out
    assert "Pictures:" in out.splitlines()[-1]
    for name in ("keypoints.png", "heatmaps.png", "training_curve.png"):
        img = cv2.imread(str(tmp_path / "out" / name))
        assert img is not None and img.std() > 5  # a picture, not a blank canvas
    assert (tmp_path / "out" / "hourglass_synthetic.h5").exists()
    # the video step: every frame of the turning figure predicted and written, its jitter reported raw and smoothed
    assert re.search(r"wrote .*clip\.pred\.mp4 \(12 frames of .*clip\.avi\); keypoint jitter \(mean \|second "
                     r"difference\|\): [\d.]+ px per frame raw, [\d.]+ px smoothed", out), out
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.pred.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 12 and capture.read()[1].shape == (256, 256, 3)
    assert (tmp_path / "out" / "caffe" / "net.keras").exists()
    # a JAX demo imported the installed TensorFlow (keras.utils.set_random_seed seeds tf.random if it can), which
    # printed its oneDNN notice twice at the start of step 1
    assert "oneDNN custom operations" not in r.stderr, r.stderr[-2000:]


def test_quickstart_help():
    r = subprocess.run([sys.executable, "-m", "examples.quickstart", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "--fast" in r.stdout


def test_quickstart_conversion_step_reports_a_failed_converter(tmp_path, monkeypatch):
    """The demo printed 'converter failed: ...' and still exited 0; main now returns 1 on the step's failure."""
    from examples import quickstart

    def broken_net(folder):  # a deploy prototxt the converter refuses (a layer type it does not know)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "net.prototxt").write_text('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 9 dim: 9 }\n'
                                             'layer { name: "x" type: "NoSuchLayer" bottom: "data" top: "x" }\n')
        (folder / "net.caffemodel").write_bytes(b"")
        return folder / "net.prototxt", folder / "net.caffemodel"

    monkeypatch.setattr(quickstart, "write_caffe_demo", broken_net)
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # the converter's process: the demo's backend
    converted, report = quickstart.convert_caffe_demo(tmp_path)
    assert not converted and report.startswith("converter failed: ") and "NoSuchLayer" in report, report


def test_set_random_seed_is_keras_without_importing_tensorflow():
    """zoo.set_random_seed(s) seeds as keras.utils.set_random_seed(s) does (the same initial weights), but imports
    TensorFlow only where it already is: Keras' own imported the installed TensorFlow into a JAX process to seed it."""
    from tests.training.helpers import run_python

    code = """
import sys
import keras
import zoo

def build():
    return zoo.get("hourglass", stacks=1, features=8, num_keypoints=4, input_shape=(64, 64, 3)).get_weights()

zoo.set_random_seed(7)
ours = build()
print("TENSORFLOW", "tensorflow" in sys.modules)
keras.utils.set_random_seed(7)
theirs = build()
assert len(ours) == len(theirs) and all((a == b).all() for a, b in zip(ours, theirs))
zoo.set_random_seed(8)
assert any((a != b).any() for a, b in zip(build(), ours))
print("SAME")
"""
    proc = run_python(code, env={"KERAS_BACKEND": "jax"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TENSORFLOW False" in proc.stdout and "SAME" in proc.stdout, proc.stdout
