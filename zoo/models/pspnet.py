"""PSPNet: Pyramid Scene Parsing Network (Zhao et al., CVPR 2017), as in the Caffe release.

Follows ``hszhao/PSPNet`` ``evaluation/prototxt/pspnet50_ADE20K_473.prototxt`` and
``pspnet101_VOC2012_473.prototxt`` layer for layer, with the Caffe layer names (``/`` becomes ``_``:
``conv1_1_3x3_s2/bn`` -> ``conv1_1_3x3_s2_bn``), so the released ``.caffemodel`` files port by name:

- Deep stem: ``conv1_1_3x3_s2`` (64, 3x3/2, pad 1), ``conv1_2_3x3`` (64), ``conv1_3_3x3`` (128), each
  + BN + ReLU, then ``pool1_3x3_s2`` MAX 3x3/2 pad 1 in Caffe's ceil mode (473 -> 237 -> 119).
- Bottlenecks ``conv{stage}_{i}``: ``_1x1_reduce`` (the stride sits here, on the first 1x1, as in
  Caffe ResNet v1), ``_3x3`` (dilated, pad = dilation), ``_1x1_increase``, ``_1x1_proj`` on the first
  block of a stage; sum, ReLU. Stage 3 strides by 2; stages 4 and 5 keep the resolution with
  dilation 2 and 4: output stride 8 (473 -> 60x60x2048 ``conv5_3``).
- Pyramid pooling on ``conv5_3``: bins (1, 2, 3, 6), each AVE pool -> 1x1 conv 512 + BN + ReLU ->
  align-corners Interp back to the feature size; concat ``[conv5_3, pool6, pool3, pool2, pool1]``
  (prototxt order) -> ``conv5_4`` 3x3 512 + BN + ReLU -> dropout -> ``conv6`` 1x1 -> ``conv6_interp``
  (Interp zoom 8: 60 -> 473).
- Every conv has ``bias_term: false`` except ``conv6``. Caffe's ``BN`` layer (slope, bias, mean,
  variance; ``momentum: 0.95``) is a Keras ``BatchNormalization`` with ``momentum=0.95`` and
  ``epsilon=1e-5``: the deploy files on hszhao/PSPNet's master write yjxiong's ``bn_param { slope_filler
  bias_filler frozen: true momentum: 0.95 }`` and leave ``eps`` at its caffe.proto default, 1e-5, which
  ``bn_layer.cpp`` adds to the variance. (An earlier commit's files used ``scale_filler``/``moving_average``
  and ``var_eps``, default 1e-10; the converter reads both, and ``zoo.get(..., weights=...)`` takes each
  layer's epsilon from the prototxt it is given.)
- Initialisation: Keras' defaults (Glorot-uniform kernels, zero biases, gamma 1), the kernels drawn on
  the host (:class:`zoo.initializers.HostGlorotUniform`, same distribution, no XLA compile per shape on
  JAX). The release has deploy prototxts only (no training net with fillers), and the paper trains
  from an ImageNet ResNet, so no source gives a from-scratch initialisation to reproduce.

Note:
    Shapes use B (batch), H, W (input height, width in pixels), F (feature-map size, H / 8 roughly)
    and K (classes). Inputs follow the Caffe evaluation code: RGB minus mean
    (123.68, 116.779, 103.939), then reordered to BGR. Outputs are logits (no softmax), as in the
    deploy prototxt.
"""

from __future__ import annotations

import keras
from keras import layers

from zoo.errors import InputShapeError
from zoo.initializers import HostGlorotUniform
from zoo.layers import (
    CaffePooling2D, InterpAlignCorners, caffe_pool_output_size, interp_output_size,
)
from zoo.models.inputs import INPUT_TENSOR_DOC, build_model, builder_input, check_input_shape
from zoo.registry import register

__all__ = [
    "pspnet50", "pspnet101", "pspnet_feature_size", "pspnet_output_size", "pyramid_pool_geometry",
    "bottleneck_block", "pyramid_pooling_module",
]

