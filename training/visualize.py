"""Pictures of keypoints, heatmaps, masks and training curves, drawn with OpenCV (no matplotlib).

All functions return RGB ``uint8`` images ``(H, W, 3)`` and take RGB ones, or grey, RGBA, 16-bit or
float pictures (converted by ``_rgb_uint8``, as :func:`training.inference.predict` converts them); coordinates
are (x, y) pixels of the image drawn on, pixel centres at integer coordinates. Running a model on an image and
drawing its answer is :mod:`training.inference` (``predict``, ``predict_overlay`` and ``Prediction`` are
still importable from here).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "MPII_SKELETON",
    "LSP_SKELETON",
    "CPM_SKELETON",
    "hue_colors",
    "write_label_png",
    "voc_palette",
    "draw_keypoints",
    "heatmap_grid",
    "mask_overlay",
    "training_curve",
    "pck_curve_plot",
    "PCK_PLOT_MARGINS",
    "write_png",
    "resize_nearest",
    "predict",  # re-exported from training.inference (below)
    "predict_overlay",
    "Prediction",
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
        image: ``(H, W, 3)`` RGB; grey, RGBA, 16-bit and float images are converted as :func:`write_png`'s.
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


#: (left, top, right, bottom) px around the plot area of :func:`pck_curve_plot` (the legend is on the right)
PCK_PLOT_MARGINS = (64, 34, 200, 52)


def pck_curve_plot(curve, *, size=(760, 480), title="PCK curve", xlabel="threshold (fraction of the normaliser)"):
    """Draw a PCK curve (:func:`training.metrics.pck_curve`'s dict): PCK (%) against the threshold.

    A thick black line for ``curve["mean"]`` (its AUC in the legend) over one coloured line per MPII joint
    group when ``curve`` has ``groups``, else per joint (:func:`hue_colors`); grid lines every 20 % and at
    round thresholds; NaN points leave gaps. The plot area is ``x0 = left`` .. ``x1 = W - right``, ``y0 = top``
    .. ``y1 = H - bottom`` (:data:`PCK_PLOT_MARGINS`): threshold ``t`` is at ``x0 + t / t_max (x1 - x0)`` and
    a PCK ``p`` (fraction) at ``y1 - p (y1 - y0)``, where ``t_max`` is the last threshold.

    Args:
        curve: dict with ``thresholds`` (T,), ``mean`` (T,), ``per_joint`` {name: (T,)}, optional ``groups``
            and ``auc``.
        size: (W, H) px of the picture.
        title: drawn above the plot; xlabel: the x axis' label (the y axis is "PCK (%)").
    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    t = np.asarray(curve["thresholds"], np.float64)
    series = curve.get("groups") or curve["per_joint"]
    w, h = (int(v) for v in size)
    left, top, right, bottom = PCK_PLOT_MARGINS
    if t.ndim != 1 or len(t) < 2 or not t[-1] > 0 or w < left + right + 50 or h < top + bottom + 50:
        raise ValueError(f"pck_curve_plot: expected at least 2 thresholds ending above 0 and size >= "
                         f"({left + right + 50}, {top + bottom + 50}). Received {len(t)} thresholds, size={size!r}")
    if not (np.all(np.isfinite(t)) and t[0] >= 0 and np.all(np.diff(t) > 0)):
        raise ValueError(f"pck_curve_plot: `curve['thresholds']` must be increasing numbers >= 0. "
                         f"Received {t.tolist()}")
    for name, vals in (("mean", curve["mean"]), *series.items()):
        v = np.asarray(vals, np.float64)
        bad = v[(v < 0) | (v > 1)] if v.shape == t.shape else None  # NaN (never counted) is a gap
        if bad is None or bad.size:
            value = f", value {float(bad[0])!r}" if bad is not None else ""
            raise ValueError(f"pck_curve_plot: curve {name!r} must be {len(t)} PCK fractions in [0, 1] (or NaN), one "
                             f"per threshold. Received shape {v.shape}{value}")
    x0, y0, x1, y1 = left, top, w - right, h - bottom
    img = np.full((h, w, 3), 255, np.uint8)
    font, ink, grid = cv2.FONT_HERSHEY_SIMPLEX, (40, 40, 40), (225, 225, 225)

    def to_px(tt, pp):
        return np.stack([x0 + tt / t[-1] * (x1 - x0), y1 - pp * (y1 - y0)], -1)

    # round thresholds, 3 to 6 steps of 1, 2 or 5 x 10^n whatever alpha (0.5: 0, 0.1, ...; 0.005: 0, 0.001, ...)
    mag = 10.0 ** np.floor(np.log10(t[-1] / 5))
    step = next(m * mag for m in (1, 2, 5, 10) if t[-1] / (m * mag) <= 6 + 1e-9)
    for i in range(int(np.floor(t[-1] / step + 1e-9)) + 1):
        v = float(f"{i * step:.12g}")  # 0.3, not 0.30000000000000004
        x = int(round(x0 + v / t[-1] * (x1 - x0)))
        cv2.line(img, (x, y0), (x, y1), grid, 1)
        label = f"{v:g}"
        cv2.putText(img, label, (x - 4 * len(label), y1 + 16), font, 0.4, ink, 1, cv2.LINE_AA)
    for pct in range(0, 101, 20):
        y = int(round(y1 - pct / 100 * (y1 - y0)))
        cv2.line(img, (x0, y), (x1, y), grid, 1)
        cv2.putText(img, f"{pct}", (x0 - 8 - 8 * len(str(pct)), y + 4), font, 0.4, ink, 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), (110, 110, 110), 1)
    colors = (hue_colors(max(len(series), 1)) * 0.85).astype(np.uint8)  # darker: yellow on white is faint
    for i, vals in enumerate(series.values()):
        _polyline(img, to_px(t, np.asarray(vals, np.float64)), tuple(int(c) for c in colors[i]),
                  2 if len(series) <= 8 else 1)
    mean = np.asarray(curve["mean"], np.float64)
    _polyline(img, to_px(t, mean), (0, 0, 0), 3)  # last: on top of the joints' lines
    # legend: the mean, then as many series as fit
    auc = curve.get("auc")
    entries = [(f"mean (AUC {100 * auc:.1f})" if auc is not None and np.isfinite(auc) else "mean", (0, 0, 0), 3)]
    entries += [(str(n)[:18], tuple(int(c) for c in colors[i]), 2) for i, n in enumerate(series)]
    rows = max(1, (y1 - y0) // 16)
    if len(entries) > rows:
        entries = entries[:rows - 1] + [(f"+{len(entries) - rows + 1} more", None, 0)]
    for r, (name, color, thick) in enumerate(entries):
        y = y0 + 8 + 16 * r
        if color is not None:
            cv2.line(img, (x1 + 12, y), (x1 + 34, y), color, thick, cv2.LINE_AA)
        cv2.putText(img, name, (x1 + 40, y + 4), font, 0.4, ink, 1, cv2.LINE_AA)
    cv2.putText(img, str(title), (x0, y0 - 12), font, 0.55, ink, 1, cv2.LINE_AA)
    (tw, _), _ = cv2.getTextSize(xlabel, font, 0.45, 1)
    cv2.putText(img, xlabel, ((x0 + x1 - tw) // 2, h - 12), font, 0.45, ink, 1, cv2.LINE_AA)
    # the y label, drawn level and turned a quarter anticlockwise (putText cannot write vertically)
    (tw, th), _ = cv2.getTextSize("PCK (%)", font, 0.45, 1)
    label = np.full((th + 8, tw + 4, 3), 255, np.uint8)
    cv2.putText(label, "PCK (%)", (2, th + 3), font, 0.45, ink, 1, cv2.LINE_AA)
    label = cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE)
    ly = max(0, min(h - label.shape[0], (y0 + y1 - label.shape[0]) // 2))
    img[ly:ly + label.shape[0], 4:4 + label.shape[1]] = label[:, :max(0, min(label.shape[1], w - 4))]
    return img


def _polyline(img, pts, color, thickness):
    """Draw (T, 2) px points as one line per run of finite points, to 1/16 px (OpenCV's ``shift=4``)."""
    ok = np.all(np.isfinite(pts), axis=1)
    fixed = np.round(np.where(ok[:, None], pts, 0.0) * 16).astype(np.int32)
    edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2]):
        if b - a == 1:
            cv2.circle(img, (int(fixed[a, 0]), int(fixed[a, 1])), 16 * max(thickness, 2), color, -1, cv2.LINE_AA, 4)
        else:
            cv2.polylines(img, [fixed[a:b]], False, color, thickness, cv2.LINE_AA, 4)


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
    16-bit or float, converted as ``_rgb_uint8`` converts images (floats with maximum <= 1 are [0, 1]).
    """
    # RGB -> BGR on the channel axis only (a grey (H, W) image was flipped left-right, RGBA written as ABGR)
    return _write_png_pixels(path, np.ascontiguousarray(_rgb_uint8(image_rgb)[..., ::-1]))


def write_label_png(path, labels, bits=None) -> Path:
    """Write class indices ``(H, W)`` as a one-channel grey PNG atomically (the form the VOC, ADE20K and Cityscapes
    tools read label maps in; the values are written as they are, the model's own class numbers).

    ``bits``: 8 or 16; ``None``: 8 when every value is <= 255, else 16 (a batch should pass the model's: 8 up to 256
    classes).
    """
    a = np.asarray(labels)
    if a.ndim != 2 or a.dtype.kind not in "ui" or 0 in a.shape or a.min() < 0 or a.max() > 65535:
        raise ValueError(f"labels must be a non-empty (H, W) array of integers in 0..65535. Received shape {a.shape}, "
                         f"dtype {a.dtype}")
    bits = bits or (8 if a.max() <= 255 else 16)
    if bits not in (8, 16) or a.max() >= 2 ** bits:
        raise ValueError(f"labels up to {a.max()} do not fit a {bits}-bit PNG. Received: bits={bits!r}")
    return _write_png_pixels(path, np.ascontiguousarray(a.astype(np.uint8 if bits == 8 else np.uint16)))


def _write_png_pixels(path, pixels) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write PNG '{path}': it is a directory, expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", pixels)
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


_INFERENCE = ("predict", "predict_overlay", "Prediction")


def __getattr__(name):
    """``predict``, ``predict_overlay`` and ``Prediction``, which moved to :mod:`training.inference`.

    Looked up when first asked for: that module draws with this one, so importing it here at load time
    would be circular.
    """
    if name in _INFERENCE:
        from training import inference

        return getattr(inference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
