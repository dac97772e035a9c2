"""Prediction on one image: a zoo model (or any Keras model) run on a picture, decoded and drawn.

:func:`predict` letterboxes (or centre-crops, for a classifier) the image as training and ``evaluate`` crop it,
runs the model, optionally at several scales and mirrored (:mod:`training.tta`), decodes its classes, mask or
keypoints in the image's own pixels and draws them with :mod:`training.visualize`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from training.visualize import (CPM_SKELETON, LSP_SKELETON, MPII_SKELETON, _rgb_uint8, draw_keypoints,
                                mask_overlay)

__all__ = ["predict", "predict_batch", "predict_overlay", "Prediction"]


@dataclass
class Prediction:
    """What :func:`predict` found in one image (in the pixels of the image, which ``picture`` is drawn on).

    ``task`` is ``"classification"`` (``top``: ``[(label, probability), ...]``), ``"segmentation"``
    (``mask``: ``(H, W)`` class indices) or ``"pose"`` (``keypoints``: ``(K, 2)`` x, y).

    ``output`` is what the prediction was decoded from (``H, W``: the image's size):

    - classification: the model's ``(C,)`` scores as it gave them (logits or probabilities);
    - segmentation, one pass (``scales=(1.0,)``, no ``flip``, no ``base_size``): the model's ``(gh, gw, C)``
      scores on its output grid, as it gave them (the mask: these resampled bilinearly onto the image, argmax);
    - segmentation with ``scales`` or ``flip``: the ``(H, W, C)`` softmax probabilities averaged over the
      scales and mirrored passes, on the image (the mask is their argmax);
    - segmentation with ``base_size`` (PSPNet's test): its ``(H, W, C)`` probabilities averaged over the scales,
      each scale's renormalised to sum 1 per pixel, on the image (the mask is their argmax);
    - pose: the ``(hh, hw, K)`` heatmaps on the scale-1 crop's heatmap grid (CPM: ``K + 1``, its background
      map last), averaged over ``scales`` and with the mirrored pass when asked.
    """

    task: str
    picture: np.ndarray
    output: np.ndarray
    mask: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    top: list = field(default_factory=list)


# What a family's models of any size take, (takes, multiple): the backend's error says only which shapes failed
_SIZE_RULES = {"hourglass": ("heights and widths that are multiples of 64 (each hourglass halves its map 4 times)", 64)}


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


def model_task(model, name=None):
    """The task ``model`` is known to have before it runs: the registry's for ``name`` (default: the name ``zoo.get``
    attached), else a training run's (its file's metadata), else ``None`` (found from the output's shape)."""
    return _registry_task(model, name)[0] or getattr(model, "_kerazoo_task", None)


def _output_task(out, hw):
    """What an unregistered model's output is, from its shape."""
    if out.ndim == 1:
        return "classification"
    return "segmentation" if out.shape[:2] == hw else "pose"


def _probabilities(scores):
    from training.tta import softmax

    s = np.asarray(scores, np.float64)
    if (s >= 0).all() and abs(s.sum() - 1) < 1e-3:  # already a softmax
        return s
    # NaN never wins (as labels_from_scores): probability 0, all NaN all 0; +inf shares the whole mass
    s = np.nan_to_num(s, nan=-np.inf, posinf=np.finfo(np.float64).max)
    return softmax(s)


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


def _skeleton(record, k):
    """Limbs of the record's keypoint order when it is one that is known, else :func:`draw_keypoints`' default by K."""
    from training.datasets.lsp import LSP_JOINTS
    from zoo.releases import CPM_PARTS, MPII_JOINTS

    names = tuple(getattr(record, "keypoint_names", None) or ())
    if len(names) != k:
        return None
    known = {MPII_JOINTS: MPII_SKELETON, LSP_JOINTS: LSP_SKELETON, CPM_PARTS: CPM_SKELETON}
    return known.get(names, ())  # an unknown order: no limbs rather than another dataset's


def _check_box(box, padding):
    """``box`` as 4 floats x1 < x2, y1 < y2 (image px) and ``padding`` as a float > 0, or a ValueError naming them."""
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
        ok = b.size == 4 and bool(np.isfinite(b).all()) and b[2] > b[0] and b[3] > b[1]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"predict: box must be (x1, y1, x2, y2) image px with x1 < x2 and y1 < y2 (a person's or "
                         f"hand's box). Received: box={box!r}")
    if max(b[2] - b[0], b[3] - b[1]) < 2:  # a detector's normalised 0..1 box cropped about one pixel, silently
        raise ValueError(f"predict: box is {b[2] - b[0]:g} x {b[3] - b[1]:g} px, too small to hold a person or a hand; "
                         f"give image px (a box in 0..1 coordinates: multiply by the image's width and height). "
                         f"Received: box={box!r}")
    ok = isinstance(padding, (int, float, np.integer, np.floating)) and not isinstance(padding, bool)
    if not (ok and np.isfinite(padding) and padding > 0):
        raise ValueError(f"predict: box_padding must be a number > 0 (the crop's side over the box's). "
                         f"Received: box_padding={padding!r}")
    return tuple(float(v) for v in b), float(padding)  # Python floats: the messages print (1.0, ...), not np.float64


