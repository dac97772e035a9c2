"""Geometric and photometric augmentation for top-down pose and segmentation (numpy + OpenCV only).

Every geometric step is a 2x3 affine matrix in OpenCV's convention, so a whole augmentation chain
(crop, scale, rotation, shear, translation, flip) is one matrix and one ``cv2.warpAffine`` call, and
keypoints follow the image exactly through :func:`transform_points`.

Note:
    Coordinates are 0-based float pixel coordinates in (x, y) order with OpenCV pixel centres: the
    centre of pixel ``[row, col]`` is ``(x=col, y=row)``; the image covers ``[-0.5, W-0.5]``.
    Sizes are ``(w, h)`` tuples while arrays are ``(H, W, ...)``. K = number of keypoints,
    C = image channels. Angles are in degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "affine_matrix", "compose", "invert", "warp_image", "warp_mask", "transform_points",
    "photometric_jitter", "flip_keypoints", "swap_pairs", "check_flip_pairs", "Augmentation",
]


# ----------------------------------------------------------------------------- validation helpers

def _size(value, name: str) -> tuple[int, int]:
    """Validates an ``(w, h)`` size of positive ints."""
    try:
        w, h = value
        w_i, h_i = int(w), int(h)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a (w, h) pair of positive ints. Received: {name}={value!r}") from None
    if w_i != w or h_i != h or w_i <= 0 or h_i <= 0:
        raise ValueError(f"`{name}` must be a (w, h) pair of positive ints. Received: {name}={value!r}")
    return w_i, h_i


def _finite_pair(value, name: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a pair of finite floats. Received: {name}={value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"`{name}` must be a pair of finite floats. Received: {name}={value!r}")
    return a, b


def _finite(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}")
    return v


def _as_matrix(mat, name: str = "mat") -> np.ndarray:
    m = np.asarray(mat, dtype=np.float64)
    if m.shape != (2, 3) or not np.all(np.isfinite(m)):
        raise ValueError(f"`{name}` must be a finite (2, 3) affine matrix. Received shape {m.shape}")
    return m


def _to3(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------- matrices

def affine_matrix(center, scale, output_size, *, rotation=0.0, shear=0.0, translate=(0.0, 0.0),
                  flip=False) -> np.ndarray:
    """Builds the source-image -> crop matrix of a top-down crop with its augmentations.

    The square region of side ``scale`` source pixels centred on ``center`` is mapped isotropically
    (factor ``w / scale`` output px per source px, the width convention of HRNet's
    ``get_affine_transform``; for a square output the square fills it exactly) so that ``center``
    lands on the output's geometric centre ``((w-1)/2, (h-1)/2)`` (pixel-centre exact, whereas HRNet
    uses ``(w/2, h/2)``). Order of operations on a point ``p``: ``p - center``, rotation, horizontal
    shear, scaling, move to the output centre, ``+ translate``, then the optional horizontal mirror
    ``x -> w-1-x`` of the whole output (so the flipped crop is exactly the mirror of the unflipped one).

    Args:
        center: (x, y) crop centre in source pixels.
        scale: side length in source pixels of the square region mapped onto the output. Note: not the
            MPII "x 200 px" person scale; multiply that by 200 first.
        output_size: (w, h) of the output crop in pixels.
        rotation: counter-clockwise rotation of the content as displayed (y down), in degrees; same
            sign convention as ``cv2.getRotationMatrix2D``. Defaults to 0.
        shear: horizontal shear angle in degrees (``x += tan(shear) * y`` about the centre). Defaults to 0.
        translate: (tx, ty) shift in output pixels, applied after scaling. Defaults to (0, 0).
        flip: mirror the output horizontally. Defaults to False.

    Returns:
        (2, 3) float64 matrix ``M`` with ``[x_out, y_out] = M @ [x_src, y_src, 1]``.

    Raises:
        ValueError: non-finite centre/angles, non-positive scale, bad output size.
    """
    cx, cy = _finite_pair(center, "center")
    s = _finite(scale, "scale")
    if s <= 0:
        raise ValueError(f"`scale` must be > 0 (side length in source pixels). Received: scale={scale!r}")
    w, h = _size(output_size, "output_size")
    rot = math.radians(_finite(rotation, "rotation"))
    sh = _finite(shear, "shear")
    if abs(sh) >= 89.0:
        raise ValueError(f"`shear` must be in (-89, 89) degrees. Received: shear={shear!r}")
    tx, ty = _finite_pair(translate, "translate")

    c, si = math.cos(rot), math.sin(rot)
    rotate = np.array([[c, si], [-si, c]])  # CCW on screen with y pointing down
    shear_m = np.array([[1.0, math.tan(math.radians(sh))], [0.0, 1.0]])
    linear = (w / s) * shear_m @ rotate
    out_c = np.array([(w - 1) / 2.0 + tx, (h - 1) / 2.0 + ty])
    mat = np.hstack([linear, (out_c - linear @ np.array([cx, cy]))[:, None]])
    if flip:
        mat = compose(mat, np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0]]))
    return mat


def compose(*mats) -> np.ndarray:
    """Chains affine matrices; the first argument is applied first.

    Args:
        *mats: one or more (2, 3) matrices.

    Returns:
        (2, 3) float64 matrix equal to ``mats[-1] o ... o mats[0]``.
    """
    if not mats:
        raise ValueError("compose() needs at least one (2, 3) matrix")
    out = np.eye(3)
    for i, m in enumerate(mats):
        out = _to3(_as_matrix(m, f"mats[{i}]")) @ out
    return out[:2].copy()


def invert(mat) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix (e.g. crop px -> original image px).

    Raises:
        ValueError: the matrix is singular (zero scale).
    """
    m = _to3(_as_matrix(mat))
    if abs(np.linalg.det(m)) < 1e-12:
        raise ValueError(f"`mat` is singular and cannot be inverted: {m[:2].tolist()}")
    return np.linalg.inv(m)[:2].copy()


