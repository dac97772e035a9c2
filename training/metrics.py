"""Evaluation metrics as NumPy functions: PCK / PCKh (MPII table), PCK curves, AUC, end-point error, mean IoU.

They work on decoded keypoints and label maps; :mod:`training.keras_metrics` has their Keras counterparts
(``PCKMetric``, ``MeanIoUMetric``, also importable from here) that run inside ``fit``/``evaluate``.

Note:
    N = samples (people), K = keypoints, C = classes, B = batch, (h, w) = heatmap size.
    Keypoints are (x, y) px in any one space (pred and gt in the same space as the normaliser).
    Fractions are in [0, 1] (multiply by 100 for the usual tables).
"""

from __future__ import annotations

import math

import numpy as np

from zoo.releases import MPII_JOINTS

__all__ = [
    "MPII_JOINT_NAMES", "pck", "pckh", "pck_thresholds", "pck_curve", "end_point_error",
    "keypoint_auc_mmpose", "head_size_from_box", "bbox_size", "torso_size", "confusion_matrix",
    "miou_from_confusion",
]

#: MPII joint order (0-based ids of the .mat / HRNet json).
MPII_JOINT_NAMES = MPII_JOINTS  # one definition: zoo.releases
# HRNet/MMPose MPII table: Head = head top, other groups average left and right
_MPII_GROUPS = {
    "Head": ("head_top",), "Shoulder": ("l_shoulder", "r_shoulder"), "Elbow": ("l_elbow", "r_elbow"),
    "Wrist": ("l_wrist", "r_wrist"), "Hip": ("l_hip", "r_hip"), "Knee": ("l_knee", "r_knee"),
    "Ankle": ("l_ankle", "r_ankle"),
}
# excluded from the MPII "Mean" (HRNet/MMPose convention)
_MPII_EXCLUDED = ("pelvis", "thorax")


# ----------------------------------------------------------------------------- keypoint metrics

def _keypoint_arrays(pred, gt, visible):
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    v = np.asarray(visible)
    if g.ndim != 3 or g.shape[-1] != 2:
        raise ValueError(f"`gt` must have shape (N, K, 2). Received shape {g.shape}")
    if p.shape != g.shape:
        raise ValueError(f"`pred` shape {p.shape} must equal `gt` shape {g.shape} (N, K, 2)")
    if v.shape != g.shape[:2]:
        raise ValueError(f"`visible` must have shape (N, K) = {g.shape[:2]}. Received shape {v.shape}")
    return p, g, np.nan_to_num(v.astype(np.float64)) > 0


def _distances(pred, gt, visible, norm):
    """(N, K) px distances (NaN for a NaN prediction), (N,) normalisers and the (N, K) joints that count."""
    p, g, v = _keypoint_arrays(pred, gt, visible)
    n = np.asarray(norm, dtype=np.float64)
    if n.shape != (g.shape[0],):
        raise ValueError(f"normaliser must have shape (N,) = ({g.shape[0]},). Received shape {n.shape}")
    # samples without a usable normaliser and joints without finite gt are not counted
    valid = v & np.all(np.isfinite(g), axis=-1) & (np.isfinite(n) & (n > 0))[:, None]
    with np.errstate(invalid="ignore"):
        return np.linalg.norm(p - g, axis=-1), n, valid


def _hits(pred, gt, visible, norm, alpha):
    a = float(alpha)
    if not a > 0:
        raise ValueError(f"`alpha` must be > 0. Received: alpha={alpha!r}")
    dist, n, valid = _distances(pred, gt, visible, norm)
    with np.errstate(invalid="ignore"):
        hit = valid & (dist <= a * n[:, None])  # NaN predictions are misses
    return hit, valid


def _ratio(num, den):
    # den may be fractional (a normalised or weighted confusion matrix): only 0 is replaced
    den = np.asarray(den, dtype=np.float64)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def pck(pred, gt, visible, norm, alpha=0.2):
    """Percentage of correct keypoints: hit if ``||pred - gt|| <= alpha * norm`` (HRNet uses ``<=``).

    Args:
        pred: (N, K, 2) predicted (x, y) px.
        gt: (N, K, 2) ground-truth (x, y) px.
        visible: (N, K) bool or 0/1: joints that count.
        norm: (N,) normaliser in px per sample, e.g. :func:`bbox_size` (max side of the box) or
            :func:`torso_size`; samples with ``norm <= 0`` or NaN are skipped.
        alpha: threshold as a fraction of ``norm``. Defaults to 0.2.

    Returns:
        tuple:
        - per_joint: (K,) float64 fraction correct per joint (NaN where no joint counted).
        - mean: float, fraction correct over all counted joints (joint-count weighted; NaN if none).
    """
    hit, valid = _hits(pred, gt, visible, norm, alpha)
    per_joint = _ratio(hit.sum(0).astype(np.float64), valid.sum(0))
    return per_joint, float(_ratio(np.float64(hit.sum()), valid.sum()))


