"""Rendered Hand Pose (RHD_published_v2) reader, with a restricted unpickler.

On-disk layout::

    <root>/training/color/%05d.png          320 x 320 RGB renders (41,258; evaluation/: 2,728)
    <root>/training/mask/%05d.png           grey PNG, 0 background, 1 person, 2-17 left hand
                                            (thumb tip->palm 2-4, index 5-7, ... little 14-16,
                                            palm 17), 18-33 right hand in the same layout
    <root>/training/depth/%05d.png          (not used)
    <root>/training/anno_training.pickle    dict sample_id -> {"uv_vis": (42, 3) u, v, visible,
                                            "xyz": (42, 3) metres, "K": (3, 3) intrinsics}
    <root>/evaluation/...                   same with anno_evaluation.pickle

Keypoints 0-20 are the left hand (0 wrist, 1-4 thumb tip->palm, 5-8 index, ..., 17-20 little),
21-41 the right hand. The annotation pickle (written by Python 2) is read through an unpickler
that admits only dicts, lists, tuples, scalars and numpy arrays: any other global (``os.system``,
``builtins.eval``, ...) raises :class:`UnsafePickleError` before anything runs.
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path

import numpy as np

from training.datasets.base import AnnotationError, PoseRecord, SegRecord, UnsafePickleError, box_center_scale

__all__ = ["RHD_FLIP_PAIRS", "RestrictedUnpickler", "load_rhd_annotations", "read_rhd", "read_rhd_segmentation",
           "rhd_label_map"]

# A flipped left hand looks like a right hand: swap the two 21-keypoint blocks.
RHD_FLIP_PAIRS = tuple((i, i + 21) for i in range(21))

# (module, name) globals a numpy-array pickle needs; numpy 2 moved numpy.core to numpy._core.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    # protocol 5 rebuilds contiguous arrays as frombuffer(bytes, dtype).reshape(shape, order)
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 store bytes as encode(str, "latin1")
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals needed for numpy arrays.

    Dicts, lists, tuples, strings and numbers need no globals; numpy arrays need
    ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype`` (protocol 5:
    ``numpy.core.numeric._frombuffer``, a reshape of a buffer of bytes).
    ``copyreg._reconstructor`` is allowed only to rebuild ``numpy.ndarray`` objects, and
    ``_codecs.encode`` (a pure str -> bytes function) for array buffers in protocol-2 pickles.
    """

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            if module in ("copy_reg", "copyreg"):
                return _checked_reconstructor
            try:  # numpy >= 2 keeps these in numpy._core (numpy.core is a deprecated alias)
                return super().find_class(module.replace("numpy.core", "numpy._core"), name)
            except (ImportError, AttributeError):
                return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load global '{module}.{name}' from a pickle: only dicts, lists and numpy arrays are "
            f"allowed."
        )


def _checked_reconstructor(cls, base, state):
    if cls is not np.ndarray:
        raise UnsafePickleError(f"refusing to rebuild {cls!r} from a pickle: only numpy arrays are allowed.")
    import copyreg

    return copyreg._reconstructor(cls, base, state)