def transform_points(points, mat) -> np.ndarray:
    """Applies an affine matrix to (x, y) points.

    Args:
        points: (..., 2) array of (x, y) px; a (..., D>2) array has its first two columns transformed
            and the others (e.g. visibility) copied. NaN stays NaN.
        mat: (2, 3) affine matrix.

    Returns:
        float64 array of the same shape as ``points``.
    """
    m = _as_matrix(mat)
    p = np.array(points, dtype=np.float64, copy=True)
    if p.ndim < 1 or p.shape[-1] < 2:
        raise ValueError(f"`points` must have shape (..., 2). Received shape {p.shape}")
    p[..., :2] = p[..., :2] @ m[:, :2].T + m[:, 2]
    return p


# ----------------------------------------------------------------------------- warping

_WARP_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float16, np.float32, np.float64))

def grid_matrix(mat, input_size, grid_size) -> np.ndarray:
    """``mat`` (source -> network input) followed by input -> the network's output grid.

    A grid of about the input's size (stride ``w / gw`` rounds to 1 on both axes) is the input's own
    pixel grid: grid pixel ``(j, i)`` is input pixel ``(j, i)``. PSPNet's align-corners zoom 8 of its
    stride-8 features puts output pixel ``j`` on input pixel ``j`` and has ``8F - 7`` of them (513 for a
    512 input, 497 for 500), and FCN crops to the input. A smaller grid (stride >= 2) is taken as
    corner-aligned: input pixel ``(0, 0)`` at grid ``(0, 0)`` and ``(w-1, h-1)`` at ``(gw-1, gh-1)``.
    Training samples its labels and evaluation reads its scores through this matrix.

    Args:
        mat: (2, 3) source -> input matrix (e.g. :func:`affine_matrix`).
        input_size, grid_size: ``(w, h)`` of the input and of the grid.
    Returns:
        (2, 3) source -> grid matrix.
    """
    (w, h), (gw, gh) = input_size, grid_size
    if round(w / gw) == 1 and round(h / gh) == 1:  # stride 1: stretching 8F - 7 onto w was up to 3.5 px off
        return np.asarray(mat, np.float64)
    s = np.array([[(gw - 1) / max(w - 1, 1), 0, 0], [0, (gh - 1) / max(h - 1, 1), 0]])
    return s @ np.vstack([mat, [0, 0, 1]])


