"""Quickstart: the whole product on built-in synthetic data, no downloads, a few minutes on 2 CPU cores.

1. build a 2-stack Stacked Hourglass with ``zoo.get``;
2. score it (PCK@0.2 per joint) on held-out synthetic images, fine-tune it with ``training.fit``
   (``model.fit`` underneath, thread workers for the data pipeline), score it again;
3. save name-keyed weights with ``zoo.save_weights``, reload through
   ``zoo.get("hourglass", weights=path)`` and check the predictions are identical;
4. draw pictures into ``out/``: predicted vs true skeletons, a heatmap grid, the training curve;
   predict a short video of a held-out figure turning (``training.video.predict_video``), its keypoints
   smoothed across frames (One Euro filter), into ``out/clip.pred.mp4``;
5. write a small Caffe net (prototxt + caffemodel), convert it with the command line converter
   (``python -m converters caffe ... --verify``) and report its difference to OpenCV's Caffe engine.

    python -m examples.quickstart            # full run: PCK@0.2 >= 0.9 expected
    python -m examples.quickstart --fast     # reduced mode (the test suite runs this)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._common import output_folder, step  # noqa: E402  (also quiets TensorFlow's C++ start-up)

SIZE, K = 64, 16  # input pixels, keypoints (synthetic figures have 16 joints)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m examples.quickstart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="reduced mode: tiny model, few samples (for tests)")
    p.add_argument("--out", default="out", help="folder for pictures and files (default: out/)")
    p.add_argument("--epochs", type=int, default=None, help="planned training epochs (default 12, --fast 1)")
    p.add_argument("--budget", type=float, default=220.0,
                   help="seconds from start: training stops after the last epoch that ends before it, judged "
                        "by the epoch before (default 220: with the install, ./dev demo stays under 5 minutes on 2 "
                        "CPU cores)")
    p.add_argument("--workers", type=int, default=2, help="data-pipeline thread workers (default 2)")
    return p.parse_args(argv)


def pck(ev) -> float:
    """Mean PCK over all joints (synthetic figures have no pelvis/thorax to leave out)."""
    return float(ev.table.get("mean_all", ev.mean))


def pck_line(ev):
    per_joint = list(ev.table.get("per_joint", {}).values())
    return f"PCK@0.2 {pck(ev):.3f}  per joint: {' '.join(f'{v:.2f}' for v in per_joint)}"


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    import keras

    import zoo
    from training import visualize
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose
    from training.callbacks import EpochBudget
    from training.evaluation import evaluate
    from training.trainer import fit

    out = output_folder(args.out)
    # 12 planned epochs, stopped by the time budget after about 7: the cosine schedule is then still
    # well above zero, which learns more per second than a schedule annealed to 0 (0.99 vs 0.77 PCK).
    epochs = args.epochs or (1 if args.fast else 12)
    n_train, n_val = (128, 32) if args.fast else (2048, 256)
    features = 32 if args.fast else 64
    print(f"kerazoo quickstart: Keras {keras.__version__}, backend {keras.backend.backend()}, output in {out}/")
    print(f"registered models: {', '.join(zoo.list_models())}")

    step("1. build a model from the registry")
    zoo.set_random_seed(0)  # the same initial weights every run: the demo's numbers repeat
    kwargs = dict(stacks=2, num_keypoints=K, features=features, input_shape=(SIZE, SIZE, 3))
    model = zoo.get("hourglass", **kwargs)
    print(f"zoo.get('hourglass', {', '.join(f'{k}={v}' for k, v in kwargs.items())}): "
          f"{model.count_params():,} parameters, {len(model.outputs)} outputs of shape {tuple(model.outputs[0].shape)}")

    step("2. fine-tune on synthetic figures")
    # The recipe of benchmarks/train_synthetic.py (PCK@0.2 0.96 in under 5 minutes on 2 CPU cores).
    common = dict(batch_size=8, input_size=(SIZE, SIZE), heatmap_size=(SIZE // 4, SIZE // 4), sigma=1.5,
                  num_outputs=2, flip_pairs=())  # the synthetic figure has no left/right joints
    aug = {"rotation": 10.0, "scale_range": (0.9, 1.1), "brightness": 0.0, "contrast": 0.0, "saturation": 0.0}
    train = HeatmapDataset(synthetic_pose(n_train, image_size=(SIZE, SIZE), num_keypoints=K, seed=1), augment=aug,
                           seed=1, workers=args.workers, **common)
    val = HeatmapDataset(synthetic_pose(n_val, image_size=(SIZE, SIZE), num_keypoints=K, seed=10_001),
                         shuffle=False, **common)
    before = evaluate(model, val, verbose=False)
    print(f"before: {pck_line(before)}")
    # stop after the last epoch that fits the budget: always at an epoch's end, so two runs of as many epochs end
    # with the same weights (stopped mid-epoch, the video's jitter differed from run to run)
    budget = EpochBudget(t0 + args.budget)
    result = fit(model, train, val, epochs=epochs, out_dir=out / "run", preset="default", learning_rate=2e-3,
                 verbose=2, callbacks=[budget])
    model = result.model
    after = evaluate(model, val, out_dir=out / "eval", verbose=False)
    print(f"after {len(result.history.get('loss', []))} epochs: {pck_line(after)}")
    print(f"PCK@0.2 = {pck(after):.3f} on {n_val} held-out images (target >= 0.9 for the full run)")

    step("3. save name-keyed weights and reload them through zoo.get")
    # joint names of no known dataset: predict draws no limbs (each synthetic figure is another random tree)
    record = zoo.WeightsRecord(num_keypoints=K, input_size=(SIZE, SIZE), scale=1 / 255.0, output_stride=4,
                               keypoint_names=tuple(f"joint {j}" for j in range(K)),
                               builder_kwargs=kwargs, description="quickstart hourglass on synthetic figures")
    path = zoo.save_weights(model, out / "hourglass_synthetic.h5", record, model_name="hourglass")
    again = zoo.get("hourglass", weights=path)
    x, _, _ = val[0]
    pairs = list(zip(model.predict(x, verbose=0), again.predict(x, verbose=0)))
    diff = max(float(np.abs(a - b).max()) for a, b in pairs)
    print(f"wrote {path}; zoo.get('hourglass', weights=path) predicts identically: max |difference| = {diff:.1e}")
    if not all(np.array_equal(a, b) for a, b in pairs):  # also false for NaN, which max() would pass over
        print("ERROR: the reloaded model predicts differently", file=sys.stderr)
        return 1

    step("4. pictures, and a video")
    pictures = draw(model, val, out, visualize)
    for p in pictures:
        print(f"wrote {p}")
    print(video_demo(again, val, out, frames=12 if args.fast else 48))

    step("5. convert a Caffe model with the command line converter")
    converted, report = convert_caffe_demo(out)
    print(report)
    if not converted:
        print("ERROR: the Caffe conversion failed (above)", file=sys.stderr)
        return 1

    print(f"\ndone in {time.time() - t0:.0f} s. Pictures: {', '.join(str(p) for p in pictures)}")
    return 0


def draw(model, val, out, visualize):
    """Overlay, heatmap grid and training curve PNGs; returns their paths."""
    from training.transforms import transform_points

    x, _, w = val[0]
    heatmaps = np.asarray(model.predict(x, verbose=0)[-1])
    pred_in, _ = val.codec.decode(heatmaps)  # input pixels, sub-pixel (quarter offset)
    zoom = 4  # display pixels per input pixel
    tiles = []
    for i, rid in enumerate(val.batch_indices(0)[:4]):
        rec = val.records[int(rid)]
        true_in = transform_points(np.asarray(rec.keypoints, np.float64), val.matrix(rec))
        img = visualize.resize_nearest(np.clip(x[i] * 255.0, 0, 255).astype(np.uint8), zoom)
        vis = w[i].reshape(-1) > 0
        # Each synthetic figure is a random tree: no fixed skeleton, so joints only (true white, predicted coloured).
        panel = visualize.draw_keypoints(img, (true_in + 0.5) * zoom - 0.5, vis, skeleton=(), color=(255, 255, 255),
                                         radius=6)
        tiles.append(visualize.draw_keypoints(panel, (pred_in[i] + 0.5) * zoom - 0.5, vis, skeleton=(), radius=4))
    paths = [visualize.write_png(out / "keypoints.png", np.concatenate(tiles, axis=1))]
    img0 = np.clip(x[0] * 255.0, 0, 255).astype(np.uint8)  # default normalisation is pixels / 255
    paths.append(visualize.write_png(out / "heatmaps.png", visualize.heatmap_grid(heatmaps[0], img0, cell=64)))
    log = out / "run" / "log.csv"
    if log.exists():
        header = log.read_text().splitlines()[0].split(",")
        keys = ["loss", "val_loss"] + [k for k in header if k.startswith("val_") and k.endswith("pck")][-1:]
        paths.append(visualize.write_png(out / "training_curve.png", visualize.training_curve(log, keys=keys)))
    return paths


def video_demo(model, val, out, frames):
    """A held-out figure turning back and forth (a Motion JPEG clip, 256 px), predicted frame by frame with the
    keypoints smoothed across frames; returns the line that reports it (frame-to-frame jitter raw vs smoothed)."""
    import cv2

    from training.video import predict_video

    x, _, _ = val[0]  # the first held-out crop, as the model sees it in evaluation (pixels / 255)
    image = cv2.resize(np.clip(x[0] * 255.0, 0, 255).astype(np.uint8), (256, 256), interpolation=cv2.INTER_CUBIC)
    clip = out / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 24.0, (256, 256))
    for t in range(frames):  # +-10 degrees about the centre (the training's rotation range), one period
        turn = cv2.getRotationMatrix2D((127.5, 127.5), 10.0 * np.sin(2 * np.pi * t / frames), 1.0)
        writer.write(np.ascontiguousarray(cv2.warpAffine(image, turn, (256, 256))[..., ::-1]))
    writer.release()
    res = predict_video(model, clip, out / "clip.pred.mp4", smooth=True, progress=False)

    def jitter(k):  # mean |second difference| (px) over the joints found: what smooth motion does not have
        return float(np.nanmean(np.linalg.norm(k[2:] - 2 * k[1:-1] + k[:-2], axis=-1)))

    return (f"wrote {res.path} ({res.frames} frames of {clip}); keypoint jitter (mean |second difference|): "
            f"{jitter(res.raw_keypoints):.2f} px per frame raw, {jitter(res.keypoints):.2f} px smoothed")


CAFFE_NET = """name: "quickstart_net"
input: "data"
input_shape { dim: 1 dim: 3 dim: 37 dim: 41 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 7 stride: 2 pad: 3 bias_term: false } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { use_global_stats: true } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "up" type: "Deconvolution" bottom: "conv2" top: "up"
  convolution_param { num_output: 4 kernel_size: 4 stride: 2 bias_term: false } }
