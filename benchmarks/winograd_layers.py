"""Benchmark: one ``WinogradConv2D`` against the ``Conv2D`` it replaces, at VGG/FCN layer shapes.

    KERAS_BACKEND=tensorflow python benchmarks/winograd_layers.py [--threads 2] [--repeats 5] [--out FILE]
        [--model pspnet50 [--size 473]] [--shapes SIDExCxK,...]

Batch 1, ``'same'`` padding, compiled per backend (``tf.function``, ``jax.jit``; eager on PyTorch);
median of ``--repeats`` calls after one warm-up. The shapes are FCN-8s's at a 256x256 input (pad 100:
conv1 454x454 ... conv5 29x29, plus a ResNet-50 14x14 and a 7x7 map). Prints the speed-up and
``max|winograd - conv| / range`` per shape; ``zoo.winograd.MIN_CHANNELS`` / ``MIN_SIZE`` come from
this table. ``--model NAME`` times a whole zoo model (He-initialised random weights, batch 1) as built and after
``zoo.optimize_for_inference`` instead. Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks._report import emit  # noqa: E402

SHAPES = [(57, 512, 512), (29, 512, 512), (114, 256, 256), (114, 128, 256), (227, 128, 128), (454, 64, 64),
          (28, 128, 128), (14, 256, 256), (7, 512, 512)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--model", help="time this zoo model (e.g. pspnet50, fcn8s) instead of single layers")
    ap.add_argument("--size", type=int, help="--model's input side (default: the model's default)")
    ap.add_argument("--shapes", help="layer shapes to time instead of the default table, as SIDExCxK,... "
                    "(e.g. 57x256x512,114x256x512)")
    args = ap.parse_args(argv)
    import keras
    import numpy as np

    from zoo.winograd import WinogradConv2D

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        compiled = lambda layer: tf.function(lambda x: layer(x))  # noqa: E731
    elif backend == "jax":
        import jax

        compiled = lambda layer: jax.jit(lambda x: layer(x))  # noqa: E731
    else:
        import torch

        torch.set_num_threads(args.threads)
        compiled = lambda layer: (lambda x: layer(x))  # noqa: E731

    def median_s(fn, x):
        keras.ops.convert_to_numpy(fn(x))
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            keras.ops.convert_to_numpy(fn(x))
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    rng = np.random.default_rng(0)
    if args.model:
        return whole_model(args, compiled, median_s, rng)
    lines = [f"winograd_layers: keras {keras.__version__} ({backend}), {args.threads} threads, batch 1, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}",
             f"{'map':>9} {'C->K':>9} {'conv ms':>9} {'winograd ms':>12} {'speed-up':>9} {'max|diff|/range':>16}"]
    print(lines[0], lines[1], sep="\n", flush=True)
    shapes = [tuple(int(v) for v in item.split("x")) for item in args.shapes.split(",")] if args.shapes else SHAPES
    for hw, c, k in shapes:
        conv = keras.layers.Conv2D(k, 3, padding="same", bias_initializer="random_normal")
        inp = keras.Input((None, None, c))
        keras.Model(inp, conv(inp))
        fast = WinogradConv2D.from_conv2d(conv)
        x = rng.standard_normal((1, hw, hw, c)).astype(np.float32)
        ref, got = keras.ops.convert_to_numpy(conv(x)), keras.ops.convert_to_numpy(fast(x))
        err = np.abs(ref - got).max() / np.ptp(ref)
        tc, tw = median_s(compiled(conv), x), median_s(compiled(fast), x)
        lines.append(f"{hw:>4}x{hw:<4} {c:>4}->{k:<4} {tc * 1e3:>9.1f} {tw * 1e3:>12.1f} {tc / tw:>8.2f}x {err:>16.1e}")
        print(lines[-1], flush=True)
    emit(lines, args.out, skip=len(lines))  # each row was printed as it was measured


def whole_model(args, compiled, median_s, rng):
    import keras
    import numpy as np

    import zoo

    kwargs = {"input_shape": (args.size, args.size, 3)} if args.size else {}
    model = zoo.get(args.model, **kwargs)
    # He-initialised kernels and small random biases: fcn8s's score layers start at zero (as FCN's Caffe
    # nets do), and an all-zero output made max|diff|/range 0/0.
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Conv2DTranspose):
            fan_in = np.prod(layer.kernel.shape[:2]) * layer.kernel.shape[3]
        elif hasattr(layer, "kernel") and len(layer.kernel.shape) == 4:
            fan_in = np.prod(layer.kernel.shape[:3])
        else:
            continue
        layer.kernel.assign(rng.normal(0, np.sqrt(2 / fan_in), layer.kernel.shape).astype(np.float32))
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
    fast = zoo.optimize_for_inference(model)
    swapped = [layer.name for layer in fast.layers if type(layer).__name__ == "WinogradConv2D"]
    x = rng.uniform(-100, 100, (1,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    ref, got = keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(fast(x))
    err = np.abs(ref - got).max() / np.ptp(ref)
    run = lambda m: compiled(lambda v: m(v, training=False))  # noqa: E731
    t_model, t_fast = median_s(run(model), x), median_s(run(fast), x)
    lines = [f"winograd_layers --model {args.model}: input {tuple(x.shape[1:])}, keras {keras.__version__} "
             f"({keras.backend.backend()}), {args.threads} threads, batch 1, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}",
             f"{len(swapped)} Conv2D -> WinogradConv2D: {', '.join(swapped)}",
             f"as built {t_model * 1e3:.0f} ms, optimize_for_inference {t_fast * 1e3:.0f} ms: "
             f"{t_model / t_fast:.2f}x; max|diff|/range {err:.1e}"]
    print(lines[0], lines[1], sep="\n", flush=True)
    emit(lines, args.out)


if __name__ == "__main__":
    main()
