"""Train on synthetic data within a wall-clock budget and score held-out images (CPU-sized).

    python benchmarks/train_synthetic.py                 # both tasks, 5-minute budget each
    python benchmarks/train_synthetic.py --task pose --budget 120

pose: 2-stack Stacked Hourglass (``zoo.get("hourglass", stacks=2, features=64)``), 16 keypoints,
64x64 input -> 16x16 heatmaps, on :func:`training.datasets.synthetic.synthetic_pose`; scored with
``training.evaluate`` (PCK@0.2 of the instance box, original-image pixels) on 256 held-out images
(a different seed). Target: PCK@0.2 >= 0.9.

segmentation: PSPNet-style ``training.models.tiny_pspnet`` (stride-8 dilated encoder, pyramid
pooling, aux head weighted 0.4) on :func:`synthetic_segmentation` (4 classes), 64x64; mean IoU
on 256 held-out images. Target: mIoU >= 0.8.

The budget covers model building, training (stopped early if the budget runs out) and
evaluation; the script prints one JSON line per task with the numbers and the time taken.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from training.data import HeatmapDataset, SegmentationDataset  # noqa: E402
from training.datasets.synthetic import synthetic_pose, synthetic_segmentation  # noqa: E402
from training.evaluation import evaluate  # noqa: E402
from training.callbacks import TimeBudget  # noqa: E402
from training.trainer import fit  # noqa: E402


def run_pose(args, out):
    t0 = time.time()
    size, k = 64, 16
    aug = {"rotation": args.rotation, "scale_range": (0.9, 1.1), "brightness": 0.0, "contrast": 0.0, "saturation": 0.0}
    common = dict(batch_size=args.batch_size, input_size=(size, size), heatmap_size=(size // 4, size // 4),
                  sigma=args.sigma, flip_pairs=())  # the synthetic figure has no left/right joints
    train = HeatmapDataset(synthetic_pose(args.train_samples, image_size=(size, size), num_keypoints=k, seed=1),
                           augment=aug, seed=1, workers=args.workers, **common)
    val = HeatmapDataset(synthetic_pose(256, image_size=(size, size), num_keypoints=k, seed=10_001), shuffle=False,
                         **common)
    res = fit("hourglass", train, val, epochs=args.pose_epochs, out_dir=out / "pose", preset="default",
              learning_rate=2e-3, model_kwargs={"stacks": 2, "features": 64}, verbose=args.verbose,
              callbacks=[TimeBudget(t0 + args.budget, reserve=25)])
    ev = evaluate(res.model, val, out_dir=out / "pose" / "eval", verbose=args.verbose > 0)
    return {"task": "pose", "model": "hourglass stacks=2 features=64", "params": res.model.count_params(),
            "epochs_run": len(res.history["loss"]), "train_samples": args.train_samples, "held_out": 256,
            "pck@0.2": round(ev.table["mean_all"], 4), "seconds": round(time.time() - t0, 1),
            "target": ">= 0.9", "backend": keras.backend.backend()}


def run_segmentation(args, out):
    t0 = time.time()
    size, c = 64, 4
    aug = {"scale_range": (0.75, 1.5), "rotation": 10.0}
    common = dict(batch_size=args.batch_size, input_size=(size, size), num_classes=c)
    train = SegmentationDataset(synthetic_segmentation(args.train_samples, image_size=(size, size), num_classes=c,
                                                       seed=2), augment=aug, seed=2, workers=args.workers, **common)
    val = SegmentationDataset(synthetic_segmentation(256, image_size=(size, size), num_classes=c, seed=10_002),
                              shuffle=False, **common)
    res = fit(args.seg_model, train, val, epochs=args.seg_epochs, out_dir=out / "seg", learning_rate=3e-3,
              model_kwargs={"width": 16}, verbose=args.verbose, callbacks=[TimeBudget(t0 + args.budget, reserve=20)])
    ev = evaluate(res.model, val, out_dir=out / "seg" / "eval", verbose=args.verbose > 0)
    return {"task": "segmentation", "model": f"{args.seg_model} width=16", "params": res.model.count_params(),
            "epochs_run": len(res.history["loss"]), "train_samples": args.train_samples, "held_out": 256,
            "miou": round(ev.mean, 4), "pixel_accuracy": round(ev.table["pixel_accuracy"], 4),
            "seconds": round(time.time() - t0, 1), "target": ">= 0.8", "backend": keras.backend.backend()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=("pose", "seg", "both"), default="both")
    p.add_argument("--budget", type=float, default=300.0, help="seconds per task, all included")
    p.add_argument("--train-samples", type=int, default=2048)
    p.add_argument("--pose-epochs", type=int, default=12)
    p.add_argument("--seg-epochs", type=int, default=12)
    p.add_argument("--seg-model", default="tiny_pspnet", choices=("tiny_pspnet", "tiny_fcn"))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--sigma", type=float, default=1.5, help="pose heatmap sigma (heatmap px)")
    p.add_argument("--rotation", type=float, default=10.0, help="pose augmentation rotation (degrees)")
    p.add_argument("--workers", type=int, default=2, help="thread workers for the data pipeline")
    p.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="kerazoo-bench-"))
    results = []
    if args.task in ("pose", "both"):
        results.append(run_pose(args, out))
        print("RESULT " + json.dumps(results[-1]), flush=True)
    if args.task in ("seg", "both"):
        results.append(run_segmentation(args, out))
        print("RESULT " + json.dumps(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    main()
