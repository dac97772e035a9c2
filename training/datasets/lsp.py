"""Leeds Sports Pose (LSP) and LSP-extended readers.

On-disk layout::

    lsp_dataset/joints.mat       variable ``joints``: 3 x 14 x 2000 -- rows x, y, *occlusion* flag
                                 (1 = occluded; every joint has a position, occluded ones too)
    lsp_dataset/images/im0001.jpg .. im2000.jpg
    lspet_dataset/joints.mat     variable ``joints``: 14 x 3 x 10000 -- columns x, y, *visible* flag
    lspet_dataset/images/im00001.jpg .. im10000.jpg

Coordinates are MATLAB 1-based; the reader subtracts 1. ``visible`` follows :class:`PoseRecord`
(annotated, so trained and scored): in LSP every joint with a position, occluded ones included, as
the official LSP PCK scores all 14 and gating training on visibility hurts (pose-training.md §1.5);
the raw flags stay in ``meta["occluded"]``. LSPet's third column is a visibility flag whose 0
joints are not reliably placed, so there ``visible`` is that flag (``meta["visible_flag"]``).

The standard split is images 1-1000 train and 1001-2000 test (LSP); LSPet is all training. The crop
is the box of the labelled joints padded by ``padding`` (bearpaw uses x1.4375 of its own scale;
1.25 of the joint box here keeps the body plus margin).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from training.datasets.base import AnnotationError, PoseRecord, box_center_scale

__all__ = ["LSP_JOINTS", "LSP_FLIP_PAIRS", "read_lsp"]

LSP_JOINTS = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "r_wrist", "r_elbow", "r_shoulder",
    "l_shoulder", "l_elbow", "l_wrist", "neck", "head_top",
)
LSP_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9))


def read_lsp(joints_mat, image_dir, *, split: str = "all", variant: str = "auto",
             padding: float = 1.25) -> list[PoseRecord]:
    """Records from an LSP or LSPet ``joints.mat``.

    Args:
        joints_mat: path of ``joints.mat``.
        image_dir: folder with ``im%04d.jpg`` (LSP) or ``im%05d.jpg`` (LSPet).
        split: ``"train"`` (LSP 1-1000), ``"test"`` (LSP 1001-2000) or ``"all"``.
        variant: ``"lsp"`` (3 x 14 x N, occlusion flag), ``"lspet"`` (14 x 3 x N, visibility flag)
            or ``"auto"`` (from the array layout).
        padding: crop side = padding x the side of the labelled joints' box.
    Returns:
        :class:`PoseRecord` list with 14 keypoints and ``box`` = joint box (PCK normaliser).
    Raises:
        AnnotationError: unreadable file, no ``joints`` variable, a layout that is neither
            3 x 14 x N nor 14 x 3 x N, or a bad ``split``/``variant``.
    Warns:
        UserWarning: counting images skipped for want of a usable joint; LSPet's empty ``"test"``.
    """
    import scipy.io

    if split not in ("train", "test", "all"):
        raise AnnotationError(f"read_lsp: split must be 'train', 'test' or 'all'; received {split!r}.")
    if variant not in ("auto", "lsp", "lspet"):
        raise AnnotationError(f"read_lsp: variant must be 'auto', 'lsp' or 'lspet'; received {variant!r}.")
    try:
        mat = scipy.io.loadmat(str(joints_mat))
    except Exception as e:  # scipy raises ValueError/OSError variants
        raise AnnotationError(f"cannot read LSP annotation file '{joints_mat}': {e}") from None
    if "joints" not in mat:
        raise AnnotationError(f"'{joints_mat}': missing variable 'joints'; found {sorted(k for k in mat if k[0] != '_')}.")
    try:
        j = np.asarray(mat["joints"], np.float64)
    except (TypeError, ValueError) as e:
        raise AnnotationError(f"'{joints_mat}': variable 'joints' is not numeric: {e}") from None
    if j.ndim == 2:
        j = j[..., None]
    if variant == "auto":
        variant = "lsp" if j.shape[:2] == (3, 14) else "lspet" if j.shape[:2] == (14, 3) else "?"
    if variant == "lsp" and j.shape[:2] == (3, 14):
        xy, flags, flag_name = j[:2].transpose(2, 1, 0), j[2].T > 0.5, "occluded"
        digits = 4
    elif variant == "lspet" and j.shape[:2] == (14, 3):
        xy, flags, flag_name = j[:, :2].transpose(2, 0, 1), j[:, 2].T > 0.5, "visible_flag"
        digits = 5
    else:
        raise AnnotationError(
            f"'{joints_mat}': field 'joints' has shape {j.shape}; expected 3 x 14 x N (LSP) or 14 x 3 x N (LSPet)."
        )
    n = len(xy)
    idx = range(n)
    if split == "train":
        idx = range(min(1000, n)) if variant == "lsp" else range(n)
    elif split == "test":
        idx = range(1000, n) if variant == "lsp" else range(0)
        if variant == "lspet":
            warnings.warn(f"'{joints_mat}': LSPet has no test split (all {n} images are training); no records.",
                          stacklevel=2)
    records, skipped = [], 0
    for i in idx:
        kp = xy[i] - 1.0
        placed = np.all(np.isfinite(kp), axis=1) & np.all(kp > -1, axis=1)  # MATLAB's are > 0
        v = placed & flags[i] if variant == "lspet" else placed
        labelled = kp[v]
        if len(labelled) == 0:
            skipped += 1
            continue
        box = [labelled[:, 0].min(), labelled[:, 1].min(), labelled[:, 0].max(), labelled[:, 1].max()]
        center, side = box_center_scale(box, padding)
        name = f"im{i + 1:0{digits}d}.jpg"
        records.append(PoseRecord(image=str(Path(image_dir) / name), keypoints=np.nan_to_num(kp), visible=v,
                                  center=center, scale=side, box=box, id=name,
                                  meta={"index": i, flag_name: flags[i].astype(int).tolist()}))
    if skipped:
        what = "visible (flag 1) and placed" if variant == "lspet" else "placed"
        warnings.warn(f"'{joints_mat}': skipped {skipped} of {len(idx)} images of split '{split}' with no {what} "
                      f"joint.", stacklevel=2)
    return records
