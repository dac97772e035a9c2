"""Benchmark: samples/s of the hourglass training pipeline (``training.data.HeatmapDataset``).

    KERAS_BACKEND=jax python benchmarks/data_pipeline.py [--workers 1,2,4,8,16] [--modes thread,process]
        [--source memory|jpeg|synthetic] [--sigma 2] [--batches 24] [--out results.txt]

Pipeline: 256x256 RGB uint8 images -> random crop/scale/rotation/flip as one ``cv2.warpAffine``
(INTER_LINEAR) to 256x256 -> photometric jitter -> 16 Gaussian heatmaps 64x64 (sigma 2) ->
batch of 32. Sources: ``memory`` (pre-decoded arrays: the "no JPEG decode" case), ``jpeg``
(``cv2.imdecode`` of in-memory JPEG bytes every time), ``synthetic`` (rendered figures).

1. One core (``cv2.setNumThreads(1)``, no workers): per-sample cost of each step (read, matrix,
   warp, jitter, heatmaps, float32 normalisation, collation) and of a whole ``ds[i]`` with
   ``feed="uint8"`` and ``feed="float32"``, with and without photometric jitter.
2. Scaling: batches pulled through Keras' own ``PyDatasetAdapter`` (what ``model.fit`` uses) with
   ``workers=N`` threads or spawned processes (``feed="uint8"``): the datasets' persistent
   processes (:mod:`training.workers`, the default), or Keras' per-epoch pool
   (``persistent_workers=False``) returning batches through shared memory (:mod:`training.shm`)
   or through the Pool's pipe (``KERAZOO_WORKER_SHM=0``): samples/s, per worker, and efficiency =
   rate / (N x main-thread rate), after a warm-up of 2N batches (pool start-up excluded).
3. Workers a GPU needs: the measured H200 step rates (benchmarks/results/2026-11-26_h200_*) divided
   by the per-worker rate.
4. ``--epochs``: time to the first batch of each epoch and per epoch, persistent processes vs
   Keras' pool, which starts new processes every epoch.

Every table carries ``os.getloadavg()`` and ``os.cpu_count()``: on a shared machine the rates are
lower bounds. Not run by the tests.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Step rates measured on one NVIDIA H200 (bf16, benchmarks/results/2026-11-26_h200_gpu_train*.txt).
GPU_RATES = {"hourglass 8-stack, batch 32, fit()": 233.0, "ResNet-50, batch 256, fit()": 5042.0}


class MemoryImage:
    """Image source holding a decoded array (the pipeline without decoding)."""

    def __init__(self, array):
        self.array = array

    def load(self):
        return self.array


class JpegImage:
    """Image source holding JPEG bytes, decoded on every ``load()`` (as files would be)."""

    def __init__(self, data):
        self.data = data

    def load(self):
        import cv2

        return cv2.cvtColor(cv2.imdecode(self.data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def records(n, source, size=(256, 256), k=16, seed=0):
    """``n`` PoseRecords over 8 distinct images (shared objects keep the worker pickle small)."""
    import cv2
    import numpy as np

    from training.datasets.base import PoseRecord
    from training.datasets.synthetic import synthetic_pose

    if source == "synthetic":
        return synthetic_pose(n, image_size=size, num_keypoints=k, seed=seed)
    rng = np.random.default_rng(seed)
    w, h = size
    pics = [cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), np.uint8), (5, 5), 0) for _ in range(8)]
    if source == "jpeg":
        srcs = [JpegImage(cv2.imencode(".jpg", p, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]) for p in pics]
    else:
        srcs = [MemoryImage(p) for p in pics]
    out = []
    for i in range(n):
        kp = rng.uniform(0.2, 0.8, (k, 2)) * (w, h)
        out.append(PoseRecord(srcs[i % 8], kp, np.ones(k), ((w - 1) / 2, (h - 1) / 2), 0.8 * max(w, h), id=f"s{i}"))
    return out


def dataset(recs, *, feed="uint8", jitter=True, sigma=2.0, batch_size=32, **kw):
    from training.data import Augmentation, HeatmapDataset

    # colour jitter 0.2 as measured before the presets dropped it (5f37a67: neither original recipe has it); the
    # preset without it is what augment=True gives now
    aug = Augmentation.pose(brightness=0.2, contrast=0.2, saturation=0.2) if jitter else Augmentation.pose()
    return HeatmapDataset(recs, batch_size=batch_size, input_size=(256, 256), heatmap_size=(64, 64), sigma=sigma,
                          augment=aug, feed=feed, drop_remainder=True, flip_pairs=(), **kw)


def _per_call(fn, n):
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def breakdown(source, sigma, n=64):
    """Per-sample milliseconds of each step on one core, and of whole batches."""
    import cv2
    import numpy as np

    from training.datasets.base import read_image
    from training.transforms import transform_points, warp_image

    cv2.setNumThreads(1)
    recs = records(256, source)
    ds = dataset(recs, sigma=sigma)
    rng = np.random.default_rng(0)
    rec = recs[0]
    image = read_image(rec.image)
    params = ds.augment.sample(rng)
    mat = ds.matrix(rec, params)
    crop = warp_image(image, mat, ds.input_size)
    kp = transform_points(rec.keypoints, mat)
    samples = [ds._make_sample(recs[i], np.random.default_rng(i)) for i in range(32)]
    steps = {
        "read image (load/decode)": _per_call(lambda: read_image(rec.image), n),
        "draw + matrix": _per_call(lambda: ds.matrix(rec, ds.augment.sample(rng)), n),
        "warpAffine 256x256 bilinear": _per_call(lambda: warp_image(image, mat, ds.input_size), n),
        "photometric jitter": _per_call(lambda: ds.augment.jitter(crop, rng), n),
        f"16 heatmaps 64x64 sigma {sigma:g}": _per_call(lambda: ds.codec.encode(kp, rec.visible), n),
        "collate uint8 (per sample)": _per_call(lambda: ds._collate(samples), max(n // 8, 4)) / 32,
    }
    ds.feed = "float32"
    steps["collate + normalise float32 (per sample)"] = _per_call(lambda: ds._collate(samples), max(n // 8, 4)) / 32
    whole = {}
    for feed in ("uint8", "float32"):
        for jitter in (True, False):
            d = dataset(recs, feed=feed, jitter=jitter, sigma=sigma)
            d[0]
            t = time.perf_counter()
            for i in range(1, 5):
                d[i]
            whole[(feed, jitter)] = (time.perf_counter() - t) / (4 * d.batch_size)
    x_u8, y, w = dataset(recs, feed="uint8", sigma=sigma)[0]
    x_f32 = dataset(recs, feed="float32", sigma=sigma)[0][0]
    nbytes = {"uint8": x_u8.nbytes + y.nbytes + w.nbytes, "float32": x_f32.nbytes + y.nbytes + w.nbytes,
              "images uint8": x_u8.nbytes, "images float32": x_f32.nbytes}
    return steps, whole, nbytes


def pipeline_rate(ds, batches, warmup):
    """Samples/s through Keras' PyDatasetAdapter (the path ``model.fit`` takes), after ``warmup`` batches."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(ds, shuffle=False)
    adapter.on_epoch_begin()
    it = adapter.get_numpy_iterator()
    for _ in range(warmup):
        next(it)
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    rate = batches * ds.batch_size / (time.perf_counter() - t)
    main_cpu = (time.process_time() - cpu) / batches  # this process only (workers are children)
    adapter.on_epoch_end()
    return rate, main_cpu


