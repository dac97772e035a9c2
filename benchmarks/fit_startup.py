"""Benchmark: how long ``training.fit`` takes to reach the end of each epoch (tracing/compiling included).

    python benchmarks/fit_startup.py [--epochs 3] [--run-dir DIR] [--out results.txt]   # KERAS_BACKEND: backend

The demo's model and data: a 2-stack hourglass (64 features, 16 keypoints, 64x64 input, 16x16 heatmaps),
256 synthetic figures in batches of 8 (32 steps an epoch, augmentation on), 64 for validation; no output
folder unless ``--run-dir`` (a run's checkpoints and backups written there, as ``kerazoo train`` does).
Prints seconds from the start of the build to the model's build, ``on_train_begin`` and each
epoch's end (validation included). The first epoch holds the step's tracing/compiling, later ones
show the steady state. Run it at two commits on the same host to compare (the machines here are shared:
the load average is printed). Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import zoo  # noqa: E402
from benchmarks._report import emit, machine_line  # noqa: E402
from training.data import HeatmapDataset  # noqa: E402
from training.datasets.synthetic import synthetic_pose  # noqa: E402
from training.trainer import fit  # noqa: E402


def _data(n, seed, augment):
    return HeatmapDataset(synthetic_pose(n, image_size=(64, 64), seed=seed), batch_size=8, input_size=(64, 64),
                          heatmap_size=(16, 16), sigma=1.5, num_outputs=2, augment=augment, flip_pairs=())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the table to this file")
    ap.add_argument("--run-dir", default=None, help="fit's out_dir (checkpoints, backups, log); default: none")
    args = ap.parse_args()

    zoo.set_random_seed(0)
    t0 = time.perf_counter()
    marks = []

    class Marks(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            marks.append(("on_train_begin", time.perf_counter() - t0))

        def on_epoch_end(self, epoch, logs=None):
            marks.append((f"epoch {epoch + 1} end", time.perf_counter() - t0))

    model = zoo.get("hourglass", stacks=2, num_keypoints=16, features=64, input_shape=(64, 64, 3))
    marks.append(("model built", time.perf_counter() - t0))
    fit(model, _data(256, 0, True), _data(64, 7, False), epochs=args.epochs, verbose=0, callbacks=[Marks()],
        out_dir=args.run_dir)
    lines = [f"fit start-up: 2-stack hourglass 64x64, 32 steps of 8 an epoch, keras {keras.__version__} "
             f"({keras.backend.backend()}), {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{'run folder ' + args.run_dir if args.run_dir else 'no run folder'}, "
             f"tensorflow imported: {'tensorflow' in sys.modules}",
             machine_line()]
    lines += [f"{'mark':<16}{'s from start':>14}{'s since previous':>18}"]
    previous = 0.0
    for name, t in marks:
        lines.append(f"{name:<16}{t:>14.2f}{t - previous:>18.2f}")
        previous = t
    print("\n".join(lines[:2]), flush=True)
    emit(lines, args.out)


if __name__ == "__main__":
    main()