def head_size_from_box(box) -> np.ndarray:
    """MPII head size ``0.6 * ||(x2, y2) - (x1, y1)||`` (``SC_BIAS``) from (N, 4) head boxes (x1, y1, x2, y2) px."""
    b = np.asarray(box, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"`box` must have shape (N, 4) as (x1, y1, x2, y2). Received shape {b.shape}")
    return 0.6 * np.hypot(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def bbox_size(keypoints, visible) -> np.ndarray:
    """(N,) max side ``max(w, h)`` of the box around each sample's visible keypoints (0 if < 1 visible)."""
    k = np.asarray(keypoints, dtype=np.float64)
    _, k, v = _keypoint_arrays(k, k, visible)
    v = v & np.all(np.isfinite(k), axis=-1)
    big = np.where(v[..., None], k, np.inf)
    small = np.where(v[..., None], k, -np.inf)
    side = (small.max(axis=1) - big.min(axis=1)).max(axis=1)
    return np.where(v.any(axis=1), side, 0.0)


def torso_size(keypoints, visible, a, b) -> np.ndarray:
    """(N,) distance between joints ``a`` and ``b`` (LSP PCK: left shoulder 9, right hip 2); NaN if either is not visible."""
    k = np.asarray(keypoints, dtype=np.float64)
    _, k, v = _keypoint_arrays(k, k, visible)
    n = k.shape[1]
    for arg, j in (("a", a), ("b", b)):
        if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or not -n <= j < n:
            raise ValueError(f"torso_size: `{arg}` must be a joint index in [0, {n}). Received: {arg}={j!r}")
    d = np.linalg.norm(k[:, a] - k[:, b], axis=-1)
    return np.where(v[:, a] & v[:, b], d, np.nan)


def pckh(pred, gt, visible, head_sizes, alpha=0.5, joint_names=None) -> dict:
    """PCKh@alpha with the per-joint table (MPII: ``||pred - gt|| <= alpha * head_size``).

    Args:
        pred, gt: (N, K, 2) (x, y) px in the original image.
        visible: (N, K) annotated joints (``1 - jnt_missing``).
        head_sizes: (N,) head sizes in px (:func:`head_size_from_box`).
        alpha: threshold as a fraction of the head size. Defaults to 0.5.
        joint_names: K names; defaults to :data:`MPII_JOINT_NAMES` when K == 16, else ``joint_<i>``.

    Returns:
        dict with ``alpha``; ``per_joint`` {name: fraction}; ``counts`` {name: counted joints};
        ``groups`` (MPII names only) {"Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle":
        fraction, left/right averaged}; ``mean`` joint-count-weighted fraction (MPII: pelvis and thorax
        excluded, as HRNet/MMPose); ``mean_all`` over every joint; ``mean@0.1`` same as ``mean`` at alpha 0.1.
    """
    names, keep = _joint_names(gt, joint_names)
    hit, valid = _hits(pred, gt, visible, head_sizes, alpha)
    per_joint = _ratio(hit.sum(0).astype(np.float64), valid.sum(0))
    hit01, valid01 = _hits(pred, gt, visible, head_sizes, 0.1)
    table = {
        "alpha": float(alpha),
        "per_joint": {n: float(v) for n, v in zip(names, per_joint)},
        "counts": {n: int(c) for n, c in zip(names, valid.sum(0))},
        "mean": float(_ratio(np.float64(hit[:, keep].sum()), valid[:, keep].sum())),
        "mean_all": float(_ratio(np.float64(hit.sum()), valid.sum())),
        "mean@0.1": float(_ratio(np.float64(hit01[:, keep].sum()), valid01[:, keep].sum())),
    }
    groups = _groups(names, per_joint)
    if groups is not None:
        table["groups"] = {g: float(v) for g, v in groups.items()}
    return table


def _joint_names(gt, joint_names):
    """The K names (MPII's for K == 16 by default, else ``joint_<i>``) and the (K,) joints of the "mean"
    (MPII's names: all but pelvis and thorax, as HRNet/MMPose and evaluatePCKh.m's 14 joints)."""
    k = np.asarray(gt).shape[1] if np.ndim(gt) == 3 else None
    if joint_names is None:
        joint_names = MPII_JOINT_NAMES if k == 16 else tuple(f"joint_{i}" for i in range(k or 0))
    names = tuple(str(n) for n in joint_names)
    if k is not None and len(names) != k:
        raise ValueError(f"`joint_names` must have K={k} names. Received {len(names)}: {names}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # the per-joint tables are keyed by name: a repeated one would hide a joint
        raise ValueError(f"`joint_names` must be {len(names)} distinct names. Received {twice} more than once: "
                         f"{names}")
    keep = np.array([n not in _MPII_EXCLUDED for n in names]) if set(_MPII_EXCLUDED) <= set(names) \
        else np.ones(len(names), bool)
    return names, keep


def _groups(names, per_joint):
    """MPII's joint groups (left and right averaged) of ``per_joint`` (K, ...) values; None for other names."""
    if not all(n in names for group in _MPII_GROUPS.values() for n in group):
        return None
    index = {n: i for i, n in enumerate(names)}
    return {g: np.mean([per_joint[index[n]] for n in members], axis=0) for g, members in _MPII_GROUPS.items()}


_MAX_CURVE_STEPS = 1_000_000


def pck_thresholds(alpha, step=0.01) -> np.ndarray:
    """(T,) float64 thresholds of a PCK curve, fractions of the normaliser from 0 to ``alpha``.

    ``0, step, ..., alpha`` when ``alpha`` is a multiple of ``step`` (0.5: MPII's ``range = 0:0.01:0.5``, 51
    thresholds, each the double nearest ``i / 100``); otherwise ``ceil(alpha / step)`` equal steps shorter than
    ``step`` up to ``alpha`` itself (0.333: 34 steps of 0.0098, 35 thresholds), so the curve ends at the
    table's PCK@alpha and stays evenly spaced (its mean an area under it).
    """
    try:
        a, s = (math.nan if isinstance(v, (bool, np.bool_, str, bytes)) else float(v) for v in (alpha, step))
    except (TypeError, ValueError):  # None, a list: float()'s message named neither argument
        a = s = math.nan
    # a bound on the curve's length: alpha 1e300 was numpy's 'Maximum allowed size exceeded', 1e7 a 1e9-long
    # arange, before any PCK (alpha is a fraction: 0.5, not 50 %)
    if not (np.isfinite(a) and a > 0 and np.isfinite(s) and s > 0 and a / s <= _MAX_CURVE_STEPS):
        raise ValueError(f"pck_thresholds: `alpha` and `step` must be numbers > 0 with alpha / step <= "
                         f"{_MAX_CURVE_STEPS} (alpha a fraction of the normaliser). Received: alpha={alpha!r}, "
                         f"step={step!r}")
    steps = round(a / s)
    if steps >= 1 and abs(steps - a / s) < 1e-9:
        # i * 0.01 picks up float error (3 * 0.07 != 0.21); i / 100 is the decimal MATLAB's colon gives
        t = np.arange(steps + 1) / round(1 / s) if abs(1 / s - round(1 / s)) < 1e-9 else np.arange(steps + 1) * s
        t[-1] = a  # the headline threshold exactly
        return t
    steps = int(np.ceil(a / s))
    return a * np.arange(steps + 1) / steps


def pck_curve(pred, gt, visible, norm, thresholds, joint_names=None) -> dict:
    """PCK at each threshold, per joint, per MPII joint group and for the "mean" joints (``evaluatePCKh.m``'s
    curves): a hit is ``||pred - gt|| <= t * norm``, as :func:`pckh`; a NaN prediction is a miss.

    Args:
        pred, gt: (N, K, 2) (x, y) px; visible: (N, K) annotated joints.
        norm: (N,) normaliser per sample in px (head size, torso, box side); NaN or <= 0: not counted.
        thresholds: (T,) increasing fractions of ``norm``, >= 0 (:func:`pck_thresholds`).
        joint_names: as :func:`pckh` (MPII's names bring the groups; the mean leaves out pelvis and thorax).
            The groups are :func:`pckh`'s (HRNet/MMPose): "Head" is the head top alone, where
            ``evaluatePCKh.m``'s "PCKh head" curve averages upper neck and head top (its other curves, ankle to
            shoulder, are the same left/right averages as here).

    Returns:
        dict: ``thresholds`` (T,); ``per_joint`` {name: (T,) fractions, NaN where the joint never counts};
        ``groups`` {MPII group: (T,), left and right averaged} (MPII names only); ``mean`` (T,) joint-count
        weighted over :func:`pckh`'s "mean" joints (at ``t = alpha`` it is that "mean"); ``auc`` the mean of
        ``mean`` over the T thresholds, a fraction. Lists of floats.

    Note:
        ``auc = mean_i PCK(t_i)``. MPII's ``evaluatePCKh.m`` prints ``area_under_curve(scale01(range),
        pck(:, end))``, the trapezoid rule over thresholds rescaled to [0, 1] in percent:
        ``100 (T auc - (PCK(0) + PCK(alpha)) / 2) / (T - 1)``; with T = 51 the two differ by
        ``(auc - (PCK(0) + PCK(0.5)) / 2) / 50``, under a point. MMPose's RHD ``AUC`` (30 px normaliser, 20
        thresholds) is :func:`keypoint_auc_mmpose`.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) <= 0):
        raise ValueError(f"pck_curve: `thresholds` must be a non-empty 1-D increasing sequence of numbers >= 0. "
                         f"Received: {thresholds!r}")
    names, keep = _joint_names(gt, joint_names)
    dist, n, valid = _distances(pred, gt, visible, norm)
    with np.errstate(invalid="ignore"):  # (T, N, K); pckh's comparison, so PCK(alpha) is its mean exactly
        hit = valid & (dist[None] <= t[:, None, None] * n[None, :, None])
    per_joint = _ratio(hit.sum(1).astype(np.float64), valid.sum(0)).T  # (K, T)
    mean = _ratio(hit[:, :, keep].sum((1, 2)).astype(np.float64), valid[:, keep].sum())
    curve = {"thresholds": t.tolist(), "per_joint": {nm: v.tolist() for nm, v in zip(names, per_joint)},
             "mean": mean.tolist(), "auc": float(np.mean(mean))}
    groups = _groups(names, per_joint)
    if groups is not None:
        curve["groups"] = {g: v.tolist() for g, v in groups.items()}
    return curve


def end_point_error(pred, gt, visible):
    """``(epe, count)``: the mean ``||pred - gt||`` in px (evaluate: original image px; NaN if none) over the
    ``count`` visible joints with finite gt and a finite prediction (MMPose ``keypoint_epe``), from (N, K, 2)
    ``pred`` (NaN: no prediction, not counted) and ``gt`` and (N, K) ``visible``."""
    p, g, v = _keypoint_arrays(pred, gt, visible)
    ok = v & np.all(np.isfinite(g), axis=-1) & np.all(np.isfinite(p), axis=-1)
    d = np.linalg.norm(p[ok] - g[ok], axis=-1)
    return (float(d.mean()) if d.size else float("nan")), int(d.size)


def keypoint_auc_mmpose(pred, gt, visible, norm_px=30.0, num_thresholds=20) -> float:
    """MMPose's ``keypoint_auc`` (its RHD ``AUC``: 30 px, 20 thresholds) as a fraction; not :func:`pck_curve`'s.

    One normaliser ``norm_px`` px for every sample; thresholds ``i / num_thresholds``, i = 0 .. num_thresholds - 1
    (0 to 28.5 px for RHD, the end left out); a hit is ``||pred - gt|| < t * norm_px`` (strict, as MMPose; NaN
    predictions miss); the PCK at a threshold is the mean of the per-joint fractions (joints never visible
    skipped, 0 if none), the AUC their plain mean. ``pred``, ``gt`` (N, K, 2) px, ``visible`` (N, K).

    Note:
        MMPose scores RHD as 21-keypoint hands, so each of its joints pools left and right hands. The 42
        keypoints of :func:`training.datasets.rhd.read_rhd` records (left 0-20, right 21-41) give another number
        when the hands are visible unequally often (each hand's joint is then a fraction of its own, the two
        weighted equally): pass ``pred.reshape(-1, 21, 2)``, ``gt.reshape(-1, 21, 2)``, ``visible.reshape(-1, 21)``.
    """
    bad_n = isinstance(num_thresholds, (bool, np.bool_)) or not isinstance(num_thresholds, (int, np.integer, float))
    if bad_n or not np.isfinite(num_thresholds) or int(num_thresholds) != num_thresholds or num_thresholds < 1:
        raise ValueError(f"keypoint_auc_mmpose: `num_thresholds` must be an int >= 1. Received: {num_thresholds!r}")
    norm = np.nan if isinstance(norm_px, (bool, np.bool_, str, bytes)) or norm_px is None else norm_px
    try:
        norm = float(norm)
    except (TypeError, ValueError):  # a list, an object: float()'s message named no argument
        norm = np.nan
    if not (norm > 0 and np.isfinite(norm)):
        raise ValueError(f"keypoint_auc_mmpose: `norm_px` must be a number of px > 0. Received: {norm_px!r}")
    p, g, v = _keypoint_arrays(pred, gt, visible)
    with np.errstate(invalid="ignore"):
        d = np.linalg.norm(p - g, axis=-1) / norm
        counted = v.sum(0)
        accs = [((v & (d < i / num_thresholds)).sum(0)[counted > 0] / counted[counted > 0])
                for i in range(int(num_thresholds))]
    return float(np.mean([a.mean() if a.size else 0.0 for a in accs]))


# ----------------------------------------------------------------------------- segmentation metrics

def confusion_matrix(pred, gt, num_classes, ignore_label=255) -> np.ndarray:
    """Accumulable (C, C) confusion matrix, rows = ground truth, columns = prediction (FCN ``fast_hist``).

    Args:
        pred: predicted labels, any shape (e.g. (B, H, W)), values in [0, C).
        gt: labels of the same shape; ``ignore_label`` and values outside [0, C) are skipped.
        num_classes: C.
        ignore_label: skipped label. Defaults to 255.

    Returns:
        (C, C) int64 counts. Sum matrices over images, then call :func:`miou_from_confusion`.
    """
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"`pred` shape {p.shape} must equal `gt` shape {g.shape}")
    if p.dtype.kind not in "ui" or g.dtype.kind not in "ui":
        raise ValueError(f"`pred` and `gt` must be integer labels. Received dtypes {p.dtype}, {g.dtype}")
    c = int(num_classes)
    if c != num_classes or c < 1:
        raise ValueError(f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}")
    g = g.astype(np.int64).ravel()
    p = p.astype(np.int64).ravel()
    valid = (g >= 0) & (g < c) & (g != ignore_label)
    if np.any((p[valid] < 0) | (p[valid] >= c)):
        bad = p[valid][(p[valid] < 0) | (p[valid] >= c)][0]
        raise ValueError(f"`pred` holds label {bad} outside [0, {c}) where gt is valid")
    return np.bincount(c * g[valid] + p[valid], minlength=c * c).reshape(c, c)


def miou_from_confusion(cm):
    """IoU per class ``CM[c,c] / (row_c + col_c - CM[c,c])`` and their mean over classes that occur.

    FCN's convention (``score.py``: ``iu = diag / (sum(1) + sum(0) - diag)``, ``np.nanmean(iu)``; Keras'
    ``MeanIoU`` too): a class in neither the gt nor the predictions of the set has IoU 0 / 0 and is left out of
    the mean; one predicted but in no gt has IoU 0 and counts. PSPNet's ``eval_acc.m`` and semseg's
    ``tool/test.py`` (``I / (U + eps)``, the mean over all C classes) count a class that occurs nowhere as 0:
    their mean is ``nansum(iou) / C``, the same number whenever every class occurs.

    Args:
        cm: (C, C) confusion matrix accumulated over the whole set (rows = gt): counts, or any
            non-negative rescaling of them (normalised, pixel-weighted).

    Returns:
        tuple:
        - iou: (C,) float64, NaN for classes absent from both gt and predictions.
        - miou: float, nan-mean of ``iou`` (NaN if no class occurs).
    """
    m = np.asarray(cm, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"`cm` must be a square (C, C) matrix. Received shape {m.shape}")
    inter = np.diag(m)
    union = m.sum(0) + m.sum(1) - inter
    iou = _ratio(inter, union)
    ok = ~np.isnan(iou)
    return iou, float(iou[ok].mean()) if ok.any() else float("nan")


def __getattr__(name):  # the Keras metrics, still importable from here (their module imports this one)
    if name in ("PCKMetric", "MeanIoUMetric"):
        from training import keras_metrics

        return getattr(keras_metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
