"""GPU check of ``training.fit``: 8-stack hourglass, bf16, spawned data workers (KERAS_BACKEND=jax).

    KERAS_BACKEND=jax python benchmarks/train_gpu_check.py [--workers 8] [--batches 40]

1. Data pipeline alone: ``HeatmapDataset`` batches (32 synthetic 256x256 images, HRNet
   augmentation, 16 heatmaps 64x64) through Keras' own PyDataset adapter, ``workers=0`` vs
   ``workers=N`` spawned processes: samples/s.
2. ``training.fit("hourglass", stacks=8, features=256)`` with ``precision="bf16"`` and the
   spawned workers for 2 epochs: time of the first epoch (includes XLA compile) and of the
   second (steady state) -> images/s, checking the loss stays finite and the model's compute
   dtype is bfloat16.

Prints ``RESULT {json}`` lines.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _dataset(n, workers, seed=0):
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose

    return HeatmapDataset(synthetic_pose(n, image_size=(256, 256), num_keypoints=16, seed=seed), batch_size=32,
                          input_size=(256, 256), heatmap_size=(64, 64), sigma=2.0, augment=True, seed=seed,
                          drop_remainder=True, workers=workers, use_multiprocessing=workers > 0, max_queue_size=16)


def pipeline_rate(ds, batches):
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(ds, shuffle=False)
    adapter.on_epoch_begin()
    it = adapter.get_numpy_iterator()
    next(it)  # pool start-up (spawn imports) is not throughput
    t = time.time()
    for _ in range(batches - 1):
        next(it)
    rate = (batches - 1) * ds.batch_size / (time.time() - t)
    adapter.on_epoch_end()
    return rate


class EpochTimer:
    def __init__(self):
        import keras

        class _CB(keras.callbacks.Callback):
            def on_epoch_begin(cb, epoch, logs=None):
                cb.t = time.time()

            def on_epoch_end(cb, epoch, logs=None):
                self.times.append(time.time() - cb.t)

        self.times = []
        self.callback = _CB()


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--batches", type=int, default=40, help="batches per epoch / per pipeline measurement")
    p.add_argument("--stacks", type=int, default=8)
    p.add_argument("--features", type=int, default=256)
    args = p.parse_args(argv)
    import keras

    out = {"backend": keras.backend.backend(), "devices": [str(d) for d in keras.distribution.list_devices()]}
    n = args.batches * 32
    out["pipeline_samples_per_s_workers0"] = round(pipeline_rate(_dataset(n, 0), min(8, args.batches)), 1)
    out[f"pipeline_samples_per_s_workers{args.workers}"] = round(pipeline_rate(_dataset(n, args.workers),
                                                                               args.batches), 1)
    print("RESULT " + json.dumps(out), flush=True)

    from training.callbacks import resolve_monitor
    from training.trainer import fit

    timer = EpochTimer()
    t0 = time.time()
    res = fit("hourglass", _dataset(n, args.workers), epochs=2, precision="bf16", verbose=2,
              model_kwargs={"stacks": args.stacks, "features": args.features}, callbacks=[timer.callback])
    fit_out = {"model": f"hourglass stacks={args.stacks} features={args.features} 256x256 batch 32 bf16",
               "params": res.model.count_params(),
               "compute_dtype": res.model.layers[2].dtype_policy.compute_dtype,
               "loss": res.history["loss"], "pck": res.history.get(resolve_monitor(res.history, "pck")),
               "epoch_seconds": [round(t, 1) for t in timer.times],
               "steady_images_per_s": round(args.batches * 32 / timer.times[-1], 1),
               "total_seconds": round(time.time() - t0, 1)}
    print("RESULT " + json.dumps(fit_out), flush=True)


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)  # JAX is not fork-safe
    os.environ.setdefault("KERAS_BACKEND", "jax")
    main()
