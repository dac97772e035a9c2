"""Convolutional Pose Machines (Wei, Ramakrishna, Kanade & Sheikh, CVPR 2016), as released in Caffe.

The builder reproduces ``model/_trained_MPI/pose_deploy_centerMap.prototxt`` of
shihenw/convolutional-pose-machines-release (also ``_trained_LEEDS_PC``; ``_trained_FLIC`` is the
same net with 4 stages and 9 parts), layer names included:

- The Caffe net takes one (B, 4, H, W) blob and ``Slice``s it at channel 3 into ``image`` and
  ``center_map``. Here the two parts are two inputs: ``image`` (B, H, W, 3) and ``center_map``
  (B, H, W, 1); concatenating them on the channel axis gives the Caffe blob.
- ``pool_center_lower``: AVE 9x9/8 of the centre map in Caffe ceil mode (368 -> 46).
- Stage 1: ``conv1_stage1``..``conv3_stage1`` (9x9, 128) each followed by MAX 3x3/2 ceil pools,
  ``conv4_stage1`` (5x5, 32), ``conv5_stage1`` (9x9, 512), ``conv6_stage1`` (1x1, 512),
  ``conv7_stage1`` (1x1, K+1, the stage-1 belief maps).
- Stage 2 has its own image features (``conv1_stage2``..``conv3_stage2`` + pools, ``conv4_stage2``);
  stages t >= 3 reuse ``pool3_stage2`` through ``conv1_stage{t}`` (5x5, 32). Each stage t >= 2
  concatenates ``[features, beliefs of stage t-1, pool_center_lower]`` (``concat_stage{t}``, this
  order) and runs ``Mconv1..3_stage{t}`` (11x11, 128), ``Mconv4_stage{t}`` (1x1, 128) and
  ``Mconv5_stage{t}`` (1x1, K+1). Every conv but the belief layers is followed by a ReLU.

Note:
    B batch, H x W input size in pixels, K = ``num_keypoints`` (14 parts for MPI/LEEDS: head,
    neck, Rsho, Relb, Rwri, Lsho, Lelb, Lwri, Rhip, Rkne, Rank, Lhip, Lkne, Lank), plus one
    background channel. Image input: BGR pixels / 256 - 0.5. Outputs: one belief map per stage,
    each (B, H/8, W/8, K + 1) (exactly ``floor(H/8)``), last channel = background.

Initialisation (``initializer="original"``, the default) is the release's training net's
(``training/genProto.py``, which writes ``pose_train_test.prototxt``): every convolution has
``weight_filler { type: "gaussian" std: 0.01 }`` (Caffe's untruncated normal, mean 0) and
``bias_filler { type: "constant" }`` (0); no layer is copied from VGG there (the VGG-initialised
net is the CVPR'16 demo's ``pose_deploy_resize``, another architecture). ``initializer="keras"``
gives Keras' defaults (Glorot-uniform kernels, zero biases). The release's per-layer learning
rates (stage 1 x5, biases x2) are training settings, not initialisation, and are not applied here.
"""

from __future__ import annotations

import keras
import numpy as np

from zoo.errors import InputShapeError
from zoo.initializers import HostNormal
from zoo.layers import CaffePooling2D, caffe_pool_output_size
from zoo.models.inputs import build_model, builder_input, check_input_shape, register_size_rule
from zoo.registry import register

__all__ = ["cpm", "cpm_center_map", "cpm_blob_sizes", "CPM_MIN_INPUT_SIZE"]

DEFAULT_INPUT_SHAPE = (368, 368, 3)  # boxsize of the release
DEFAULT_SIGMA = 21.0  # testing/python/config: sigma = 21 (pixels)

# Every layer whose weight shape depends on `num_keypoints` (Mconv1 reads the previous beliefs).
HEAD_LAYERS = ("conv7_stage1", "Mconv1_stage*", "Mconv5_stage*")
INITIALIZERS = ("original", "keras")
WEIGHT_STD = 0.01  # genProto.py: weight_filler=dict(type='gaussian', std=0.01)