DEFAULT_INPUT_SHAPE = (473, 473, 3)
MIN_INPUT_SIZE = 39  # smallest input whose 1/8 feature map (6 px) can be pooled into 6 bins
BINS = (1, 2, 3, 6)
PPM_FILTERS = 512
BN_EPSILON = 1e-5  # bn_param.eps default in hszhao/PSPNet master's caffe.proto, never set in its deploy files
BN_MOMENTUM = 0.95  # Caffe BN moving-average decay 0.05
HEAD_LAYERS = ("conv6", "aux_conv6")

# (stage, bottleneck width, output channels, stride of the first block, dilation)
STAGES = ((2, 64, 256, 1, 1), (3, 128, 512, 2, 1), (4, 256, 1024, 1, 2), (5, 512, 2048, 1, 4))
DEPTHS = {"pspnet50": (3, 4, 6, 3), "pspnet101": (3, 4, 23, 3)}


def pspnet_feature_size(size: int) -> int:
    """Size F (pixels) of the ``conv5_3`` feature map for an input of ``size`` pixels along one axis.

    ``conv1_1_3x3_s2`` (3x3/2 pad 1, floor), ``pool1_3x3_s2`` (3x3/2 pad 1, Caffe ceil) and the
    stride-2 1x1 ``conv3_1_1x1_reduce`` (floor): 473 -> 237 -> 119 -> 60; 713 -> 90.
    """
    conv1 = (size - 1) // 2 + 1
    pool1 = caffe_pool_output_size(conv1, 3, 2, 1, ceil_mode=True)
    return (pool1 - 1) // 2 + 1


def pspnet_output_size(size: int) -> int:
    """Output size (pixels) for an input of ``size`` pixels: Caffe Interp zoom 8 of F, ``8F - 7``."""
    return interp_output_size(pspnet_feature_size(size), zoom_factor=8)


def pyramid_pool_geometry(size: int, bins: int) -> tuple[int, int]:
    """``(kernel, stride)`` of the AVE pooling that splits ``size`` pixels into ``bins`` bins.

    ``stride = size // bins`` and ``kernel = size - (bins - 1) * stride``: the windows tile the map
    exactly and Caffe's ceil rounding yields exactly ``bins`` outputs. For sizes divisible by
    ``bins`` this is ``kernel = stride = size / bins``, the values in the released prototxts
    (F = 60: 60/30/20/10; F = 90: 90/45/30/15); other sizes get slightly overlapping windows.
    """
    if size < bins:
        raise InputShapeError(
            f"pyramid pooling: a {size}-pixel feature map cannot be split into {bins} bins "
            f"(needs at least {bins} pixels)."
        )
    stride = size // bins
    return size - (bins - 1) * stride, stride