def load_rhd_annotations(path) -> dict:
    """``anno_*.pickle`` as ``{sample_id: {"uv_vis", "xyz", "K"}}`` through :class:`RestrictedUnpickler`.

    Raises:
        UnsafePickleError: the pickle references a disallowed global (names it).
        AnnotationError: unreadable file, not a dict, or a sample lacking ``uv_vis`` or with a
            ``uv_vis`` that is not (42, 3) (names the sample and field).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise AnnotationError(f"cannot read RHD annotation file '{path}': {e}") from None
    try:
        data = RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"'{path}': {e}") from None
    except Exception as e:  # truncated/corrupt pickles raise many types
        raise AnnotationError(f"cannot unpickle RHD annotation file '{path}': {type(e).__name__}: {e}") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"'{path}': expected a dict sample_id -> annotation; found {type(data).__name__}.")
    for sid, ann in data.items():
        # sample ids name the image files (color/00042.png): non-negative integers
        if isinstance(sid, bool) or not isinstance(sid, (int, np.integer)) or sid < 0:
            raise AnnotationError(f"'{path}': sample id {sid!r} is not a non-negative integer (it names the image file).")
        if not isinstance(ann, dict) or "uv_vis" not in ann:
            raise AnnotationError(f"'{path}': sample {sid!r} has no field 'uv_vis'.")
        try:
            uv = np.asarray(ann["uv_vis"], np.float64)
        except (TypeError, ValueError) as e:
            raise AnnotationError(f"'{path}': sample {sid!r} field 'uv_vis' is not numeric: {e}") from None
        if uv.shape != (42, 3):
            raise AnnotationError(f"'{path}': sample {sid!r} field 'uv_vis' has shape {uv.shape}; expected (42, 3).")
    return data


def read_rhd(root, split: str = "training", *, hands: str = "both", min_visible: int = 3,
             padding: float = 1.5) -> list[PoseRecord]:
    """Pose records from RHD.

    Args:
        root: the ``RHD_published_v2`` folder.
        split: ``"training"`` or ``"evaluation"``.
        hands: ``"both"``: one record per image with 42 keypoints (crop = whole 320 x 320 image);
            ``"per_hand"``: one record per hand with at least ``min_visible`` visible keypoints,
            21 keypoints, crop around that hand (``meta["hand"]`` = "left"/"right").
        min_visible: see ``hands``.
        padding: per-hand crop side = padding x the hand's keypoint box side.
    Returns:
        :class:`PoseRecord` list; ``box`` = keypoint box of the visible keypoints (PCK normaliser).
    Warns:
        UserWarning: counting the hands ``min_visible`` left out (``"per_hand"``).
    """
    if hands not in ("both", "per_hand"):
        raise AnnotationError(f"read_rhd: hands must be 'both' or 'per_hand'; received {hands!r}.")
    base = Path(root) / split
    anns = load_rhd_annotations(base / f"anno_{split}.pickle")
    records, few = [], 0
    for sid in sorted(anns):
        uv = np.asarray(anns[sid]["uv_vis"], np.float64)
        image = str(base / "color" / f"{int(sid):05d}.png")
        vis = uv[:, 2] > 0.5
        if hands == "both":
            pts = uv[vis, :2] if vis.any() else uv[:, :2]
            box = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
            records.append(PoseRecord(image=image, keypoints=uv[:, :2], visible=vis, center=(159.5, 159.5),
                                      scale=320.0, box=box, id=f"{int(sid):05d}"))
            continue
        for side, sl in (("left", slice(0, 21)), ("right", slice(21, 42))):
            v = vis[sl]
            if v.sum() < min_visible:
                few += 1  # mostly hands out of view: RHD renders often show one hand
                continue
            pts = uv[sl][v, :2]
            box = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
            center, size = box_center_scale(box, padding)
            records.append(PoseRecord(image=image, keypoints=uv[sl, :2], visible=v, center=center, scale=size,
                                      box=box, id=f"{int(sid):05d}_{side}", meta={"hand": side}))
    if few:
        warnings.warn(f"RHD '{base}': skipped {few} of {2 * len(anns)} hands with fewer than {min_visible} visible "
                      f"keypoints (min_visible).", stacklevel=2)
    return records


def rhd_label_map(classes: str = "hands") -> np.ndarray:
    """Lookup table raw RHD mask value -> class id.

    ``"hands"``: 0 background (and person), 1 left hand (2-17), 2 right hand (18-33);
    ``"hand"``: 0 background, 1 any hand; ``"parts"``: the 34 raw labels.
    """
    lut = np.full(256, 255, np.uint8)
    if classes == "parts":
        lut[:34] = np.arange(34)
    elif classes == "hands":
        lut[:2], lut[2:18], lut[18:34] = 0, 1, 2
    elif classes == "hand":
        lut[:2], lut[2:34] = 0, 1
    else:
        raise AnnotationError(f"rhd_label_map: classes must be 'hands', 'hand' or 'parts'; received {classes!r}.")
    return lut


def read_rhd_segmentation(root, split: str = "training", *, classes: str = "hands") -> list[SegRecord]:
    """Segmentation records (colour render + hand mask) for every annotated RHD sample."""
    base = Path(root) / split
    anns = load_rhd_annotations(base / f"anno_{split}.pickle")
    lut = rhd_label_map(classes)
    return [SegRecord(image=str(base / "color" / f"{int(s):05d}.png"), mask=str(base / "mask" / f"{int(s):05d}.png"),
                      id=f"{int(s):05d}", label_map=lut) for s in sorted(anns)]