def cpm_blob_sizes(size):
    """Caffe sizes along one axis: ``(image features after pool3, pool_center_lower)``.

    Both branches must give the same positive size for ``concat_stage2`` to exist. With Caffe's
    ceil rounding the three 3x3/2 pools give ``floor(size / 8)`` and the 9x9/8 centre pooling
    ``ceil((size - 1) / 8)``: they agree only when ``size % 8`` is 0 or 1.

    Args:
        size: input height or width in pixels.

    Returns:
        ``(features, centre)`` sizes in pixels of the stride-8 maps.
    """
    n = size
    for _ in range(3):
        n = caffe_pool_output_size(n, 3, 2, 0) if n > 0 else 0
    return n, caffe_pool_output_size(size, 9, 8, 0)


def _is_valid(size):
    features, centre = cpm_blob_sizes(size)
    return features >= 1 and features == centre


CPM_MIN_INPUT_SIZE = next(n for n in range(1, 4096) if _is_valid(n))  # 8


def _nearest_valid(size):
    below = next((n for n in range(size - 1, CPM_MIN_INPUT_SIZE - 1, -1) if _is_valid(n)), None)
    above = next(n for n in range(size + 1, size + 64) if _is_valid(n))
    return [n for n in (below, above) if n is not None]


def _check_shape(input_shape):
    m = CPM_MIN_INPUT_SIZE
    shape = check_input_shape("cpm", input_shape, default=DEFAULT_INPUT_SHAPE, minimum=(m, m))
    for axis, n in zip(("height", "width"), shape[:2]):
        if n is not None and not _is_valid(n):
            features, centre = cpm_blob_sizes(n)
            raise InputShapeError(
                f"cpm: input {axis} {n} does not fit the released network: the image branch pools it "
                f"to {features} but pool_center_lower to {centre} (Caffe ceil rounding), so "
                f"concat_stage2 cannot join them. Valid sizes are {m} or more with size % 8 in (0, 1); "
                f"nearest: {' or '.join(map(str, _nearest_valid(n)))} (pad the image, as the release's "
                f"demo pads to a multiple of 8)."
            )
    return shape


register_size_rule("cpm", _check_shape)


def _split_input_tensor(input_tensor):
    """``input_tensor`` -> ``(image tensor or None, centre-map tensor or None)``."""
    if isinstance(input_tensor, (list, tuple)):
        if len(input_tensor) != 2 or input_tensor[0] is None:
            raise TypeError(
                "cpm(): `input_tensor` must be the image tensor (B, H, W, 3) or a pair (image, center_map) of "
                f"Keras tensors. Received: a {type(input_tensor).__name__} of {len(input_tensor)} item(s)"
            )
        return input_tensor[0], input_tensor[1]
    return input_tensor, None


def _check_center(shape, size):
    if tuple(shape) != (*size, 1):
        raise InputShapeError(
            f"cpm: the centre map must be (B, H, W, 1) with the image's H x W = {size[0]}x{size[1]}. "
            f"Received: shape {tuple(shape)} without the batch axis"
        )
    return tuple(shape)


def _conv(x, filters, kernel, name, relu_name=None, initializer="original"):
    # Caffe pads (k - 1) / 2 at stride 1 with odd k, which is exactly "same".
    kwargs = {}
    if initializer == "original":  # the release's gaussian weight filler; the bias filler's 0 is Keras' default
        kwargs["kernel_initializer"] = HostNormal(0.0, WEIGHT_STD)  # NumPy draws: no compile per shape on JAX
    x = keras.layers.Conv2D(filters, kernel, padding="same", name=name, **kwargs)(x)
    if relu_name:
        x = keras.layers.ReLU(name=relu_name)(x)
    return x


def _image_features(image, stage, init):
    """conv{1..3}_stage{s} (9x9, 128) + MAX 3x3/2 ceil pools; returns pool3_stage{s} (B, H/8, W/8, 128)."""
    x = image
    for i in (1, 2, 3):
        x = _conv(x, 128, 9, f"conv{i}_stage{stage}", f"relu{i}_stage{stage}", init)
        x = CaffePooling2D("max", 3, 2, name=f"pool{i}_stage{stage}")(x)
    return x


