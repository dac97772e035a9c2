"""Test-time augmentation: a net's answers at several scales (and mirrored) mapped to one frame and averaged.

Pose (CPM's ``applyModel.m``): at scale ``s`` the person is cropped ``s`` times larger, i.e. the crop box
(``record.scale`` source px about ``record.center``) is divided by ``s`` and the crop keeps the model's
input size; each scale's heatmaps (flip-tested when asked) are warped bilinearly back into the scale-1
crop's heatmap frame and averaged before decoding. A scale > 1 sees only the middle ``1 / s`` of the
scale-1 crop: each heatmap pixel is the mean over the scales whose crop covers it (a pixel no scale
covers is 0).

Segmentation (PSPNet's multi-scale test): at scale ``s`` the image is letterboxed onto a canvas
``s`` times the scale-1 input (``round(s w) x round(s h)``; scale 1 is the whole image fitted into the
input, as evaluation crops it). A model that takes any size runs on the canvas whole; a model of a fixed
input size (one fixed axis is enough: :func:`fixed_input`) gets a canvas of at least its input (a smaller image is padded), and a larger canvas is slid
over with input-sized windows, ``ceil(2/3 input)`` px apart (PSPNet's 2/3 overlap, the last window flush
with the edge), the window probabilities averaged where they overlap. Each pass's softmax
probabilities (a model that already outputs probabilities is taken as it is), and the mirrored pass's
flipped back when asked, are resampled bilinearly onto the target (the original image) and averaged
over the scales; the argmax of the mean is the label.

Note:
    Sizes are ``(w, h)``, arrays ``(B, H, W, ...)``; matrices are OpenCV ``(2, 3)`` affine maps with pixel
    centres at integer coordinates (:mod:`training.transforms`). The usual scale lists: CPM
    ``(0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)`` (``applyModel.m`` spaces ``starting_range`` 0.7 to
    ``ending_range`` 1.3), PSPNet ``(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)`` with flip (relative to its
    512-px base size). These letterboxed canvases are not PSPNet's own test (per-image long side
    ``base_size * s + 1``, bottom/right padding, its window grid): ``base_size=`` runs that one,
    :mod:`training.tta_pspnet`.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from training.affine import letterbox_matrix
from training.data import HeatmapDataset, SegmentationDataset
from training.targets import flip_test, scores_to_image
from training.transforms import affine_matrix, compose, grid_matrix, invert, transform_points

__all__ = ["check_scales", "check_canvas_memory", "fixed_input", "pose_views", "pose_heatmaps", "heatmap_frame_matrix",
           "average_heatmaps", "View", "segmentation_views", "canvas_matrix", "canvas_size", "windows", "softmax",
           "probabilities", "segmentation_passes", "segmentation_probabilities"]

_STRIDE_RATE = 2 / 3  # PSPNet's sliding-window step: 2/3 of the window


def check_scales(scales, who="evaluate", name="scales") -> tuple[float, ...]:
    """``scales`` as a tuple of floats; a ValueError naming ``name`` unless a non-empty sequence of finite numbers > 0."""
    ok = not isinstance(scales, (str, bytes, bool, np.bool_))
    try:
        vals = [v for v in scales] if ok else []
    except TypeError:
        vals, ok = [], False
    out = []
    for v in vals:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            ok = False
            break
        out.append(float(v))
    if not (ok and out and all(math.isfinite(v) and v > 0 for v in out)):
        raise ValueError(f"{who}: {name} must be a non-empty sequence of finite numbers > 0 (relative crop/image "
                         f"sizes, e.g. (0.7, 1.0, 1.3); (1.0,) = no scale search). Received: {name}={scales!r}")
    return tuple(out)


def fixed_input(model) -> bool:
    """Whether the model takes one input size (a model whose first input has open height and width takes any).

    A model with one open axis (e.g. input shape ``(None, 473, 3)``) is fixed-size: its fixed axis must not be
    scaled, so larger canvases are slid over with input-sized windows as for a fully fixed model (the open axis
    at the scale-1 size: ``evaluate``'s ``input_size``, ``predict``'s image)."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return True
    shape = tuple(inputs[0].shape)
    return not (len(shape) == 4 and shape[1] is None and shape[2] is None)


# ----------------------------------------------------------------------------- pose

class _ScaledHeatmapDataset(HeatmapDataset):
    """An evaluation copy whose crops are ``tta_scale`` times closer: the crop box divided by it (zoom)."""

    tta_scale = 1.0

    def matrix(self, record, params=None):
        p = dict(params) if params else {"zoom": 1.0, "rotation": 0.0, "flip": False, "shift": np.zeros(2)}
        p["zoom"] = p["zoom"] * self.tta_scale
        return super().matrix(record, p)


