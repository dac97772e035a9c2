"""Pictures of keypoints, heatmaps, masks and training curves, drawn with OpenCV (no matplotlib).

All functions return RGB ``uint8`` images ``(H, W, 3)`` and take RGB ones, or grey, RGBA, 16-bit or
float pictures converted as :func:`predict` converts them; coordinates are (x, y) pixels of the image
drawn on, pixel centres at integer coordinates.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "MPII_SKELETON",
    "LSP_SKELETON",
    "CPM_SKELETON",
    "hue_colors",
    "voc_palette",
    "draw_keypoints",
    "heatmap_grid",
    "mask_overlay",
    "training_curve",
    "write_png",
    "predict",
    "predict_overlay",
    "Prediction",
    "resize_nearest",
]

# MPII joint order: r-ank, r-kne, r-hip, l-hip, l-kne, l-ank, pelvis, thorax, upper-neck, head-top,
# r-wri, r-elb, r-sho, l-sho, l-elb, l-wri.
MPII_SKELETON = ((0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
                 (10, 11), (11, 12), (12, 7), (13, 7), (13, 14), (14, 15))
# LSP: r-ank, r-kne, r-hip, l-hip, l-kne, l-ank, r-wri, r-elb, r-sho, l-sho, l-elb, l-wri, neck, head-top.
LSP_SKELETON = ((0, 1), (1, 2), (3, 4), (4, 5), (2, 8), (3, 9), (6, 7), (7, 8), (9, 10), (10, 11),
                (8, 12), (9, 12), (12, 13))
# The CPM release's 14 parts (zoo.releases.CPM_PARTS): head, neck, r-sho, r-elb, r-wri, l-sho, l-elb, l-wri,
# r-hip, r-kne, r-ank, l-hip, l-kne, l-ank. The same limbs as LSP's, in another joint order.
CPM_SKELETON = ((0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (2, 8), (8, 9), (9, 10), (5, 11),
                (11, 12), (12, 13))


def hue_colors(k: int) -> np.ndarray:
    """``(k, 3)`` uint8 RGB colours evenly spread over the hue circle: drawn keypoints, curves.

    Not the palette the synthetic figures are painted with
    (:func:`training.datasets.synthetic.figure_joint_colors`).
    """
    hsv = np.stack([np.linspace(0, 179, k, endpoint=False), np.full(k, 220), np.full(k, 255)], -1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map, ``(n, 3)`` uint8 RGB (class 0 black, 255 = ignore is cream)."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def draw_keypoints(image, keypoints, visible=None, skeleton=None, *, color=None, radius=None, thickness=None):
    """Draw keypoints ``(K, 2)`` and skeleton edges on a copy of ``image``.

    Positions are drawn to 1/16 px (OpenCV's fixed-point ``shift``), anti-aliased: pixel centres are
    at integer coordinates, so a keypoint at x = 10.5 lies between pixels 10 and 11 (not rounded).

    Args:
        image: ``(H, W, 3)`` RGB; grey, RGBA, 16-bit and float images are converted as :func:`predict`'s.
        keypoints: ``(K, 2)`` (x, y) in image pixels; NaN/inf ones are not drawn.
        visible: ``(K,)`` booleans; hidden joints and their edges are not drawn.
        skeleton: pairs of joint indices; defaults to MPII's for K=16, LSP's for K=14, else none.
        color: one RGB colour for all (e.g. ground truth in white); default per-joint colours
            (:func:`hue_colors` of K: the same joint has the same colour in every picture).
    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    img = _rgb_uint8(image).copy()
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    k = len(kp)
    vis = np.ones(k, bool) if visible is None else np.asarray(visible).astype(bool).reshape(-1)
    if len(vis) != k:
        raise ValueError(f"draw_keypoints: visible has {len(vis)} values for {k} keypoints")
    if k == 0:
        return img
    vis &= (np.abs(kp) < 2 ** 26).all(axis=1)  # NaN, inf, or past OpenCV's int32 in 1/16 px: not drawn
    if skeleton is None:
        skeleton = MPII_SKELETON if k == 16 else LSP_SKELETON if k == 14 else ()
    colors = hue_colors(k) if color is None else np.tile(np.asarray(color, np.uint8), (k, 1))
    scale = max(img.shape[:2]) / 256.0
    radius = radius or max(1, int(round(3 * scale)))
    thickness = thickness or max(1, int(round(2 * scale)))
    fixed = np.round(np.where(vis[:, None], kp, 0.0) * 16).astype(np.int64)  # OpenCV's shift=4 fixed point

    def at(j):
        return int(fixed[j, 0]), int(fixed[j, 1])

    for a, b in skeleton:
        if a < k and b < k and vis[a] and vis[b]:
            cv2.line(img, at(a), at(b), tuple(int(c) for c in colors[b]), thickness, cv2.LINE_AA, 4)
    for j in range(k):
        if vis[j]:
            cv2.circle(img, at(j), int(round(radius * 16)), tuple(int(c) for c in colors[j]), -1, cv2.LINE_AA, 4)
    return img


def heatmap_grid(heatmaps, image=None, *, cols=None, cell=96, names=None):
    """Tile heatmaps ``(h, w, K)`` into one picture, optionally blended over a resized ``image``.

    Each map is shown on the targets' scale: values clipped to [0, 1] (not rescaled per map, so a
    weak prediction looks weak), NaN as 0. ``image``: any picture :func:`write_png` takes.
    Returns ``(rows * cell, cols * cell, 3)`` uint8 RGB, maps in row-major order.
    """
    hm = np.asarray(heatmaps, np.float32)
    if hm.ndim != 3 or 0 in hm.shape:
        raise ValueError(f"heatmap_grid: heatmaps must be a non-empty (h, w, K) array. Received shape {hm.shape}")
    hm = np.nan_to_num(hm, nan=0.0, posinf=1.0, neginf=0.0)  # NaN cast to uint8 is undefined (was a warning)
    k = hm.shape[-1]
    cols = cols or int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    grid = np.zeros((rows * cell, cols * cell, 3), np.uint8)
    base = None if image is None else cv2.resize(_rgb_uint8(image), (cell, cell))
    for j in range(k):
        m = cv2.resize(np.clip(hm[..., j], 0, 1), (cell, cell), interpolation=cv2.INTER_LINEAR)
        colored = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        if base is not None:
            colored = cv2.addWeighted(base, 0.4, colored, 0.6, 0)
        if names is not None and j < len(names):
            cv2.putText(colored, str(names[j])[:12], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        (255, 255, 255), 1, cv2.LINE_AA)
        r, c = divmod(j, cols)
        grid[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = colored
    return grid


def mask_overlay(image, mask, *, alpha=0.5, palette=None, ignore_label=255, background=0):
    """Blend a class mask ``(H, W)`` over ``image`` with the VOC palette (rounded to the nearest value).

    Pixels of ``ignore_label``, of ``background`` (VOC's class 0; ``None``: coloured like the others,
    e.g. Cityscapes' class 0 is road) and of labels outside the palette (negative, NaN) are left as
    they are. ``image``: any picture :func:`write_png` takes; returns ``(H, W, 3)`` uint8 RGB.
    """
    img = _rgb_uint8(image)
    raw = np.asarray(mask)
    if raw.shape != img.shape[:2]:
        raise ValueError(f"mask_overlay: mask of shape {raw.shape} does not match the image's {img.shape[:2]} (H, W)")
    pal = voc_palette() if palette is None else np.asarray(palette, np.uint8)
    m = np.where(np.isfinite(raw), raw, -1).astype(np.int64) if raw.dtype.kind == "f" else raw.astype(np.int64)
    colored = pal[np.clip(m, 0, len(pal) - 1)]
    out = np.round(img * (1 - alpha) + colored * alpha).astype(np.uint8)  # was truncated (75.75 -> 75)
    keep = (m == ignore_label) | (m < 0) | (m >= len(pal))  # -1 was blended with class 0's black
    if background is not None:
        keep |= m == background
    out[keep] = img[keep]
    return out


def training_curve(csv_path, *, keys=None, size=(480, 320)):
    """Plot columns of a Keras ``CSVLogger`` file against epoch (row); returns an RGB image.

    Each series is min-max normalised to the plot height over its finite values; the legend gives
    its first and last finite value. Missing, empty, non-numeric and non-finite cells (a column
    added on resume, a NaN loss) leave a gap in the line; a column with no finite value is not drawn.
    """
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_path}: no rows to plot")
    keys = keys or [k for k in rows[0] if k != "epoch"]
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    pad = 40
    cv2.rectangle(img, (pad, 10), (w - 10, h - pad), (0, 0, 0), 1)
    colors = hue_colors(max(len(keys), 1))
    n = len(rows)
    for i, key in enumerate(keys):
        ys = np.array([_number(r.get(key)) for r in rows])
        ok = np.isfinite(ys)
        if not ok.any():
            continue
        lo, hi = float(ys[ok].min()), float(ys[ok].max())
        span = hi - lo or 1.0
        xs = pad + (np.arange(n) / max(n - 1, 1)) * (w - 10 - pad)
        yy = (h - pad) - (np.where(ok, ys, lo) - lo) / span * (h - pad - 10)
        pts = np.stack([xs, yy], 1).round().astype(np.int32)
        color = tuple(int(c) for c in colors[i])
        # one polyline per run of finite values (a NaN made int32 garbage coordinates, a missing cell a crash)
        edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
        for a, b in zip(edges[::2], edges[1::2]):
            if b - a == 1:
                cv2.circle(img, tuple(int(v) for v in pts[a]), 2, color, -1, cv2.LINE_AA)
            else:
                cv2.polylines(img, [pts[a:b]], False, color, 2, cv2.LINE_AA)
        first, last = ys[ok][0], ys[ok][-1]
        cv2.putText(img, f"{key}: {first:.3g} -> {last:.3g}", (pad + 5, h - pad - 10 - 14 * (len(keys) - 1 - i)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    cv2.putText(img, f"epoch 0..{n - 1}", (pad, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def _number(cell) -> float:
    """A CSV cell as a float; NaN for a missing (``None``), empty or non-numeric one."""
    try:
        return float(cell)
    except (TypeError, ValueError):
        return float("nan")


def resize_nearest(image, factor: int):
    """Enlarge ``image`` by an integer ``factor`` without smoothing (pixel i -> block i)."""
    return np.repeat(np.repeat(np.asarray(image), factor, axis=0), factor, axis=1)


def write_png(path, image_rgb) -> Path:
    """Write an image as an RGB PNG atomically (temp file + rename; the temp file is removed on failure).

    ``image_rgb``: ``(H, W, 3)`` RGB, grey ``(H, W)`` / ``(H, W, 1)`` or RGBA (alpha dropped); uint8,
    16-bit or float, converted as :func:`predict` converts images (floats with maximum <= 1 are [0, 1]).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write PNG '{path}': it is a directory, expected a file name")
    # RGB -> BGR on the channel axis only (a grey (H, W) image was flipped left-right, RGBA written as ABGR)
    rgb = _rgb_uint8(image_rgb)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(f"could not encode PNG for {path}")
    from zoo.files import atomic_target, replace_durably

    tmp = atomic_target(path)
    try:
        tmp.write_bytes(buf.tobytes())
        replace_durably(tmp, path)  # the rename never reaches the disk before the picture does
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


@dataclass
class Prediction:
    """What :func:`predict` found in one image (in the pixels of the image, which ``picture`` is drawn on).

    ``task`` is ``"classification"`` (``top``: ``[(label, probability), ...]``), ``"segmentation"``
    (``mask``: ``(H, W)`` class indices) or ``"pose"`` (``keypoints``: ``(K, 2)`` x, y).
    """

    task: str
    picture: np.ndarray
    output: np.ndarray
    mask: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    top: list = field(default_factory=list)


def _registry_task(model, name):
    """``(task, family)`` of ``name`` (default: the name ``zoo.get`` attached) in the zoo's registry, or ``(None, "")``."""
    import zoo

    name = name or getattr(model, "_zoo_name", None)
    spec = None
    if name:
        try:
            spec = zoo.get_spec(name)
        except ValueError:
            pass
    return (spec.task, spec.family) if spec is not None and spec.task else (None, "")


def _output_task(out, hw):
    """What an unregistered model's output is, from its shape."""
    if out.ndim == 1:
        return "classification"
    return "segmentation" if out.shape[:2] == hw else "pose"


def _probabilities(scores):
    s = np.asarray(scores, np.float64)
    if (s >= 0).all() and abs(s.sum() - 1) < 1e-3:  # already a softmax
        return s
    # NaN never wins (as labels_from_scores): probability 0; +inf shares the whole mass
    s = np.nan_to_num(s, nan=-np.inf, posinf=np.finfo(np.float64).max)
    if not np.isfinite(s.max()):
        return np.zeros_like(s)
    e = np.exp(s - s.max())
    return e / e.sum()


def _draw_text_lines(img, lines):
    """White text on a dark band in the top-left corner of a copy of ``img``."""
    img = np.ascontiguousarray(img, dtype=np.uint8).copy()
    scale = max(0.3, img.shape[1] / 700)
    step = int(round(22 * scale)) + 2
    width = max(cv2.getTextSize(l, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for l in lines) + 8
    img[: step * len(lines) + 6, : min(width, img.shape[1])] //= 3
    for i, line in enumerate(lines):
        cv2.putText(img, line, (4, step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _centre_crop(image, size, ratio=256 / 224):
    """Resize so the crop is ``1 / ratio`` of the shorter side (ResNet's 224 of 256), then the centre crop."""
    (H, W), (h, w) = image.shape[:2], size
    s = max(h / H, w / W) * ratio
    rw, rh = max(w, int(round(W * s))), max(h, int(round(H * s)))
    top, left = (rh - h) // 2, (rw - w) // 2
    if s < 1:  # shrinking: area averaging; the resized image is smaller than the original
        return cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA)[top:top + h, left:left + w]
    # enlarging: only the crop's pixels are interpolated, bilinearly as cv2.resize does (pixel centres,
    # edges clamped); resizing all of a 1000 x 3 strip would make an 85333 x 256 image to keep 224 x 224
    (y0, y1, fy), (x0, x1, fx) = (_resize_taps(n, big / n, start, m) for n, big, start, m
                                  in ((H, rh, top, h), (W, rw, left, w)))
    im = np.asarray(image, np.float32)
    fy, fx = fy[:, None, None], fx[None, :, None]
    out = ((im[y0[:, None], x0] * (1 - fx) + im[y0[:, None], x1] * fx) * (1 - fy)
           + (im[y1[:, None], x0] * (1 - fx) + im[y1[:, None], x1] * fx) * fy)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _resize_taps(n, scale, start, count):
    """Source pixels and weights of output pixels ``start .. start + count - 1`` of an axis of ``n`` px enlarged by ``scale``."""
    pos = np.clip((np.arange(start, start + count) + 0.5) / scale - 0.5, 0, n - 1)
    i0 = np.floor(pos).astype(np.intp)
    return i0, np.minimum(i0 + 1, n - 1), (pos - i0).astype(np.float32)


def _strides(sizes, maps, free):
    """Input px per heatmap px across and down: training's ``input / map``; where the input takes the
    image's size, the one integer stride whose floor or ceil division gives the maps on every such axis
    (50 x 13 px -> 13 x 4 is stride 4, not 3.85 and 3.25)."""
    fit = None
    for n, m, f in zip(sizes, maps, free):
        if f:
            ks = {k for k in range(max(1, n // m - 1), n // m + 3) if m in (n // k, -(-n // k))}
            fit = ks if fit is None else fit & ks
    k = min(fit, key=lambda k: abs(k - max(sizes) / max(maps)), default=None) if fit else None
    return [float(k) if f and k else n / m for n, m, f in zip(sizes, maps, free)]


def _rgb_uint8(image):
    """Any picture as ``(H, W, 3)`` uint8 RGB: grey repeated, alpha dropped (as ``cv2.imread``), 16 bits
    scaled (65535 -> 255), floats in [0, 1] (their maximum <= 1) scaled by 255, others clipped to [0, 255]."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or 0 in a.shape:
        raise ValueError(f"the image must be a non-empty (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA array. "
                         f"Received shape {a.shape}")
    a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == bool:
        return np.ascontiguousarray(a.astype(np.uint8) * 255)
    if a.dtype.kind not in "uif":
        raise ValueError(f"the image must hold numbers (uint8, uint16, float, ...). Received dtype {a.dtype}")
    x = np.nan_to_num(a.astype(np.float64))
    if a.dtype == np.uint16:
        x = x / 257.0
    elif a.dtype.kind == "f" and x.max() <= 1.0:
        x = x * 255.0
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _skeleton(record, k):
    """Limbs of the record's keypoint order when it is one that is known, else :func:`draw_keypoints`' default by K."""
    from training.datasets.lsp import LSP_JOINTS
    from zoo.releases import CPM_PARTS, MPII_JOINTS

    names = tuple(getattr(record, "keypoint_names", None) or ())
    if len(names) != k:
        return None
    known = {MPII_JOINTS: MPII_SKELETON, LSP_JOINTS: LSP_SKELETON, CPM_PARTS: CPM_SKELETON}
    return known.get(names, ())  # an unknown order: no limbs rather than another dataset's


def predict(model, image_rgb, *, name=None, record=None, top_k=5, heatmap_offset=None, scales=(1.0,)) -> Prediction:
    """Run ``model`` on one RGB image and draw the prediction on it, at the image's own size.

    What the output is comes from the zoo's registry (``name``, default the name ``zoo.get``
    attached): classifiers (ResNet) give their ``top_k`` classes, named from the weights record
    when it has class names; segmentation models (FCN, PSPNet) a mask; pose models (hourglass,
    CPM) their argmax keypoints (CPM's background map dropped). Unknown models: rank-1 output =
    classes, output as large as the input = mask, else keypoints.

    Classifiers see the centre crop of the image resized so that the crop is 224/256 of its shorter
    side (ImageNet's single-crop evaluation; an image of the input size is taken as it is). Pose
    and segmentation models see it letterboxed as training and ``evaluate`` crop it (scaled to fit
    the input, centred, zero border, so people keep their proportions; for a square input, training's
    crop); the keypoints (pixels, ``(K, 2)`` x, y, decoded as training's codec does, with the stride
    of each axis; NaN where a map has no positive value) and the mask (``(H, W)``, scores resampled
    bilinearly, then argmax) are given in the original image. Preprocessing: ``record`` (default the
    model's weights record), else pixels / 255; a model with a uint8 input gets raw pixels.
    Heatmap pixel ``g`` is at input px ``g * stride + heatmap_offset``: ``None`` (default) takes the
    record's ``heatmap_offset`` (CPM releases 3.5, hourglass:mpii 2.0), else 0.0 (training's convention).
    ``scales`` (pose and segmentation; default ``(1.0,)``: one pass) averages several scales as ``evaluate``
    does (:mod:`training.tta`): pose crops the letterbox box divided by each scale about the image centre and
    averages the heatmaps in the scale-1 frame (CPM: ``(0.7, ..., 1.3)``); segmentation letterboxes the image
    at each scale (sliding windows with 2/3 overlap where a fixed-size model's canvas is larger), averages
    the softmax probabilities on the image, then argmax (PSPNet: ``(0.5, 0.75, ..., 1.75)``). ``output``
    is then the averaged heatmaps, or for segmentation the scale-1 pass's raw scores.

    ``image_rgb``: ``(H, W, 3)`` RGB, or grey ``(H, W)``, or RGBA (alpha dropped); uint8, 16-bit
    (65535 = white), or float (in [0, 1] when its maximum is <= 1, else in [0, 255]).

    Raises:
        ValueError: an output that does not fit the task (e.g. a classifier without its top), or an
            image of another shape.
    """
    import zoo
    from training.targets import decode_heatmaps, keypoints_to_image, labels_from_scores, scores_to_image
    from training.transforms import affine_matrix, grid_matrix, warp_image

    from training.tta import check_scales, image_heatmaps, image_probabilities

    scales = check_scales(scales, "predict")
    image = _rgb_uint8(image_rgb)
    H, W = image.shape[:2]
    inputs = model.inputs
    h, w = inputs[0].shape[1] or H, inputs[0].shape[2] or W
    task, family = _registry_task(model, name)
    if task == "classification":  # ImageNet's single-crop evaluation: shorter side to 256/224 of the crop, centre crop
        mat = None
        img = _centre_crop(image, (h, w)) if (h, w) != (H, W) else image
    elif (h, w) == (H, W):  # the image is the input (a fully convolutional model takes any size)
        mat, img = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), image
    else:  # scale min(w / W, h / H): the whole image fits a non-square input too (the width alone cut a tall one)
        mat = affine_matrix(((W - 1) / 2.0, (H - 1) / 2.0), max(W, H * w / h), (w, h))
        img = warp_image(image, mat, (w, h))
    record = record or zoo.weights_record(model)
    if heatmap_offset is None:
        heatmap_offset = record.heatmap_offset if record is not None else 0.0
    ok = isinstance(heatmap_offset, (int, float, np.integer, np.floating)) and not isinstance(heatmap_offset, bool)
    if not (ok and np.isfinite(heatmap_offset)):
        raise ValueError(f"predict: heatmap_offset must be a finite number of input px (where heatmap pixel 0 lies), "
                         f"or None for the weights record's. Received: heatmap_offset={heatmap_offset!r}")

    def prep(batch):  # (B, h, w, 3) uint8 RGB -> the model's input
        if "uint8" in str(inputs[0].dtype):  # normalises inside the model (training's feed="uint8")
            return batch
        return zoo.preprocess(None, batch, record=record) if record else batch.astype(np.float32) / 255.0

    free = (inputs[0].shape[2] is None, inputs[0].shape[1] is None)  # sizes taken from the image (x, y)

    def run(x):
        feeds = [x]
        if len(inputs) == 2:  # CPM: image + centre map, peaked where the crop put the image's centre (as training's)
            feeds.append(zoo.cpm_center_map(h, w, center=((w - 1) / 2.0, (h - 1) / 2.0))[None])
        try:
            # one batch: Keras' predict() on JAX leaves the weights emptied when a batch fails (and the next call broken)
            out = model.predict_on_batch(feeds if len(feeds) > 1 else x)
        except Exception as e:  # Keras' message names a layer's shapes, not the image
            if not any(free):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ValueError(f"{name or model.name} takes inputs of any size, but not this {x.shape[2]}x{x.shape[1]} "
                             f"{'image' if x.shape[1:3] == (H, W) else 'scaled image'} ({type(e).__name__}: {first}); "
                             f"resize or pad it to a size the model accepts (e.g. a multiple of its total stride)"
                             f"{'' if x.shape[1:3] == (H, W) else ', or choose other scales'}") from e
        if not isinstance(out, (list, tuple)):
            return np.asarray(out)
        # as evaluate: a pose net's last output is its final stage; a segmentation net's first is its main
        # head (PSPNet's aux=True head comes second)
        seg = (task or _output_task(np.asarray(out[-1])[0], (x.shape[1], x.shape[2]))) == "segmentation"
        return np.asarray(out[0] if seg else out[-1])

    out = run(prep(img[None]))[0]
    task = task or _output_task(out, (h, w))
    if scales != (1.0,) and task == "classification":
        raise ValueError(f"predict: scales are for pose and segmentation models; {name or model.name} is a "
                         f"classifier. Received: scales={scales!r}")
    if task == "classification":
        if out.ndim != 1:
            raise ValueError(f"{name or model.name}: output of shape {out.shape} is a feature map, not class "
                             f"scores (a classifier built without its top?)")
        probs = _probabilities(out)
        names = record.class_names if record and record.class_names and len(record.class_names) == len(probs) else None
        top = [(names[i] if names else f"class {i}", float(probs[i])) for i in np.argsort(-probs)[:top_k]]
        return Prediction(task, _draw_text_lines(image, [f"{p:.3f} {l}"[:40] for l, p in top]), out, top=top)
    if out.ndim != 3:
        raise ValueError(f"{name or model.name}: output of shape {out.shape} is not a {task} map (H, W, C)")
    if task == "segmentation" and scales != (1.0,):
        scores = image_probabilities(run, prep, image, (w, h), not any(free), scales)
        mask = labels_from_scores(scores)
        return Prediction(task, mask_overlay(image, mask), out, mask=mask)
    if task == "segmentation":
        scores = scores_to_image(out, grid_matrix(mat, (w, h), (out.shape[1], out.shape[0])), (H, W))
        mask = labels_from_scores(scores)
        return Prediction(task, mask_overlay(image, mask), out, mask=mask)
    strides = np.array(_strides((w, h), (out.shape[1], out.shape[0]), free))
    if scales != (1.0,):  # the scale-1 pass again among the others: one code path for the warps
        out = image_heatmaps(lambda crop: run(prep(crop[None]))[0], image, mat, (w, h), scales, strides,
                             float(heatmap_offset))
    maps = out[..., :-1] if family == "cpm" else out  # CPM's last belief map is the background
    # training's codec (argmax + quarter offset, heatmap px * stride + offset), with each axis' own stride
    kp_hm, score = decode_heatmaps(maps)
    kp = keypoints_to_image(kp_hm * strides + float(heatmap_offset), mat)
    kp[~(score > 0)] = np.nan  # no positive maximum: no keypoint (not drawn)
    return Prediction(task, draw_keypoints(image, kp, skeleton=_skeleton(record, len(kp))), out, keypoints=kp)


def predict_overlay(model, image_rgb, *, name=None, record=None):
    """:func:`predict`'s picture: keypoints, mask overlay or top classes drawn on the image."""
    return predict(model, image_rgb, name=name, record=record).picture
