"""Fully Convolutional Networks (Long, Shelhamer & Darrell), as released in Caffe.

Builders for ``fcn32s``, ``fcn16s``, ``fcn8s`` and ``fcn8s_atonce``, layer for layer the nets of
shelhamer/fcn.berkeleyvision.org (``voc-fcn*/net.py``, ``voc-fcn8s/deploy.prototxt``):

- VGG16 body whose ``conv1_1`` pads by 100 (``ZeroPadding2D`` + valid conv; the other 3x3 convs
  pad 1, which is ``"same"`` at stride 1), MAX pools 2x2/2 with Caffe's ceil rounding.
- ``fc6`` as a 7x7 valid conv (4096), ``fc7`` 1x1 (4096), dropout 0.5 (``drop6``/``drop7``),
  ``score_fr`` 1x1 to ``classes``.
- Fixed bilinear upsampling (Caffe ``Deconvolution``, ``bias_term: false``, ``lr_mult: 0``),
  skip scores ``score_pool4``/``score_pool3`` cropped (Caffe ``Crop``, top-left offsets) and summed.
- ``fcn8s_atonce`` scales pool4 by 0.01 and pool3 by 0.0001 (non-learned Caffe ``Scale`` layers
  ``scale_pool4``/``scale_pool3``) before their score layers.
- The score layers ``score_fr``, ``score_pool4`` and ``score_pool3`` start at zero: ``net.py`` gives
  them no ``weight_filler``, so Caffe fills them with its default constant 0 ("we zero-initialize the
  class scoring layer"; a new skip starts as a no-op, so FCN-16s begins as the FCN-32s it is
  initialised from). The VGG layers and fc6/fc7 start from Glorot-uniform kernels and zero biases (Caffe
  copies them from VGG16), drawn on the host (:class:`zoo.initializers.HostGlorotUniform`: the same
  distribution as Keras' default, without one XLA compile per kernel shape on JAX) and saved as Keras'
  ``GlorotUniform``.

Crops are taken against the live shape of the reference tensor, so any input size works and the
output always has the input's height and width.

Note:
    B batch, H x W input size in pixels, K = ``classes``. Inputs are BGR images minus the mean
    (104.00699, 116.66877, 122.67892), channels last, shape (B, H, W, 3). Outputs are logits
    (B, H, W, K) (apply a softmax over the last axis for probabilities).
"""

from __future__ import annotations

import keras

from zoo.errors import InputShapeError
from zoo.initializers import HostGlorotUniform
from zoo.layers import (
    BilinearKernel,
    CaffePooling2D,
    ChannelScale,
    CropToReference,
    caffe_pool_output_size,
)
from zoo.models.inputs import INPUT_TENSOR_DOC, build_model, builder_input, check_input_shape
from zoo.registry import register

__all__ = ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce", "fcn_blob_sizes", "FCN_MIN_INPUT_SIZE"]

DEFAULT_INPUT_SHAPE = (500, 500, 3)  # the example shape of voc-fcn8s/deploy.prototxt
CONV1_PAD = 100

# (block, filters, convs) of VGG16; layers are conv{block}_{i}, relu{block}_{i}, pool{block}.
VGG16_BLOCKS = ((1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3))

