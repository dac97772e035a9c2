"""Benchmark: loading a saved zoo model in a fresh process, ``zoo.load_keras_model`` against Keras' own loader.

    python benchmarks/load_time.py [--models hourglass,resnet152] [--repeats 3] [--out results.txt]
    # KERAS_BACKEND: the backend

Each model is built once with random weights and saved with ``zoo.save_model`` (a ``.keras``) and
``zoo.save_weights`` (a zoo ``.h5``) into a temporary folder. Each measurement is then a fresh subprocess (the first
load of a process is what a user waits for), the ways alternating: ``keras`` is ``keras.saving.load_model(path,
compile=False, safe_mode=True)`` as a user would call it, ``zoo.load`` is ``zoo.load_keras_model(path)`` (the same
loader, with the zoo's checks and metadata, and Python's cyclic garbage collector paused while it runs:
``zoo/gc_pause.py``), ``zoo.get.h5`` is ``zoo.get(NAME, weights=path.h5)`` (the builder and the zoo's name-keyed
weights). Prints seconds per load (median, min, max). Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import (  # noqa: E402
    alternating, emit, fresh_process, machine_line, seconds_and_count, seconds_cells,
)

WAYS = ("keras", "zoo.load", "zoo.get.h5")

_SAVE = r"""
import os, sys
sys.path.insert(0, {root!r})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import zoo
name, keras_path, h5_path = sys.argv[1:4]
model = zoo.get(name)
zoo.save_model(model, keras_path)
zoo.save_weights(model, h5_path)
"""

_CHILD = r"""
import os, sys, time
sys.path.insert(0, {root!r})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, zoo
way, name, keras_path, h5_path = sys.argv[1:5]
t = time.perf_counter()
if way == "keras":
    model = keras.saving.load_model(keras_path, compile=False, safe_mode=True)
elif way == "zoo.load":
    model = zoo.load_keras_model(keras_path)
else:
    model = zoo.get(name, weights=h5_path)
print("SECONDS", time.perf_counter() - t, model.count_params())
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="hourglass,resnet152")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out")
    a = p.parse_args(argv)
    import keras

    lines = [f"load: a saved model in a fresh process, {keras.__version__} ({keras.backend.backend()}), "
             f"alternating, {a.repeats} of each",
             machine_line()]
    print("\n".join(lines), flush=True)
    lines.append(f"{'model':<12}{'way':<12}{'median s':>10}{'min s':>8}{'max s':>8}{'parameters':>13}{'MB':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            keras_path, h5_path = os.path.join(tmp, f"{name}.keras"), os.path.join(tmp, f"{name}.h5")
            fresh_process(_SAVE, name, keras_path, h5_path)
            runs = alternating(WAYS, a.repeats,
                               lambda way: seconds_and_count(fresh_process(_CHILD, way, name, keras_path, h5_path)))
            mb = os.path.getsize(keras_path) / 1e6
            for way, results in runs.items():
                params = results[-1][1]
                lines.append(f"{name:<12}{way:<12}{seconds_cells([t for t, _ in results])}{params:>13,}{mb:>7.0f}")
    emit(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
