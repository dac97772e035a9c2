"""Dataset readers: each turns a dataset on disk (or a seed) into a list of plain sample records.

``load(name, split, **options)`` is the one entry point the trainer and the CLI use:

========================  ============  ====================================================
name                      task          options
========================  ============  ====================================================
``synthetic``             pose          num_samples, image_size, num_keypoints, seed
``synthetic-seg``         segmentation  num_samples, image_size, num_classes, seed
``mpii``                  pose          annotations (.mat, or a .json holding one split), images
``lsp`` / ``lspet``       pose          annotations (joints.mat), images; ``lsp`` takes several pairs
                                        (LSP + LSPet: training on both, validation on LSP's test half)
``rhd`` / ``rhd-hand``    pose          root (both hands, 42 kp / one hand per record, 21 kp)
``rhd-seg``               segmentation  root, classes ("hands", "hand", "parts")
``voc``                   segmentation  root (the VOC2012 folder)
========================  ============  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from training.datasets.base import (AnnotationError, DatasetError, ImageReadError, PoseRecord, SegRecord,
                                    UnsafePickleError, WorkerCrashedError, drop_people_seen_in, read_image,
                                    read_mask)

__all__ = ["DatasetInfo", "load", "NAMES", "PoseRecord", "SegRecord", "DatasetError", "AnnotationError",
           "ImageReadError", "UnsafePickleError", "WorkerCrashedError", "drop_people_seen_in", "read_image",
           "read_mask"]

NAMES = ("synthetic", "synthetic-seg", "mpii", "lsp", "lspet", "rhd", "rhd-hand", "rhd-seg", "voc")


@dataclass
class DatasetInfo:
    """What the trainer needs to know about a dataset besides its records."""

    name: str
    task: str  # "pose" or "segmentation"
    num_keypoints: int | None = None
    keypoint_names: tuple | None = None
    flip_pairs: tuple = ()
    num_classes: int | None = None
    class_names: tuple | None = None
    extra: dict = field(default_factory=dict)


def _need(options, key, name):
    if options.get(key) is None:
        raise ValueError(f"dataset '{name}' needs the option '{key}' (e.g. --{key.replace('_', '-')} PATH).")
    return options[key]


def _lsp_layout(path) -> bool:
    """Whether ``path``'s ``joints`` is LSP's 3 x 14 x N (LSPet's is 14 x 3 x N), read from the file's header."""
    import scipy.io

    try:
        return any(name == "joints" and tuple(shape[:2]) == (3, 14) for name, shape, _ in scipy.io.whosmat(str(path)))
    except Exception:  # noqa: BLE001 - read_lsp names an unreadable file
        return False


def _paths(value) -> list:
    """One path (a string is never split: ``:`` and ``;`` are legal in file names) or a sequence of them
    (the CLI's repeated ``--annotations`` / ``--images``)."""
    import os

    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


def _one(options, key, name):
    paths = _paths(_need(options, key, name))
    if len(paths) != 1:
        raise ValueError(f"dataset '{name}' takes one '{key}' path; received {len(paths)}: {', '.join(paths)}.")
    return paths[0]


def load(name: str, split: str = "train", **options):
    """Records and :class:`DatasetInfo` of dataset ``name`` (see the module table).

    Args:
        name: one of :data:`NAMES`.
        split: ``"train"`` or ``"val"`` (mapped to each dataset's own split names; synthetic data
            uses a different seed for ``"val"``). An MPII ``.json`` (``train.json``, ``valid.json``) is one
            split: its records whatever ``split`` says, so validate on another file (the CLI's
            ``--val-annotations``).
        **options: reader options; unknown ``None`` values are ignored.
    Returns:
        ``(records, info)``.
    Raises:
        ValueError: unknown name (lists the known ones) or a missing required option.
    """
    o = {k: v for k, v in options.items() if v is not None}
    val = split in ("val", "valid", "test", "evaluation")
    if name == "synthetic":
        from training.datasets.synthetic import SYNTHETIC_FLIP_PAIRS, synthetic_pose

        k = int(o.get("num_keypoints", 16))
        n = int(o.get("num_samples", 256 if val else 2048))
        seed = int(o.get("seed", 0)) + (10_000 if val else 0)
        recs = synthetic_pose(n, image_size=tuple(o.get("image_size", (128, 128))), num_keypoints=k, seed=seed)
        return recs, DatasetInfo(name, "pose", k, tuple(f"joint{j}" for j in range(k)), SYNTHETIC_FLIP_PAIRS)
    if name == "synthetic-seg":
        from training.datasets.synthetic import synthetic_segmentation

        c = int(o.get("num_classes", 4))
        n = int(o.get("num_samples", 256 if val else 2048))
        seed = int(o.get("seed", 0)) + (10_000 if val else 0)
        recs = synthetic_segmentation(n, image_size=tuple(o.get("image_size", (128, 128))), num_classes=c, seed=seed)
        return recs, DatasetInfo(name, "segmentation", num_classes=c,
                                 class_names=("background",) + tuple(f"class{i}" for i in range(1, c)))
    if name == "mpii":
        from training.datasets.mpii import MPII_FLIP_PAIRS, MPII_JOINTS, read_mpii_json, read_mpii_mat

        ann, images = _one(o, "annotations", name), _one(o, "images", name)
        if str(ann).endswith(".json"):
            recs = read_mpii_json(ann, images)
        else:
            recs = read_mpii_mat(ann, images, split="test" if val else "train")
        return recs, DatasetInfo(name, "pose", 16, MPII_JOINTS, MPII_FLIP_PAIRS)
    if name in ("lsp", "lspet"):
        from training.datasets.lsp import LSP_FLIP_PAIRS, LSP_JOINTS, read_lsp

        anns, dirs = _paths(_need(o, "annotations", name)), _paths(_need(o, "images", name))
        if len(anns) != len(dirs):
            raise ValueError(f"dataset '{name}': {len(anns)} annotation file(s) but {len(dirs)} image folder(s); "
                             f"give one image folder per joints.mat, in the same order.")
        pairs = list(zip(anns, dirs))
        if val:  # LSP's test half validates, wherever its file is among LSP + LSPet (the first file's was taken)
            pairs = [p for p in pairs if _lsp_layout(p[0])] or pairs[:1]
        recs = []
        for ann, images in pairs:  # 'lsp' takes LSP and LSPet files (the standard LSP + LSPet training set)
            recs += read_lsp(ann, images, split="test" if val else ("train" if name == "lsp" else "all"),
                             variant="auto" if name == "lsp" else name)
        return recs, DatasetInfo(name, "pose", 14, LSP_JOINTS, LSP_FLIP_PAIRS)
    if name in ("rhd", "rhd-hand"):
        from training.datasets.rhd import RHD_FLIP_PAIRS, read_rhd

        hands = "both" if name == "rhd" else "per_hand"
        recs = read_rhd(_need(o, "root", name), "evaluation" if val else "training", hands=hands)
        k = 42 if hands == "both" else 21
        return recs, DatasetInfo(name, "pose", k, None, RHD_FLIP_PAIRS if k == 42 else ())
    if name == "rhd-seg":
        from training.datasets.rhd import read_rhd_segmentation

        classes = o.get("classes", "hands")
        recs = read_rhd_segmentation(_need(o, "root", name), "evaluation" if val else "training", classes=classes)
        n = {"hands": 3, "hand": 2, "parts": 34}[classes]
        return recs, DatasetInfo(name, "segmentation", num_classes=n)
    if name == "voc":
        from training.datasets.voc import VOC_CLASSES, read_voc

        recs = read_voc(_need(o, "root", name), "val" if val else "train")
        return recs, DatasetInfo(name, "segmentation", num_classes=21, class_names=VOC_CLASSES)
    raise ValueError(f"Unknown dataset {name!r}. Known datasets: {', '.join(NAMES)}.")
