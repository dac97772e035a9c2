"""Benchmark: gradient of Caffe AVE pooling with large windows (PSPNet's pyramid), two ways.

    KERAS_BACKEND=jax python benchmarks/pool_gradient.py [--batch 8] [--channels 512] [--pspnet]

``reduce_window``'s gradient sums a whole window for every input pixel (quadratic in the window);
``CaffePooling2D`` in training computes windows of >= 64 pixels as a reshape and a sum where they
tile the map (the pyramid's case), else as 0/1 window-matrix products. Times the jitted gradient of each pyramid pool (60x60 map, bins 1/2/3/6) both ways and,
with ``--pspnet``, a whole PSPNet-50 training gradient (473x473, batch 1, 150 classes). Each
variant runs in its own subprocess (the switch is ``zoo.layers._LARGE_WINDOW``). Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(kind, batch, channels):
    sys.path.insert(0, ROOT)
    import zoo.layers as L

    if kind == "reduce_window":
        L._LARGE_WINDOW = 10**9
    import jax
    import jax.numpy as jnp
    import numpy as np

    def timed(fn, *args):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        first = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(2):
            jax.block_until_ready(fn(*args))
        return first, (time.perf_counter() - t) / 2

    if batch == 0:  # the whole model
        import zoo
        from training.losses import SegmentationCrossEntropy

        model = zoo.get("pspnet50", classes=150, input_shape=(473, 473, 3))
        loss = SegmentationCrossEntropy()
        x = jnp.asarray(np.random.rand(1, 473, 473, 3).astype("float32"))
        y = jnp.asarray(np.random.randint(0, 150, (1, 473, 473)))
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        grad = jax.jit(jax.grad(lambda tv: loss(y, model.stateless_call(tv, ntv, x, training=True)[0])))
        first, step = timed(grad, tv)
        print(f"{kind:<16}PSPNet-50 gradient, 473x473 batch 1: {step:8.2f} s per step (compile + first {first:.0f} s)")
        return
    x = jnp.asarray(np.random.rand(batch, 60, 60, channels).astype("float32"))
    for bins in (1, 2, 3, 6):
        layer = L.CaffePooling2D("ave", 60 // bins, 60 // bins)
        grad = jax.jit(jax.grad(lambda v: jnp.sum(layer(v, training=True))))
        _, step = timed(grad, x)
        print(f"{kind:<16}bin {bins} ({60 // bins}x{60 // bins} window) on {batch}x60x60x{channels}: "
              f"{step * 1e3:9.1f} ms", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--channels", type=int, default=512)
    p.add_argument("--pspnet", action="store_true", help="also time a whole PSPNet-50 gradient")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args.child, args.batch, args.channels)
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    print(f"{time.strftime('%Y-%m-%d %H:%M')} | os.cpu_count() {os.cpu_count()} | load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    for kind in ("training path", "reduce_window"):
        for batch in ([args.batch] + ([0] if args.pspnet else [])):
            subprocess.run([sys.executable, __file__, "--child", kind, "--batch", str(batch), "--channels",
                            str(args.channels)], env=env, check=True)


if __name__ == "__main__":
    main()