# Per variant: the fixed bilinear upsamplings (name, kernel, stride) in order; the skips fused
# after each but the last one (pool block, crop offset, constant scale or None); the offset of the
# final crop against the input. Offsets are those of the released prototxts (pycaffe coord_map).
VARIANTS = {
    "fcn32s": dict(ups=(("upscore", 64, 32),), skips=(), final_offset=19),
    "fcn16s": dict(
        ups=(("upscore2", 4, 2), ("upscore16", 32, 16)),
        skips=((4, 5, None),),
        final_offset=27,
    ),
    "fcn8s": dict(
        ups=(("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8)),
        skips=((4, 5, None), (3, 9, None)),
        final_offset=31,
    ),
    "fcn8s_atonce": dict(
        ups=(("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8)),
        skips=((4, 5, 0.01), (3, 9, 0.0001)),
        final_offset=31,
    ),
}

# Every layer whose weight shape depends on `classes`.
HEAD_LAYERS = ("score_fr", "upscore*", "score_pool4", "score_pool3")


def fcn_blob_sizes(size, variant="fcn8s"):
    """Caffe blob sizes along one spatial axis of an input of ``size`` pixels.

    Follows Caffe's arithmetic (conv floor, pooling ceil, deconv ``s(i-1)+k``) and checks what
    Caffe would check: every blob has at least one pixel and every ``Crop`` fits in its input.

    Args:
        size: input height or width in pixels.
        variant: a key of :data:`VARIANTS`.

    Returns:
        ``(sizes, problem)``: dict blob name -> size, and ``None`` or a sentence saying why the
        graph is not valid at this size.
    """
    spec = VARIANTS[variant]
    n = size + 2 * CONV1_PAD - 2  # conv1_1 is 3x3 valid on the padded input
    sizes = {"conv1_1": n}
    for block, _, _ in VGG16_BLOCKS:
        n = caffe_pool_output_size(n, 2, 2, 0)
        sizes[f"pool{block}"] = n
        if n < 1:
            return sizes, f"pool{block} would be empty"
    n = n - 6  # fc6: 7x7 valid
    sizes["fc6"] = sizes["score_fr"] = n
    if n < 1:
        return sizes, f"fc6 (7x7 valid on pool5 = {sizes['pool5']}) would be empty"
    for (up_name, k, s), skip in zip(spec["ups"], spec["skips"] + (None,)):
        n = s * (n - 1) + k
        sizes[up_name] = n
        if skip is None:
            break
        block, offset, _ = skip
        pool = sizes[f"pool{block}"]
        if pool < offset + n:
            return sizes, f"score_pool{block}c: crop of {n} at offset {offset} exceeds pool{block} = {pool}"
    if n < spec["final_offset"] + size:
        return sizes, f"score: crop of {size} at offset {spec['final_offset']} exceeds {spec['ups'][-1][0]} = {n}"
    sizes["score"] = size
    return sizes, None


def _minimum_size(variant):
    for n in range(1, 4096):
        if fcn_blob_sizes(n, variant)[1] is None:
            return n
    raise RuntimeError(f"no valid input size for {variant}")  # unreachable for the released nets


# The smallest valid height/width per variant, from Caffe's arithmetic (pad 100 makes it 1).
FCN_MIN_INPUT_SIZE = {v: _minimum_size(v) for v in VARIANTS}


def _check_shape(model_name, variant, input_shape):
    m = FCN_MIN_INPUT_SIZE[variant]
    shape = check_input_shape(model_name, input_shape, default=DEFAULT_INPUT_SHAPE, minimum=(m, m))
    for axis, n in zip(("height", "width"), shape[:2]):
        if n is not None:
            problem = fcn_blob_sizes(n, variant)[1]
            if problem:  # never for the released nets; kept so a new variant cannot fail silently
                raise InputShapeError(f"{model_name}: input {axis} {n} is not valid: {problem}.")
    return shape


def vgg16_body(x, *, pad=CONV1_PAD):
    """VGG16 convs/pools of FCN with Caffe names; returns ``{"pool1": t, ..., "pool5": t}``.

    Args:
        x: (B, H, W, 3) input tensor.
        pad: zero padding of ``conv1_1`` in pixels.

    Returns:
        Dict of pooled tensors, ``pool{i}`` of shape (B, ~(H + 2 pad - 2) / 2**i, ..., C_i).
    """
    pools = {}
    for block, filters, convs in VGG16_BLOCKS:
        for i in range(1, convs + 1):
            name = f"conv{block}_{i}"
            padding = "same"
            if block == 1 and i == 1:
                x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
                padding = "valid"
            x = keras.layers.Conv2D(filters, 3, padding=padding, kernel_initializer=HostGlorotUniform(),
                                    name=name)(x)
            x = keras.layers.ReLU(name=f"relu{block}_{i}")(x)
        x = CaffePooling2D("max", 2, 2, name=f"pool{block}")(x)
        pools[f"pool{block}"] = x
    return pools


def _upsample(x, classes, kernel, stride, trainable, name):
    # Caffe Deconvolution, pad 0: output s(i-1)+k, which is Keras' "valid" size for k >= s.
    return keras.layers.Conv2DTranspose(
        classes,
        kernel,
        strides=stride,
        padding="valid",
        use_bias=False,
        kernel_initializer=BilinearKernel(),
        trainable=trainable,
        name=name,
    )(x)


def _score(x, classes, name):
    # Caffe's default filler (constant 0) for the layers net.py gives no weight_filler.
    return keras.layers.Conv2D(classes, 1, kernel_initializer="zeros", bias_initializer="zeros", name=name)(x)


def _fcn(variant, *, weights, input_tensor, input_shape, classes, trainable_upsampling, name):
    if weights is not None:
        raise ValueError(
            f"{variant}(): the builder makes randomly initialised models only (`weights=None`); "
            f"load weights with `zoo.get({variant!r}, weights=...)`. Received: weights={weights!r}"
        )
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"{variant}(): `classes` must be a positive int. Received: classes={classes!r}")
    if not isinstance(trainable_upsampling, bool):  # "False" would make the bilinear deconvs train
        raise ValueError(
            f"{variant}(): `trainable_upsampling` must be True or False. "
            f"Received: trainable_upsampling={trainable_upsampling!r}"
        )
    data = builder_input(variant, input_tensor, input_shape, name="data",
                         check=lambda shape: _check_shape(variant, variant, shape))
    spec = VARIANTS[variant]

    pools = vgg16_body(data)
    x = keras.layers.Conv2D(4096, 7, padding="valid", kernel_initializer=HostGlorotUniform(),
                            name="fc6")(pools["pool5"])
    x = keras.layers.ReLU(name="relu6")(x)
    x = keras.layers.Dropout(0.5, name="drop6")(x)
    x = keras.layers.Conv2D(4096, 1, kernel_initializer=HostGlorotUniform(), name="fc7")(x)
    x = keras.layers.ReLU(name="relu7")(x)
    x = keras.layers.Dropout(0.5, name="drop7")(x)
    x = _score(x, classes, "score_fr")

    for (up_name, k, s), (block, offset, scale) in zip(spec["ups"], spec["skips"]):
        up = _upsample(x, classes, k, s, trainable_upsampling, up_name)
        skip = pools[f"pool{block}"]
        if scale is not None:  # at-once: constant Scale (lr_mult 0) so the skips start small
            skip = ChannelScale(scale, trainable=False, name=f"scale_pool{block}")(skip)
        score = _score(skip, classes, f"score_pool{block}")
        score = CropToReference(axis=2, offset=(offset,), name=f"score_pool{block}c")([score, up])
        x = keras.layers.Add(name=f"fuse_pool{block}")([up, score])

    up_name, k, s = spec["ups"][-1]
    x = _upsample(x, classes, k, s, trainable_upsampling, up_name)
    score = CropToReference(axis=2, offset=(spec["final_offset"],), name="score")([x, data])
    return build_model([data], score, name=name)


_ARGS_DOC = """

    Args:
        weights: must be ``None`` (random init); pretrained weights go through
            ``zoo.get(name, weights=...)``.
""" + INPUT_TENSOR_DOC + """        input_shape: ``(H, W, 3)``; ``None`` entries for H/W accept any size at run time.
            Defaults to ``(500, 500, 3)``. Any H, W >= 1 is valid (``conv1_1`` pads by 100).
        classes: K, number of output channels. Defaults to ``21`` (PASCAL VOC incl. background).
        trainable_upsampling: whether the bilinear ``Conv2DTranspose`` kernels train (the
            released nets keep them fixed, ``lr_mult: 0``). Defaults to ``False``.
        name: model name.

    Returns:
        A ``keras.Model`` mapping ``data`` (B, H, W, 3) to logits ``score`` (B, H, W, K).

    Raises:
        ValueError: ``weights`` is not ``None``, ``classes`` is not a positive int or
            ``trainable_upsampling`` is not a bool.
        TypeError: ``input_tensor`` is not a Keras tensor.
        InputShapeError: ``input_shape`` (or ``input_tensor``'s shape) is not (H, W, 3) or is smaller
            than 1x1, or the two disagree.
    """


@register("fcn32s", family="fcn", head_layers=HEAD_LAYERS, head_kwarg="classes")
def fcn32s(*, weights=None, input_tensor=None, input_shape=None, classes=21, trainable_upsampling=False,
           name="fcn32s"):
    return _fcn("fcn32s", weights=weights, input_tensor=input_tensor, input_shape=input_shape, classes=classes,
                trainable_upsampling=trainable_upsampling, name=name)


@register("fcn16s", family="fcn", head_layers=HEAD_LAYERS, head_kwarg="classes")
def fcn16s(*, weights=None, input_tensor=None, input_shape=None, classes=21, trainable_upsampling=False,
           name="fcn16s"):
    return _fcn("fcn16s", weights=weights, input_tensor=input_tensor, input_shape=input_shape, classes=classes,
                trainable_upsampling=trainable_upsampling, name=name)


@register("fcn8s", family="fcn", head_layers=HEAD_LAYERS, head_kwarg="classes")
def fcn8s(*, weights=None, input_tensor=None, input_shape=None, classes=21, trainable_upsampling=False,
          name="fcn8s"):
    return _fcn("fcn8s", weights=weights, input_tensor=input_tensor, input_shape=input_shape, classes=classes,
                trainable_upsampling=trainable_upsampling, name=name)


@register("fcn8s_atonce", family="fcn", head_layers=HEAD_LAYERS, head_kwarg="classes")
def fcn8s_atonce(*, weights=None, input_tensor=None, input_shape=None, classes=21, trainable_upsampling=False,
                 name="fcn8s_atonce"):
    return _fcn("fcn8s_atonce", weights=weights, input_tensor=input_tensor, input_shape=input_shape, classes=classes,
                trainable_upsampling=trainable_upsampling, name=name)


fcn32s.__doc__ = (
    "FCN-32s: ``score_fr`` upsampled 32x (``upscore``, 64x64/32), cropped at offset 19."
    + _ARGS_DOC
)
fcn16s.__doc__ = (
    "FCN-16s: ``upscore2`` (4x4/2) + ``score_pool4`` cropped at 5 (``fuse_pool4``), then "
    "``upscore16`` (32x32/16) cropped at 27." + _ARGS_DOC
)
fcn8s.__doc__ = (
    "FCN-8s (staged training): FCN-16s fusion, ``upscore_pool4`` (4x4/2) + ``score_pool3`` cropped "
    "at 9 (``fuse_pool3``), then ``upscore8`` (16x16/8) cropped at 31." + _ARGS_DOC
)
fcn8s_atonce.__doc__ = (
    "FCN-8s trained all at once: as FCN-8s, with pool4 x 0.01 (``scale_pool4``) and pool3 x 0.0001 "
    "(``scale_pool3``) as fixed ``ChannelScale`` layers before the skip scores." + _ARGS_DOC
)
