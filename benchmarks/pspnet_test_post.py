"""Benchmark: the NumPy post-processing of PSPNet's own multi-scale test (``training.tta_pspnet``) per image.

    python benchmarks/pspnet_test_post.py [--classes 21,150] [--repeats 3] [--out results.txt]

One VOC-sized image (500x375, random uint8, seed 0) at the releases' settings: crop 473, base_size 512,
scales (0.5, 0.75, 1, 1.25, 1.5, 1.75), flip (18 windows, 36 model outputs). The "model" is a 1x1 convolution
written in NumPy (fixed random ``(3, C)`` weights, float32 ``(N, 473, 473, C)`` logits), so the time is the
test's own resizing, softmaxes and window averaging, not a network's. Reports the median of ``--repeats``
calls of ``pspnet_probabilities`` (after one warm-up) and the share of it spent in the model, for each class
count. Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from benchmarks._report import emit  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", default="21,150")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    from training.tta_pspnet import pspnet_probabilities

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    lines = [f"pspnet_probabilities, 500x375 image, crop 473, base 512, scales {scales}, flip, 1x1-conv NumPy model",
             f"load average at start {', '.join(f'{v:.2f}' for v in os.getloadavg())}"]
    print("\n".join(lines), flush=True)
    for c in (int(v) for v in args.classes.split(",")):
        w = np.random.default_rng(1).standard_normal((3, c)).astype(np.float32)
        spent = [0.0]

        def net(x, w=w):
            t = time.perf_counter()
            out = np.asarray(x, np.float32) @ w
            spent[0] += time.perf_counter() - t
            return out

        prep = lambda b: (b.astype(np.float32) - 120.0) / 60.0  # noqa: E731
        pspnet_probabilities(net, prep, image, (473, 473), 512, scales, flip=True, batch=8, classes=c)  # warm-up
        times, nets = [], []
        for _ in range(args.repeats):
            spent[0] = 0.0
            t = time.perf_counter()
            p = pspnet_probabilities(net, prep, image, (473, 473), 512, scales, flip=True, batch=8, classes=c)
            times.append(time.perf_counter() - t)
            nets.append(spent[0])
        med = statistics.median(times)
        lines.append(f"{c:4d} classes: {med:6.2f} s per image (median of {args.repeats}: "
                     f"{', '.join(f'{t:.2f}' for t in times)}), model {statistics.median(nets):.2f} s, "
                     f"post-processing {med - statistics.median(nets):.2f} s; argmax checksum "
                     f"{int(p.argmax(-1).sum())}")
        print(lines[-1], flush=True)
    emit(lines, args.out, skip=len(lines))


if __name__ == "__main__":
    main()
