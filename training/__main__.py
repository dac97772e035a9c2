"""Command line: ``python -m training train ...`` and ``python -m training evaluate ...``.

Examples::

    python -m training train --model hourglass --model-arg stacks=2 --model-arg features=64 \\
        --dataset synthetic --input-size 128 --epochs 5 --out runs/demo
    python -m training evaluate --run runs/demo                 # best.keras on the val split
    python -m training evaluate --model runs/demo/best.keras --dataset synthetic --out runs/demo/eval
    python -m training train --model pspnet50 --dataset voc --root VOCdevkit/VOC2012 --input-size 473 \\
        --batch-size 8 --epochs 50 --precision bf16 --out runs/psp

``train`` writes ``best.keras``, ``final.keras``, ``log.csv``, ``summary.json``, ``config.json``
and ``cli.json`` into ``--out`` (nothing when it fails to start); started again with the same ``--out``
after a crash or kill it resumes from ``--out/backup``, and in a finished run's folder it replaces that
run's checkpoints and summary. ``evaluate`` prints the per-joint / per-class table and writes
``table.csv`` and ``predictions.csv`` (one row per sample and joint / per image), and for pose
``pck_curve.csv`` and ``pck_curve.png``, into ``--out`` (default ``RUN/eval``, ``RUN/eval_train`` for
``--split train``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # too late for `python -m training` (the package loads Keras)

from kerazoo.cli import (BASE_SIZE_HELP, HEATMAP_OFFSET_HELP, SCALES_HELP, Parser, base_size_arg, blocked_by_file,
                         count, name_value, real, scale_list)
from zoo.errors import one_line

__all__ = ["main", "build_parser", "parse_args"]

PROG = "python -m training"


def _size(text):
    """argparse type: ``SIZE``, ``W,H`` or ``WxH`` with positive integers -> ``(W, H)``. ``3x``, ``x64`` and
    ``64,,48`` were taken (as 3x3, 64x64, 64x48); ``abc`` was argparse's 'invalid _size value'."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+)\s*)?", str(text))
    parts = (int(m[1]), int(m[2] or m[1])) if m else (0, 0)
    if min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected SIZE or W,H with positive ints, got {text!r}")
    return parts


# Data settings with a default; evaluate --run takes them from the run's cli.json unless given
_DATA_DEFAULTS = {"seed": 0}