def _check_box_on_image(box, padding, W, H):
    """A box that misses the ``W x H`` image gave keypoints on the padding, far outside it, and one so large that the
    image shrinks under 1 px in the crop failed in OpenCV ("`mat` is singular"): a ValueError naming the box instead."""
    x1, y1, x2, y2 = box
    if x2 <= 0 or y2 <= 0 or x1 >= W or y1 >= H:
        raise ValueError(f"predict: box lies outside the {W}x{H} image (x from 0 to {W}, y from 0 to {H}); give the "
                         f"box in this image's px. Received: box={box}")
    side = max(x2 - x1, y2 - y1) * padding
    if side > 1000 * max(W, H):  # the whole image would span under 1/1000 of the crop: a box in other units
        raise ValueError(f"predict: box is {x2 - x1:g} x {y2 - y1:g} px, over 1000x the {W}x{H} image; give the box "
                         f"in this image's px. Received: box={box}")


def predict(model, image_rgb, *, name=None, record=None, top_k=5, heatmap_offset=None, scales=(1.0,),
            flip=False, task=None, base_size=None, box=None, box_padding=1.25) -> Prediction:
    """Run ``model`` on one RGB image and draw the prediction on it, at the image's own size.

    What the output is comes from the zoo's registry (``name``, default the name ``zoo.get``
    attached): classifiers (ResNet) give their ``top_k`` classes, named from the weights record
    when it has class names; segmentation models (FCN, PSPNet) a mask; pose models (hourglass,
    CPM) their argmax keypoints (CPM's background map dropped, as is that of a training run's
    ``.keras`` whose config.json says it trained one). Other models: ``task``
    (``"classification"``, ``"segmentation"`` or ``"pose"``), else a training run's task (its
    ``config.json``, for a run's ``.keras``), else from the output: rank 1 = classes, as large as the
    input = mask, else keypoints (a segmentation net with a coarser output must say ``task``).

    Classifiers see the centre crop of the image resized so that the crop is 224/256 of its shorter
    side (ImageNet's single-crop evaluation; an image of the input size is taken as it is). Pose
    and segmentation models see it letterboxed as training and ``evaluate`` crop it (scaled to fit
    the input, centred, zero border, so people keep their proportions; for a square input, training's
    crop); the keypoints (pixels, ``(K, 2)`` x, y, decoded as training's codec does, with the stride
    of each axis; NaN where a map has no positive value) and the mask (``(H, W)``, scores resampled
    bilinearly, then argmax) are given in the original image. Preprocessing: ``record`` (default the
    model's weights record), else pixels / 255; a model with a uint8 input gets raw pixels. A model with a
    second input (CPM) gets the centre map peaked at the input's centre, with the sigma (input px) of the
    training run the model was loaded from (its config.json), else 21 (the releases' and the training command's).
    Heatmap pixel ``g`` is at input px ``g * stride + heatmap_offset``: ``None`` (default) takes the
    record's ``heatmap_offset`` (CPM releases 3.5, hourglass:mpii 1.5), else 0.0 (training's convention); a
    number given for a classifier or a segmentation model is refused.
    ``scales`` (pose and segmentation; default ``(1.0,)``: one pass) averages several scales as ``evaluate``
    does (:mod:`training.tta`): pose crops the letterbox (or ``box``) square divided by each scale about its centre and
    averages the heatmaps in the scale-1 frame (CPM: ``(0.7, ..., 1.3)``); segmentation letterboxes the image
    at each scale (sliding windows with 2/3 overlap where a fixed-size model's canvas is larger; a model with one
    fixed axis is fixed-size, its open axis at the image's size at scale 1), averages
    the softmax probabilities on the image, then argmax (PSPNet: ``(0.5, 0.75, ..., 1.75)``). ``flip``
    (pose and segmentation) also runs the mirrored input at each scale, as ``evaluate(flip=True)``: pose
    averages each crop's heatmaps with its mirror's, flipped back with left/right joints swapped by the
    record's ``flip_pairs`` and shifted for ``heatmap_offset`` (:func:`training.targets.flip_test`);
    segmentation averages the mirrored pass's softmax probabilities, flipped back, with the plain pass's.
    ``output`` is then the averaged heatmaps, or for segmentation the averaged probabilities on the image
    (:class:`Prediction`).
    ``base_size`` (a fixed-size segmentation model): PSPNet's own test instead (:mod:`training.tta_pspnet`, as
    ``evaluate(base_size=...)``): the image resized so its long side is ``base_size * s + 1`` px at each scale,
    padded at the bottom/right with the mean up to the input, input-sized windows 2/3 apart, ``flip`` summing
    each window's logits with its mirror's; the releases' is their record's ``eval_base_size`` (512, Cityscapes 2048).

    ``box`` (pose models of a fixed input size): ``(x1, y1, x2, y2)`` image px of the person (or hand) to
    estimate, as a detector or an annotation gives it: the crop is the one training and ``evaluate`` make for that
    box, the square of the box's longer side times ``box_padding`` (1.25, MMPose's top-down default; pose-hg-train's
    and HRNet's MPII crops are the person scale's 200 px x 1.25 too) about its centre, fitted into the input's
    shorter side (a non-square input sees more than the square on its longer side; MMPose instead stretches the box
    to the input's aspect), padded as the letterbox is; without it the whole image is the crop (one centred
    person). ``scales`` then divide that crop about the box centre. The box is drawn.

    ``image_rgb``: ``(H, W, 3)`` RGB, or grey ``(H, W)``, or RGBA (alpha dropped); uint8, 16-bit
    (65535 = white), or float (in [0, 1] when its maximum is <= 1, else in [0, 255]).

    Raises:
        ValueError: an output that does not fit the task (e.g. a classifier without its top), an image
            of another shape, ``top_k`` not an integer >= 1, ``scales`` or ``flip`` for a classifier,
            ``heatmap_offset`` for a model that is not a pose model, ``flip`` for a pose model whose record has
            no ``flip_pairs``, or a ``box`` that is not four numbers x1 < x2, y1 < y2, that misses the image or
            is over 1000x its size, or for a model that is not a pose model of a fixed input size.
    """
    from training.batching import drive

    return drive(model, predict_steps(model, image_rgb, name=name, record=record, top_k=top_k,
                                      heatmap_offset=heatmap_offset, scales=scales, flip=flip, task=task,
                                      base_size=base_size, box=box, box_padding=box_padding))


