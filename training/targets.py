"""Training targets: Gaussian heatmaps (encode/decode), CPM centre maps, segmentation masks, flip test.

Pure numpy + OpenCV; no Keras here, so the functions run inside ``PyDataset`` workers.

Note:
    Coordinates are 0-based float (x, y) pixels with OpenCV pixel centres (pixel ``[r, c]`` is at
    ``x=c, y=r``). Sizes are ``(w, h)`` tuples, arrays ``(H, W, ...)``. B = batch, K = keypoints,
    ``(h, w)`` = heatmap size. Heatmap px and input px are related by the MSRA/HRNet convention
    ``x_hm = x_in / stride`` (``stride = input_w / heatmap_w``), which is why :func:`flip_test`
    shifts the flipped heatmap right by ``1 - 1/stride`` px by default. Weights trained otherwise
    put heatmap pixel ``g`` at input px ``g * stride + offset`` (``WeightsRecord.heatmap_offset``:
    CPM's Caffe targets 3.5 at stride 8, the hourglass release 1.5 at stride 4); :class:`HeatmapCodec`
    and :func:`flip_test` take that ``offset``. sigma is in heatmap px.

.. _Dark Pose: https://arxiv.org/abs/1910.06278
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from training.affine import _size, check_flip_pairs, invert, swap_pairs, transform_points

__all__ = [
    "encode_heatmaps", "decode_heatmaps", "HeatmapCodec", "cpm_center_map", "encode_mask",
    "flip_test", "keypoints_to_image",
]

_REFINE = ("quarter", "dark", None)


def _check_offset(offset, what="offset") -> float:
    ok = isinstance(offset, (int, float, np.integer, np.floating)) and not isinstance(offset, (bool, np.bool_))
    if not (ok and math.isfinite(offset)):
        raise ValueError(f"`{what}` must be a finite number (input px where heatmap pixel 0's centre lies; 0.0 = "
                         f"x_hm = x_in / stride). Received: {what}={offset!r}")
    return float(offset)


def _check_sigma(sigma) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        s = float("nan")
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"`sigma` must be a finite number > 0 (heatmap px). Received: sigma={sigma!r}")
    return s


# ----------------------------------------------------------------------------- encode

def encode_heatmaps(keypoints, visible, heatmap_size, sigma=2.0, *, subpixel=True):
    """Draws one unnormalised Gaussian (peak 1) per keypoint, cut to a 3-sigma window.

    ``g(x, y) = exp(-((x - mx)^2 + (y - my)^2) / (2 sigma^2))`` on the integer pixels within
    ``r = ceil(3 sigma)`` of the rounded centre ``c = floor(m + 0.5)`` (3-sigma rule, as MSRA/MMPose).
    ``subpixel=True`` centres the Gaussian on the float keypoint ``m`` (no quantisation, the peak
    value is then < 1 off-grid); ``subpixel=False`` centres it on ``c`` (MSRA/HRNet targets).

    Args:
        keypoints: (K, 2) (x, y) in heatmap px; a (K, 3) array has its third column ignored.
        visible: (K,) bool or 0/1: annotated joints (occluded-but-annotated joints should be 1).
        heatmap_size: (w, h) of the heatmap.
        sigma: Gaussian standard deviation in heatmap px. Defaults to 2.0 (MPII at 64x64).
        subpixel: centre on the float position instead of the rounded pixel. Defaults to True.

    Returns:
        tuple:
        - heatmaps: (h, w, K) float32 in [0, 1]; all zero for weight-0 joints.
        - weights: (K,) float32, 1 for visible joints whose window meets the map, else 0
          (not visible, NaN/inf coordinates, or window entirely outside). Never NaN.
    """
    w, h = _size(heatmap_size, "heatmap_size")
    s = _check_sigma(sigma)
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 2 or kp.shape[1] not in (2, 3):
        raise ValueError(f"`keypoints` must have shape (K, 2) in heatmap px. Received shape {kp.shape}")
    kp = kp[:, :2]
    k = kp.shape[0]
    vis = np.asarray(visible)
    if vis.shape != (k,):
        raise ValueError(f"`visible` must have shape (K,) = ({k},) to match `keypoints`. Received shape {vis.shape}")
    if vis.dtype.kind not in "biuf":
        raise ValueError(f"`visible` must be bool or 0/1 numbers. Received dtype {vis.dtype}")
    r = int(math.ceil(3.0 * s))
    finite = np.all(np.isfinite(kp), axis=1)
    safe = np.where(finite[:, None], kp, 0.0)
    centre = np.floor(safe + 0.5)  # stays float: no int overflow for huge coordinates
    inside = ((centre[:, 0] + r >= 0) & (centre[:, 0] - r <= w - 1)
              & (centre[:, 1] + r >= 0) & (centre[:, 1] - r <= h - 1))
    weights = ((np.nan_to_num(vis.astype(np.float64)) > 0.5) & finite & inside).astype(np.float32)

    # weight-0 joints are drawn nowhere; park them at 0 so huge coordinates cannot overflow below
    on = weights[:, None] > 0
    centre = np.where(on, centre, 0.0)
    mu = np.where(on, safe if subpixel else centre, 0.0)
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    # separable Gaussian: (K, w) x (K, h), each factor zeroed outside the window
    gx = np.exp(-((xs[None] - mu[:, :1]) ** 2) / (2 * s * s)) * (np.abs(xs[None] - centre[:, :1]) <= r)
    gy = np.exp(-((ys[None] - mu[:, 1:]) ** 2) / (2 * s * s)) * (np.abs(ys[None] - centre[:, 1:]) <= r)
    gx *= weights[:, None]
    heatmaps = np.einsum("ky,kx->yxk", gy, gx).astype(np.float32)
    return heatmaps, weights


# ----------------------------------------------------------------------------- decode

def _dark_kernel(sigma: float) -> int:
    # MMPose/DARK: sigma 2 -> 11, sigma 3 -> 17 (odd)
    return max(3, int((sigma * 20 - 7) // 3) | 1)


def _refine_dark(hm: np.ndarray, coords: np.ndarray, maxvals: np.ndarray, sigma: float) -> np.ndarray:
    """DARK: second-order Taylor step on the log of the blurred heatmap at the integer maximum."""
    b, h, w, k = hm.shape
    ksize = _dark_kernel(sigma)
    out = coords.copy()
    for i in range(b):
        src = np.ascontiguousarray(hm[i], dtype=np.float32)
        # zero border (MMPose pads with zeros): the default mirrored border pulls peaks near the edge inward
        blur = cv2.GaussianBlur(src, (ksize, ksize), 0, borderType=cv2.BORDER_CONSTANT)
        if blur.ndim == 2:
            blur = blur[:, :, None]
        bmax = blur.reshape(-1, k).max(axis=0)
        # rescale each blurred map back to its original maximum (DARK modulation)
        blur = blur * np.where(bmax > 0, maxvals[i] / np.where(bmax > 0, bmax, 1), 0)[None, None]
        logm = np.log(np.maximum(blur.astype(np.float64), 1e-10))
        for j in range(k):
            x, y = int(coords[i, j, 0]), int(coords[i, j, 1])
            if maxvals[i, j] <= 0 or not (1 < x < w - 2 and 1 < y < h - 2):
                continue
            m = logm[:, :, j]
            dx = 0.5 * (m[y, x + 1] - m[y, x - 1])
            dy = 0.5 * (m[y + 1, x] - m[y - 1, x])
            dxx = 0.25 * (m[y, x + 2] - 2 * m[y, x] + m[y, x - 2])
            dyy = 0.25 * (m[y + 2, x] - 2 * m[y, x] + m[y - 2, x])
            dxy = 0.25 * (m[y + 1, x + 1] - m[y - 1, x + 1] - m[y + 1, x - 1] + m[y - 1, x - 1])
            det = dxx * dyy - dxy * dxy
            # a Newton step only makes sense at a true maximum (negative-definite Hessian)
            if not (dxx < 0 and det > 1e-12):
                continue
            off = -np.array([dyy * dx - dxy * dy, dxx * dy - dxy * dx]) / det
            if np.all(np.isfinite(off)) and np.all(np.abs(off) <= 1.0):
                out[i, j] += off
    return out


def decode_heatmaps(heatmaps, *, refine="quarter", sigma=2.0):
    """Finds each joint's maximum and refines it to sub-pixel precision.

    Args:
        heatmaps: (B, h, w, K) or (h, w, K) array (numpy, or anything ``np.asarray`` accepts).
        refine: ``"quarter"`` (move 0.25 px towards the higher neighbour, on each axis where that
            axis' two neighbours exist, as MMPose's ``refine_keypoints``; pose-hg-train and HRNet
            refine only a peak with neighbours on both axes, so a peak on a border row or column
            keeps its other coordinate's 0.25 px here and not there),
            ``"dark"`` (Taylor expansion of the log of the Gaussian-blurred map, `Dark Pose`_) or None
            (integer argmax). Defaults to ``"quarter"``.
        sigma: target sigma in heatmap px, only used by ``"dark"`` for its blur kernel
            (``k = (20 sigma - 7) // 3``, odd: 11 for sigma 2). Defaults to 2.0.

    Returns:
        tuple:
        - keypoints: (B, K, 2) or (K, 2) float64 (x, y) in heatmap px; joints whose maximum is
          ``<= 0`` (or not finite) get ``(-1, -1)``.
        - scores: (B, K) or (K,) float32 heatmap maximum (0 where not finite).
    """
    if refine not in _REFINE:
        raise ValueError(f"`refine` must be one of {_REFINE}. Received: refine={refine!r}")
    s = _check_sigma(sigma)
    hm = np.asarray(heatmaps)
    single = hm.ndim == 3
    if single:
        hm = hm[None]
    if hm.ndim != 4 or 0 in hm.shape:
        raise ValueError(f"`heatmaps` must have shape (B, h, w, K) or (h, w, K). Received shape {np.shape(heatmaps)}")
    hm = np.nan_to_num(hm.astype(np.float32), nan=-np.inf, posinf=np.finfo(np.float32).max, neginf=-np.inf)
    b, h, w, k = hm.shape
    flat = hm.reshape(b, h * w, k)
    idx = flat.argmax(axis=1)  # (B, K), first maximum on ties
    maxvals = np.take_along_axis(flat, idx[:, None], axis=1)[:, 0]
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float64)
    valid = np.isfinite(maxvals) & (maxvals > 0)
    if refine == "quarter":
        bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing="ij")
        x, y = coords[..., 0].astype(int), coords[..., 1].astype(int)
        okx = (x > 0) & (x < w - 1)
        oky = (y > 0) & (y < h - 1)
        xr, xl = np.minimum(x + 1, w - 1), np.maximum(x - 1, 0)
        yd, yu = np.minimum(y + 1, h - 1), np.maximum(y - 1, 0)
        with np.errstate(invalid="ignore"):  # -inf - -inf where NaN maps were masked
            diff_x = hm[bi, y, xr, ki] - hm[bi, y, xl, ki]
            diff_y = hm[bi, yd, x, ki] - hm[bi, yu, x, ki]
        coords[..., 0] += 0.25 * np.sign(np.nan_to_num(diff_x)) * okx
        coords[..., 1] += 0.25 * np.sign(np.nan_to_num(diff_y)) * oky
    elif refine == "dark":
        coords = _refine_dark(np.where(np.isfinite(hm), hm, 0.0), coords, np.where(valid, maxvals, 0.0), s)
    coords[~valid] = -1.0
    scores = np.where(np.isfinite(maxvals), maxvals, 0.0).astype(np.float32)
    if single:
        return coords[0], scores[0]
    return coords, scores


class HeatmapCodec:
    """Input-pixel keypoints <-> heatmaps for one model geometry (stores configuration only).

    Args:
        input_size: (w, h) of the network input in px.
        heatmap_size: (w, h) of the output heatmaps; the stride ``input / heatmap`` must be the same
            on both axes (e.g. 256x256 -> 64x64, 368x368 -> 46x46).
        sigma: Gaussian sigma in heatmap px. Defaults to 2.0.
        refine: decoding refinement, see :func:`decode_heatmaps`. Defaults to ``"quarter"``.
        subpixel: see :func:`encode_heatmaps`. Defaults to True.
        offset: input px where heatmap pixel 0's centre lies: ``x_in = x_hm * stride + offset``.
            Defaults to 0.0 (``x_hm = x_in / stride``); a release's own is its
            ``WeightsRecord.heatmap_offset`` (CPM: ``stride / 2 - 0.5`` = 3.5).

    Attributes:
        stride: float, input px per heatmap px.
        offset: float, input px (see ``offset``).
    """

    def __init__(self, input_size, heatmap_size, sigma=2.0, refine="quarter", *, subpixel=True, offset=0.0):
        self.input_size = _size(input_size, "input_size")
        self.heatmap_size = _size(heatmap_size, "heatmap_size")
        self.sigma = _check_sigma(sigma)
        if refine not in _REFINE:
            raise ValueError(f"`refine` must be one of {_REFINE}. Received: refine={refine!r}")
        self.refine = refine
        self.subpixel = bool(subpixel)
        sx = self.input_size[0] / self.heatmap_size[0]
        sy = self.input_size[1] / self.heatmap_size[1]
        if not math.isclose(sx, sy, rel_tol=1e-9):
            raise ValueError(f"input_size {self.input_size} and heatmap_size {self.heatmap_size} give different "
                             f"strides on x ({sx}) and y ({sy}); use the same stride on both axes")
        self.stride = float(sx)
        self.offset = _check_offset(offset)

    def encode(self, keypoints, visible):
        """(K, 2) input-px keypoints -> ((h, w, K) float32 heatmaps, (K,) float32 weights).

        The Gaussians are drawn at ``x_hm = (x_in - offset) / stride``.
        """
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.ndim != 2 or kp.shape[1] not in (2, 3):
            raise ValueError(f"`keypoints` must have shape (K, 2) in input px. Received shape {kp.shape}")
        return encode_heatmaps((kp[:, :2] - self.offset) / self.stride, visible, self.heatmap_size, self.sigma,
                               subpixel=self.subpixel)

    def decode(self, heatmaps):
        """(B, h, w, K) or (h, w, K) heatmaps -> (keypoints (..., K, 2) in input px, scores (..., K)).

        ``x_in = x_hm * stride + offset``. Joints with no positive maximum keep the marker ``(-1, -1)``.
        """
        kp, scores = decode_heatmaps(heatmaps, refine=self.refine, sigma=self.sigma)
        return np.where(kp == -1.0, -1.0, kp * self.stride + self.offset), scores

    def __repr__(self):
        return (f"HeatmapCodec(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
                f"sigma={self.sigma}, refine={self.refine!r}, offset={self.offset})")


# ----------------------------------------------------------------------------- other targets

def cpm_center_map(size, center, sigma=21.0) -> np.ndarray:
    """CPM's person-centre prior: ``exp(-|p - center|^2 / (2 sigma^2))`` on the pixel grid.

    Args:
        size: (w, h) of the map in px (CPM: the 368x368 input).
        center: (x, y) person centre in the same px.
        sigma: standard deviation in px. Defaults to 21.0 (CPM release).

    Returns:
        (h, w, 1) float32 map with peak 1 at ``center``.
    """
    w, h = _size(size, "size")
    s = _check_sigma(sigma)
    try:
        cx, cy = (float(v) for v in center)
    except (TypeError, ValueError):
        raise ValueError(f"`center` must be an (x, y) pair. Received: center={center!r}") from None
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ValueError(f"`center` must be finite. Received: center={center!r}")
    gx = np.exp(-((np.arange(w) - cx) ** 2) / (2 * s * s))
    gy = np.exp(-((np.arange(h) - cy) ** 2) / (2 * s * s))
    return (gy[:, None] * gx[None, :])[:, :, None].astype(np.float32)


def encode_mask(mask, num_classes, ignore_label=255) -> np.ndarray:
    """Segmentation target: labels outside ``[0, num_classes)`` become ``ignore_label``.

    Args:
        mask: (H, W) integer labels (e.g. a VOC palette PNG's indices, 255 = border/void).
        num_classes: number of real classes C.
        ignore_label: label for ignored pixels. Defaults to 255.

    Returns:
        (H, W) int32.
    """
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2 or m.dtype.kind not in "ui":
        raise ValueError(f"`mask` must be an (H, W) integer array. Received shape {m.shape}, dtype {m.dtype}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}")
    m = m.astype(np.int64)
    return np.where((m >= 0) & (m < num_classes), m, int(ignore_label)).astype(np.int32)


def scores_to_image(scores, label_matrix, image_shape, rows_per_chunk=256):
    """Class scores on a dataset's label grid, resampled onto the original image (bilinear).

    FCN and PSPNet score at the original resolution: their score maps are upsampled to the image,
    then the argmax is taken. Here the grid is the letterboxed crop, so each image pixel ``(x, y)``
    reads the grid at ``label_matrix @ (x, y, 1)`` (clamped to the grid's edge).

    Args:
        scores: ``(lh, lw, C)`` scores (logits or probabilities) on the label grid.
        label_matrix: ``(2, 3)`` original image -> label grid (``grid_matrix``, ``SegmentationDataset.label_matrix``).
        image_shape: ``(H, W)`` of the original image.
    Returns:
        ``(H, W, C)`` float32 scores; NaN scores spread to their bilinear neighbours.
    """
    scores = np.asarray(scores, np.float32)
    lh, lw, c = scores.shape
    h, w = int(image_shape[0]), int(image_shape[1])
    out = np.empty((h, w, c), np.float32)
    m = np.asarray(label_matrix, np.float64)
    xs = np.arange(w, dtype=np.float64)
    for top in range(0, h, rows_per_chunk):  # bounded memory for 2048 x 1024 images
        ys = np.arange(top, min(top + rows_per_chunk, h), dtype=np.float64)[:, None]
        u = np.clip(m[0, 0] * xs + m[0, 1] * ys + m[0, 2], 0, lw - 1)
        v = np.clip(m[1, 0] * xs + m[1, 1] * ys + m[1, 2], 0, lh - 1)
        x0, y0 = np.floor(u).astype(np.intp), np.floor(v).astype(np.intp)
        x1, y1 = np.minimum(x0 + 1, lw - 1), np.minimum(y0 + 1, lh - 1)
        fx, fy = (u - x0).astype(np.float32)[..., None], (v - y0).astype(np.float32)[..., None]
        out[top:top + len(ys)] = ((scores[y0, x0] * (1 - fx) + scores[y0, x1] * fx) * (1 - fy)
                                  + (scores[y1, x0] * (1 - fx) + scores[y1, x1] * fx) * fy)
    return out


def labels_from_scores(scores) -> np.ndarray:
    """``(..., C)`` class scores -> ``(...)`` labels by argmax, a NaN score never winning (as ``MeanIoUMetric``:
    TensorFlow's argmax skips NaN, NumPy's picks it)."""
    s = np.asarray(scores)
    return np.where(np.isnan(s), -np.inf, s).argmax(-1)


def flip_test(predict_fn, images, flip_pairs, shift="exact", *, offset=0.0, stride=None) -> np.ndarray:
    """Test-time flip averaging: ``0.5 * (f(x) + shift(swap(flip(f(flip(x))))))``.

    Where the flipped-back map lies: with heatmap pixel ``g`` at input px ``s g + o`` (stride ``s``,
    ``offset`` ``o``), a joint at input px ``x`` peaks at ``(x - o) / s``. Mirrored (input width
    ``W = s w``) it is at ``W - 1 - x`` and peaks at ``(W - 1 - x - o) / s``; flipping the map back
    (``g -> w - 1 - g``) puts that peak at ``(x + o + 1) / s - 1``, which is ``(s - 1 - 2 o) / s`` heatmap px
    left of ``(x - o) / s``. So: ``1 - 1/s`` for ``o = 0`` (0.75 at stride 4), none for centred cells
    ``o = (s - 1) / 2`` (CPM: 3.5 at stride 8; the hourglass release's 1.5 at stride 4, whose pose-hg-train
    averages the mirror unshifted), ``-0.25`` (a move left) for ``o = 2`` at stride 4. A model that takes any
    width ``W`` not a multiple of its stride (``w = ceil(W / s)`` maps: pixel ``g`` still at ``s g + o``) needs
    ``(W - s w + s - 1 - 2 o) / s``: give it ``stride``.

    Args:
        predict_fn: callable (B, H, W, 3) -> (B, h, w, K) heatmaps (e.g. ``model.predict``); if it
            returns a list/tuple (one output per stack) the last element is used.
        images: (B, H, W, 3) batch.
        flip_pairs: left/right keypoint index pairs.
        shift: how far to move the flipped-back heatmap right, in heatmap px. ``"exact"`` (default)
            moves it by ``(s - 1 - 2 offset) / s`` (above; s = input width / heatmap width),
            interpolating linearly between columns (the edge column repeats itself); ``True`` by one
            whole pixel as HRNet's ``SHIFT_HEATMAP`` (which leaves ``+1/(2 stride)`` px of bias after
            averaging at offset 0: 0.125 at stride 4, 0.5 at stride 1); ``False`` not at all (UDP
            targets, the hg-train recipe).
        offset: input px where heatmap pixel 0's centre lies (``WeightsRecord.heatmap_offset``),
            used by ``shift="exact"``. Defaults to 0.0 (``x_hm = x_in / stride``).
        stride: input px per heatmap px across, used by ``shift="exact"``: ``None`` (default) the input width /
            the heatmap width (training's); the model's own integer stride where its input width is not a
            multiple of it (:func:`training.inference.predict` on an image of its own size).

    Returns:
        (B, h, w, K) float32 averaged heatmaps.
    """
    offset = _check_offset(offset)
    if stride is not None:
        ok = isinstance(stride, (int, float, np.integer, np.floating)) and not isinstance(stride, (bool, np.bool_))
        if not (ok and math.isfinite(stride) and stride > 0):
            raise ValueError(f"`stride` must be a finite number > 0 (input px per heatmap px), or None for the input "
                             f"width / the heatmap width. Received: stride={stride!r}")
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"`images` must have shape (B, H, W, C). Received shape {x.shape}")

    def run(batch):
        out = predict_fn(batch)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 4 or out.shape[0] != x.shape[0]:
            raise ValueError(f"`predict_fn` must return (B, h, w, K) heatmaps with B={x.shape[0]}. "
                             f"Received shape {out.shape}")
        return out

    base = run(x)
    check_flip_pairs(flip_pairs, base.shape[-1])
    back = swap_pairs(run(np.ascontiguousarray(x[:, :, ::-1]))[:, :, ::-1], flip_pairs, axis=-1)
    if isinstance(shift, str):
        if shift != "exact":
            raise ValueError(f"`shift` must be 'exact', True or False. Received: shift={shift!r}")
        s = x.shape[2] / base.shape[2] if stride is None else float(stride)
        f = (s - 1.0 - 2.0 * offset) / s
        if stride is not None:  # the mirrored input's px W - 1 - x lies at map px (W - 1 - x - o) / s; flipped back
            # (g -> w - 1 - g) it is (W - s w + s - 1 - 2 o) / s left of (x - o) / s
            f += (x.shape[2] - s * base.shape[2]) / s
    else:
        f = 1.0 if shift else 0.0
    if f != 0:  # out[g] = back[g - f], linear between columns, the edge columns repeating themselves
        w = back.shape[2]
        pos = np.arange(w) - f
        i0 = np.floor(pos)
        t = (pos - i0).astype(np.float32)[None, None, :, None]
        lo = np.clip(i0, 0, w - 1).astype(np.intp)
        hi = np.clip(i0 + 1, 0, w - 1).astype(np.intp)
        back = (1.0 - t) * back[:, :, lo] + t * back[:, :, hi]
    return (0.5 * (base + back)).astype(np.float32)


def keypoints_to_image(keypoints_input_px, mat) -> np.ndarray:
    """Maps keypoints from the network input (crop) back to the original image via ``invert(mat)``.

    Args:
        keypoints_input_px: (..., K, 2) (x, y) in input px (e.g. ``HeatmapCodec.decode`` output).
        mat: the (2, 3) original -> input matrix used to make the crop (:func:`affine_matrix`).

    Returns:
        (..., K, 2) float64 in original-image px. The decode marker ``(-1, -1)`` is not special-cased;
        use the scores to drop such joints.
    """
    return transform_points(keypoints_input_px, invert(mat))
