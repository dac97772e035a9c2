"""Benchmark: where a PSPNet-50 training step spends its time on the CPU, Keras + JAX against PyTorch.

    KERAS_BACKEND=jax python benchmarks/pspnet_cpu_train.py [--batch 2] [--threads 2] [--out FILE]

Times (best of 2 after a warm-up) the forward + backward of the trunk (to ``conv5_3``) and of the
whole model with its loss, for the zoo ``pspnet50`` (jitted ``jax.grad`` over ``stateless_call``)
and ``benchmarks/torch_reference.py``'s PSPNet (eager), 473x473, 150 classes, then the three stem
convolutions, a dilated one and two 1x1 ones alone (forward, input gradient, weight gradient) with
``lax.conv_general_dilated``, and the trunk again with every 1x1 stride-1 ``Conv2D`` computed as a
matrix product (``Conv2D.convolution_op`` patched in this benchmark's process only).
Not a GPU figure: it shows what XLA:CPU does with each part. Each side runs in its own subprocess.
Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _best(fn, n=2):
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _torch(batch, threads):
    import torch
    import torch.nn.functional as F

    sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks")]
    import torch_reference as R

    torch.set_num_threads(threads)
    m = R.pspnet50(150).train()
    x, y = torch.randn(batch, 3, 473, 473), torch.randint(0, 150, (batch, 473, 473))
    trunk = _best(lambda: m.backbone(m.stem(x)).sum().backward())
    full = _best(lambda: F.cross_entropy(m(x), y).backward())
    print(f"pytorch {torch.__version__} eager: trunk fwd+bwd {trunk:.2f} s, whole model + loss fwd+bwd {full:.2f} s",
          flush=True)


def _jax(batch):
    sys.path.insert(0, ROOT)
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np
    from jax import lax

    import zoo
    from training.losses import SegmentationCrossEntropy

    m = zoo.get("pspnet50", classes=150, input_shape=(473, 473, 3))
    trunk_m = keras.Model(m.input, m.get_layer("conv5_3_relu").output)
    x = jnp.asarray(np.random.rand(batch, 473, 473, 3).astype("float32"))
    y = jnp.asarray(np.random.randint(0, 150, (batch, 473, 473)))
    loss = SegmentationCrossEntropy()

    def grad_time(model, objective):
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        g = jax.jit(jax.grad(lambda tv: objective(model.stateless_call(tv, ntv, x, training=True)[0])))
        return _best(lambda: jax.block_until_ready(g(tv)))

    trunk = grad_time(trunk_m, jnp.sum)
    full = grad_time(m, lambda out: loss(y, out))
    print(f"keras {keras.__version__} + jax {jax.__version__} (jit): trunk fwd+bwd {trunk:.2f} s, whole model + loss "
          f"fwd+bwd {full:.2f} s", flush=True)
    for name, (h, cin, cout, s, pad) in {"conv1_1_3x3_s2 (473 -> 237, 3 -> 64)": (475, 3, 64, 2, "VALID"),
                                          "conv1_2_3x3 (237, 64 -> 64)": (237, 64, 64, 1, "SAME"),
                                          "conv1_3_3x3 (237, 64 -> 128)": (237, 64, 128, 1, "SAME"),
                                          "conv4_x_3x3 (60, 256 -> 256, dilation 2)": (60, 256, 256, 1, "SAME"),
                                          "conv5_x_1x1_reduce (60, 2048 -> 512)": (60, 2048, 512, 1, "VALID"),
                                          "conv5_x_1x1_increase (60, 512 -> 2048)": (60, 512, 2048, 1, "VALID")}.items():
        d = 2 if "dilation" in name else 1
        k = 1 if "1x1" in name else 3
        xs = jnp.asarray(np.random.rand(batch, h, h, cin).astype("float32"))
        w = jnp.asarray(np.random.rand(k, k, cin, cout).astype("float32"))
        conv = lambda a, b: lax.conv_general_dilated(a, b, (s, s), pad, rhs_dilation=(d, d),  # noqa: E731
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        fns = {"fwd": jax.jit(conv), "dx": jax.jit(jax.grad(lambda a, b: jnp.sum(conv(a, b)), argnums=0)),
               "dw": jax.jit(jax.grad(lambda a, b: jnp.sum(conv(a, b)), argnums=1))}
        ms = {k: _best(lambda f=f: jax.block_until_ready(f(xs, w)), 3) * 1e3 for k, f in fns.items()}
        line = (f"  {name}: forward {ms['fwd']:.0f} ms, input gradient {ms['dx']:.0f} ms, weight gradient "
                f"{ms['dw']:.0f} ms")
        if k == 1:
            mm = lambda a, b: jnp.einsum("nhwc,ck->nhwk", a, b[0, 0])  # noqa: E731
            dw = jax.jit(jax.grad(lambda a, b: jnp.sum(mm(a, b)), argnums=1))
            line += f" (as a matrix product: {_best(lambda: jax.block_until_ready(dw(xs, w)), 3) * 1e3:.0f} ms)"
        print(line, flush=True)

    original = keras.layers.Conv2D.convolution_op

    def pointwise_as_matmul(self, inputs, kernel):
        if tuple(self.kernel_size) == (1, 1) and tuple(self.strides) == (1, 1) and self.groups == 1:
            return keras.ops.matmul(inputs, kernel[0, 0])
        return original(self, inputs, kernel)

    keras.layers.Conv2D.convolution_op = pointwise_as_matmul
    print(f"  trunk fwd+bwd with the 1x1 stride-1 convolutions as matrix products: {grad_time(trunk_m, jnp.sum):.2f} s",
          flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=2, help="2: PyTorch's BatchNorm needs > 1 value in the 1x1 pool")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", help="also write the output to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "torch":
        return _torch(args.batch, args.threads)
    if args.child == "jax":
        return _jax(args.batch)
    head = (f"pspnet_cpu_train: PSPNet-50 473x473, 150 classes, batch {args.batch}, {args.threads} threads, "
            f"{time.strftime('%Y-%m-%d %H:%M')}, os.cpu_count() {os.cpu_count()}, load average "
            f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(head, flush=True)
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
           "OMP_NUM_THREADS": str(args.threads)}
    lines = [head]
    for side in ("torch", "jax"):
        r = subprocess.run([sys.executable, __file__, "--child", side, "--batch", str(args.batch), "--threads",
                            str(args.threads)], env=env, capture_output=True, text=True)
        out = [ln for ln in r.stdout.splitlines() if ln.strip()] or [f"{side} failed: {r.stderr.strip()[-600:]}"]
        for ln in out:
            print(ln, flush=True)
        lines += out
    lines.append(f"load average now {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.out:
        with open(args.out + ".tmp", "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
