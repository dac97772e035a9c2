"""Quickstart: the zoo end to end on built-in data, no downloads.

Builds models from the registry, runs them, saves and reloads name-keyed weights through
``zoo.get(..., weights=path)`` and checks the predictions are identical.

    python -m examples.quickstart [--fast] [--out out/]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="reduced mode: smaller model and data (for tests)")
    p.add_argument("--out", default="out", help="folder for pictures and files (default: out/)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import zoo

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"kerazoo quickstart  (Keras {keras.__version__}, backend {keras.backend.backend()})")
    print(f"models: {', '.join(zoo.list_models())}")

    features = 32 if args.fast else 64
    model = zoo.get("hourglass", stacks=2, num_keypoints=16, features=features, input_shape=(64, 64, 3))
    print(f"built {model.name}: {model.count_params():,} parameters, outputs "
          f"{[tuple(o.shape) for o in model.outputs]}")
    x = np.random.default_rng(0).uniform(0, 1, size=(2, 64, 64, 3)).astype("float32")
    before = model.predict(x, verbose=0)

    path = zoo.save_weights(model, out / "hourglass_demo.h5",
                            zoo.WeightsRecord(num_keypoints=16,
                                              builder_kwargs=dict(stacks=2, num_keypoints=16, features=features,
                                                                  input_shape=(64, 64, 3))))
    again = zoo.get("hourglass", weights=path)
    after = again.predict(x, verbose=0)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(before, after))
    print(f"saved {path} and reloaded with zoo.get(weights=path): max |difference| = {diff:.1e}")
    if diff != 0.0:
        print("ERROR: reloaded model predicts differently", file=sys.stderr)
        return 1
    print(f"done in {time.time() - t0:.0f} s; files in {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
