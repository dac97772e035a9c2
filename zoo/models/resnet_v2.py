"""Pre-activation ResNet v2 (He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016).

The layout is fb.resnet.torch ``models/preresnet.lua`` as released in Caffe form (BatchNorm + Scale)
by ``soeaver/caffe-model`` ``cls/resnet-v2/deploy_resnet101_v2.prototxt`` (and
``deploy_resnet152-v2.prototxt``); every Keras layer carries that file's layer name, so a converted
``.caffemodel`` maps by name. It is NOT the TF-slim / ``keras.applications.ResNet50V2`` layout
(which strides the last block of a stage and has biases).

- Stem: ``conv1`` 7x7/2 pad 3, no bias -> ``conv1_bn`` -> ``conv1_relu`` -> ``pool1`` MAX 3x3/2
  pad 0, Caffe ceil rounding (112 -> 56).
- Blocks are numbered through the whole network, ``res1`` ... ``resN`` (ResNet-101: stages of
  3, 4, 23, 3 blocks = res1-3, res4-7, res8-30, res31-33). Block ``res{i}``:
  ``res{i}_bn`` -> ``res{i}_relu`` (pre-activation; absent in ``res1``, whose input is already
  the stem's BN-ReLU-pool output) -> ``res{i}_conv1`` 1x1 -> ``res{i}_conv1_bn`` -> ``_relu`` ->
  ``res{i}_conv2`` 3x3 (stride 2 in the first block of stages 2-4) -> BN -> ReLU ->
  ``res{i}_conv3`` 1x1 (4x channels) -> ``res{i}_eletwise`` (Add, no ReLU after it).
- Shortcut: the identity (the raw block input), except in the first block of each stage:
  ``res{i}_match_conv`` 1x1 (stride as conv2), no BN, taking the *pre-activated* tensor
  (``res{i}_bn`` after ReLU; ``pool1`` for res1).
- Head: ``res{N}_eletwise_bn`` -> ``res{N}_eletwise_relu`` -> ``pool5`` global average ->
  ``classifier`` (Dense with bias) -> ``prob``. Caffe's pool5 is ``global_pooling: true``, so
  the head is exact at every input size.
- No convolution has a bias; each BatchNorm + Scale pair is one Keras ``BatchNormalization``
  named after the BatchNorm layer (epsilon 1e-5).

Differences from preresnet.lua (facebookarchive/fb.resnet.torch, final version), where the Caffe
file wins because its weights must port: pool1 is Caffe's pad-0 ceil pool (Torch: pad 1, floor;
same 56x56 size at 224 but shifted windows); the projection shortcut is a bare 1x1 conv on the
pre-activated input (Torch: 1x1 conv + BN on the raw input); blocks 2-3 of the first stage are
pre-activated (the final preresnet.lua passes 'first' to every block of stage 1 and skips it).
With these choices ResNet-101 v2 has 44,541,480 trainable parameters, which is torchvision's
ResNet-101 count minus its four shortcut BNs: the BN channel totals of the v1 and v2 layouts
are otherwise equal (v2 moves BNs before the convs and adds the final 2048-channel one).

Initialisation (``initializer="original"``, the default) is preresnet.lua's ``ConvInit`` / ``BNInit``:
every conv ~ N(0, 2 / n), n = kW * kH * nOutputPlane (fan-out, untruncated), BN gamma 1 and beta 0,
and the ``nn.Linear`` classifier's bias zeroed while its weight keeps Torch's default U(-1/sqrt(C),
1/sqrt(C)). ``initializer="keras"``: Keras' defaults (Glorot-uniform kernels, zero biases).

Note:
    Shapes use B (batch), H, W (input height, width in pixels), K (classes). Inputs are
    (B, H, W, 3) channels-last in the weights' convention (``zoo.preprocess``). Without the top
    the model returns the pre-activated last map (B, h5, w5, 2048), h5 ~ H/32 (Caffe rounding),
    i.e. after ``res{N}_eletwise_relu``, the tensor Caffe's pool5 reads.
"""

from __future__ import annotations

import keras