def predict_batch(model, images, *, batch_size=None, return_exceptions=False, **kwargs) -> list:
    """:func:`predict` on each of ``images`` (RGB arrays, as ``predict`` takes them), ``batch_size`` crops per
    model call: a list of :class:`Prediction`, each equal to ``predict(model, image, **kwargs)`` (up to the last
    float bits a batched convolution may round otherwise).

    Batching runs each image's one pass (``scales=(1.0,)``, no ``flip``, no ``base_size``) together, images of
    one size or crops of one input size; with several scales, ``flip`` or ``base_size`` each image's passes run
    as ``predict`` runs them. ``batch_size`` ``None``: 8 on an accelerator (a GPU runs 8 crops in about the time
    of one), 1 on a CPU (:func:`training.batching.default_batch_size`; there a small model gains from batching, a
    large one does not). Memory: ``batch_size`` crops and their outputs at once.

    ``return_exceptions=True`` (as ``asyncio.gather``'s): an image's error is its list entry instead of raised, and
    the other images are predicted (an any-size model's image of a size it does not take, among a folder's).

    Raises:
        ValueError: as :func:`predict`, with the image's place (``image 3 of 10: ...``) when there are several;
            ``batch_size`` not an integer >= 1.
    """
    from training.batching import caught, check_batch_size, drive, gather, numbered

    batch_size = check_batch_size(batch_size, "predict_batch")
    images = list(images)
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        steps = [numbered(predict_steps(model, image, **kwargs), start + k + 1, len(images))
                 for k, image in enumerate(chunk)]
        if return_exceptions:
            steps = [caught(step) for step in steps]
        results.extend(drive(model, gather(steps), batch_size))
    return results