layer { name: "prob" type: "Softmax" bottom: "up" top: "prob" }
"""


def write_caffe_demo(folder: Path) -> tuple[Path, Path]:
    """Write :data:`CAFFE_NET` with random weights as ``folder/deploy.prototxt`` + ``weights.caffemodel``."""
    from converters.caffe.opencv import caffemodel_bytes

    rng = np.random.default_rng(0)
    blobs = [
        ("conv1", "Convolution", [rng.normal(0, 0.1, (8, 3, 7, 7))]),
        ("bn1", "BatchNorm", [rng.normal(0, 1, 8) * 999.98, rng.uniform(0.5, 2, 8) * 999.98, np.array([999.98])]),
        ("scale1", "Scale", [rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8)]),
        ("conv2", "Convolution", [rng.normal(0, 0.3, (4, 8, 1, 1)), rng.normal(0, 0.1, 4)]),
        ("up", "Deconvolution", [rng.normal(0, 0.3, (4, 4, 4, 4))]),
    ]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    proto, model = folder / "deploy.prototxt", folder / "weights.caffemodel"
    proto.write_text(CAFFE_NET)
    model.write_bytes(caffemodel_bytes([(n, t, [np.asarray(b, np.float32) for b in bl]) for n, t, bl in blobs],
                                       "quickstart_net"))
    return proto, model


def convert_caffe_demo(out: Path) -> tuple[bool, str]:
    """Write a small Caffe net with random weights, convert it through the CLI with ``--verify``.

    Returns whether the converter succeeded, and the last lines it printed (its error line if it failed)."""
    folder = out / "caffe"
    proto, model = write_caffe_demo(folder)
    cmd = [sys.executable, "-m", "converters", "caffe", str(proto), str(model), "-o", str(folder / "net.keras"),
           "--input-shape", "37", "41", "--verify"]
    print("$ " + " ".join(["python", *cmd[1:]]), flush=True)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    if r.returncode != 0:
        return False, "converter failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    return True, "\n".join(lines[-8:])


if __name__ == "__main__":
    sys.exit(main())
