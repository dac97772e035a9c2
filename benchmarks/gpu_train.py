"""GPU training throughput: zoo models on Keras 3 + JAX against PyTorch references, same card, same run.

    KERAS_BACKEND=jax python benchmarks/gpu_train.py [--only resnet50,hourglass,pspnet50]
        [--kinds torch,keras-train,keras-ceiling] [--workers 6] [--deadline 540] [--out FILE]

Each measurement runs in its own subprocess with its own time limit (a stuck compile cannot eat the
others' time), and the whole run stops starting new ones at ``--deadline``; each prints one
``RESULT {json}`` line; the parent prints a table with the card's name, images/s after warm-up,
the ratio ours/torch, the share of our jitted-step ceiling and peak GPU memory.

Sections (batch sizes from the issue): ResNet-50 224x224 batch 256, Stacked Hourglass 8 stacks
256x256 batch 32, PSPNet-50 473x473 batch 8 (150 classes, no aux head), all bf16 mixed precision.
Kinds (default plan in ``PLAN``):

- ``torch``: ``benchmarks/torch_reference.py`` / torchvision, channels_last, autocast bf16, SGD,
  cudnn.benchmark, eager (``torch.compile`` of an 8-stack hourglass did not finish in 400 s on an
  H200, see shared/GPU.md; ``--compile`` adds ``torch-compile`` for every model).
- ``keras-fit-float32`` / ``keras-fit-uint8``: the zoo model, ``model.fit`` on in-memory arrays,
  ``steps_per_execution`` 4, SGD; float32 pixels normalised on the host, or uint8 pixels with
  :class:`zoo.layers.Normalize` as the model's first layer (4x fewer bytes host -> device).
- ``keras-train`` (hourglass, PSPNet): the product path, ``training.fit(..., feed="uint8",
  precision="bf16")`` over ``HeatmapDataset`` / ``SegmentationDataset`` of synthetic images with
  augmentation and ``--workers`` spawned processes: the pipeline, the training losses and metrics
  (PCK, mean IoU) and the preset optimiser (RMSprop / SGD) are all in the loop. Epoch 2 is timed.
- ``keras-ceiling``: a jitted train step over ``model.stateless_call`` (uint8 model, SGD) with the
  batch already on the GPU: the compute ceiling ``fit`` is compared with (issue #7: within 5%).

``KERAZOO_BENCH_QUICK=1`` shrinks every configuration to a CPU smoke test of the script itself.
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


def _keras_setup(model_name, feed="float32"):
    """The zoo model, a batch (x, y) and its loss. With ``feed="uint8"`` the model starts with
    :class:`zoo.layers.Normalize` and ``x`` is uint8 pixels, as ``training.fit(feed="uint8")`` runs it."""
    import keras
    import numpy as np

    import zoo
    from training.losses import HeatmapMSE, SegmentationCrossEntropy
    from training.normalization import Normalization
    from training.trainer import with_normalization

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    batch, size, _ = CONFIGS[model_name]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
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
    norm = Normalization()
    if feed == "uint8":
        model = with_normalization(model, norm)
    else:
        x = norm(x)
    return model, x, y, loss


def _peak_gib():
    try:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use", 0) / 2**30
    except Exception:  # noqa: BLE001 - memory stats are best effort
        return None


def run_keras_fit(model_name, feed="float32", steps_per_execution=4):
    """``model.fit`` on in-memory arrays: the feed (float32 vs uint8 pixels) without a pipeline."""
    import keras
    import numpy as np

    batch, _, steps = CONFIGS[model_name]
    model, x, y, loss = _keras_setup(model_name, feed)
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
    _result(model=model_name, impl=f"keras-fit-{feed}", img_s=n * batch / dt, warmup_s=warm,
            peak_gib=_peak_gib(), batch=batch)


def run_keras_train(model_name, workers=6):
    """The product path: ``training.fit`` with its dataset pipeline in the loop (augmentation, targets,
    ``workers`` spawned processes, uint8 feed), bf16. Epoch 1 compiles; epoch 2 is measured."""
    import keras

    from training.data import HeatmapDataset, SegmentationDataset
    from training.datasets.synthetic import synthetic_pose, synthetic_segmentation
    from training.trainer import fit

    import zoo

    batch, size, steps = CONFIGS[model_name]
    common = dict(batch_size=batch, input_size=(size, size), augment=True, feed="uint8", drop_remainder=True,
                  workers=workers, use_multiprocessing=workers > 0, max_queue_size=4 * max(workers, 1))
    if model_name == "hourglass":
        records = synthetic_pose(steps * batch, image_size=(size, size), num_keypoints=16)
        data = HeatmapDataset(records, heatmap_size=(size // 4, size // 4), sigma=2.0, flip_pairs=(), **common)
        model = zoo.get("hourglass", stacks=8, num_keypoints=16, input_shape=(size, size, 3))
    elif model_name == "pspnet50":
        records = synthetic_segmentation(steps * batch, image_size=(size, size), num_classes=150)
        data = SegmentationDataset(records, num_classes=150, **common)
        model = zoo.get("pspnet50", classes=150, input_shape=(size, size, 3))  # no aux head: as the reference
    else:
        raise SystemExit(f"keras-train: no training.fit dataset for {model_name}")
    times = []

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.time()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.time() - self.t)

    fit(model, data, epochs=2, precision="bf16", checkpoint=False, backup=False, csv_log=False, verbose=0,
        callbacks=[EpochTimes()], feed="uint8")
    _result(model=model_name, impl=f"training.fit-w{workers}", img_s=len(data) * batch / times[-1],
            warmup_s=times[0], peak_gib=_peak_gib(), batch=batch)


def run_keras_ceiling(model_name):
    """A jitted train step over ``model.stateless_call`` with the uint8 batch already on the device."""
    import jax
    import jax.numpy as jnp
    import keras

    batch, _, steps = CONFIGS[model_name]
    model, x, y, loss = _keras_setup(model_name, "uint8")
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


PLAN = {  # what runs by default, per model
    "resnet50": ("torch", "keras-fit-float32", "keras-fit-uint8", "keras-ceiling"),
    "hourglass": ("torch", "keras-train", "keras-ceiling"),
    "pspnet50": ("torch", "keras-train", "keras-ceiling"),
}
LIMITS = "torch=60,torch-compile=200,keras-fit-float32=90,keras-fit-uint8=90,keras-train=200,keras-ceiling=150"


def _child(args):
    kind, model = args.child.split(":")
    if kind in ("torch", "torch-compile"):
        run_torch(model, compile_=kind == "torch-compile")
    elif kind.startswith("keras-fit-"):
        run_keras_fit(model, feed=kind.rsplit("-", 1)[1])
    elif kind == "keras-train":
        run_keras_train(model, workers=args.workers)
    elif kind == "keras-ceiling":
        run_keras_ceiling(model)
    else:
        raise SystemExit(f"unknown kind {kind!r}")


def _table(card, results):
    lines = [f"{card}, bf16, images/s after warm-up (ratios: against torch-eager / keras-ceiling of the same run)",
             f"{'model':<11}{'impl':<20}{'img/s':>9}{'vs torch':>10}{'of ceiling':>12}{'warm-up s':>11}{'peak GiB':>10}"]

    def find(model, impl):
        return next((b["img_s"] for b in results if b["model"] == model and b["impl"] == impl), None)

    for r in results:
        base, ceil = find(r["model"], "torch-eager"), find(r["model"], "keras-ceiling")
        ratio = f"{r['img_s'] / base:.2f}x" if base else "-"
        of_ceil = f"{r['img_s'] / ceil:.0%}" if ceil and r["impl"].startswith(("keras", "training")) else "-"
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") else "-"
        lines.append(f"{r['model']:<11}{r['impl']:<20}{r['img_s']:>9.0f}{ratio:>10}{of_ceil:>12}"
                     f"{r['warmup_s']:>11.0f}{peak:>10}")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="resnet50,hourglass,pspnet50")
    p.add_argument("--kinds", help="comma list overriding the default plan for every model, e.g. torch,keras-train")
    p.add_argument("--compile", action="store_true", help="also torch.compile every reference")
    p.add_argument("--workers", type=int, default=6, help="spawned data workers of keras-train")
    p.add_argument("--limits", default=LIMITS, help="seconds per subprocess, by kind")
    p.add_argument("--deadline", type=float, default=540.0, help="seconds for the whole run; later runs are cut")
    p.add_argument("--out", help="also write the log and table to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    from benchmarks._report import emit

    start = time.time()
    limits = dict((k, float(v)) for k, v in (kv.split("=") for kv in args.limits.split(",")))
    try:
        card = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.strip() or "unknown GPU"
    except OSError:
        card = "no GPU (CPU)"
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):  # without importing it (JAX starts only in the children)
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"no {name}"

    log = [f"card: {card} | " + ", ".join(installed(n) for n in ("keras", "jax", "torch", "torchvision"))]
    print(log[0], flush=True)
    results = []
    for model in args.only.split(","):
        kinds = args.kinds.split(",") if args.kinds else list(PLAN[model])
        if args.compile and "torch-compile" not in kinds:
            kinds.insert(1, "torch-compile")
        for kind in kinds:
            left = args.deadline - (time.time() - start)
            if left < 20:
                log.append(f"SKIPPED {kind}:{model} (deadline)")
                print(log[-1], flush=True)
                continue
            timeout = min(limits.get(kind, 120), left)
            t0 = time.time()
            cmd = [sys.executable, os.path.abspath(__file__), "--child", f"{kind}:{model}", "--workers",
                   str(args.workers)]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                lines = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
                if lines:
                    results.append(json.loads(lines[-1][7:]))
                    log.append(f"{lines[-1]} ({time.time() - t0:.0f} s)")
                else:
                    log.append(f"FAILED {kind}:{model} rc={r.returncode}: {r.stderr.strip()[-800:]}")
            except subprocess.TimeoutExpired:
                log.append(f"TIMEOUT {kind}:{model} after {timeout:.0f} s")
            print(log[-1], flush=True)
    emit(log + [""] + _table(card, results), args.out, skip=len(log))
    return results


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.set_start_method("spawn", force=True)  # data workers: never fork a process that holds JAX/CUDA
    main()
