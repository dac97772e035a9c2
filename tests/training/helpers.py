"""Tiny models and scripts shared by the data/trainer/multiprocessing/resume tests (kept small: seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def tiny_pose_model(size=32, k=4, outputs=2, width=8):
    """image (size, size, 3) -> ``outputs`` heatmap tensors (size/4, size/4, k), like a small hourglass."""
    import keras
    from keras import layers

    inp = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu", name="c1")(inp)
    x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    outs = []
    for i in range(outputs):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"s{i}_conv")(x)
        outs.append(layers.Conv2D(k, 1, name=f"stack{i + 1}_heatmaps")(x))
    return keras.Model(inp, outs if outputs > 1 else outs[0], name="tiny_pose")


def tiny_seg_model(size=32, classes=3, width=8, aux=False):
    """image (size, size, 3) -> logits (size, size, classes) (+ an aux output)."""
    import keras
    from keras import layers

    inp = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="c1")(inp)
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="c2")(x)
    out = layers.Conv2D(classes, 1, name="logits")(x)
    if not aux:
        return keras.Model(inp, out, name="tiny_seg")
    return keras.Model(inp, [out, layers.Conv2D(classes, 1, name="aux")(x)], name="tiny_seg")


#: Source of ``children()`` for scripts run by :func:`run_python`: the live child processes of the
#: script's process (the resource tracker aside: it outlives every pool by design). Linux /proc.
CHILDREN_SOURCE = """
def children():
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            state_ppid = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[:2]
            cmd = open(f"/proc/{p}/cmdline").read()
        except OSError:
            continue
        if int(state_ppid[1]) == os.getpid() and state_ppid[0] != "Z" and "resource_tracker" not in cmd:
            out.append(int(p))
    return out
"""


def run_python(code_or_args, *, env=None, timeout=300, cwd=None):
    """Run a fresh Python (``-c CODE`` or ``[args]``) with the repository on the path."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    e.update(env or {})
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
    return subprocess.run([sys.executable, *args], env=e, cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout)


def run_tf_workers(script, *args, count=2, cwd=None, timeout=240):
    """Run ``script`` (``python -c``) as ``count`` TensorFlow workers of one localhost cluster (``TF_CONFIG``
    names free ports; worker ``i`` gets index ``i``) and return each one's parsed ``RESULT {json}`` line.
    A worker that fails, or prints no result, fails the test with the end of its output."""
    import json
    import socket

    ports = []
    for _ in range(count):
        with socket.socket() as s:
            s.bind(("localhost", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for i in range(count):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                   KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
        procs.append(subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env, cwd=cwd,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, out in zip(procs, outs):
        assert p.returncode == 0 and "RESULT " in out, out[-3000:]
    return [json.loads(out.split("RESULT ", 1)[1].splitlines()[0]) for out in outs]


def _datasets_module():
    from training import data

    return data


class PidLoggingDataset(_datasets_module().HeatmapDataset):
    """Appends ``<pid> <epoch> <accelerators>`` to ``pid_log`` for every batch it makes (which process
    did the work, and what JAX / CUDA it was allowed: ``JAX_PLATFORMS``, jax's config, ``CUDA_VISIBLE_DEVICES``)."""

    pid_log = None

    def _collate(self, samples):
        if self.pid_log:
            jax = sys.modules.get("jax")
            seen = (os.environ.get("JAX_PLATFORMS", "unset"), jax.config.jax_platforms if jax else "no-jax",
                    repr(os.environ.get("CUDA_VISIBLE_DEVICES", "unset")))
            with open(self.pid_log, "a") as f:
                f.write(f"{os.getpid()} {self.epoch} {','.join(map(str, seen))}\n")
        return super()._collate(samples)


class CrashingDataset(_datasets_module().HeatmapDataset):
    """Batch ``crash_at`` kills its worker process (``mode="exit"``) or raises (``mode="raise"``) mid-batch."""

    crash_at = 2
    mode = "exit"
    _crashing = False

    def __getitem__(self, idx):
        import multiprocessing

        self._crashing = idx == self.crash_at and multiprocessing.parent_process() is not None
        return super().__getitem__(idx)

    def _make_sample(self, record, rng):
        if self._crashing:
            if self.mode == "exit":
                os._exit(3)  # what an OOM kill or a segfault in a decoder looks like to the pool
            raise RuntimeError("boom")
        return super()._make_sample(record, rng)


class Blobs:
    """Picklable image source: a Gaussian blob (sigma 2.5 px) per joint, joint j in colour channel j."""

    def __init__(self, size, points):
        self.size, self.points = size, np.asarray(points, np.float64)

    def load(self):
        w, h = self.size
        ys, xs = np.mgrid[0:h, 0:w]
        img = np.zeros((h, w, 3), np.float64)
        for j, (x, y) in enumerate(self.points):
            img[..., j] += 250.0 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 2.5 ** 2))
        return np.rint(img).astype(np.uint8)
