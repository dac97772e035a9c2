"""Benchmark: building a zoo model, ``zoo.get(NAME)`` against its builder called directly.

    python benchmarks/build_time.py [--models hourglass,resnet152,pspnet50] [--repeats 3] [--out results.txt]
    # KERAS_BACKEND: the backend

Each measurement is a fresh subprocess (the first build of a process is what a user waits for), alternating the
two ways: ``builder`` is the registered builder called as ``zoo.get(NAME)`` calls it, ``zoo.get`` the same model
through the registry, which pauses Python's cyclic garbage collector while it builds (``zoo/gc_pause.py``).
Random weights: no file is read. Prints seconds per build (median, min, max). Not run by the tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import (  # noqa: E402
    alternating, emit, fresh_process, machine_line, seconds_and_count, seconds_cells,
)

_CHILD = r"""
import os, sys, time
sys.path.insert(0, {root!r})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, zoo
way, name = sys.argv[1:3]
spec = zoo.get_spec(name)
t = time.perf_counter()
model = zoo.get(name) if way == "zoo.get" else spec.builder()  # zoo.get(name) calls it with no arguments
print("SECONDS", time.perf_counter() - t, model.count_params())
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="hourglass,resnet152,pspnet50")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out")
    a = p.parse_args(argv)
    import keras

    lines = [f"build: zoo.get vs the builder, {keras.__version__} ({keras.backend.backend()}), fresh process each, "
             f"alternating, {a.repeats} of each",
             machine_line()]
    print("\n".join(lines), flush=True)
    lines.append(f"{'model':<12}{'way':<10}{'median s':>10}{'min s':>8}{'max s':>8}{'parameters':>13}")
    for name in a.models.split(","):
        runs = alternating(("builder", "zoo.get"), a.repeats,
                           lambda way: seconds_and_count(fresh_process(_CHILD, way, name)))
        for way, results in runs.items():
            params = results[-1][1]
            lines.append(f"{name:<12}{way:<10}{seconds_cells([t for t, _ in results])}{params:>13,}")
    emit(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