def predict_steps(model, image_rgb, *, name=None, record=None, top_k=5, heatmap_offset=None, scales=(1.0,),
                  flip=False, task=None, base_size=None, box=None, box_padding=1.25):
    """:func:`predict` as a generator of model calls (:mod:`training.batching`): yields the inputs of its first
    (or only) pass, is sent the model's output for them, and returns the :class:`Prediction`; the passes of
    several scales, ``flip`` or ``base_size`` run inside it on the model directly."""
    import zoo
    from zoo.records import check_record_arg
    from training.targets import decode_heatmaps, flip_test, keypoints_to_image, labels_from_scores, scores_to_image
    from training.affine import letterbox_matrix
    from training.transforms import affine_matrix, grid_matrix, warp_image
    from training.data.base import model_center_map_sigma

    from training.tta import check_scales, fixed_input, image_heatmaps, image_probabilities
    from training.tta_pspnet import check_base_size, pspnet_probabilities
    from training.batching import model_call

    if not hasattr(model, "inputs"):  # a name failed with "'str' object has no attribute 'inputs'"
        hint = f" such as zoo.get({model!r}, weights=...)" if isinstance(model, str) else ""
        raise TypeError(f"predict: model must be a Keras model{hint} (the command line takes names: kerazoo predict). "
                        f"Received: {type(model).__name__} {model!r:.80}")
    scales = check_scales(scales, "predict")
    base_size = check_base_size(base_size, "predict")
    if not isinstance(flip, (bool, np.bool_)):  # a string such as "no" would be truthy
        raise ValueError(f"predict: flip must be True or False (also run the mirrored image). Received: flip={flip!r}")
    # 0 failed in the drawing (max() of no text lines), -1 listed all classes but one, a string failed slicing
    if isinstance(top_k, (bool, np.bool_)) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"predict: top_k must be an integer >= 1 (how many classes a classifier lists). "
                         f"Received: top_k={top_k!r}")
    if box is not None:
        box, box_padding = _check_box(box, box_padding)
    image = _rgb_uint8(image_rgb)
    H, W = image.shape[:2]
    if box is not None:
        _check_box_on_image(box, box_padding, W, H)
    inputs = model.inputs
    h, w = inputs[0].shape[1] or H, inputs[0].shape[2] or W
    if task not in (None, "classification", "segmentation", "pose"):
        raise ValueError(f"predict: task must be 'classification', 'segmentation', 'pose' or None (from the "
                         f"registry, else the output's shape). Received: task={task!r}")
    family = _registry_task(model, name)[1]  # CPM's background map (below)
    task = task or model_task(model, name)
    if box is not None and (task not in (None, "pose") or None in tuple(inputs[0].shape[1:3])):
        what = f"gives {task}" if task not in (None, "pose") else f"takes inputs of any size {tuple(inputs[0].shape[1:3])}"
        raise ValueError(f"predict: box is for pose models of a fixed input size (the box's crop is resized to it); "
                         f"{name or model.name} {what}. Received: box={tuple(box)}")
    mat = img = center = None  # center: image px the crop is centred on (None: the image is the input)
    if task == "classification":  # ImageNet's single-crop evaluation: shorter side to 256/224 of the crop, centre crop
        img = _centre_crop(image, (h, w)) if (h, w) != (H, W) else image
    elif (h, w) == (H, W) and box is None:  # the image is the input (a fully convolutional model takes any size)
        mat, img = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), image
    check_record_arg(record, "predict")
    record = record or zoo.weights_record(model)
    # the letterbox and scaled crops are padded with the pixel the record's normalisation maps to 0, as the originals
    # pad (CPM's 128 grey, pose-hg-train's black, PSPNet's and FCN's mean); black without a record
    pad = _mean_pixel(record)
    if img is None and box is not None:
        # the datasets' crop of a box (box_center_scale, HeatmapDataset.matrix): the square of its longer side x
        # padding about its centre, fitted into the input's shorter side, so a non-square model sees the person at
        # the size it trained on (affine_matrix maps its `side` argument onto the width)
        (x1, y1, x2, y2) = box
        side = max(x2 - x1, y2 - y1) * box_padding
        center = ((x1 + x2) / 2.0, (y1 + y2) / 2.0)  # the scales' crops too are centred here
        mat = affine_matrix(center, side * w / min(w, h), (w, h))
        img = warp_image(image, mat, (w, h), pad)
    if img is None:  # scale min(w / W, h / H): the whole image fits a non-square input too (not the width alone)
        center = ((W - 1) / 2.0, (H - 1) / 2.0)
        mat = letterbox_matrix(image.shape, max(W, H * w / h), (w, h))
        img = warp_image(image, mat, (w, h), pad)
    offset_given = heatmap_offset is not None
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
    # one fixed axis makes the model fixed-size (as evaluate): scales slide (w, h) windows, the open axis at the
    # image's size, rather than canvases whose fixed axis is s times the model's
    fixed = fixed_input(model)
    takes = "any size" if all(free) else (f"any {'width' if free[0] else 'height'} (input shape "
                                          f"{tuple(inputs[0].shape[1:])})")
    multiple = None  # the side lengths must be a multiple of this, where the family's rule is known
    built_as = _registry_task(model, None)[1]  # what zoo.get built (NAME may only say what the output is)
    if all(free) and built_as in _SIZE_RULES:
        takes, multiple = _SIZE_RULES[built_as]

    # CPM's centre map: the Gaussian a training run fed (its config.json), else the release's and the command's 21 px
    sigma = model_center_map_sigma(model)

    def feeds(x):  # the model's inputs for the batch x
        if len(inputs) == 2:  # CPM: image + centre map, peaked where the crop put the image's centre (as training's)
            center_map = zoo.cpm_center_map(h, w, sigma=sigma, center=((w - 1) / 2.0, (h - 1) / 2.0))[None]
            return [x, np.repeat(center_map, len(x), axis=0)]
        return [x]

    def refused(e, x):  # the model's error on x; Keras' message names a layer's shapes, not the image
        if not any(free):
            raise e
        from zoo.errors import backend_error_text

        first = backend_error_text(e)
        if multiple:  # the rule is said once, in `takes`: here the nearest size that keeps the whole image
            up = [-(-n // multiple) * multiple for n in (x.shape[2], x.shape[1])]
            fix = f"pad it to {up[0]}x{up[1]} or resize it"
        else:
            fix = "resize or pad it to a size the model accepts (e.g. a multiple of its total stride)"
        raise ValueError(f"{name or model.name} takes inputs of {takes}, but not this {x.shape[2]}x{x.shape[1]} "
                         f"{'image' if x.shape[1:3] == (H, W) else 'scaled image'} ({type(e).__name__}: {first}); "
                         f"{fix}{'' if x.shape[1:3] == (H, W) else ', or choose other scales'}") from e

    def output(out, x):  # the model's output on x -> the one output decoded
        if isinstance(out, (list, tuple)):
            # as evaluate: a pose net's last output is its final stage; a segmentation net's first is its main
            # head (PSPNet's aux=True head comes second)
            seg = (task or _output_task(np.asarray(out[-1])[0], (x.shape[1], x.shape[2]))) == "segmentation"
            out = out[0] if seg else out[-1]
        out = np.asarray(out)
        if out.ndim == 4 and 0 in out.shape[1:3]:  # a scale's canvas smaller than the model's total stride
            raise ValueError(f"{name or model.name} outputs {out.shape[2]}x{out.shape[1]} maps (none) for this "
                             f"{x.shape[2]}x{x.shape[1]} {'image' if x.shape[1:3] == (H, W) else 'scaled image'}; "
                             f"{'choose larger scales' if x.shape[1:3] != (H, W) else 'give a larger image'}")
        return out

    def run(x):  # the scales', mirrored and windowed passes: the model called here
        try:
            out = model_call(model, feeds(x))
        except Exception as e:  # noqa: BLE001
            refused(e, x)
        return output(out, x)

    x = prep(img[None])
    try:
        raw = yield feeds(x)  # the first pass: batched with other images' by training.batching
    except Exception as e:  # noqa: BLE001
        refused(e, x)
    out = output(raw, x)[0]
    task = task or _output_task(out, (h, w))
    if scales != (1.0,) and task == "classification":
        raise ValueError(f"predict: scales are for pose and segmentation models; {name or model.name} is a "
                         f"classifier. Received: scales={scales!r}")
    if flip and task == "classification":
        raise ValueError(f"predict: flip is for pose and segmentation models; {name or model.name} is a "
                         f"classifier. Received: flip=True")
    if base_size is not None and task == "classification":
        raise ValueError(f"predict: base_size is PSPNet's segmentation test; {name or model.name} is a classifier. "
                         f"Received: base_size={base_size!r}")
    if offset_given and task != "pose":  # refused before the scales' and mirrored passes (minutes for a PSPNet)
        raise ValueError(f"predict: heatmap_offset is for pose models (heatmaps); {name or model.name} gives {task}. "
                         f"Received: heatmap_offset={heatmap_offset!r}")
    if box is not None and task != "pose":  # a model the registry did not name, found to be no pose model by its output
        raise ValueError(f"predict: box is for pose models; {name or model.name} gives {task}. Received: "
                         f"box={tuple(box)}")
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
    if base_size is not None and (task != "segmentation" or any(free)):
        what = f"a model that takes {takes}" if task == "segmentation" else f"a {task} model"
        raise ValueError(f"predict: base_size is PSPNet's test for a segmentation model of a fixed input size "
                         f"(its windows); {name or model.name} is {what}. Received: base_size={base_size!r}")
    if base_size is not None:
        # the padding is the mean: 0 once normalised; a uint8-input model gets the pixel nearest it (RGB)
        uint8 = "uint8" in str(inputs[0].dtype)
        scores = pspnet_probabilities(run, prep, image, (w, h), base_size, scales, flip, pad if uint8 else 0.0,
                                      classes=out.shape[-1], who="predict")
        mask = labels_from_scores(scores)
        return Prediction(task, mask_overlay(image, mask), scores, mask=mask)  # what the mask came from
    if task == "segmentation" and (scales != (1.0,) or flip):
        scores = image_probabilities(run, prep, image, (w, h), fixed, scales, flip, classes=out.shape[-1], pad=pad)
        mask = labels_from_scores(scores)
        return Prediction(task, mask_overlay(image, mask), scores, mask=mask)
    if task == "segmentation":
        scores = scores_to_image(out, grid_matrix(mat, (w, h), (out.shape[1], out.shape[0])), (H, W))
        mask = labels_from_scores(scores)
        return Prediction(task, mask_overlay(image, mask), out, mask=mask)
    strides = np.array(_strides((w, h), (out.shape[1], out.shape[0]), free))
    pairs = record.flip_pairs if record is not None else None
    if flip and pairs is None:  # mirrored, a left wrist is seen as a right one: its map must be swapped back
        raise ValueError("predict: flip needs the keypoints' left/right pairs, and the model's record has no flip "
                         "pairs (give record= a WeightsRecord with flip_pairs, () if none are mirrored). "
                         "Received: flip=True")

    def heatmaps(crop):  # (h, w, 3) uint8 RGB crop -> (hh, hw, K) heatmaps, averaged with the mirror's if asked
        if not flip:
            return run(prep(crop[None]))[0]
        # a model of any size: the integer stride the keypoints are decoded with (on a width not a multiple of it
        # the mirror's map lies elsewhere than input / map width says)
        return flip_test(lambda batch: run(prep(batch)), crop[None], pairs, offset=float(heatmap_offset),
                         stride=float(strides[0]) if free[0] else None)[0]

    # the scale-1 pass again, among the other scales or with its mirror: one code path for the warps and flips
    if scales != (1.0,):
        out = image_heatmaps(heatmaps, image, mat, (w, h), scales, strides, float(heatmap_offset), pad=pad,
                             center=center)
    elif flip:
        out = heatmaps(img)
    # CPM's last belief map is the background; a training run's config says whether it trained one (the name the
    # model is given, if any, may not be the registry's cpm)
    background = getattr(model, "_kerazoo_background", None)
    maps = out[..., :-1] if (family == "cpm" if background is None else background) else out
    # training's codec (argmax + quarter offset, heatmap px * stride + offset), with each axis' own stride
    kp_hm, score = decode_heatmaps(maps)
    kp = keypoints_to_image(kp_hm * strides + float(heatmap_offset), mat)
    kp[~(score > 0)] = np.nan  # no positive maximum: no keypoint (not drawn)
    picture = draw_keypoints(image, kp, skeleton=_skeleton(record, len(kp)))
    if box is not None:
        picture = _draw_box(picture, box)
    return Prediction(task, picture, out, keypoints=kp)


def _draw_box(picture, box):
    """``box`` (x1, y1, x2, y2) drawn on ``picture`` (RGB uint8), in white, to 1/16 px as the keypoints."""
    import cv2

    x1, y1, x2, y2 = (int(round(v * 16)) for v in box)
    out = np.ascontiguousarray(picture).copy()
    cv2.rectangle(out, (x1, y1), (x2, y2), (255, 255, 255), max(1, round(max(out.shape[:2]) / 400)),
                  cv2.LINE_AA, shift=4)
    return out


def _mean_pixel(record) -> tuple | int:
    """The RGB uint8 pixel nearest the one ``record``'s normalisation maps to 0 (its mean: ``mean / scale``, channels
    in RGB order), or 0 (black) without a record."""
    from training.normalization import Normalization

    if record is None:
        return 0
    return tuple(float(v) for v in np.clip(np.round(Normalization.from_record(record).zero_pixel()), 0, 255))


def predict_overlay(model, image_rgb, *, name=None, record=None):
    """:func:`predict`'s picture: keypoints, mask overlay or top classes drawn on the image."""
    return predict(model, image_rgb, name=name, record=record).picture