def scaling(workers, modes, source, sigma, batches):
    recs = records(32 * (batches + 2 * max(workers) + 4), source)
    base, cpu = pipeline_rate(dataset(recs, sigma=sigma), batches, 1)
    rows = [("main thread", 0, base, cpu)]
    for mode in modes:
        for n in workers:
            # spawned workers read KERAZOO_WORKER_SHM at start: "process-pipe" is the plain Pool pipe
            os.environ["KERAZOO_WORKER_SHM"] = "0" if mode == "process-pipe" else "1"
            ds = dataset(recs, sigma=sigma, workers=n, use_multiprocessing=mode != "thread", max_queue_size=2 * n,
                         persistent_workers=mode == "process")
            rows.append((mode, n, *pipeline_rate(ds, batches, 2 * n)))
            ds.close_workers()
    os.environ.pop("KERAZOO_WORKER_SHM", None)
    return base, rows


def epoch_starts(n, source, sigma, batches, epochs=3):
    """Seconds to the first batch of each epoch and per epoch, through Keras' adapter as ``fit`` runs it,
    for our persistent processes and Keras' per-epoch pool (``persistent_workers=False``)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    recs = records(32 * batches, source)
    rows = []
    for persistent in (True, False):
        ds = dataset(recs, sigma=sigma, workers=n, use_multiprocessing=True, max_queue_size=2 * n,
                     persistent_workers=persistent)
        adapter = PyDatasetAdapter(ds, shuffle=False)
        for epoch in range(epochs):
            adapter.on_epoch_begin()
            t = time.perf_counter()
            it = adapter.get_numpy_iterator()
            next(it)
            first = time.perf_counter() - t
            for _ in range(len(ds) - 1):
                next(it)
            rows.append(("persistent processes" if persistent else "Keras pool per epoch", epoch, first,
                         time.perf_counter() - t))
            adapter.on_epoch_end()
        ds.close_workers()
    return rows


def header():
    import cv2
    import keras
    import numpy as np

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"date {time.strftime('%Y-%m-%d %H:%M')} | os.cpu_count() {os.cpu_count()} | load average {load} | "
            f"keras {keras.__version__} ({keras.backend.backend()}) numpy {np.__version__} opencv {cv2.__version__}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default=None, help="comma list, default 1,2,... up to os.cpu_count()")
    ap.add_argument("--modes", default="thread,process,keras-process,process-pipe",
                    help="thread; process (spawn, persistent, batches via shared memory); keras-process (Keras' "
                         "per-epoch Pool, shared memory); process-pipe (Keras' Pool, through its pipe)")
    ap.add_argument("--epochs", action="store_true", help="also time epoch starts (persistent vs Keras' pool)")
    ap.add_argument("--workers-epochs", type=int, default=2, help="workers for --epochs")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--source", default="memory", choices=("memory", "jpeg", "synthetic"))
    ap.add_argument("--sigma", type=float, default=2.0)
    ap.add_argument("--batches", type=int, default=24, help="timed batches of 32 per row")
    ap.add_argument("--skip-breakdown", action="store_true")
    ap.add_argument("--out", help="also write the tables to this file")
    args = ap.parse_args(argv)
    cpus = os.cpu_count() or 1
    workers = ([int(v) for v in args.workers.split(",")] if args.workers
               else [n for n in (1, 2, 4, 8, 16) if n <= cpus])
    modes = [m for m in args.modes.split(",") if m]
    lines = [f"data_pipeline: HeatmapDataset 256x256 -> 16 x 64x64 heatmaps (sigma {args.sigma:g}), batch 32, "
             f"source {args.source}", header(), ""]

    def out(text=""):
        print(text, flush=True)
        lines.append(text)

    for text in lines[:2]:
        print(text, flush=True)
    per_sample = None
    if not args.skip_breakdown:
        steps, whole, nbytes = breakdown(args.source, args.sigma)
        out("1. one core, per sample (cv2.setNumThreads(1))")
        out(f"{'step':<44}{'ms':>8}{'samples/s':>11}")
        for name, sec in steps.items():
            out(f"{name:<44}{sec * 1e3:>8.3f}{1 / sec:>11.0f}")
        for (feed, jitter), sec in whole.items():
            out(f"{'ds[i], feed ' + feed + (', jitter' if jitter else ', no jitter'):<44}{sec * 1e3:>8.3f}"
                f"{1 / sec:>11.0f}")
        per_sample = whole[("uint8", True)]
        out(f"bytes per batch of 32 (x + y + w): feed uint8 {nbytes['uint8'] / 2**20:.1f} MiB, float32 "
            f"{nbytes['float32'] / 2**20:.1f} MiB (images {nbytes['images uint8'] / 2**20:.1f} vs "
            f"{nbytes['images float32'] / 2**20:.1f} MiB)")
        out(f"load average now {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
        out()
    base, rows = scaling(workers, [] if args.skip_scaling else modes, args.source, args.sigma, args.batches)
    out("2. scaling through keras PyDatasetAdapter, feed uint8, jitter on "
        f"(efficiency = rate / (N x main-thread rate {base:.0f}/s); {cpus} CPUs)")
    out(f"{'workers':<22}{'samples/s':>10}{'per worker':>12}{'efficiency':>12}{'vs 1 worker':>13}"
        f"{'main CPU ms/batch':>19}")
    for mode, n, rate, cpu in rows:
        label = f"{n} {mode}" if n else mode
        eff = rate / (max(n, 1) * base)
        one = next((r for m, k, r, _ in rows if m == mode and k == 1), None)
        vs_one = f"{rate / one:.2f}" if one and n else "-"
        note = "  (more workers than CPUs)" if n > cpus else ""
        out(f"{label:<22}{rate:>10.0f}{rate / max(n, 1):>12.0f}{eff:>12.2f}{vs_one:>13}{cpu * 1e3:>19.1f}{note}")
    out(f"load average now {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    out()
    if args.epochs:
        out(f"4. epoch starts: {args.workers_epochs} spawned workers, {args.batches} batches of 32 per epoch, through "
            f"keras PyDatasetAdapter")
        out(f"{'workers':<24}{'epoch':>6}{'first batch s':>15}{'epoch s':>9}")
        for name, epoch, first, total in epoch_starts(args.workers_epochs, args.source, args.sigma, args.batches):
            out(f"{name:<24}{epoch:>6}{first:>15.2f}{total:>9.2f}")
        out(f"load average now {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
        out()
    core = 1 / per_sample if per_sample else base
    out(f"3. workers to keep a GPU fed at {core:.0f} samples/s per core (scaling 0.8 assumed beyond the measured)")
    for name, rate in GPU_RATES.items():
        need = math.ceil(rate / (0.8 * core))
        out(f"{name:<40}{rate:>7.0f} samples/s -> {need} workers{' (> 16 cores)' if need > 16 else ''}")
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, args.out)


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)  # JAX is not fork-safe
    os.environ.setdefault("KERAS_BACKEND", "jax")
    main()