def _refine(features, beliefs, centre, outputs, stage, init):
    """concat_stage{t} -> Mconv1..5_stage{t}; returns the beliefs (B, H/8, W/8, outputs)."""
    x = keras.layers.Concatenate(axis=-1, name=f"concat_stage{stage}")([features, beliefs, centre])
    for i in (1, 2, 3):
        x = _conv(x, 128, 11, f"Mconv{i}_stage{stage}", f"Mrelu{i}_stage{stage}", init)
    x = _conv(x, 128, 1, f"Mconv4_stage{stage}", f"Mrelu4_stage{stage}", init)
    return _conv(x, outputs, 1, f"Mconv5_stage{stage}", initializer=init)


@register("cpm", family="cpm", head_layers=HEAD_LAYERS, head_kwarg="num_keypoints")
def cpm(*, weights=None, input_tensor=None, input_shape=None, stages=6, num_keypoints=14, initializer="original",
        name="cpm"):
    """Convolutional Pose Machine of the Caffe release (6 stages, 368x368, 14 parts + background).

    Args:
        weights: must be ``None`` (random init); pretrained weights go through
            ``zoo.get("cpm", weights=...)``.
        input_tensor: build on given Keras tensors instead of new ``keras.Input``s (as in
            keras.applications): either the image (B, H, W, 3) alone, e.g. a preprocessing layer's
            output on the caller's ``keras.Input``, with ``center_map`` still a new input
            (B, H, W, 1); or a pair ``(image, center_map)`` of such tensors. The model's inputs are
            ``keras.utils.get_source_inputs`` of the given tensors (in order, without repeats),
            followed by the new ``center_map`` input when only the image is given. ``input_shape``
            may be left out, else it must equal the image tensor's (H, W, 3); the size rules below
            apply to the tensor's shape. Defaults to ``None``.
        input_shape: ``(H, W, 3)`` of the ``image`` input; ``center_map`` is ``(H, W, 1)``.
            Defaults to ``(368, 368, 3)``. H and W must be >= 8 with ``H % 8`` and ``W % 8`` in
            (0, 1) (otherwise the Caffe net's own Concat fails); ``None`` entries take the images'
            sizes, checked by the same rule when the model runs (layer ``image_size_check``).
        stages: number of stages T >= 2 (the centre map enters at stage 2). Defaults to ``6``.
        num_keypoints: K parts; each stage predicts K + 1 maps (last = background).
            Defaults to ``14``.
        initializer: ``"original"``: the release's training prototxt fillers, every conv kernel
            ~ N(0, 0.01^2) and biases 0. ``"keras"``: Keras' defaults (Glorot-uniform kernels, zero
            biases). Loaded weights replace either. Defaults to ``"original"``.
        name: model name.

    Returns:
        A ``keras.Model`` with inputs ``[image (B, H, W, 3), center_map (B, H, W, 1)]`` and a list
        of T outputs (``conv7_stage1``, ``Mconv5_stage2``, ..., ``Mconv5_stage{T}``), each
        (B, floor(H/8), floor(W/8), K + 1). The last one is the final prediction.

    Raises:
        ValueError: ``weights`` is not ``None``, or ``stages``/``num_keypoints`` out of range.
        TypeError: ``input_tensor`` is not a Keras tensor or a pair of them.
        InputShapeError: ``input_shape`` (or the image tensor's shape) is not (H, W, 3), is below
            8x8, or has a size whose two stride-8 branches disagree (the message names the nearest
            valid sizes); ``input_shape`` and the image tensor disagree; a ``center_map`` tensor that
            is not (B, H, W, 1) with the image's H and W.
    """
    if weights is not None:
        raise ValueError(
            "cpm(): the builder makes randomly initialised models only (`weights=None`); load "
            f"weights with `zoo.get('cpm', weights=...)`. Received: weights={weights!r}"
        )
    for arg, value, low in (("stages", stages, 2), ("num_keypoints", num_keypoints, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"cpm(): `{arg}` must be an int >= {low}. Received: {arg}={value!r}")
    if initializer not in INITIALIZERS:
        raise ValueError(
            f"cpm(): `initializer` must be one of {', '.join(map(repr, INITIALIZERS))}. "
            f"Received: initializer={initializer!r}"
        )
    init = initializer
    image_tensor, center_tensor = _split_input_tensor(input_tensor)
    image = builder_input("cpm", image_tensor, input_shape, check=_check_shape, name="image",
                          arg="input_tensor" if center_tensor is None else "input_tensor[0]", size_rule="cpm")
    outputs = num_keypoints + 1

    h, w = image.shape[1], image.shape[2]
    if center_tensor is None:
        center_map = keras.Input(shape=(h, w, 1), name="center_map")
    else:
        center_map = builder_input("cpm", center_tensor, None, check=lambda shape: _check_center(shape, (h, w)),
                                   name="center_map", arg="input_tensor[1]")
    centre = CaffePooling2D("ave", 9, 8, name="pool_center_lower")(center_map)

    x = _image_features(image, 1, init)
    x = _conv(x, 32, 5, "conv4_stage1", "relu4_stage1", init)
    x = _conv(x, 512, 9, "conv5_stage1", "relu5_stage1", init)
    x = _conv(x, 512, 1, "conv6_stage1", "relu6_stage1", init)
    beliefs = [_conv(x, outputs, 1, "conv7_stage1", initializer=init)]

    pool3_stage2 = _image_features(image, 2, init)
    for t in range(2, stages + 1):
        if t == 2:
            features = _conv(pool3_stage2, 32, 5, "conv4_stage2", "relu4_stage2", init)
        else:
            features = _conv(pool3_stage2, 32, 5, f"conv1_stage{t}", f"relu1_stage{t}", init)
        beliefs.append(_refine(features, beliefs[-1], centre, outputs, t, init))
    return build_model([image, center_map], beliefs, name=name)


def cpm_center_map(h, w, sigma=DEFAULT_SIGMA, center=None):
    """Gaussian centre map for the ``center_map`` input, as the release's python demo builds it.

    ``exp(-((x - cx)^2 + (y - cy)^2) / (2 sigma^2))``, peak 1 at the centre (not normalised).

    Args:
        h, w: map size in pixels (the ``image`` input's H and W).
        sigma: standard deviation in pixels. Defaults to ``21`` (``testing/python/config``).
        center: ``(cx, cy)`` in pixels, x along the width. Defaults to ``(w // 2, h // 2)``
            (the demo's ``boxsize / 2`` with integer division).

    Returns:
        float32 array (h, w, 1); add a batch axis with ``[None]``.

    Raises:
        ValueError: non-positive ``h``, ``w`` or ``sigma`` (or not a number), or a ``center`` that is
            not a pair of finite numbers.
    """
    for arg, value in (("h", h), ("w", w)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"cpm_center_map(): `{arg}` must be a positive int. Received: {arg}={value!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)) or not (
        np.isfinite(sigma) and sigma > 0
    ):
        raise ValueError(f"cpm_center_map(): `sigma` must be > 0 (pixels). Received: sigma={sigma!r}")
    if center is None:
        cx, cy = w // 2, h // 2
    else:
        try:
            cx, cy = (float(c) for c in center)
        except (TypeError, ValueError):
            cx = cy = float("nan")
        if not (np.isfinite(cx) and np.isfinite(cy)):  # a NaN centre gave an all-NaN map
            raise ValueError(
                f"cpm_center_map(): `center` must be a pair (cx, cy) of finite pixel coordinates. "
                f"Received: center={center!r}"
            )
    ys = np.arange(h, dtype=np.float64)[:, None]
    xs = np.arange(w, dtype=np.float64)[None, :]
    d2 = (xs - cx) ** 2 + (ys - cy) ** 2
    return np.exp(-d2 / (2.0 * float(sigma) ** 2)).astype(np.float32)[:, :, None]