def _scaled_copy(ds, cls, **attrs):
    d = copy.copy(ds)  # shares the records, the skip bookkeeping and its log: a record unread once is unread
    d.__class__ = cls
    d._batch_workers = None  # its own workers, which make this copy's crops (copy.copy drops them already)
    d.__dict__.update(attrs)
    return d


def pose_views(ds, scales) -> list:
    """``[(scale, dataset)]``: the evaluation copy ``ds`` itself at scale 1, zoomed copies elsewhere."""
    return [(s, ds if s == 1.0 else _scaled_copy(ds, _ScaledHeatmapDataset, tta_scale=s)) for s in scales]


def heatmap_frame_matrix(mat_ref, mat_s, strides, offset) -> np.ndarray:
    """``(2, 3)`` reference-crop heatmap px -> scale-``s``-crop heatmap px.

    Heatmap pixel ``g`` lies at input px ``g * stride + offset`` (:class:`~training.targets.HeatmapCodec`), so
    the map is ``in->hm . mat_s . mat_ref^-1 . hm->in`` (``mat_*``: original image -> crop input px).

    Args:
        mat_ref, mat_s: ``(2, 3)`` original -> input matrices of the reference (scale-1) and scale-``s`` crops.
        strides: ``(sx, sy)`` input px per heatmap px.
        offset: input px where heatmap pixel 0 lies.
    """
    sx, sy = (float(v) for v in strides)
    hm_to_in = np.array([[sx, 0.0, offset], [0.0, sy, offset]])
    return compose(hm_to_in, invert(mat_ref), mat_s, invert(hm_to_in))