def warp_image(image, mat, output_size, border_value=0) -> np.ndarray:
    """Warps an image with bilinear interpolation (``cv2.warpAffine``, constant border).

    Args:
        image: (H, W, C) or (H, W) array, uint8 / uint16 / int16 / float16 / float32 / float64.
        mat: (2, 3) source -> output matrix (as from :func:`affine_matrix`).
        output_size: (w, h) of the result.
        border_value: fill value outside the source (scalar, or one value per channel). Defaults to 0.

    Returns:
        (h, w, C) (or (h, w) for 2-D input) array of the input dtype.
    """
    m = _as_matrix(mat)
    w, h = _size(output_size, "output_size")
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"`image` must be a non-empty (H, W, C) or (H, W) array. Received shape {img.shape}")
    if img.dtype not in _WARP_DTYPES:
        raise ValueError(f"`image` dtype must be one of uint8, uint16, int16, float16/32/64 (what cv2.warpAffine "
                         f"takes). Received dtype {img.dtype}")
    if img.dtype == np.float16:
        return warp_image(img.astype(np.float32), m, output_size, border_value).astype(np.float16)
    channels = 1 if img.ndim == 2 else img.shape[2]
    bv = np.broadcast_to(np.asarray(border_value, dtype=np.float64).ravel(), (channels,)) \
        if np.size(border_value) in (1, channels) else None
    if bv is None:
        raise ValueError(f"`border_value` must be a scalar or {channels} values. Received: {border_value!r}")
    img = np.ascontiguousarray(img)
    outs = []
    # cv2 handles at most 4 channels per call with a per-channel border value
    for start in range(0, channels, 4):
        chunk = img if img.ndim == 2 else img[:, :, start:start + 4]
        border = tuple(float(v) for v in bv[start:start + 4]) + (0.0,) * 4
        out = cv2.warpAffine(np.ascontiguousarray(chunk), m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=border[:4])
        if img.ndim == 3 and out.ndim == 2:
            out = out[:, :, None]
        outs.append(out)
    return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=2)


def warp_mask(mask, mat, output_size, ignore_value=255) -> np.ndarray:
    """Warps a label mask with nearest-neighbour sampling; pixels from outside the source get ``ignore_value``.

    Args:
        mask: (H, W) integer label array.
        mat: (2, 3) source -> output matrix.
        output_size: (w, h) of the result.
        ignore_value: label written where the output samples outside the source. Defaults to 255.

    Returns:
        (h, w) array of the input dtype (labels are never blended).
    """
    m = _as_matrix(mat)
    w, h = _size(output_size, "output_size")
    mk = np.asarray(mask)
    if mk.ndim == 3 and mk.shape[2] == 1:
        mk = mk[:, :, 0]
    if mk.ndim != 2 or mk.dtype.kind not in "ui" or mk.size == 0:
        raise ValueError(f"`mask` must be a non-empty (H, W) integer array. Received shape {mk.shape}, dtype {mk.dtype}")
    info = np.iinfo(mk.dtype)
    if not info.min <= ignore_value <= info.max:  # the result keeps the mask's dtype: it would wrap around
        raise ValueError(f"`ignore_value` {ignore_value} does not fit the mask's dtype {mk.dtype} "
                         f"([{info.min}, {info.max}])")
    lo, hi = int(min(mk.min(), ignore_value)), int(max(mk.max(), ignore_value))
    # cv2 remaps uint8/uint16/int16/float32 exactly; float32 holds labels up to 2**24 exactly
    if lo >= 0 and hi <= 255:
        work = mk.astype(np.uint8)
    elif lo >= 0 and hi <= 65535:
        work = mk.astype(np.uint16)
    elif lo >= -(2 ** 24) and hi <= 2 ** 24:
        work = mk.astype(np.float32)
    else:
        raise ValueError(f"`mask` labels must lie in [-2**24, 2**24]. Received range [{lo}, {hi}]")
    out = cv2.warpAffine(np.ascontiguousarray(work), m, (w, h), flags=cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=float(ignore_value))
    return out.astype(mk.dtype)


# ----------------------------------------------------------------------------- photometric