def _bn(x, name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _conv_bn(x, filters, kernel, *, name, stride=1, dilation=1, relu=True):
    """Caffe Convolution (no bias, pad = dilation * (kernel // 2)) + BN [+ ReLU], named ``name``."""
    if kernel == 1:
        padding = "valid"  # pad 0; a strided 1x1 samples rows/cols 0, s, 2s, ... as in Caffe
    elif stride > 1:
        # Caffe pads symmetrically; Keras "same" with stride 2 pads bottom/right only.
        x = layers.ZeroPadding2D(dilation * (kernel // 2), name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"  # stride 1, odd kernel: symmetric pad (k // 2) * dilation, as Caffe
    x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, dilation_rate=dilation,
                      use_bias=False, kernel_initializer=HostGlorotUniform(), name=name)(x)
    x = _bn(x, f"{name}_bn")
    if relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def bottleneck_block(x, width, filters, *, name, stride=1, dilation=1, project=False):
    """PSPNet bottleneck ``conv{stage}_{i}``: 1x1 reduce (strided) -> 3x3 (dilated) -> 1x1 increase.

    Args:
        x: tensor (B, H, W, C).
        width: channels of the reduce and 3x3 convs.
        filters: output channels.
        name: Caffe block name, e.g. ``"conv3_1"``; the sum is named ``name``, its ReLU ``name_relu``.
        stride: stride of ``_1x1_reduce`` and ``_1x1_proj``.
        dilation: dilation (and padding) of ``_3x3``.
        project: use a 1x1 conv + BN shortcut (``_1x1_proj``) instead of the identity.
    Returns:
        Tensor (B, floor((H - 1) / stride) + 1, floor((W - 1) / stride) + 1, filters).
    """
    y = _conv_bn(x, width, 1, stride=stride, name=f"{name}_1x1_reduce")
    y = _conv_bn(y, width, 3, dilation=dilation, name=f"{name}_3x3")
    y = _conv_bn(y, filters, 1, relu=False, name=f"{name}_1x1_increase")
    skip = _conv_bn(x, filters, 1, stride=stride, relu=False, name=f"{name}_1x1_proj") if project else x
    x = layers.Add(name=name)([skip, y])
    return layers.ReLU(name=f"{name}_relu")(x)


def pyramid_pooling_module(x, *, bins=BINS, filters=PPM_FILTERS, name="conv5_3"):
    """Pyramid pooling: per bin AVE pool -> 1x1 conv + BN + ReLU -> Interp to F; concat.

    Args:
        x: tensor (B, Fh, Fw, C) with static Fh, Fw >= max(bins).
        bins: pyramid levels; each gives ``bins x bins`` pooled cells.
        filters: channels of each branch's 1x1 conv.
        name: prefix (``conv5_3`` -> ``conv5_3_pool6``, ``conv5_3_pool6_conv``, ``..._interp``).
    Returns:
        Tensor (B, Fh, Fw, C + len(bins) * filters): ``[x, largest bin, ..., smallest bin]``.
    """
    fh, fw = x.shape[1], x.shape[2]
    branches = []
    for b in sorted(bins, reverse=True):  # prototxt concat order: pool6, pool3, pool2, pool1
        (kh, sh), (kw, sw) = pyramid_pool_geometry(fh, b), pyramid_pool_geometry(fw, b)
        y = CaffePooling2D("ave", (kh, kw), (sh, sw), name=f"{name}_pool{b}")(x)
        y = _conv_bn(y, filters, 1, name=f"{name}_pool{b}_conv")
        y = InterpAlignCorners(name=f"{name}_pool{b}_interp")([y, x])
        branches.append(y)
    return layers.Concatenate(name=f"{name}_concat")([x, *branches])


def _check_args(model_name, weights, classes, aux, dropout):
    if weights is not None:
        raise ValueError(
            f"{model_name}(): the builder only creates randomly initialised models (weights=None); "
            f"use zoo.get('{model_name}', weights=...) to load weights. Received: weights={weights!r}"
        )
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"{model_name}: `classes` must be an integer >= 1. Received: classes={classes!r}")
    if not isinstance(aux, bool):  # a truthy string such as "False" would add the head
        raise ValueError(f"{model_name}: `aux` must be True or False. Received: aux={aux!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"{model_name}: `dropout` must be a float in [0, 1). Received: dropout={dropout!r}")


def _check_input(model_name, input_shape):
    shape = check_input_shape(
        model_name, input_shape, default=DEFAULT_INPUT_SHAPE, minimum=(MIN_INPUT_SIZE, MIN_INPUT_SIZE)
    )
    if shape[0] is None or shape[1] is None:
        raise InputShapeError(
            f"{model_name}: height and width must be fixed, because the pyramid pooling kernels are "
            f"derived from the feature-map size (the Caffe model is fixed-size too). "
            f"Received: input_shape={tuple(input_shape)}"
        )
    return shape


def _pspnet(model_name, depths, *, weights, input_tensor, input_shape, classes, aux, dropout, name):
    _check_args(model_name, weights, classes, aux, dropout)
    inputs = builder_input(model_name, input_tensor, input_shape, name="data",
                           check=lambda shape: _check_input(model_name, shape))
    x = _conv_bn(inputs, 64, 3, stride=2, name="conv1_1_3x3_s2")
    x = _conv_bn(x, 64, 3, name="conv1_2_3x3")
    x = _conv_bn(x, 128, 3, name="conv1_3_3x3")
    x = CaffePooling2D("max", 3, 2, padding=1, name="pool1_3x3_s2")(x)
    res4 = None
    for (stage, width, filters, stride, dilation), blocks in zip(STAGES, depths):
        for i in range(1, blocks + 1):
            x = bottleneck_block(
                x, width, filters, stride=stride if i == 1 else 1, dilation=dilation,
                project=i == 1, name=f"conv{stage}_{i}",
            )
        if stage == 4:
            res4 = x

    x = pyramid_pooling_module(x, name=f"conv5_{depths[-1]}")
    x = _conv_bn(x, 512, 3, name="conv5_4")
    x = layers.Dropout(dropout, name="conv5_4_dropout")(x)
    x = layers.Conv2D(classes, 1, kernel_initializer=HostGlorotUniform(), name="conv6")(x)
    outputs = InterpAlignCorners(zoom_factor=8, name="conv6_interp")(x)
    if aux:  # semseg-style auxiliary head on res4 (not in the deploy prototxt; loss weight 0.4)
        a = _conv_bn(res4, 256, 3, name="aux_3x3")
        a = layers.Dropout(dropout, name="aux_dropout")(a)
        a = layers.Conv2D(classes, 1, kernel_initializer=HostGlorotUniform(), name="aux_conv6")(a)
        outputs = [outputs, InterpAlignCorners(zoom_factor=8, name="aux_conv6_interp")(a)]
    return build_model([inputs], outputs, name=name)


_DOC = """
    Args:
        weights: must be ``None`` here (random initialisation); load pretrained or converted
            weights with ``zoo.get("{n}", weights=...)``.
""" + INPUT_TENSOR_DOC + """        input_shape: ``(H, W, 3)``, fixed H, W >= 39 (BGR, mean-subtracted; see the module note).
            Defaults to ``(473, 473, 3)``.
        classes: K, channels of ``conv6`` (VOC 21, ADE20K 150, Cityscapes 19). Defaults to `21`.
        aux: add the auxiliary head on the last ``conv4`` block (3x3 conv 256 + BN + ReLU + dropout + 1x1,
            Interp zoom 8) as a second output, for training. Defaults to `False`.
        dropout: rate of ``conv5_4_dropout`` (and ``aux_dropout``). Defaults to `0.1`.
        name: model name. Defaults to ``"{n}"``.
    Returns:
        A ``keras.Model`` from (B, H, W, 3) to logits (B, 8F - 7, 8F - 7, K) with F = ``pspnet_feature_size``
        per axis (473 -> 60 -> 473), named ``conv6_interp``; with ``aux=True`` a list
        ``[conv6_interp, aux_conv6_interp]``.
    Raises:
        ValueError: ``weights`` is not ``None``, ``aux`` is not a bool, or ``classes``/``dropout`` are
            out of range.
        TypeError: ``input_tensor`` is not a Keras tensor.
        InputShapeError: ``input_shape`` (or ``input_tensor``'s shape) is not (H, W, 3) with fixed
            H, W >= 39, or the two disagree.
"""


@register("pspnet50", family="pspnet", head_layers=HEAD_LAYERS, head_kwarg="classes", optional_layers=("aux_*",))
def pspnet50(*, weights=None, input_tensor=None, input_shape=None, classes=21, aux=False, dropout=0.1,
             name="pspnet50"):
    return _pspnet("pspnet50", DEPTHS["pspnet50"], weights=weights, input_tensor=input_tensor, input_shape=input_shape,
                   classes=classes, aux=aux, dropout=dropout, name=name)


@register("pspnet101", family="pspnet", head_layers=HEAD_LAYERS, head_kwarg="classes", optional_layers=("aux_*",))
def pspnet101(*, weights=None, input_tensor=None, input_shape=None, classes=21, aux=False, dropout=0.1,
              name="pspnet101"):
    return _pspnet("pspnet101", DEPTHS["pspnet101"], weights=weights, input_tensor=input_tensor, input_shape=input_shape,
                   classes=classes, aux=aux, dropout=dropout, name=name)


pspnet50.__doc__ = (
    "PSPNet with a dilated ResNet-50 (deep stem), as ``pspnet50_ADE20K_473.prototxt``.\n\n"
    "    21 classes: 46,716,373 trainable parameters (150 classes: 46,782,550; aux: 49,081,578).\n"
    + _DOC.format(n="pspnet50")
)
pspnet101.__doc__ = (
    "PSPNet with a dilated ResNet-101 (deep stem), as ``pspnet101_VOC2012_473.prototxt``.\n\n"
    "    21 classes: 65,708,501 trainable parameters (aux: 68,073,706).\n"
    + _DOC.format(n="pspnet101")
)