from zoo.layers import CaffePooling2D
from zoo.models.inputs import INPUT_TENSOR_DOC, build_model, register_size_rule
from zoo.models.resnet import (
    CAFFE_POOL1,
    STAGE_FILTERS,
    batch_norm,
    check_builder_args,
    check_initializer,
    classifier_head,
    conv,
    input_check,
    relu,
    stem_input,
    stem_min_input_size,
)
from zoo.registry import register

__all__ = ["resnet50v2", "resnet101v2", "resnet152v2", "resnet200v2", "preact_bottleneck_block"]

_BLOCKS = {  # residual blocks in the four stages (preresnet.lua cfg)
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}


def preact_bottleneck_block(x, filters, *, index, stride=1, projection=False, preactivate=True, init=None):
    """Pre-activation bottleneck ``res{index}`` as in the soeaver Caffe release.

    Args:
        x: tensor (B, H, W, C), the previous block's sum (not activated).
        filters: width of conv1/conv2; the block outputs ``4 * filters`` channels.
        index: global block number (1-based), used in every layer name.
        stride: stride of the 3x3 ``res{index}_conv2`` and of the shortcut conv.
        projection: shortcut ``res{index}_match_conv`` (1x1, no BN) on the pre-activated input
            instead of the identity on ``x``.
        preactivate: add ``res{index}_bn`` + ``res{index}_relu`` (False only for ``res1``).
        init: conv kernels' He normal ``"fan_in"`` / ``"fan_out"``, or ``None`` (Keras' default).
    Returns:
        Tensor (B, ceil(H / stride), ceil(W / stride), 4 * filters), the un-activated sum.
    """
    p = f"res{index}"
    pre = relu(batch_norm(x, f"{p}_bn"), f"{p}_relu") if preactivate else x
    shortcut = conv(pre, 4 * filters, 1, stride=stride, name=f"{p}_match_conv", init=init) if projection else x
    y = conv(pre, filters, 1, name=f"{p}_conv1", init=init)
    y = relu(batch_norm(y, f"{p}_conv1_bn"), f"{p}_conv1_relu")
    y = conv(y, filters, 3, stride=stride, pad=1, name=f"{p}_conv2", init=init)
    y = relu(batch_norm(y, f"{p}_conv2_bn"), f"{p}_conv2_relu")
    y = conv(y, 4 * filters, 1, name=f"{p}_conv3", init=init)
    return keras.layers.Add(name=f"{p}_eletwise")([shortcut, y])


def _resnet_v2(depth, *, registry_name, weights, input_tensor, input_shape, include_top, pooling, classes,
               classifier_activation, initializer, name):
    check_builder_args(registry_name, weights=weights, include_top=include_top, pooling=pooling,
                       classes=classes, classifier_activation=classifier_activation)
    check_initializer(registry_name, initializer)
    init = None if initializer == "keras" else "fan_out"  # preresnet.lua ConvInit: n = kW * kH * nOutputPlane
    inputs = stem_input(registry_name, input_tensor, input_shape, CAFFE_POOL1)
    x = conv(inputs, 64, 7, stride=2, pad=3, name="conv1", init=init)
    x = relu(batch_norm(x, "conv1_bn"), "conv1_relu")
    k, s, p, ceil_mode = CAFFE_POOL1
    x = CaffePooling2D("max", k, s, p, ceil_mode=ceil_mode, name="pool1")(x)

    index = 0
    for stage, (filters, count) in enumerate(zip(STAGE_FILTERS, _BLOCKS[depth])):
        for i in range(count):
            index += 1
            x = preact_bottleneck_block(
                x, filters, index=index,
                stride=2 if (i == 0 and stage > 0) else 1,
                projection=i == 0,  # channels change at every stage's first block (64 -> 256 in stage 1)
                preactivate=index > 1,
                init=init,
            )
    x = relu(batch_norm(x, f"res{index}_eletwise_bn"), f"res{index}_eletwise_relu")
    x = classifier_head(x, include_top=include_top, pooling=pooling, classes=classes,
                        classifier_activation=classifier_activation, dense_name="classifier",
                        init=None if init is None else "torch_zero_bias")
    return build_model([inputs], x, name=name)


