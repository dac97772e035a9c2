"""GPU training throughput: zoo models on Keras 3 + JAX against PyTorch references, same card, same run.

    KERAS_BACKEND=jax python benchmarks/gpu_train.py [--only resnet50,hourglass,pspnet50] [--quick]

Each measurement runs in its own subprocess with its own time limit (a stuck compile cannot eat the
others' time) and prints one ``RESULT {json}`` line; the parent prints a table with the card's name,
images/s after warm-up, the ratio ours/torch and peak GPU memory.

Sections (batch sizes from the issue): ResNet-50 224x224 batch 256, Stacked Hourglass 8 stacks
256x256 batch 32, PSPNet-50 473x473 batch 8 (150 classes), all bf16 mixed precision.

- ``torch``: ``benchmarks/torch_reference.py`` / torchvision, channels_last, autocast bf16, SGD,
  cudnn.benchmark, eager (``torch.compile`` of an 8-stack hourglass did not finish in 400 s on an
  H200, see shared/GPU.md; use ``--compile`` to try it for every model).
- ``keras-fit``: the zoo model, ``compile`` with the training losses (weighted heatmap MSE per stack,
  ignore-255 cross-entropy), ``model.fit`` on in-memory arrays, ``steps_per_execution`` 4.
- ``keras-ceiling`` (ResNet-50 only): a jitted train step over ``model.stateless_call`` with the batch
  already on the GPU: the compute ceiling ``fit`` is compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks")]

CONFIGS = {  # name -> (batch, input size, steps measured)
    "resnet50": (256, 224, 30),
    "hourglass": (32, 256, 30),
    "pspnet50": (8, 473, 30),
}
if os.environ.get("KERAZOO_BENCH_QUICK"):  # CPU smoke test of the script itself
    CONFIGS = {"resnet50": (2, 64, 2), "hourglass": (2, 64, 2), "pspnet50": (2, 97, 2)}


def _result(**kw):
    print("RESULT " + json.dumps(kw), flush=True)


# ----------------------------------------------------------------------------------------------
# PyTorch reference
# ----------------------------------------------------------------------------------------------


def run_torch(model_name, compile_=False):
    import torch

    import torch_reference as ref

    batch, size, steps = CONFIGS[model_name]
    torch.backends.cudnn.benchmark = True
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = {"resnet50": ref.resnet50, "hourglass": ref.hourglass, "pspnet50": ref.pspnet50}[model_name]()
    model = model.to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=torch.channels_last)
    if model_name == "resnet50":
        y = torch.randint(0, 1000, (batch,), device=dev)
        loss_fn = lambda out: torch.nn.functional.cross_entropy(out, y)  # noqa: E731
    elif model_name == "hourglass":
        y = torch.rand(batch, 16, size // 4, size // 4, device=dev)
        loss_fn = lambda outs: sum(((o - y) ** 2).mean() for o in outs)  # noqa: E731
    else:
        y = torch.randint(0, 150, (batch, size, size), device=dev)
        loss_fn = lambda out: torch.nn.functional.cross_entropy(out, y, ignore_index=255)  # noqa: E731
    fwd = torch.compile(model) if compile_ else model

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = loss_fn(fwd(x))
        loss.backward()
        opt.step()

    t0 = time.time()
    for _ in range(3):
        step()
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    sync()
    warm = time.time() - t0
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    for _ in range(steps):
        step()
    sync()
    dt = time.time() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None
    _result(model=model_name, impl="torch-compile" if compile_ else "torch-eager", img_s=steps * batch / dt,
            warmup_s=warm, peak_gib=peak, batch=batch)


# ----------------------------------------------------------------------------------------------
# Keras 3 + JAX (the zoo models)
# ----------------------------------------------------------------------------------------------


def _keras_setup(model_name):
    import keras
    import numpy as np

    import zoo
    from training.losses import HeatmapMSE, SegmentationCrossEntropy

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    batch, size, _ = CONFIGS[model_name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    if model_name == "resnet50":
        model = zoo.get("resnet50", classifier_activation=None, input_shape=(size, size, 3))
        y = rng.integers(0, 1000, size=(batch,))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    elif model_name == "hourglass":
        model = zoo.get("hourglass", stacks=8, num_keypoints=16, input_shape=(size, size, 3))
        hm = rng.uniform(size=(batch, size // 4, size // 4, 16)).astype("float32")
        y = [hm] * len(model.outputs)
        loss = [HeatmapMSE()] * len(model.outputs)
    else:
        model = zoo.get("pspnet50", classes=150, input_shape=(size, size, 3))
        size = model.outputs[0].shape[1]  # Caffe Interp size (473 -> 473)
        y = rng.integers(0, 150, size=(batch, size, model.outputs[0].shape[2])).astype("int32")
        loss = SegmentationCrossEntropy(ignore_label=255)
    return model, x, y, loss


def _peak_gib():
    try:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use", 0) / 2**30
    except Exception:  # noqa: BLE001 - memory stats are best effort
        return None


def run_keras_fit(model_name, steps_per_execution=4):
    import keras
    import numpy as np

    batch, _, steps = CONFIGS[model_name]
    model, x, y, loss = _keras_setup(model_name)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=loss,
                  steps_per_execution=steps_per_execution)
    n = steps_per_execution * max(1, steps // steps_per_execution)
    xs = np.concatenate([x] * n)
    ys = [np.concatenate([t] * n) for t in y] if isinstance(y, list) else np.concatenate([y] * n)
    t0 = time.time()
    model.fit(xs[: batch * steps_per_execution],
              [t[: batch * steps_per_execution] for t in ys] if isinstance(ys, list) else ys[: batch * steps_per_execution],
              batch_size=batch, epochs=1, verbose=0)
    warm = time.time() - t0
    t0 = time.time()
    model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0)
    dt = time.time() - t0
    _result(model=model_name, impl=f"keras-fit-spe{steps_per_execution}", img_s=n * batch / dt, warmup_s=warm,
            peak_gib=_peak_gib(), batch=batch)


def run_keras_ceiling(model_name):
    import jax
    import jax.numpy as jnp
    import keras

    batch, _, steps = CONFIGS[model_name]
    model, x, y, loss = _keras_setup(model_name)
    opt = keras.optimizers.SGD(0.01, momentum=0.9)
    opt.build(model.trainable_variables)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    ov = [v.value for v in opt.variables]

    def loss_fn(tv, ntv, x, y):
        out, ntv2 = model.stateless_call(tv, ntv, x, training=True)
        if isinstance(out, (list, tuple)):
            value = sum(loss[i](y[i], o) for i, o in enumerate(out))
        else:
            value = loss(y, out)
        return value, ntv2

    @jax.jit
    def step(tv, ntv, ov, x, y):
        (value, ntv), g = jax.value_and_grad(loss_fn, has_aux=True)(tv, ntv, x, y)
        tv, ov = opt.stateless_apply(ov, g, tv)
        return tv, ntv, ov, value

    xd = jnp.asarray(x)
    yd = [jnp.asarray(t) for t in y] if isinstance(y, list) else jnp.asarray(y)
    t0 = time.time()
    for _ in range(3):
        tv, ntv, ov, value = step(tv, ntv, ov, xd, yd)
    value.block_until_ready()
    warm = time.time() - t0
    t0 = time.time()
    for _ in range(steps):
        tv, ntv, ov, value = step(tv, ntv, ov, xd, yd)
    value.block_until_ready()
    dt = time.time() - t0
    _result(model=model_name, impl="keras-ceiling", img_s=steps * batch / dt, warmup_s=warm, peak_gib=_peak_gib(),
            batch=batch)


# ----------------------------------------------------------------------------------------------


def _child(args):
    kind, model = args.child.split(":")
    if kind == "torch":
        run_torch(model)
    elif kind == "torch-compile":
        run_torch(model, compile_=True)
    elif kind == "keras-fit":
        run_keras_fit(model)
    elif kind == "keras-ceiling":
        run_keras_ceiling(model)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="resnet50,hourglass,pspnet50")
    p.add_argument("--compile", action="store_true", help="also torch.compile every reference")
    p.add_argument("--ceiling", default="resnet50", help="models to measure the jitted-step ceiling for")
    p.add_argument("--limits", default="torch=50,torch-compile=200,keras-fit=140,keras-ceiling=110",
                   help="seconds per subprocess, by kind")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    limits = dict((k, float(v)) for k, v in (kv.split("=") for kv in args.limits.split(",")))
    try:
        card = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip() or "unknown GPU"
    except OSError:
        card = "unknown GPU"
    print(f"card: {card}", flush=True)
    results = []
    for model in args.only.split(","):
        kinds = ["torch"] + (["torch-compile"] if args.compile else []) + ["keras-fit"]
        if model in args.ceiling.split(","):
            kinds.append("keras-ceiling")
        for kind in kinds:
            t0 = time.time()
            cmd = [sys.executable, os.path.abspath(__file__), "--child", f"{kind}:{model}"]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=limits.get(kind, 120))
                lines = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
                if lines:
                    results.append(json.loads(lines[-1][7:]))
                    print(lines[-1], f"({time.time() - t0:.0f} s)", flush=True)
                else:
                    print(f"FAILED {kind}:{model} rc={r.returncode}: {r.stderr.strip()[-600:]}", flush=True)
            except subprocess.TimeoutExpired:
                print(f"TIMEOUT {kind}:{model} after {limits.get(kind, 120):.0f} s", flush=True)
    print(f"\n{card}, bf16, images/s after warm-up")
    print(f"{'model':<11}{'impl':<18}{'img/s':>9}{'vs torch':>10}{'warm-up s':>11}{'peak GiB':>10}")
    for r in results:
        base = next((b["img_s"] for b in results if b["model"] == r["model"] and b["impl"] == "torch-eager"), None)
        ratio = f"{r['img_s'] / base:.2f}x" if base else "-"
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") else "-"
        print(f"{r['model']:<11}{r['impl']:<18}{r['img_s']:>9.0f}{ratio:>10}{r['warmup_s']:>11.0f}{peak:>10}")
    return results


if __name__ == "__main__":
    main()
