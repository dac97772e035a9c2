"""Train and evaluate an FCN- or PSPNet-style segmentation model; draw coloured mask overlays.

1. read Pascal VOC 2012 from disk (``--dataset voc --root VOCdevkit/VOC2012``, layout in
   ``training/datasets/voc.py``) or generate synthetic shapes with exact masks (the default);
2. build the model: the zoo's ``fcn8s`` / ``pspnet50`` (VGG-16 / dilated ResNet-50, optionally from
   ``--weights``: a zoo ``.h5`` or ``.caffemodel`` beside its deploy prototxt) or the CPU-sized
   ``tiny_fcn`` / ``tiny_pspnet`` of ``training.models`` (same structure, few channels), or load a
   whole ``.keras`` model as saved (a run's ``best.keras``: its architecture and input convention);
3. train with ``training.fit`` (``model.fit``; one line per epoch; ignore-255 cross-entropy, PSPNet's
   auxiliary head weighted 0.4; ``best.keras``, ``log.csv`` in OUT/run, rerun to resume);
4. print the per-class IoU table of the validation set (``training.evaluate``; OUT/eval/table.csv)
   and write image | ground truth | prediction overlays (VOC colours) to OUT/overlays/*.png.

    python -m examples.segment --fast                       # tiny PSPNet, synthetic shapes, 1 epoch
    python -m examples.segment --model tiny_fcn --epochs 10 # synthetic shapes, 64x64, 4 classes
    python -m examples.segment --dataset voc --root VOCdevkit/VOC2012 --model tiny_pspnet \\
        --input-size 256 --epochs 20 --limit 500
    python -m examples.segment --model tiny_fcn --weights runs/segment/run/best.keras --epochs 0 \\
        --out runs/segment_eval                             # evaluate a trained model only
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._common import (existing_path, parser, positive_float, positive_int, print_done,  # noqa: E402
                              run_main, start_run, step)

PROG = "segment"
MODELS = ("tiny_pspnet", "tiny_fcn", "fcn8s", "fcn16s", "fcn32s", "pspnet50", "pspnet101")
TINY = ("tiny_fcn", "tiny_pspnet")


def build_parser():
    p = parser(PROG, __doc__)
    p.add_argument("--model", choices=MODELS, default="tiny_pspnet", help="default tiny_pspnet")
    p.add_argument("--dataset", choices=("synthetic", "voc"), default="synthetic", help="default synthetic")
    p.add_argument("--root", help="the VOC2012 folder (--dataset voc)")
    p.add_argument("--weights", help="weights to start from (zoo models: zoo .h5, .caffemodel; tiny models: "
                                     ".weights.h5); or a whole .keras model, e.g. a run's best.keras")
    p.add_argument("--epochs", type=int, help="training epochs, 0 = evaluate only (default 5, --fast 1)")
    p.add_argument("--out", default="runs/segment", help="output folder (default runs/segment)")
    p.add_argument("--fast", action="store_true", help="reduced mode: tiny PSPNet, 32 synthetic images, 1 epoch")
    p.add_argument("--input-size", type=positive_int,
                   help="square network input in pixels, a multiple of 32 for the tiny models "
                        "(default 64 synthetic, 320 VOC)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="default 8")
    p.add_argument("--width", type=positive_int, help="tiny models: channels of the first stage (default 16, --fast 8)")
    p.add_argument("--num-classes", type=positive_int, help="synthetic: classes incl. background (default 4)")
    p.add_argument("--num-samples", type=positive_int, help="synthetic training images (default 512, --fast 32)")
    p.add_argument("--val-samples", type=positive_int, help="synthetic validation images (default 64, --fast 16)")
    p.add_argument("--limit", type=positive_int, help="use at most N training and N validation images")
    p.add_argument("--overlays", type=int, default=4, help="validation images to draw (default 4)")
    p.add_argument("--lr", type=positive_float, help="learning rate (default: the model family's preset)")
    p.add_argument("--workers", type=int, default=2, help="data-pipeline thread workers (default 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data order, augmentation and initial weights (default 0)")
    return p


def parse_args(argv):
    p = build_parser()
    a = p.parse_args(argv)
    if a.dataset == "voc":
        if not a.root:
            p.error("--dataset voc needs --root (the VOCdevkit/VOC2012 folder)")
        existing_path(p, a.root, "--root", folder=True)
        if a.num_classes:
            p.error("--num-classes is for synthetic data; VOC has 21 classes")
    if a.weights:
        existing_path(p, a.weights, "--weights")
    a.whole = bool(a.weights) and Path(a.weights).suffix.lower() == ".keras"  # a saved model, not rebuilt
    if a.whole and a.width:
        p.error(f"--width: --weights '{a.weights}' is a whole saved model (its architecture is in the file); "
                f"leave out --width")
    if a.fast and a.model not in TINY:
        p.error(f"--fast trains a tiny model; --model {a.model} is a full-size network")
    for flag, value in (("--epochs", a.epochs), ("--overlays", a.overlays), ("--workers", a.workers)):
        if value is not None and value < 0:
            p.error(f"{flag} must be >= 0, got {value}")
    a.epochs = (1 if a.fast else 5) if a.epochs is None else a.epochs
    a.input_size = a.input_size or (64 if a.dataset == "synthetic" else 320)
    if a.model in TINY and a.input_size % 32:
        p.error(f"--input-size {a.input_size}: {a.model} needs a multiple of 32")
    a.width = None if a.whole else a.width or (8 if a.fast else 16)
    a.num_samples = a.num_samples or (32 if a.fast else 512)
    a.val_samples = a.val_samples or (16 if a.fast else 64)
    return a


def load_data(a):
    from training import datasets

    name = "synthetic-seg" if a.dataset == "synthetic" else "voc"
    opts = dict(root=a.root, num_classes=a.num_classes, seed=a.seed, image_size=(a.input_size, a.input_size))
    train, info = datasets.load(name, "train", num_samples=a.num_samples, **opts)
    val, _ = datasets.load(name, "val", num_samples=a.val_samples, **opts)
    if a.limit:
        train, val = train[:a.limit], val[:a.limit]
    return train, val, info


def weights_have_aux(weights) -> bool:
    """Whether ``--weights`` hold PSPNet's auxiliary head: a zoo ``.h5`` says so in its record (the builder arguments
    it was saved with: a run of this example trained one); the releases (tags, ``.caffemodel``) have none. Every
    PSPNet was built without it, so a zoo file with it was refused ("3 layers in the file the model does not have")."""
    import zoo

    path = Path(str(weights))
    if path.suffix.lower() != ".h5" or path.name.lower().endswith(".weights.h5") or not path.is_file():
        return False
    try:
        _, record = zoo.read_record(path)
    except (OSError, ValueError):  # not a zoo file: zoo.get says so, naming it
        return False
    return bool((record.builder_kwargs or {}).get("aux", False))


def build_model(a, dataset):
    """The model for ``dataset`` (input size, classes), with ``--weights`` loaded.

    A ``.keras`` file is the whole model as saved (a run's ``best.keras``: its architecture, and the
    run's input convention from its ``config.json``), not loaded into a rebuilt default one.
    """
    from training.trainer import build_model as build

    if a.whole:
        model, _ = build(a.weights, "segmentation", dataset)
        return model
    import zoo

    zoo.set_random_seed(a.seed)  # --seed fixes the initial weights too, so a rerun starts from the same model
    kwargs = {"width": a.width} if a.model in TINY else {}
    if a.weights and a.model not in TINY:
        kwargs["weights"] = a.weights
        if "aux" in zoo.get_spec(a.model).defaults:  # PSPNet (FCN takes no aux)
            kwargs["aux"] = weights_have_aux(a.weights)
    model, _ = build(a.model, "segmentation", dataset, kwargs)
    if a.weights and a.model in TINY:
        model.load_weights(a.weights)
    return model


def write_overlays(model, val, n, folder) -> list[Path]:
    """Image | ground truth | prediction panels of the first ``n`` validation images, as PNGs.

    PNGs an earlier run left in ``folder`` (other images, more of them) are removed: what is there is this model's.
    """
    paths = _draw_overlays(model, val, n, folder)
    for old in Path(folder).glob("*.png") if Path(folder).is_dir() else ():
        if old not in paths:
            old.unlink()
    return paths


def _draw_overlays(model, val, n, folder) -> list[Path]:
    import cv2
    import numpy as np

    from training.callbacks import _to_uint8  # undoes the dataset's Normalization
    from training.visualize import mask_overlay, write_png

    paths = []
    for b in range(len(val)):
        x, y = val[b]
        labels = y[0] if isinstance(y, tuple) else y
        out = model.predict_on_batch(x)
        pred = np.asarray(out[0] if isinstance(out, (list, tuple)) else out).argmax(-1)
        images = _to_uint8(x, val.normalization)
        for i, rid in enumerate(val.batch_indices(b)):
            if len(paths) == n:
                return paths
            img = images[i]
            size = (img.shape[1], img.shape[0])  # the label map may be smaller than the input (PSPNet)
            gt = cv2.resize(labels[i].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
            pr = cv2.resize(pred[i].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
            panel = np.concatenate([img, mask_overlay(img, gt), mask_overlay(img, pr)], axis=1)
            paths.append(write_png(Path(folder) / f"{val.records[int(rid)].id}.png", panel))
    return paths


def run(a) -> int:
    t0 = time.time()
    import zoo
    from training.data import Normalization, SegmentationDataset
    from training.evaluation import evaluate
    from training.trainer import fit

    out = start_run(PROG, a)

    step("1. data")
    train_recs, val_recs, info = load_data(a)
    print(f"{a.dataset}: {len(train_recs)} training and {len(val_recs)} validation images, {info.num_classes} classes")
    common = dict(batch_size=a.batch_size, input_size=(a.input_size, a.input_size), num_classes=info.num_classes,
                  seed=a.seed)
    train = SegmentationDataset(train_recs, augment=True, workers=a.workers, **common)
    val = SegmentationDataset(val_recs, shuffle=False, **common)

    step("2. model")
    model = build_model(a, train)
    print(f"{model.name}: {model.count_params():,} parameters, outputs "
          f"{', '.join(str(tuple(t.shape)) for t in model.outputs)}")

    if a.epochs:
        step(f"3. train {a.epochs} epochs")
        # fit() matches the datasets' label size, output count and input normalisation to the model
        result = fit(model, train, val, epochs=a.epochs, out_dir=out / "run", learning_rate=a.lr, verbose=2)
        model = result.model
        if result.best_path:
            print(f"best checkpoint: {result.best_path} (val mean IoU {result.best_value:.3f}, "
                  f"epoch {result.best_epoch + 1}/{a.epochs})")  # best_epoch counts from 0
    else:  # evaluate only (fit takes epochs >= 1): the weights' input convention, as fit would adopt it
        step("3. no training (--epochs 0)")
        record = zoo.weights_record(model)
        if record is not None:
            val.normalization = Normalization.from_record(record)

    step("4. per-class IoU on the validation set")
    ev = evaluate(model, val, out_dir=out / "eval", names=info.class_names, verbose=True)
    print(f"mean IoU = {ev.mean:.3f}, pixel accuracy = {ev.table['pixel_accuracy']:.3f} on {len(val_recs)} "
          f"validation images at their original size (training's val mean IoU scores the network's grid)")
    print(f"wrote {ev.table_path} and {ev.predictions_path}")
    for p in write_overlays(model, val, a.overlays, out / "overlays"):
        print(f"wrote {p}")
    print_done(t0)
    return 0


def main(argv=None) -> int:
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