def photometric_jitter(image, rng: np.random.Generator, brightness=0.2, contrast=0.2, saturation=0.2,
                       hue=0.0) -> np.ndarray:
    """Random brightness, contrast, saturation and hue change (torchvision ``ColorJitter`` semantics).

    Each factor is drawn uniformly from ``[1 - x, 1 + x]`` (hue shift from ``[-hue, hue]`` of a full
    turn) and applied in the fixed order brightness, contrast, saturation, hue. Each step returns to
    uint8, as torchvision does on uint8 tensors, but rounding (torchvision's ``.to(uint8)`` truncates,
    darkening by half a level per step on average), so brightness and contrast are 256-entry lookup
    tables and saturation one ``cv2.addWeighted``: ~0.2 ms for 256x256x3 instead of ~0.6 ms of
    float32 numpy. Channels are taken as RGB for the luma weights; with BGR input the R/B weights
    swap, which only slightly changes the saturation blend. Grey (H, W) or (H, W, 1) images get
    brightness and contrast only.

    Args:
        image: (H, W, 3), (H, W, 1) or (H, W) uint8 image.
        rng: ``np.random.Generator`` supplying the random factors (one draw per enabled effect).
        brightness, contrast, saturation: jitter strengths in [0, 1]. Default 0.2 each.
        hue: hue jitter strength in [0, 0.5] (fraction of the colour circle). Defaults to 0.

    Returns:
        uint8 image of the same shape.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"`image` must be a uint8 (H, W, 3) or grey image. Received shape {img.shape}, dtype {img.dtype}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy.random.Generator. Received: {type(rng).__name__}")
    for name, v, top in (("brightness", brightness, 1.0), ("contrast", contrast, 1.0),
                         ("saturation", saturation, 1.0), ("hue", hue, 0.5)):
        if not 0.0 <= _finite(v, name) <= top:
            raise ValueError(f"`{name}` must be in [0, {top}]. Received: {name}={v!r}")
    color = img.ndim == 3 and img.shape[2] == 3
    levels = np.arange(256, dtype=np.float32)
    x = np.ascontiguousarray(img)

    def lookup(a, table):  # float32 table -> rounded, clipped uint8 table -> cv2.LUT
        return cv2.LUT(a, np.clip(np.rint(table), 0, 255).astype(np.uint8)).reshape(a.shape)

    if brightness > 0:
        x = lookup(x, levels * np.float32(rng.uniform(1 - brightness, 1 + brightness)))
    if contrast > 0:
        f = rng.uniform(1 - contrast, 1 + contrast)
        means = np.asarray(cv2.mean(x)[:3 if color else 1])  # per-channel means; luma is linear in them
        m = float(means @ np.array([0.299, 0.587, 0.114])) if color else float(means[0])
        x = lookup(x, np.float32(f) * levels + np.float32((1 - f) * m))
    if color and saturation > 0:
        f = rng.uniform(1 - saturation, 1 + saturation)
        gray = cv2.cvtColor(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)  # luma 0.299/0.587/0.114
        x = cv2.addWeighted(x, f, gray, 1 - f, 0.0)  # rounds and saturates to uint8
    if color and hue > 0:
        shift = rng.uniform(-hue, hue)
        hsv = cv2.cvtColor(x.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # float H in [0, 360)
        hsv[:, :, 0] = np.mod(hsv[:, :, 0] + 360.0 * shift, 360.0)
        x = np.clip(np.rint(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0), 0, 255).astype(np.uint8)
    return x if x is not img else x.copy()


# ----------------------------------------------------------------------------- flips

def check_flip_pairs(flip_pairs, num_keypoints: int) -> list[tuple[int, int]]:
    """Validates left/right pairs: 2-tuples of distinct indices in [0, K), each index used once."""
    try:
        pairs = [(int(a), int(b)) for a, b in flip_pairs]
    except (TypeError, ValueError):
        raise ValueError(f"`flip_pairs` must be a sequence of (i, j) index pairs. Received: {flip_pairs!r}") from None
    seen: set[int] = set()
    for a, b in pairs:
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints) or a == b or a in seen or b in seen:
            raise ValueError(f"`flip_pairs` entry ({a}, {b}) is invalid for K={num_keypoints} keypoints: indices "
                             f"must be distinct, in [0, {num_keypoints}) and used once. Received: {flip_pairs!r}")
        seen.update((a, b))
    return pairs


def swap_pairs(array, flip_pairs: Sequence[Sequence[int]], axis: int) -> np.ndarray:
    """Swaps left/right entries along ``axis`` (e.g. the K axis of heatmaps (B, h, w, K), axis=-1).

    Returns:
        A new array with ``array[..., i, ...]`` and ``array[..., j, ...]`` exchanged for each pair.
    """
    a = np.asarray(array)
    if a.ndim == 0:
        raise ValueError("`array` must have at least one axis")
    try:
        ax = int(axis) % a.ndim if -a.ndim <= int(axis) < a.ndim else None
    except (TypeError, ValueError):
        ax = None
    if ax is None:
        raise ValueError(f"`axis` must be in [-{a.ndim}, {a.ndim}) for an array of shape {a.shape}. Received: axis={axis!r}")
    perm = np.arange(a.shape[ax])
    for i, j in check_flip_pairs(flip_pairs, a.shape[ax]):
        perm[i], perm[j] = j, i
    return np.take(a, perm, axis=ax)


def flip_keypoints(keypoints, flip_pairs, image_width) -> np.ndarray:
    """Mirrors keypoints of a horizontally flipped image: ``x -> image_width - 1 - x``, pairs swapped.

    Args:
        keypoints: (K, 2) or (K, 3) (x, y[, v]) in px of an image ``image_width`` px wide; extra
            columns (visibility) move with their keypoint. NaN stays NaN.
        flip_pairs: left/right index pairs, e.g. MPII ``[[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]``.
        image_width: width in px of the image (or heatmap) the coordinates live in.

    Returns:
        float64 (K, D) array; applying it twice gives the input back.
    """
    k = np.array(keypoints, dtype=np.float64, copy=True)
    if k.ndim != 2 or k.shape[1] < 2:
        raise ValueError(f"`keypoints` must have shape (K, 2) or (K, 3). Received shape {k.shape}")
    w = _finite(image_width, "image_width")
    if w <= 0:
        raise ValueError(f"`image_width` must be > 0. Received: image_width={image_width!r}")
    k[:, 0] = w - 1.0 - k[:, 0]
    return swap_pairs(k, flip_pairs, axis=0)


@dataclass(frozen=True)
class Augmentation:
    """Random augmentation settings (all plain numbers, picklable).

    The defaults are :meth:`pose`, HRNet/SimpleBaseline's MPII recipe (``lib/dataset/JointsDataset.py``,
    ``SCALE_FACTOR 0.25``, ``ROT_FACTOR 30``, ``FLIP true``, no colour change); :meth:`segmentation` is
    PSPNet's (hszhao/semseg ``tool/train.py``).

    Attributes:
        scale_range: ``(lo, hi)`` zoom factor range of the crop (>1 zooms in: the crop's side in the
            source is divided by the zoom).
        scale_sampling: ``"normal"`` (HRNet pose recipe): the crop's side is multiplied by
            ``clip(N(1, sf), 1/hi, 1/lo)`` with ``sf = (1/lo - 1/hi) / 2``, so the zoom is its inverse,
            in ``[lo, hi]``; HRNet's ``s * clip(randn() * sf + 1, 1 - sf, 1 + sf)`` with ``sf = 0.25`` is
            ``scale_range=(0.8, 4/3)``. ``"uniform"``: zoom ``U(lo, hi)`` (PSPNet's ``RandScale``).
        rotation: degrees; ``"normal"``: ``clip(N(0, r), -2r, 2r)``, ``"uniform"``: ``U(-r, r)``.
        rotation_sampling: see ``rotation``.
        rotation_prob: probability of rotating at all (HRNet 0.6, semseg's ``RandRotate`` 0.5).
        flip_prob: probability of a horizontal mirror (keypoint pairs are swapped).
        translate: random shift, as a fraction of the crop side (the input's short side), ``U(-t, t)``
            per axis; pose only (segmentation crops at a random position instead).
        blur_prob: probability of semseg's ``RandomGaussianBlur``: ``cv2.GaussianBlur`` 5x5, sigma from
            the size (1.1 px), of the image only (PSPNet 0.5; 0: never).
        brightness, contrast, saturation, hue: :func:`photometric_jitter` (in neither original recipe:
            0 in both presets; e.g. 0.2 each for torchvision-style colour jitter).
    """

    scale_range: tuple = (0.8, 1.0 / 0.75)
    scale_sampling: str = "normal"
    rotation: float = 30.0
    rotation_sampling: str = "normal"
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    translate: float = 0.0
    blur_prob: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self):
        # checked here, not when a batch is drawn: a zoom of 0 or a misspelt sampling name (which fell
        # back to uniform) otherwise surfaced mid-training as a per-sample error, or not at all
        try:
            lo, hi = (float(v) for v in self.scale_range)
        except (TypeError, ValueError):
            lo = hi = math.nan
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            raise ValueError(f"Augmentation: scale_range must be (lo, hi) zoom factors with 0 < lo <= hi. "
                             f"Received: scale_range={self.scale_range!r}")
        object.__setattr__(self, "scale_range", (lo, hi))
        for name in ("scale_sampling", "rotation_sampling"):
            if getattr(self, name) not in ("normal", "uniform"):
                raise ValueError(f"Augmentation: {name} must be 'normal' or 'uniform'. "
                                 f"Received: {name}={getattr(self, name)!r}")
        for name, top in (("rotation", math.inf), ("rotation_prob", 1.0), ("flip_prob", 1.0), ("translate", math.inf),
                          ("blur_prob", 1.0),
                          ("brightness", 1.0), ("contrast", 1.0), ("saturation", 1.0), ("hue", 0.5)):
            v = _finite(getattr(self, name), f"Augmentation.{name}")
            if not 0.0 <= v <= top:
                raise ValueError(f"Augmentation: {name} must be in [0, {top}]. Received: {name}={getattr(self, name)!r}")

    @classmethod
    def pose(cls, **overrides) -> "Augmentation":
        """HRNet/SimpleBaseline MPII recipe: crop side x clip(N(1, 0.25), 0.75, 1.25) (zoom 0.8-1.33),
        rotation clip(N(0, 30), -60, 60) with p=0.6, flip 0.5, no colour change (HRNet pads black;
        :class:`~training.data.HeatmapDataset` pads with its normalisation's mean pixel, black for RGB / 255)."""
        return cls(**overrides)

    @classmethod
    def segmentation(cls, **overrides) -> "Augmentation":
        """PSPNet recipe (semseg): zoom U(0.5, 2.0), rotation U(-10, 10) with p=0.5, 5x5 Gaussian blur with
        p=0.5, flip 0.5, no colour change; :class:`~training.data.SegmentationDataset` pads the image with
        the mean pixel and the labels with ``ignore_label``."""
        base = dict(scale_range=(0.5, 2.0), scale_sampling="uniform", rotation=10.0, rotation_sampling="uniform",
                    rotation_prob=0.5, blur_prob=0.5)
        return cls(**{**base, **overrides})

    @classmethod
    def coerce(cls, value, task: str) -> "Augmentation | None":
        """``None``/``False`` -> no augmentation, ``True`` -> the task preset, a dict -> preset + overrides."""
        if value is None or value is False:
            return None
        if isinstance(value, Augmentation):
            return value
        preset = cls.pose if task == "pose" else cls.segmentation
        if value is True:
            return preset()
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"augment: unknown setting(s) {sorted(unknown)}; known: {list(cls.__dataclass_fields__)}.")
            return preset(**value)
        raise TypeError(f"augment must be None, a bool, a dict or an Augmentation. Received: {value!r:.100}")

    def sample(self, rng: np.random.Generator) -> dict:
        """Draw ``zoom``, ``rotation`` (deg), ``flip``, ``shift`` (fraction) for one sample."""
        lo, hi = self.scale_range
        if self.scale_sampling == "normal":
            # HRNet scales the crop's side (s *= clip(N(1, sf), 1 - sf, 1 + sf)), not the zoom: the zoom
            # is the inverse, so its range [0.8, 1.33] is not symmetric about 1
            s_lo, s_hi = 1.0 / hi, 1.0 / lo
            zoom = 1.0 / float(np.clip(rng.normal(1.0, (s_hi - s_lo) / 2.0), s_lo, s_hi))
        else:
            zoom = float(rng.uniform(lo, hi))
        rot = 0.0
        if self.rotation > 0 and rng.random() < self.rotation_prob:
            if self.rotation_sampling == "normal":
                rot = float(np.clip(rng.normal(0.0, self.rotation), -2 * self.rotation, 2 * self.rotation))
            else:
                rot = float(rng.uniform(-self.rotation, self.rotation))
        flip = bool(rng.random() < self.flip_prob)
        shift = rng.uniform(-self.translate, self.translate, size=2) if self.translate > 0 else np.zeros(2)
        return {"zoom": zoom, "rotation": rot, "flip": flip, "shift": shift}

    def jitter(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The photometric part on a warped crop: blur (``blur_prob``), then colour jitter."""
        if self.blur_prob > 0 and rng.random() < self.blur_prob:
            image = cv2.GaussianBlur(image, (5, 5), 0)  # semseg RandomGaussianBlur(radius=5)
        if self.brightness or self.contrast or self.saturation or self.hue:
            return photometric_jitter(image, rng, self.brightness, self.contrast, self.saturation, self.hue)
        return image