def _data_args(p):
    from training.datasets import NAMES

    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=NAMES, help="dataset reader (see training.datasets)")
    g.add_argument("--annotations", action="append",
                   help="annotation file (MPII .mat/.json, LSP joints.mat); for lsp, repeat it with --images "
                        "to add LSPet (training on both, validation on LSP's test half)")
    g.add_argument("--val-annotations", help="validation annotation file (e.g. MPII valid.json)")
    g.add_argument("--images", action="append", help="image folder (MPII, LSP), one per --annotations")
    g.add_argument("--root", help="dataset root folder (RHD, VOC)")
    g.add_argument("--classes", help="RHD segmentation classes: hands, hand, parts")
    g.add_argument("--num-samples", type=count(1), help="synthetic: training samples (default 512)")
    g.add_argument("--val-samples", type=count(0), help="synthetic: validation samples (default 64; 0: no validation)")
    g.add_argument("--num-keypoints", type=count(1), help="synthetic: keypoints per figure (default 16)")
    g.add_argument("--num-classes", type=count(2), help="synthetic-seg: classes, background included (default 4)")
    g.add_argument("--image-size", type=_size, help="synthetic: generated image size (default 64)")
    g.add_argument("--input-size", type=_size, help="network input SIZE or W,H (default: synthetic: the image "
                                                    "size; 256 for the pose sets, 512 for segmentation: voc, rhd-seg; "
                                                    "evaluate: the model's own where it fixes one)")
    g.add_argument("--batch-size", type=count(1), default=16, help="samples per batch")
    g.add_argument("--sigma", type=real(0, above=True),
                   help="heatmap Gaussian sigma (heatmap px; default: a release's own when fine-tuning one or a "
                        "run's .keras, hourglass:mpii 1.75, cpm:* 0.875, else 2)")
    g.add_argument("--workers", type=count(0), default=0, help="PyDataset workers (default 0: in the main process)")
    g.add_argument("--multiprocessing", action="store_true", help="worker processes instead of threads")
    g.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="unreadable images")
    g.add_argument("--seed", type=count(0), default=_DATA_DEFAULTS["seed"],
                   help=f"seed of the synthetic samples, shuffling, augmentation and a new model's initial weights "
                        f"(default {_DATA_DEFAULTS['seed']})")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The parser of ``train`` and ``evaluate``; ``prog``: the program as the user typed it (``kerazoo`` for
    ``kerazoo train``), which its usage lines and errors name."""
    p = Parser(prog=prog, description="Train and evaluate kerazoo models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,evaluate}")  # named in its error
    t = sub.add_parser("train", help="train a model")
    t.add_argument("--model", required=True, help="zoo name (hourglass, pspnet50, ...), NAME:TAG to fine-tune a "
                                                  "release (hourglass:mpii, cpm:lsp, pspnet50:ade20k; other weights: "
                                                  "--model-arg weights=FILE), tiny_fcn/tiny_pspnet, or a .keras file")
    t.add_argument("--model-arg", type=name_value, action="append", default=[], metavar="NAME=VALUE",
                   help="builder argument, e.g. stacks=2 (repeatable)")
    t.add_argument("--epochs", type=count(1), default=10, help="epochs to train")
    t.add_argument("--out", required=True, help="output folder (resumes if it holds a backup)")
    _data_args(t)
    t.add_argument("--no-augment", action="store_true", help="train without augmentation")
    t.add_argument("--preset", help="optimiser preset (hourglass, cpm, pspnet, fcn, fcn16s, fcn8s, resnet, default; "
                                    "default: the model's own, else its family's)")
    t.add_argument("--optimizer", choices=("sgd", "rmsprop", "adam", "adamw"),
                   help="default: the preset's. sgd is Caffe's/PyTorch's (weight decay through momentum); "
                        "another kind than the preset's starts from Keras' default rate, not the preset's numbers")
    t.add_argument("--lr", type=real(0, above=True), help="learning rate (default: the preset's)")
    t.add_argument("--schedule", choices=("constant", "step", "poly", "cosine"), help="learning-rate schedule "
                   "(default: the preset's)")
    t.add_argument("--warmup-epochs", type=real(0), help="linear warm-up length in epochs (default: the preset's)")
    t.add_argument("--weight-decay", type=real(0), help="default: the preset's (coupled L2 for sgd, "
                   "decoupled for the others)")
    t.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help="default: fp32")
    t.add_argument("--steps-per-execution", type=count(1), default=1,
                   help="training steps per compiled call (fewer host round trips for fast steps)")
    t.add_argument("--feed", choices=("float32", "uint8"),
                   help="uint8: send raw pixels and normalise inside the model (4x less host->device data)")
    t.add_argument("--distribution", default="auto", choices=("auto", "none", "data_parallel", "mirrored",
                                                                 "multi_worker"),
                   help="multi-device strategy (auto: multi_worker when TF_CONFIG is set, data parallel over "
                        "several local GPUs / JAX devices, else none)")
    t.add_argument("--backup-every", type=count(1), help="batches between backups (default: every epoch)")
    t.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs into --out")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2),
                   help="Keras verbosity: 1 a progress bar, 2 one line per epoch (default: 1 on a terminal, else 2)")
    e = sub.add_parser("evaluate", help="evaluate a model, print the table, write CSVs")
    e.add_argument("--model", help=".keras file (default: RUN/best.keras)")
    e.add_argument("--run", help="training output folder: reuse its data settings and best.keras")
    e.add_argument("--split", default="val", choices=("train", "val"), help="which split to score")
    e.add_argument("--out", help="folder for table.csv, predictions.csv and, for pose, pck_curve.csv/.png "
                                 "(default: RUN/eval, or RUN/eval_train for --split train; none without --run)")
    e.add_argument("--flip", action="store_true", help="average with the mirrored image (pose: flip test with "
                                                       "the data's flip pairs; segmentation: probabilities)")
    e.add_argument("--scales", type=scale_list, default=(1.0,), metavar="S,S,...", help=SCALES_HELP)
    e.add_argument("--base-size", type=base_size_arg, metavar="PX", help=BASE_SIZE_HELP)
    e.add_argument("--native", action="store_true",
                   help="segmentation, a model of any input size: FCN's own test (score.py), each image alone at its "
                        "own size instead of letterboxed into the input (each new size compiles the model again)")
    e.add_argument("--heatmap-offset", type=real(None), metavar="PX", help=HEATMAP_OFFSET_HELP)
    e.add_argument("--resolution", default="original", choices=("original", "input"),
                   help="segmentation: score the original masks, scores resampled as FCN/PSPNet do (default), "
                        "or the network's letterboxed labels")
    _data_args(e)
    e.set_defaults(**dict.fromkeys(_DATA_DEFAULTS))  # None = not given: --run's cli.json, else the default
    for parser in (t, e):
        parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


# CPU-sized defaults for the generated datasets (the readers' own defaults are larger)
_SYNTHETIC_DEFAULTS = {"image_size": (64, 64), "num_samples": 512, "val_samples": 64}


def _load_records(args, split):
    from training import datasets

    synth = args.dataset in ("synthetic", "synthetic-seg")
    opt = {k: (getattr(args, k) if getattr(args, k) is not None or not synth else v)
           for k, v in _SYNTHETIC_DEFAULTS.items()}
    ann = args.val_annotations if split != "train" and args.val_annotations else args.annotations
    return datasets.load(args.dataset, split, annotations=ann, images=args.images, root=args.root,
                         classes=args.classes, num_samples=opt["val_samples"] if split != "train" else opt["num_samples"],
                         num_keypoints=args.num_keypoints, num_classes=args.num_classes, image_size=opt["image_size"],
                         seed=args.seed)


def _one_split_file(args) -> str | None:
    """The MPII ``.json`` that is the only annotation file when no ``--val-annotations`` is given: such a file is
    one split (train.json or valid.json), so it has no validation part of its own."""
    anns = args.annotations or ()
    if args.dataset == "mpii" and not args.val_annotations and len(anns) == 1 and str(anns[0]).endswith(".json"):
        return str(anns[0])
    return None


def _saved_paths(value):
    """``annotations`` / ``images`` from a run's ``cli.json``: a list; runs before lists kept one string
    joined with ``os.pathsep``, split when the whole is not itself a path."""
    if isinstance(value, str):
        return tuple(value.split(os.pathsep)) if os.pathsep in value and not os.path.exists(value) else (value,)
    return tuple(value)


def _make_dataset(info, records, args, *, train, input_size, extra=None):
    from training.data import HeatmapDataset, SegmentationDataset

    kw = dict(batch_size=args.batch_size, input_size=input_size, seed=args.seed, shuffle=train,
              augment=train and not getattr(args, "no_augment", False), on_error=args.on_error,
              workers=args.workers, use_multiprocessing=args.multiprocessing, **(extra or {}))
    if info.task == "pose":
        w, h = input_size
        kw.setdefault("heatmap_size", (max(w // 4, 1), max(h // 4, 1)))
        k = getattr(records[0], "num_keypoints", None) if records else None
        names = info.keypoint_names if info.keypoint_names and len(info.keypoint_names) == k else None
        return HeatmapDataset(records, sigma=args.sigma, flip_pairs=info.flip_pairs, keypoint_names=names, **kw)
    names = info.class_names if info.class_names and len(info.class_names) == info.num_classes else None
    return SegmentationDataset(records, num_classes=info.num_classes, class_names=names, **kw)


def _default_input(args, records):
    if args.input_size:
        return args.input_size
    if args.dataset in ("synthetic", "synthetic-seg"):
        return tuple(args.image_size or _SYNTHETIC_DEFAULTS["image_size"])
    return (256, 256) if args.dataset in ("mpii", "lsp", "lspet", "rhd", "rhd-hand") else (512, 512)


def _check_out_folder(out: Path, why: str) -> None:
    """Refuse an ``--out`` folder that cannot be made because it, or a folder above it, is a file, before any
    work (os.makedirs said only '[Errno 17] File exists' at the end)."""
    blocker = out if out.exists() and not out.is_dir() else blocked_by_file(out)
    if blocker is not None:
        raise ValueError(f"--out '{out}': '{blocker}' is a file, expected a folder ({why})")


def cmd_train(args) -> int:
    from training.trainer import fit

    if not args.dataset:
        raise ValueError("--dataset is required")
    if args.verbose is None:
        args.verbose = 1 if sys.stdout.isatty() else 2
    out = Path(args.out)
    _check_out_folder(out, "the run's outputs go there")
    train_recs, info = _load_records(args, "train")
    one_split = _one_split_file(args)
    if one_split:  # its "val" split is the training file itself: best.keras would be chosen on training people
        val_recs = []
        print(f"train: no validation: '{one_split}' is one split of MPII (a .json) and --val-annotations is not "
              f"given, so best.keras follows the training batches' PCK (give --val-annotations valid.json)")
    else:
        val_recs, _ = _load_records(args, "val")
    if info.task == "pose" and val_recs and args.val_annotations and [args.val_annotations] != list(args.annotations):
        from training.datasets import drop_people_seen_in

        train_recs, dropped = drop_people_seen_in(train_recs, val_recs)
        if dropped:  # e.g. MPII's .mat counts valid.json's people as training people
            print(f"train: left out {dropped} people who are also in --val-annotations "
                  f"({len(train_recs)} remain), so validation scores people the model was not fit on")
    size = _default_input(args, train_recs)
    from zoo.tensorflow_probe import set_random_seed

    set_random_seed(args.seed)  # the initial weights too: the same command gave another run each time
    train = _make_dataset(info, train_recs, args, train=True, input_size=size)
    val = _make_dataset(info, val_recs, args, train=False, input_size=size) if val_recs else None
    res = fit(args.model, train, val, epochs=args.epochs, out_dir=out, model_kwargs=dict(args.model_arg),
              preset=args.preset, optimizer=args.optimizer, learning_rate=args.lr, schedule=args.schedule,
              warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay, precision=args.precision,
              distribution=args.distribution, backup_every=args.backup_every or "epoch",
              tensorboard=args.tensorboard, verbose=args.verbose, feed=args.feed,
              steps_per_execution=args.steps_per_execution,
              command={k: v for k, v in vars(args).items() if k != "model_arg"} | {"model_arg": dict(args.model_arg)})
    at = "" if res.best_epoch is None else f" (epoch {res.best_epoch + 1}/{args.epochs})"
    print(f"best {res.monitor}: {res.best_value}{at}; outputs in {out}")
    return 0


def _check_model_fits_data(model, info, args) -> None:
    """A model must output the dataset's keypoints (+ an optional background map) or classes; the scores were
    an obscure shape error, or (segmentation) silently computed without the classes the model lacks."""
    hint = " (--num-keypoints / --num-classes set the synthetic sets')" if args.dataset.startswith("synthetic") else ""
    if info.task == "pose":
        c, k = model.outputs[-1].shape[-1], info.num_keypoints
        if c not in (k, k + 1):
            raise ValueError(f"model '{args.model}' outputs {c} channels, but dataset '{args.dataset}' has "
                             f"{k} keypoints (expected {k} heatmaps, or {k + 1} with a background map){hint}")
    else:
        c, n = model.outputs[0].shape[-1], info.num_classes
        if c != n:
            raise ValueError(f"model '{args.model}' outputs {c} class scores, but dataset '{args.dataset}' "
                             f"has {n} classes{hint}")


def _evaluation_input(model, args, records, asked) -> tuple[int, int]:
    """``(w, h)`` the images are cropped to: the model's fixed input size; an open axis takes ``--input-size`` (or the
    run's, from its ``cli.json``: ``args.input_size``), else the dataset's default. ``--input-size`` was ignored, and an
    any-size model failed with "input_size must be a (w, h) pair of positive ints. Received: input_size=(None, None)".
    ``asked``: the command's own ``--input-size``, refused where the model fixes another size; the run's only fills
    open axes (``--run RUN --model`` a model of another size takes that model's)."""
    mh, mw = model.inputs[0].shape[1:3]
    if asked and ((mw is not None and mw != asked[0]) or (mh is not None and mh != asked[1])):
        raise ValueError(f"--input-size {asked[0]},{asked[1]} (w,h): model '{args.model}' takes "
                         f"{'any' if mw is None else mw}x{'any' if mh is None else mh} (w x h) images; give its size "
                         f"or leave --input-size out")
    fallback = asked or _default_input(args, records)
    return (int(fallback[0] if mw is None else mw), int(fallback[1] if mh is None else mh))


def _output_size(model, which, w, h, args) -> tuple[int, int]:
    """``(w, h)`` of the model's output ``which`` for ``w x h`` inputs (:func:`training.data.base.model_output_size`):
    an any-size model's heatmaps were built at the input's size (16x the memory at stride 4), and a size it does not
    take failed in a batch with Keras' raw shape error."""
    from training.data.base import model_output_size

    try:
        return model_output_size(model, which, (w, h))
    except ValueError as e:
        if not str(e).startswith("the model does not take"):  # an output that is no map (a classifier's)
            raise ValueError(f"model '{args.model}': {e}") from None
        raise ValueError(f"model '{args.model}' {str(e)[len('the model '):]}; give an --input-size it takes") from None


def cmd_evaluate(args) -> int:
    import training.losses  # noqa: F401  (registers the training objects for load_model)
    import training.keras_metrics  # noqa: F401
    import zoo  # noqa: F401  (registers the zoo layers)
    from training.data import Normalization
    from training.evaluation import evaluate

    norm = None
    asked_input = args.input_size  # the command's own, before the run's cli.json fills it
    if args.run:
        run = Path(args.run)
        if not args.model and not any((run / f).exists() for f in ("best.keras", "final.keras")):
            raise ValueError(f"--run '{run}' is not a training run folder (no best.keras or final.keras "
                             f"{'in it' if run.is_dir() else 'there: the folder does not exist'})")
        saved = {}
        if (run / "cli.json").exists():
            try:
                saved = json.loads((run / "cli.json").read_text())
            except (ValueError, OSError) as e:  # JSON's own message names neither the file nor the remedy
                raise ValueError(f"cannot read '{run / 'cli.json'}' ({one_line(e)}); give the data "
                                 f"options (--dataset ...) and --model instead of --run") from None
        filled = set()
        for k, v in saved.items():  # fill data settings the user did not give
            if k in ("dataset", "annotations", "val_annotations", "images", "root", "classes", "num_samples",
                     "val_samples", "num_keypoints", "num_classes", "image_size", "input_size", "sigma", "seed") \
                    and getattr(args, k, None) is None and v is not None:
                filled.add(k)
                setattr(args, k, _saved_paths(v) if k in ("annotations", "images")
                        else tuple(v) if isinstance(v, list) else v)
        one_split = _one_split_file(args) if "annotations" in filled and args.split != "train" else None
        if one_split:
            raise ValueError(f"--run '{run}' trained on '{one_split}' without --val-annotations, and an MPII .json "
                             f"is one split: scoring it would score the people the model was fit on; give the "
                             f"file to score with --annotations (e.g. valid.json)")
        norm = Normalization.of_run(run)
        args.model = args.model or str(run / "best.keras" if (run / "best.keras").exists() else run / "final.keras")
        args.out = args.out or str(run / ("eval" if args.split == "val" else f"eval_{args.split}"))
    for k, v in _DATA_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.run and not args.dataset:  # a run that training.fit wrote from Python: its data are not the command's
        raise ValueError(f"--run '{args.run}' names no dataset (no cli.json: trained from Python, on records of your "
                         f"own?); score it with training.evaluate(model, dataset), or give --dataset and its options")
    if not args.model or not args.dataset:
        raise ValueError("give --run, or --model and --dataset")
    clash = [o for o, given in (("--scales", args.scales != (1.0,)), ("--base-size", args.base_size is not None),
                                ("--resolution input", args.resolution != "original")) if given]
    if args.native and clash:  # before the model loads
        raise ValueError(f"--native runs each image once at its own size and scores its original mask; not with "
                         f"{' or '.join(clash)}")
    if args.out:
        _check_out_folder(Path(args.out), "for table.csv, predictions.csv and a pose model's pck_curve.csv/.png")
    model = zoo.load_keras_model(args.model)
    if args.native and any(d is not None for d in model.inputs[0].shape[1:3]):
        w, h = model.inputs[0].shape[2], model.inputs[0].shape[1]
        raise ValueError(f"--native runs each image at its own size, but '{args.model}' takes {w}x{h} inputs only; "
                         f"drop --native, or save a model of any size first: zoo.save_model(zoo.get(NAME, "
                         f"weights=..., input_shape=(None, None, 3)), 'any.keras')")
    from training.models import _run_metadata

    # a run's checkpoint (--run's or --model's): its input convention and heatmap offset (config.json) as the
    # model's record, which evaluate() decodes with; --model RUN/best.keras without --run was fed pixels / 255
    _run_metadata(model, args.model)
    record = zoo.weights_record(model)
    if record is not None:
        norm = Normalization.from_record(record)
    recs, info = _load_records(args, args.split)
    if args.heatmap_offset is not None and info.task != "pose":
        raise ValueError(f"--heatmap-offset is for pose models (heatmaps); dataset '{args.dataset}' is "
                         f"{info.task}")
    w, h = _evaluation_input(model, args, recs, asked_input)
    from training.data import model_feed

    extra = {"normalization": norm} if norm else {}
    extra["feed"] = model_feed(model)  # a model trained with --feed uint8 normalises its own input
    _check_model_fits_data(model, info, args)
    from training.data.base import model_center_map_sigma

    out_size = _output_size(model, -1 if info.task == "pose" else 0, w, h, args)
    if info.task == "pose":
        out = model.outputs[-1].shape
        extra.update(heatmap_size=out_size, num_outputs=len(model.outputs),
                     background=out[-1] == info.num_keypoints + 1,
                     # CPM: the run's centre map (a Python fit() may have fed another sigma), else the command's 21
                     center_map_sigma=model_center_map_sigma(model)
                     if len(model.inputs) == 2 else None)
    else:
        extra.update(label_size=out_size, num_outputs=len(model.outputs))
    ds = _make_dataset(info, recs, args, train=False, input_size=(w, h), extra=extra)
    names = info.keypoint_names if info.task == "pose" else info.class_names
    if info.task == "pose" and info.name == "mpii":
        names = None  # the MPII table (groups, mean without pelvis/thorax)
    res = evaluate(model, ds, out_dir=args.out, flip=args.flip, names=names, resolution=args.resolution,
                   heatmap_offset=args.heatmap_offset, scales=args.scales, base_size=args.base_size,
                   native=args.native)
    if res.table_path:
        paths = [str(q) for q in (res.table_path, res.predictions_path, res.curve_path, res.curve_plot_path) if q]
        print(f"wrote {', '.join(paths[:-1])} and {paths[-1]}")
    return 0


def parse_args(argv, prog: str = PROG):
    """The parsed command line; repeated ``--annotations``/``--images`` stay lists of paths (as ``cli.json``
    keeps them and ``training.datasets.load`` takes them; a path may hold ``os.pathsep``)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.command == "train" and not args.dataset:  # shared with evaluate, where --run can name it
        parser.exit(2, f"{parser.prog} train: error: the following arguments are required: --dataset "
                       f"(see {parser.prog} train --help)\n")
    return args


def main(argv=None, prog: str = PROG) -> int:
    """Exit status: 0 done; 2 bad input (the message names the argument, file or model); 1 a failure
    while training or evaluating (a data worker died, a NaN loss, a bug); 130 interrupted; 143 stopped by SIGTERM.
    ``prog`` is what usage lines and errors call the program (``kerazoo.cli`` passes ``kerazoo`` / ``kerazoo-train``)."""
    from kerazoo.cli import sigterm_as_ctrl_c

    args = parse_args(sys.argv[1:] if argv is None else argv, prog)
    with sigterm_as_ctrl_c() as terminated:
        return _run_command(args, prog, terminated)


def _run_command(args, prog: str, terminated: list) -> int:
    from zoo.errors import ZooError

    try:
        return cmd_train(args) if args.command == "train" else cmd_evaluate(args)
    except KeyboardInterrupt:
        again = "; run the same command again to resume from --out" if args.command == "train" else ""
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"{prog} {args.command}: {what}{again}", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as e:
        if args.debug or os.environ.get("KERAZOO_DEBUG"):  # the variable `kerazoo --help` names, as for its commands
            raise
        if isinstance(e, (ValueError, TypeError, OSError, ZooError)):
            print(f"{prog} {args.command}: error: {one_line(e)}", file=sys.stderr)
            return 2
        print(f"{prog} {args.command}: error: {type(e).__name__}: {one_line(e)} (rerun with --debug for the "
              f"traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    import multiprocessing

    # --multiprocessing workers: spawned, the same on every platform; forking a process that
    # holds JAX's or TensorFlow's threads can deadlock the child
    multiprocessing.set_start_method("spawn", force=True)
    from kerazoo.cli import exit_after

    exit_after(main())  # after Ctrl-C: no interpreter finalization (TensorFlow hung there)
