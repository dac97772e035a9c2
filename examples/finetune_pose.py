"""Fine-tune a Stacked Hourglass or a Convolutional Pose Machine and score it with the flip test.

1. read MPII, LSP/LSPet or RHD from disk (layouts: ``training/datasets/*.py``), or generate synthetic
   figures (the default: no download);
2. build ``hourglass`` or ``cpm`` with ``zoo.get``, from random weights or ``--weights`` (a zoo
   ``.h5``, ``.weights.h5`` or a ``.caffemodel`` beside its deploy prototxt, which gives a CPM's number of
   stages; another keypoint count than the weights' re-initialises only the head), or load a whole ``.keras`` model as saved (a
   run's ``best.keras``: its architecture, input size, and the run's input convention);
3. score it with ``training.evaluate(..., flip=True)``: PCKh@0.5 on MPII (head boxes), LSP's PCK@0.2
   of the torso (left shoulder to right hip) on LSP/LSPet, PCK@0.2 of the person/hand box otherwise;
   fine-tune with ``training.fit`` (``model.fit``, one line per epoch; ``best.keras``, ``log.csv``,
   ``backup/`` in OUT/run: rerun to resume); score it again
   (table in OUT/eval/table.csv, one row per sample and joint in predictions.csv);
4. save name-keyed weights (OUT/<model>_<dataset>.h5) that ``zoo.get(model, weights=...)`` reloads.

    python -m examples.finetune_pose --fast              # tiny hourglass, synthetic, 1 epoch (< 1 min CPU)
    python -m examples.finetune_pose --epochs 5          # 2-stack hourglass on synthetic figures
    python -m examples.finetune_pose --dataset mpii --annotations mpii/train.json \\
        --val-annotations mpii/valid.json --images mpii/images --weights hg_mpii.h5 --epochs 10
    python -m examples.finetune_pose --dataset lsp --annotations lsp_dataset/joints.mat \\
        --images lsp_dataset/images --limit 200
    python -m examples.finetune_pose --model cpm --dataset rhd --root RHD_published_v2 --input-size 128

Without --val-annotations, MPII's validation set is 10% of the training images held out (the
official test split has no public annotations). PCKh needs head boxes: the official ``.mat`` has
them; HRNet's json files do not, so valid.json takes them from the ``gt_valid.mat`` (MMPose:
``mpii_gt_val.mat``) beside it; records without them are scored with PCK@0.2 of the keypoint box.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._common import (existing_path, metric_line, parser, positive_float, positive_int,  # noqa: E402
                              print_done, run_main, start_run, step)

PROG = "finetune_pose"
DATASETS = ("synthetic", "mpii", "lsp", "lspet", "rhd", "rhd-hand")


def build_parser():
    p = parser(PROG, __doc__)
    p.add_argument("--model", choices=("hourglass", "cpm"), default="hourglass", help="zoo model (default hourglass)")
    p.add_argument("--dataset", choices=DATASETS, default="synthetic", help="data (default synthetic)")
    p.add_argument("--annotations", help="MPII .mat/.json or LSP joints.mat")
    p.add_argument("--val-annotations", help="MPII valid.json (default: hold out 10%% of the training images)")
    p.add_argument("--images", help="image folder (MPII, LSP)")
    p.add_argument("--root", help="RHD_published_v2 folder (RHD)")
    p.add_argument("--weights", help="weights to start from: zoo .h5, .keras, .weights.h5 or .caffemodel")
    p.add_argument("--epochs", type=positive_int, help="training epochs (default 5, --fast 1)")
    p.add_argument("--out", default="runs/finetune_pose", help="output folder (default runs/finetune_pose)")
    p.add_argument("--fast", action="store_true", help="reduced mode: tiny model, 32 synthetic samples, 1 epoch")
    p.add_argument("--input-size", type=positive_int,
                   help="square network input in pixels (default: 64 synthetic, 256 hourglass, 368 cpm)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="default 8")
    p.add_argument("--stacks", type=positive_int, help="hourglass stacks (default 2, --fast 1; --weights: theirs)")
    p.add_argument("--features", type=positive_int,
                   help="hourglass channels (default 64 synthetic / 256, --fast 16; --weights: theirs)")
    p.add_argument("--stages", type=positive_int,
                   help="CPM stages (default 2 synthetic / 6; --weights: theirs, from a zoo .h5's record or a "
                        ".caffemodel's deploy prototxt)")
    p.add_argument("--sigma", type=positive_float,
                   help="heatmap Gaussian sigma in heatmap pixels (default: 1.5 synthetic; --weights: theirs, "
                        "hourglass:mpii 1.75, a CPM .caffemodel 0.875; else 2, a CPM from scratch 1)")
    p.add_argument("--lr", type=positive_float,
                   help="learning rate (default: Adam 2e-3 on synthetic data, else the model family's preset)")
    p.add_argument("--num-samples", type=positive_int, help="synthetic training figures (default 512, --fast 32)")
    p.add_argument("--val-samples", type=positive_int, help="synthetic held-out figures (default 64, --fast 16)")
    p.add_argument("--limit", type=positive_int, help="use at most N training and N validation records")
    p.add_argument("--no-flip", action="store_true", help="evaluate without the flip test")
    p.add_argument("--workers", type=int, default=2, help="data-pipeline thread workers (default 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data order, augmentation and initial weights (default 0)")
    return p


def parse_args(argv):
    p = build_parser()
    a = p.parse_args(argv)
    if a.dataset in ("mpii", "lsp", "lspet"):
        for flag, value in (("--annotations", a.annotations), ("--images", a.images)):
            if not value:
                p.error(f"--dataset {a.dataset} needs {flag}")
        existing_path(p, a.annotations, "--annotations")
        existing_path(p, a.images, "--images", folder=True)
        if a.val_annotations:
            existing_path(p, a.val_annotations, "--val-annotations")
    elif a.dataset in ("rhd", "rhd-hand"):
        if not a.root:
            p.error(f"--dataset {a.dataset} needs --root (the RHD_published_v2 folder)")
        existing_path(p, a.root, "--root", folder=True)
    if a.weights:
        existing_path(p, a.weights, "--weights")
    a.whole = bool(a.weights) and Path(a.weights).suffix.lower() == ".keras"  # a saved model, not rebuilt
    if a.whole:
        for flag in ("stacks", "features", "stages"):
            if getattr(a, flag) is not None:
                p.error(f"--{flag}: --weights '{a.weights}' is a whole saved model (its architecture is in the "
                        f"file); leave out --{flag}")
    if a.model == "cpm" and a.weights and Path(a.weights).suffix.lower() == ".caffemodel":
        a.stages = caffe_stages(p, a)
    if a.workers < 0:
        p.error(f"--workers must be >= 0, got {a.workers}")
    synth = a.dataset == "synthetic"
    a.epochs = a.epochs or (1 if a.fast else 5)
    if not a.whole:  # a whole .keras model: its own input size (run())
        a.input_size = a.input_size or (64 if synth or a.fast else 256 if a.model == "hourglass" else 368)
    a.num_samples = a.num_samples or (32 if a.fast else 512)
    a.val_samples = a.val_samples or (16 if a.fast else 64)
    # None: the weights' own Gaussians (a release's or a run's record; training.fit), else 2
    a.sigma = a.sigma or (1.5 if synth else 1.0 if a.model == "cpm" and not a.weights else None)
    return a


def caffe_stages(p, a) -> int:
    """The stages of the CPM in ``--weights`` (a ``.caffemodel``), which ``zoo.get`` reads from its deploy
    prototxt: checked here, before the data is read, so that a ``--stages`` that contradicts the file is a
    one-line usage error naming both numbers (the same reading as ``zoo.get``'s)."""
    from converters.caffe.errors import CaffeError
    from converters.caffe.zoo_loader import release_builder_kwargs
    from zoo.errors import ZooError

    try:
        stages = release_builder_kwargs("cpm", a.weights)["stages"]
    except (CaffeError, ZooError) as e:
        p.error(f"--weights: {e}")
    if a.stages not in (None, stages):
        p.error(f"--stages {a.stages}: --weights '{a.weights}' is a CPM of {stages} stages (its deploy prototxt); "
                f"leave out --stages or give --stages {stages}")
    return stages


def _hold_out(records, fraction=0.1):
    """Split records by image (people of one image stay together): (train, val)."""
    images = sorted({str(r.image) for r in records})
    val_images = set(images[::max(int(round(1 / fraction)), 2)])
    return ([r for r in records if str(r.image) not in val_images], [r for r in records if str(r.image) in val_images])


def load_data(a):
    """(train records, val records, DatasetInfo) for the chosen dataset."""
    from training import datasets

    opts = dict(annotations=a.annotations, images=a.images, root=a.root, seed=a.seed,
                image_size=(a.input_size, a.input_size))
    train, info = datasets.load(a.dataset, "train", num_samples=a.num_samples, **opts)
    if a.dataset == "mpii" and a.val_annotations:
        val, _ = datasets.load("mpii", "train", **{**opts, "annotations": a.val_annotations})
    elif a.dataset == "mpii":
        train, val = _hold_out(train)
    else:
        val, _ = datasets.load(a.dataset, "val", num_samples=a.val_samples, **opts)
    if a.limit:
        train, val = train[:a.limit], val[:a.limit]
    if not train or not val:
        raise ValueError(f"dataset '{a.dataset}': {len(train)} training and {len(val)} validation records; "
                         f"need at least one of each.")
    return train, val, info


def load_whole_model(a):
    """The whole model saved in ``--weights`` (a ``.keras``, e.g. a run's ``best.keras``), as saved.

    Rebuilding ``--model``'s default architecture and loading the file into it failed for any other
    architecture (Keras matches ``.keras`` weights by structure), and lost the run's input convention
    and heatmap offset (its ``config.json``), which the loaded model gets as its weights record here.
    Sets ``a.input_size`` to the model's when not given.
    """
    import zoo
    from training.models import _run_metadata

    model = zoo.load_keras_model(a.weights)
    _run_metadata(model, a.weights)  # a training run's: its input convention and heatmap offset
    h, w = model.inputs[0].shape[1:3]
    if h is None or h != w:
        raise ValueError(f"--weights '{a.weights}': the model takes {h}x{w} images; this example needs a fixed "
                         f"square input")
    if a.input_size not in (None, h):
        raise ValueError(f"--input-size {a.input_size}: --weights '{a.weights}' is a whole model for {h}x{w} "
                         f"inputs; leave out --input-size or give {h}")
    a.input_size = int(h)
    return model


def builder_kwargs_of(model, name) -> dict:
    """The ``zoo.get(name, ...)`` arguments that rebuild ``model`` (a zoo hourglass/CPM loaded from a ``.keras``),
    read from its layer names (the zoo's names are its API), so the saved weights reload through ``zoo.get``."""
    names = {layer.name for layer in model.layers}
    if name == "hourglass" and "stack1_heatmaps" in names:
        stacks = sum(f"stack{i}_heatmaps" in names for i in range(1, len(names)))
        modules = sum(f"stack1_hg1_low1_res{m}_add" in names for m in range(1, len(names)))
        return {"stacks": stacks, "features": int(model.get_layer("stack1_heatmaps").input.shape[-1]),
                "modules": modules, "post_residuals": "stack1_res1_add" in names}
    if name == "cpm" and "conv1_stage1" in names:
        return {"stages": sum(f"Mconv1_stage{t}" in names for t in range(2, len(names))) + 1}
    raise ValueError(f"--weights: model '{model.name}' is not a zoo {name} (no layer 'stack1_heatmaps' / "
                     f"'conv1_stage1'); give --model {'cpm' if name == 'hourglass' else 'hourglass'} or a zoo "
                     f"{name}'s .keras")


def build_model(a, k, whole=None):
    """``zoo.get`` with the builder arguments of ``a`` (or ``whole``, a loaded ``.keras``): (model, builder kwargs)."""
    import zoo

    if whole is not None:
        maps = int(whole.outputs[-1].shape[-1])
        if maps not in (k, k + 1):
            raise ValueError(f"--weights '{a.weights}': the model outputs {maps} heatmaps; the {a.dataset} data has "
                             f"{k} keypoints (expected {k} or {k + 1} with a background map)")
        kwargs = {**builder_kwargs_of(whole, a.model), "input_shape": (a.input_size, a.input_size, 3),
                  "num_keypoints": k}
        return whole, kwargs
    zoo.set_random_seed(a.seed)  # --seed fixes the initial weights too, so a rerun starts from the same model
    kwargs = {"input_shape": (a.input_size, a.input_size, 3), "num_keypoints": k}
    defaults = {"stacks": 1 if a.fast else 2, "features": 16 if a.fast else 64 if a.dataset == "synthetic" else 256,
                "stages": 2 if a.fast or a.dataset == "synthetic" else 6}
    names = ("stacks", "features") if a.model == "hourglass" else ("stages",)
    for n in names:  # with --weights the file's own architecture wins unless asked otherwise
        if getattr(a, n) is not None or not a.weights:
            kwargs[n] = getattr(a, n) or defaults[n]
    model = zoo.get(a.model, weights=a.weights, **kwargs)
    return model, zoo.api.build_info(model)[1]  # with what a weights file gave (a .t7's stacks): the saved run rebuilds


def make_dataset(model, records, info, a, *, train):
    """A :class:`HeatmapDataset` shaped like ``model``'s inputs and outputs (heatmaps, CPM extras)."""
    import zoo
    from training.data import HeatmapDataset, Normalization

    out = model.outputs[-1].shape  # (B, h, w, K or K + 1)
    record = zoo.weights_record(model)
    synth = a.dataset == "synthetic"
    augment = False
    if train:  # synthetic figures: mild geometry only (colours identify the joints)
        augment = dict(rotation=10.0, scale_range=(0.9, 1.1), brightness=0.0, contrast=0.0, saturation=0.0) \
            if synth else True
    # CPM's centre map: a run's .keras keeps the sigma it trained with (config.json), a release the paper's 21
    center_sigma = (getattr(model, "_kerazoo_center_map_sigma", None) or 21.0) if len(model.inputs) == 2 else None
    return HeatmapDataset(
        records, batch_size=a.batch_size, input_size=(a.input_size, a.input_size), heatmap_size=(out[2], out[1]),
        sigma=a.sigma, num_outputs=len(model.outputs), augment=augment, flip_pairs=info.flip_pairs,
        background=out[-1] == info.num_keypoints + 1, center_map_sigma=center_sigma,
        normalization=Normalization.from_record(record) if record else None, seed=a.seed, shuffle=train,
        workers=a.workers if train else 0)


def run(a) -> int:
    t0 = time.time()
    import zoo
    from training.evaluation import evaluate
    from training.trainer import fit

    out = start_run(PROG, a)
    whole = load_whole_model(a) if a.whole else None

    step("1. data")
    train_recs, val_recs, info = load_data(a)
    k = info.num_keypoints
    print(f"{a.dataset}: {len(train_recs)} training and {len(val_recs)} validation records, {k} keypoints, "
          f"{len(info.flip_pairs)} flip pairs")

    step("2. model")
    model, builder_kwargs = build_model(a, k, whole)
    print(f"zoo.get('{a.model}'{', weights=' + repr(a.weights) if a.weights else ''}): "
          f"{model.count_params():,} parameters, {len(model.outputs)} outputs of shape {tuple(model.outputs[-1].shape)}")
    train = make_dataset(model, train_recs, info, a, train=True)
    val = make_dataset(model, val_recs, info, a, train=False)
    names = None if a.dataset == "mpii" else info.keypoint_names  # None: the official MPII table
    flip = not a.no_flip

    step("3. evaluate, fine-tune, evaluate")
    before = evaluate(model, val, flip=flip, names=names, verbose=False)
    print(f"before: {metric_line(before)}", flush=True)
    synth = a.dataset == "synthetic"
    result = fit(model, train, val, epochs=a.epochs, out_dir=out / "run", preset="default" if synth else None,
                 learning_rate=a.lr or (2e-3 if synth else None), verbose=2)
    model = result.model
    after = evaluate(model, val, flip=flip, names=names, out_dir=out / "eval", verbose=True)
    print(f"after {a.epochs} epochs: {metric_line(after)}")
    print(f"{after.metric} = {after.mean:.3f} on {len(val_recs)} validation records "
          f"(before {before.mean:.3f}; flip test {'on' if flip else 'off'})")
    print(f"wrote {after.table_path} and {after.predictions_path}")

    step("4. save weights")
    norm = val.normalization
    fitted = zoo.weights_record(model)  # fit's: the heatmap convention the model was trained in (release: theirs)
    record = zoo.WeightsRecord(
        description=f"{a.model} fine-tuned on {a.dataset} by examples/finetune_pose.py",
        input_size=(a.input_size, a.input_size), channel_order=norm.channel_order, scale=norm.scale,
        mean=tuple(norm.mean), std=tuple(norm.std), num_keypoints=k,
        keypoint_names=tuple(info.keypoint_names) if info.keypoint_names else None,
        flip_pairs=tuple(map(tuple, info.flip_pairs)),  # (): no mirrored joints, which --flip takes; None: unknown
        output_stride=a.input_size // int(model.outputs[-1].shape[1]),
        heatmap_offset=fitted.heatmap_offset if fitted else 0.0, heatmap_sigma=train.sigma,
        builder_kwargs=builder_kwargs,
        metrics={f"{a.dataset} val {after.metric}": round(after.mean, 4)})
    path = zoo.save_weights(model, out / f"{a.model}_{a.dataset}.h5", record, model_name=a.model)
    print(f"wrote {path}: zoo.get('{a.model}', weights='{path}') rebuilds this model")
    print_done(t0)
    return 0


def main(argv=None) -> int:
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