_ARGS_DOC = """
    Args:
        weights: must be ``None``: this function builds the architecture only; use
            ``zoo.get(name, weights=...)`` for pretrained or converted weights.
""" + INPUT_TENSOR_DOC + """        input_shape: ``(H, W, 3)``, ``None`` dims allowed; defaults to ``(224, 224, 3)``. The
            smallest size is 3x3 (pool1 needs one window); smaller raises
            :class:`zoo.errors.InputShapeError`.
        include_top: add ``pool5`` (global average) + ``classifier`` + ``prob``. Defaults to ``True``.
        pooling: without the top: ``None`` (feature map (B, h5, w5, 2048)), ``"avg"`` or ``"max"``
            ((B, 2048), layer ``pool5``). Defaults to ``None``.
        classes: size K of ``classifier``. Defaults to ``1000``.
        classifier_activation: activation of the ``prob`` layer; ``None`` returns the logits.
            Defaults to ``"softmax"``.
        initializer: ``"original"``: preresnet.lua's, every conv He normal std
            sqrt(2 / (k * k * C_out)), BN gamma 1 and beta 0, ``classifier`` weight ~ U(-1/sqrt(C),
            1/sqrt(C)) and bias 0. ``"keras"``: Keras' defaults (Glorot-uniform kernels). Loaded
            weights replace either. Defaults to ``"original"``.
        name: Keras model name.
    Returns:
        A ``keras.Model``: (B, H, W, 3) -> (B, K), or (B, h5, w5, 2048) / (B, 2048) without the top.
    Raises:
        ValueError, TypeError: bad argument (the message names it); ``input_tensor`` not a Keras tensor.
        InputShapeError: ``input_shape`` (or ``input_tensor``'s shape) too small or not ``(H, W, 3)``,
            or the two disagree.
"""

_REGISTER = dict(family="resnet_v2", head_layers=("classifier",), head_kwarg="classes")

for _depth in _BLOCKS:  # at import: a saved any-size model's size-check layer looks its rule up
    if stem_min_input_size(CAFFE_POOL1) > 1:
        register_size_rule(f"resnet{_depth}v2", input_check(f"resnet{_depth}v2", CAFFE_POOL1))


@register("resnet50v2", **_REGISTER)
def resnet50v2(*, weights=None, input_tensor=None, input_shape=None, include_top=True, pooling=None,
               classes=1000, classifier_activation="softmax", initializer="original",
               name="resnet50v2"):
    """Pre-activation ResNet-50 (3, 4, 6, 3 bottlenecks), soeaver Caffe layout."""
    return _resnet_v2(50, registry_name="resnet50v2", **locals())


@register("resnet101v2", **_REGISTER)
def resnet101v2(*, weights=None, input_tensor=None, input_shape=None, include_top=True, pooling=None,
                classes=1000, classifier_activation="softmax", initializer="original",
                name="resnet101v2"):
    """Pre-activation ResNet-101 (3, 4, 23, 3 bottlenecks), soeaver ``deploy_resnet101_v2``."""
    return _resnet_v2(101, registry_name="resnet101v2", **locals())


@register("resnet152v2", **_REGISTER)
def resnet152v2(*, weights=None, input_tensor=None, input_shape=None, include_top=True, pooling=None,
                classes=1000, classifier_activation="softmax", initializer="original",
                name="resnet152v2"):
    """Pre-activation ResNet-152 (3, 8, 36, 3 bottlenecks), soeaver ``deploy_resnet152-v2``."""
    return _resnet_v2(152, registry_name="resnet152v2", **locals())


@register("resnet200v2", **_REGISTER)
def resnet200v2(*, weights=None, input_tensor=None, input_shape=None, include_top=True, pooling=None,
                classes=1000, classifier_activation="softmax", initializer="original",
                name="resnet200v2"):
    """Pre-activation ResNet-200 (3, 24, 36, 3 bottlenecks), preresnet.lua depth in the Caffe layout."""
    return _resnet_v2(200, registry_name="resnet200v2", **locals())


for _fn in (resnet50v2, resnet101v2, resnet152v2, resnet200v2):
    _fn.__doc__ += "\n" + _ARGS_DOC