def average_heatmaps(maps, frames, size) -> np.ndarray:
    """Mean of heatmaps warped into one frame, each pixel over the maps that cover it.

    Args:
        maps: sequence of ``(h_i, w_i, K)`` heatmaps.
        frames: their ``(2, 3)`` matrices, target heatmap px -> that map's px (:func:`heatmap_frame_matrix`).
        size: ``(w, h)`` of the target frame.
    Returns:
        ``(h, w, K)`` float32: ``sum_i warp(map_i) / sum_i warp(1)`` with bilinear warps and a zero border
        (``cv2.warpAffine``); 0 where no map reaches.
    """
    w, h = size
    total = cover = None
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for m, a in zip(maps, frames):
        m = np.asarray(m, np.float32)
        k = m.shape[-1]
        warped = cv2.warpAffine(m, np.asarray(a, np.float64), (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0).reshape(h, w, k)
        ones = cv2.warpAffine(np.ones(m.shape[:2], np.float32), np.asarray(a, np.float64), (w, h), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
        total = warped if total is None else total + warped
        cover = ones if cover is None else cover + ones
    return np.where(cover > 0, total / np.where(cover > 0, cover, 1.0), 0.0).astype(np.float32)


def pose_heatmaps(predict, views, b, *, flip, flip_pairs, offset, check):
    """Batch ``b``'s ``(B, h, w, K')`` heatmaps averaged over the views, in the scale-1 crop's heatmap frame.

    Args:
        predict: ``x -> list of outputs`` (the last is decoded).
        views: :func:`pose_views`; their first dataset's unscaled matrices are the reference frame.
        flip: also run the mirrored crops (:func:`training.targets.flip_test` with ``offset``).
        check: called with each view's raw heatmaps (raises on a wrong shape).
    Returns:
        ``(B, h, w, K')`` float32 averaged maps (one view at scale 1: its maps as they are).
    """
    outs = []
    for s, d in views:
        x, _, _ = d[b]
        if flip:
            images, rest = (x[0], x[1:]) if isinstance(x, tuple) else (x, ())
            hm = flip_test(lambda im, rest=rest: predict((im, *rest) if rest else im)[-1], images, flip_pairs,
                           offset=offset)
        else:
            hm = predict(x)[-1]
        check(hm)
        outs.append(hm)
    if len(views) == 1 and views[0][0] == 1.0:
        return outs[0]
    ref = views[0][1]
    (w, h), (hw, hh) = ref.input_size, (outs[0].shape[2], outs[0].shape[1])
    strides = (w / hw, h / hh)
    avg = []
    for i, rid in enumerate(ref.batch_indices(b)):
        rec = ref.records[int(rid)]
        m1 = HeatmapDataset.matrix(ref, rec)  # the unscaled crop's, whichever view is first
        frames = [heatmap_frame_matrix(m1, d.matrix(rec), strides, offset) for _, d in views]
        avg.append(average_heatmaps([o[i] for o in outs], frames, (hw, hh)))
    return np.stack(avg)


# ----------------------------------------------------------------------------- segmentation

class _ScaledSegmentationDataset(SegmentationDataset):
    """An evaluation copy that letterboxes each image at ``tta_scale`` times its scale-1 size (the whole
    image fitted into ``tta_base_size``) onto a canvas of ``input_size``, centre on centre."""

    tta_scale, tta_base_size = 1.0, (1, 1)

    def matrix(self, image_shape, params=None, rng=None):
        return canvas_matrix(image_shape, self.tta_base_size, self.tta_scale, self.input_size)


def canvas_matrix(image_shape, base_size, scale, canvas) -> np.ndarray:
    """``(2, 3)`` original image -> canvas px: ``scale`` times the fit of the whole image into ``base_size``."""
    h_img, w_img = image_shape[:2]
    w, h = base_size
    side = max(w_img, h_img * w / h)  # source px across the scale-1 input
    return letterbox_matrix(image_shape, side * canvas[0] / (scale * w), canvas)


def canvas_size(base_size, scale, fixed) -> tuple[int, int]:
    """``(w, h)`` of scale ``scale``'s canvas: ``round(scale * base)``, at least ``base`` for a fixed-size model."""
    cw, ch = (max(1, int(round(scale * v))) for v in base_size)
    return (max(cw, base_size[0]), max(ch, base_size[1])) if fixed else (cw, ch)


def windows(canvas, crop) -> tuple:
    """Top-left corners ``((x0, y0), ...)`` of PSPNet's sliding windows: ``crop``-sized, ``ceil(2/3 crop)`` px apart,
    the last flush with the canvas edge (``hszhao/semseg``'s ``scale_process``)."""
    axes = []
    for n, c in zip(canvas, crop):
        step = int(math.ceil(c * _STRIDE_RATE))
        count = int(math.ceil(max(n - c, 0) / step)) + 1
        axes.append(sorted({min(i * step + c, n) - c for i in range(count)}))
    return tuple((x0, y0) for y0 in axes[1] for x0 in axes[0])


def _physical_memory():
    """This machine's memory in bytes, or ``None`` where the OS does not say (``os.sysconf``: Linux, macOS)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_canvas_memory(canvases, batch, classes, pixel_bytes, scales, who) -> None:
    """A ValueError naming ``scales`` when the canvases' host arrays would need more than this machine's memory.

    Held at once: every canvas of a batch (``pixel_bytes`` per pixel: the image, and labels in evaluation), and
    for the largest canvas its class probabilities and their mean (``2 x 4 x classes`` bytes per pixel): scale 20
    of a 512 px input, a batch of 8 and 21 classes need ~144 GiB, which the evaluation otherwise set out to fill.
    """
    mem = _physical_memory()
    px = [int(cw) * int(ch) for cw, ch in canvases]
    need = batch * (sum(px) * pixel_bytes + max(px) * 8 * classes)
    if mem is not None and need > mem:
        cw, ch = max(canvases, key=lambda c: c[0] * c[1])
        many = f"a batch of {batch}" if batch > 1 else "one image"
        raise ValueError(f"{who}: scales={tuple(scales)!r} make canvases up to {cw}x{ch} px, which need about "
                         f"{need / 2 ** 30:,.1f} GiB of host memory for {many} ({classes} class probabilities per "
                         f"pixel), more than this machine's {mem / 2 ** 30:,.1f} GiB; choose smaller scales")


@dataclass
class View:
    """One scale of the segmentation test: its canvas and how the model sees it."""

    scale: float
    canvas: tuple  # (w, h) of the letterboxed image
    crop: tuple  # (w, h) the model takes
    windows: tuple | None  # top-left corners of crop-sized windows; None: the canvas in one pass
    dataset: object = None


def segmentation_views(model, ds, scales) -> list:
    """A :class:`View` per scale for the evaluation copy ``ds`` (scale 1: ``ds`` itself)."""
    fixed, crop = fixed_input(model), tuple(ds.input_size)
    canvases = [crop if s == 1.0 else canvas_size(crop, s, fixed) for s in scales]
    # before any canvas (or window list) is made: images (3 bytes a pixel fed as uint8, else float32), int32 labels
    check_canvas_memory(canvases, ds.batch_size, ds.num_classes, (3 if ds.feed == "uint8" else 12) + 4, scales,
                        "evaluate")
    views = []
    for s, canvas in zip(scales, canvases):
        d = ds if canvas == crop and s == 1.0 else _scaled_copy(
            ds, _ScaledSegmentationDataset, tta_scale=s, tta_base_size=crop, input_size=canvas, label_size=canvas)
        views.append(View(s, canvas, crop, windows(canvas, crop) if fixed and canvas != crop else None, d))
    return views


def softmax(z) -> np.ndarray:
    """``(..., C)`` softmax over the last axis, in ``z``'s float dtype. Each row's maximum is subtracted first (no
    overflow; a row whose maximum is not finite subtracts 0), and a row whose exponentials sum to 0 (all -inf) is
    all 0. NaN is the caller's: map it to -inf first where it must never win."""
    top = z.max(-1, keepdims=True)
    e = np.exp(z - np.where(np.isfinite(top), top, 0.0))
    total = e.sum(-1, keepdims=True)
    return e / np.where(total > 0, total, 1.0)


def probabilities(scores) -> np.ndarray:
    """``(..., C)`` softmax probabilities of class scores; scores that already are probabilities (>= 0, summing to
    1 within 1e-3 at every pixel) are kept. A NaN score gets probability 0 (it never wins, as
    :func:`~training.targets.labels_from_scores`)."""
    s = np.asarray(scores, np.float32)
    if s.size and np.all(s >= 0) and np.all(np.abs(s.sum(-1) - 1) < 1e-3):
        return s
    s = np.nan_to_num(s, nan=-np.inf, posinf=np.finfo(np.float32).max)
    return softmax(s).astype(np.float32, copy=False)


def _mirror(width) -> np.ndarray:
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def segmentation_passes(predict, x, view, flip, check):
    """The model's probabilities for a batch of canvases and where they lie.

    Args:
        predict: ``x -> (B, gh, gw, C)`` scores (the main output).
        x: ``(B, ch, cw, 3)`` canvases, as the model takes them.
        view: their :class:`View`.
        flip: also run the mirrored canvas (window), flipped back.
        check: called with each raw output (raises on a wrong shape).
    Returns:
        ``[(probs (B, gh, gw, C), (2, 3) canvas px -> probs px)]``, to be averaged with equal weights.
    """
    cw, ch = view.canvas
    if view.windows is None:
        out = []
        for mirrored in ((False, True) if flip else (False,)):
            s = predict(np.ascontiguousarray(x[:, :, ::-1]) if mirrored else x)
            check(s)
            to_grid = grid_matrix(_mirror(cw) if mirrored else np.eye(3)[:2], (cw, ch), (s.shape[2], s.shape[1]))
            out.append((probabilities(s), to_grid))
        return out
    (w, h), n = view.crop, x.shape[0]
    acc, count = None, np.zeros((ch, cw, 1), np.float32)
    for x0, y0 in view.windows:
        xw = np.ascontiguousarray(x[:, y0:y0 + h, x0:x0 + w])
        win = None
        for mirrored in ((False, True) if flip else (False,)):
            s = predict(np.ascontiguousarray(xw[:, :, ::-1]) if mirrored else xw)
            check(s)
            p, grid = probabilities(s), (s.shape[2], s.shape[1])
            m = grid_matrix(_mirror(w) if mirrored else np.eye(3)[:2], (w, h), grid)
            # onto the window's input px (for a stride-1 output of the input's size: the map itself, flipped back)
            p = np.stack([scores_to_image(p[i], m, (h, w)) for i in range(n)])
            win = p if win is None else win + p
        if acc is None:
            acc = np.zeros((n, ch, cw, win.shape[-1]), np.float32)
        acc[:, y0:y0 + h, x0:x0 + w] += win / (2.0 if flip else 1.0)
        count[y0:y0 + h, x0:x0 + w] += 1.0
    return [(acc / count, np.eye(3)[:2])]


def segmentation_probabilities(predict, views, xs, images, *, flip, check):
    """A batch's probabilities averaged over the views, on each image's target frame.

    Args:
        predict: ``x -> (B, gh, gw, C)`` main output.
        views: :func:`segmentation_views`.
        xs: each view's batch of canvases, as its dataset made them.
        images: per image of the batch ``(image_shape (H, W), target_shape (th, tw), T)`` with ``T`` the
            ``(2, 3)`` target px -> original image px matrix (identity for the original image); ``None``:
            not wanted (a record that could not be read).
        flip: also run the mirrored canvases.
        check: see :func:`segmentation_passes`.
    Returns:
        list of ``(th, tw, C)`` float32 mean probabilities (``None`` where ``images`` has ``None``).
    """
    acc = [None] * len(images)
    for v, x in zip(views, xs):
        passes = segmentation_passes(predict, x, v, flip=flip, check=check)
        for i, img in enumerate(images):
            if img is None:
                continue
            shape, target, t = img
            m = v.dataset.matrix(shape)
            p = sum(scores_to_image(arr[i], compose(t, m, to), target) for arr, to in passes) / len(passes)
            acc[i] = p if acc[i] is None else acc[i] + p
    return [None if a is None else a / len(views) for a in acc]


# ----------------------------------------------------------------------------- one image (training.inference.predict)

def image_heatmaps(run, image, mat, input_size, scales, strides, offset, pad=0, center=None) -> np.ndarray:
    """One image's heatmaps averaged over ``scales`` in the frame of the crop ``mat`` makes (scale 1).

    Args:
        run: ``(h, w, 3)`` uint8 RGB crop -> ``(hh, hw, K)`` heatmaps.
        image: ``(H, W, 3)`` uint8 RGB.
        mat: ``(2, 3)`` image -> scale-1 input matrix (the letterboxed image, or a person's box, centred on the
            input; the other scales divide that crop about the same centre).
        input_size: ``(w, h)`` the model takes.
        strides, offset: input px per heatmap px on x and y, and where heatmap pixel 0 lies.
        pad: the RGB pixel outside the image (the input convention's mean).
        center: ``(x, y)`` image px ``mat`` puts on the input's centre, as it was built (the image's centre for the
            letterbox, a person box's centre); ``None``: recovered by inverting ``mat``, about 1e-14 px off, enough
            for a scaled crop's warp to round some samples 1/32 px the other way.
    """
    from training.transforms import warp_image

    if center is None:  # the image point at the scale-1 crop's centre
        center = transform_points(np.array([(input_size[0] - 1) / 2.0, (input_size[1] - 1) / 2.0]), invert(mat))
    maps, frames = [], []
    for s in scales:
        # the crop about its centre divided by s: mat's linear factor times s (mat[0, 0] = w / side)
        m = mat if s == 1.0 else affine_matrix(center, input_size[0] / (mat[0, 0] * s), input_size)
        maps.append(run(warp_image(image, m, input_size, pad)))
        frames.append(heatmap_frame_matrix(mat, m, strides, offset))
    return average_heatmaps(maps, frames, (maps[0].shape[1], maps[0].shape[0]))


def image_probabilities(predict, prep, image, base_size, fixed, scales, flip=False, classes=1, pad=0) -> np.ndarray:
    """One image's class probabilities averaged over ``scales`` (and the mirrored pass; PSPNet's test, see the module
    docstring).

    Args:
        predict: ``(1, ch, cw, 3)`` model input -> ``(1, gh, gw, C)`` scores.
        prep: ``(1, ch, cw, 3)`` uint8 RGB canvases -> model input.
        image: ``(H, W, 3)`` uint8 RGB.
        base_size: ``(w, h)`` scale 1 fits the image into (the model's input; the image's own size for a model
            that takes any).
        fixed: the model takes ``base_size`` only (larger canvases are slid over).
        flip: also run each mirrored canvas (window), its probabilities flipped back (:func:`segmentation_passes`).
        classes: the number of classes (to refuse canvases too large for this machine's memory first).
        pad: the RGB pixel around the image on its canvas (the input convention's mean).
    Returns:
        ``(H, W, C)`` float32 mean probabilities.
    """
    from training.transforms import warp_image

    H, W = image.shape[:2]
    # the uint8 canvas and the model's float32 input (the class count: the scale-1 pass's, probs[-1])
    check_canvas_memory([canvas_size(base_size, s, fixed) for s in scales], 1, classes, 3 + 12, scales, "predict")
    acc = 0.0
    for s in scales:
        canvas = canvas_size(base_size, s, fixed)
        m = canvas_matrix(image.shape, base_size, s, canvas)
        view = View(s, canvas, tuple(base_size), windows(canvas, base_size) if fixed and canvas != base_size else None)
        passes = segmentation_passes(predict, prep(warp_image(image, m, canvas, pad)[None]), view, flip,
                                     lambda _: None)
        acc = acc + sum(scores_to_image(arr[0], compose(m, to), (H, W)) for arr, to in passes) / len(passes)
    return (acc / len(scales)).astype(np.float32)
