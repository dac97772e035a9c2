"""Affine crop geometry (numpy + OpenCV): source -> crop matrices, image/mask warps, point transforms and
left/right keypoint flips; :mod:`training.transforms` builds its random augmentation on these.

Every geometric step is a 2x3 affine matrix in OpenCV's convention, so a whole augmentation chain
(crop, scale, rotation, shear, translation, flip) is one matrix and one ``cv2.warpAffine`` call, and
keypoints follow the image exactly through :func:`transform_points`.

Note:
    Coordinates are 0-based float pixel coordinates in (x, y) order with OpenCV pixel centres: the
    centre of pixel ``[row, col]`` is ``(x=col, y=row)``; the image covers ``[-0.5, W-0.5]``.
    Sizes are ``(w, h)`` tuples while arrays are ``(H, W, ...)``. K = number of keypoints.
    Angles are in degrees.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "affine_matrix", "compose", "invert", "grid_matrix", "warp_image", "warp_mask", "transform_points",
    "flip_keypoints", "swap_pairs", "check_flip_pairs",
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


def letterbox_matrix(image_shape, side, output_size) -> np.ndarray:
    """The whole image centred in ``output_size``, ``side`` source px across its width (:func:`affine_matrix`).

    At scale 1 (``side`` equal to the output width: the image copied, not resampled) the offset is whole pixels,
    the smaller half of the padding before the image as semseg's ``Crop`` pads (``int(pad / 2)``): the centred
    ``pad / 2`` of an odd padding put every output row between two image rows (a 500x375 VOC image in FCN's 500x500
    input: 62.5 px down, each row the mean of two and the labels 0.5 px away from them).

    Args:
        image_shape: ``(H, W, ...)`` of the source image.
        side: source px mapped onto the output's width.
        output_size: ``(w, h)``.
    """
    h_img, w_img = image_shape[:2]
    mat = affine_matrix(((w_img - 1) / 2.0, (h_img - 1) / 2.0), side, output_size)
    if side == _size(output_size, "output_size")[0]:
        mat[:, 2] = np.floor(mat[:, 2])  # (out - in) / 2 -> int((out - in) / 2); already whole when even
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
