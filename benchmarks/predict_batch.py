"""Benchmark: prediction one image per model call (``predict`` in a loop) against batched calls (``predict_batch``).

    python benchmarks/predict_batch.py [--model hourglass] [--model-arg stacks=2 ...] [--images 32]
                                       [--batch-sizes 1,4,8] [--repeats 3] [--out results.txt]
    # KERAS_BACKEND: the backend

The model is built with random weights (no download); the images are random 640x480 RGB, letterboxed into its
input as ``predict`` does. Each way runs once to compile (not timed), then ``--repeats`` times over all the images:
images/s (best of the repeats) for the loop of ``predict`` and for ``predict_batch`` at each batch size (what
``predict_video``'s ``batch_size`` and ``predict_people`` use), and the share of the time spent outside the model
(crop, decode, drawing). Not run by the tests.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import emit, machine_line  # noqa: E402


def _value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="hourglass")
    p.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--batch-sizes", default="1,4,8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out")
    a = p.parse_args(argv)
    import keras
    import numpy as np

    import zoo
    from training.inference import predict, predict_batch

    kwargs = {k: _value(v) for k, v in (arg.split("=", 1) for arg in a.model_arg)}
    model = zoo.get(a.model, **kwargs)
    images = [np.random.default_rng(i).integers(0, 256, (480, 640, 3), dtype=np.uint8) for i in range(a.images)]
    calls = [0.0]
    run = model.predict_on_batch

    def timed_call(x):  # the model's own share of the time
        t = time.perf_counter()
        out = run(x)
        out = [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)
        calls[0] += time.perf_counter() - t
        return out

    model.predict_on_batch = timed_call
    ways = [("predict loop", lambda: [predict(model, im) for im in images])]
    ways += [(f"predict_batch {b}", lambda b=b: predict_batch(model, images, batch_size=b))
             for b in map(int, a.batch_sizes.split(","))]
    lines = [f"predict: {a.model} {kwargs or ''} input {tuple(model.inputs[0].shape[1:])}, {a.images} images "
             f"640x480, keras {keras.__version__} ({keras.backend.backend()}), best of {a.repeats}",
             machine_line()]
    print("\n".join(lines), flush=True)
    lines.append(f"{'way':<18}{'images/s':>10}{'ms/image':>10}{'model share':>13}")
    for label, way in ways:
        way()  # compile this call shape (and the padded last batch's)
        best, share = None, 0.0
        for _ in range(a.repeats):
            calls[0] = 0.0
            t = time.perf_counter()
            way()
            seconds = time.perf_counter() - t
            if best is None or seconds < best:
                best, share = seconds, calls[0] / seconds
        lines.append(f"{label:<18}{a.images / best:>10.1f}{1000 * best / a.images:>10.1f}{share:>13.0%}")
        print(lines[-1], file=sys.stderr, flush=True)  # progress; the table comes at the end
    emit(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
