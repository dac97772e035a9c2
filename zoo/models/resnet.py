"""ResNet v1 (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016).

ResNet-50/101/152 follow Kaiming He's Caffe release (``KaimingHe/deep-residual-networks``,
``prototxt/ResNet-{50,101,152}-deploy.prototxt``) layer for layer, and every Keras layer carries
the Caffe layer's name, so a converted ``.caffemodel`` maps by name:

- ``conv1`` 7x7/2, pad 3 (symmetric: ``ZeroPadding2D(3)`` + valid conv) -> ``bn_conv1`` -> ``conv1_relu``
  -> ``pool1`` MAX 3x3/2, pad 0, Caffe ceil rounding (112 -> 56).
- Bottleneck ``res{s}{b}``: ``res{s}{b}_branch2a`` 1x1 -> ``bn{s}{b}_branch2a`` -> ``..._relu`` ->
  ``_branch2b`` 3x3 -> BN -> ReLU -> ``_branch2c`` 1x1 (4x channels) -> BN; projection shortcut
  ``res{s}a_branch1`` 1x1 + ``bn{s}a_branch1`` on the first block of every stage; ``res{s}{b}`` (Add)
  -> ``res{s}{b}_relu`` (post-activation).
- Stride 2 of stages 3-5 sits on the first 1x1 (``res3a_branch2a`` and ``res3a_branch1``);
  ``stride_in_3x3=True`` moves it to the 3x3 ``_branch2b`` (ResNet "v1.5", torchvision/NVIDIA).
- ``pool5`` average -> ``fc1000`` (Dense, logits) -> ``prob`` (Activation, softmax by default).
- Block suffixes: ``a, b, c, ...``; in ResNet-101/152 stages 3 and 4 are ``a, b1, b2, ...``
  (``res4b22``), as in the prototxts.
- Each Caffe ``BatchNorm`` + ``Scale`` pair is one Keras ``BatchNormalization`` named after the
  BatchNorm layer (``bn2a_branch2a``; the converter folds ``scale2a_branch2a`` into it), epsilon 1e-5.
- Convolutions have no bias, except ``conv1`` of ResNet-50: the ResNet-50 prototxt leaves conv1's
  ``bias_term`` at its default (true) while ResNet-101/152 set ``bias_term: false``.

ResNet-18/34 have no Caffe original; they use basic blocks (two 3x3 convs, ``_branch2a`` and
``_branch2b``) in torchvision's layout, so its weights port: no conv1 bias, and ``pool1`` MAX
3x3/2 with pad 1 and floor rounding (``nn.MaxPool2d(3, 2, 1)``). Projection shortcuts exist only
where the shape changes (first block of stages 3-5).

Initialisation (``initializer="original"``, the default). ResNet-50/101/152: the paper (sec. 3.4)
"initialize[s] the weights as in [13]" (He et al. 2015, "Delving Deep into Rectifiers", eq. 10), a
zero-mean normal with std sqrt(2 / n), n = k * k * C_in (fan-in; Caffe's ``msra`` filler default),
biases 0; the release has no training prototxt, so ``fc1000`` gets the same rule (n = its inputs).
ResNet-18/34 take torchvision's ``ResNet.__init__``: convs ``kaiming_normal_(mode="fan_out",
nonlinearity="relu")``, std sqrt(2 / (k * k * C_out)); ``fc1000`` keeps ``nn.Linear``'s default,
weight and bias ~ U(-1/sqrt(C_in), 1/sqrt(C_in)). BatchNorm gamma 1 and beta 0 in all (Caffe
``Scale``'s default fillers, torchvision's ``constant_``), as Keras'. ``initializer="keras"``:
Keras' defaults (Glorot-uniform kernels, zero biases).

``pool5``: Caffe's is AVE 7x7/1, which equals global averaging exactly when the last feature map
is 7x7 (a 224x224 input). For other sizes Caffe's 7x7 window would leave a (h-6)x(w-6) map that
the 2048-input ``fc1000`` weights cannot take (and fails below 7x7), so the Keras models always
average the whole map: the only pooling under which the released classifier applies at any size.

Note:
    Shapes use B (batch), H, W (input height, width in pixels), K (classes). Inputs are
    (B, H, W, 3) channels-last; Kaiming's weights expect BGR minus the mean
    [103.06, 115.90, 123.15] (the average of the release's mean image; ``zoo.preprocess`` applies a weights record's
    convention).
    The last feature map (``include_top=False``) is (B, h5, w5, 2048) (512 for ResNet-18/34),
    h5 ~ H/32 following the rounding rules above.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from zoo.initializers import HostHeNormal, HostUniform
from zoo.layers import CaffePooling2D, caffe_pool_output_size
from zoo.models.inputs import INPUT_TENSOR_DOC, build_model, builder_input, check_input_shape, register_size_rule
from zoo.registry import register

__all__ = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "bottleneck_block",
    "basic_block",
    "block_suffixes",
    "stem_min_input_size",
]

DEFAULT_INPUT_SHAPE = (224, 224, 3)
BN_EPSILON = 1e-5  # Caffe batch_norm_param.eps default (Keras' own default is 1e-3)
STAGE_FILTERS = (64, 128, 256, 512)  # bottleneck width (basic-block width) of stages 2..5
CAFFE_POOL1 = (3, 2, 0, True)  # (kernel, stride, pad, ceil_mode): Caffe MAX 3x3/2, ceil
TORCH_POOL1 = (3, 2, 1, False)  # torchvision nn.MaxPool2d(3, 2, padding=1), floor
INITIALIZERS = ("original", "keras")


@dataclass(frozen=True)
class _Arch:
    block: str  # "basic" or "bottleneck"
    blocks: tuple[int, int, int, int]  # residual blocks in stages 2..5
    conv1_bias: bool  # True only for Kaiming's ResNet-50
    pool1: tuple[int, int, int, bool]  # stem max pool geometry
    numbered_stages: tuple[int, ...] = ()  # stages named a, b1, b2, ... (ResNet-101/152)


_ARCHS = {
    18: _Arch("basic", (2, 2, 2, 2), conv1_bias=False, pool1=TORCH_POOL1),
    34: _Arch("basic", (3, 4, 6, 3), conv1_bias=False, pool1=TORCH_POOL1),
    50: _Arch("bottleneck", (3, 4, 6, 3), conv1_bias=True, pool1=CAFFE_POOL1),
    101: _Arch("bottleneck", (3, 4, 23, 3), conv1_bias=False, pool1=CAFFE_POOL1, numbered_stages=(3, 4)),
    152: _Arch("bottleneck", (3, 8, 36, 3), conv1_bias=False, pool1=CAFFE_POOL1, numbered_stages=(3, 4)),
}


def input_check(registry_name, pool1):
    """``registry_name``'s ``input_shape -> (H, W, C)`` check: at least :func:`stem_min_input_size` pixels."""
    minimum = stem_min_input_size(pool1)

    def check(input_shape):
        return check_input_shape(registry_name, input_shape, default=DEFAULT_INPUT_SHAPE, minimum=(minimum, minimum))

    return check


def stem_input(registry_name, input_tensor, input_shape, pool1):
    """The ``data`` input of ``registry_name``; where its stem has a minimum size above one pixel (Caffe's pad-0
    ceil pool1) and a size is left ``None``, the size rule registered under its name checks each batch (JAX gave
    NaNs for a 2x2 image, TensorFlow's MaxPool killed the process in a relaxed trace)."""
    rule = registry_name if stem_min_input_size(pool1) > 1 else None
    return builder_input(registry_name, input_tensor, input_shape, name="data",
                         check=input_check(registry_name, pool1), size_rule=rule)


# --------------------------------------------------------------------------------------------
# Shared by resnet_v2: exact Caffe convolutions, BN, argument checks, classifier head
# --------------------------------------------------------------------------------------------


def he_normal(mode):
    """A new He (MSRA) normal initializer, std sqrt(2 / fan) with ``mode`` ``"fan_in"`` or ``"fan_out"``
    (k * k * C_in or k * k * C_out), untruncated as Caffe's ``msra`` filler and torch's
    ``kaiming_normal_``; ``None`` gives Keras' default, ``"glorot_uniform"``. A new instance per
    layer: an unseeded Keras initializer fixes its seed when made, so a shared one repeats its draws."""
    if mode is None:
        return "glorot_uniform"
    return HostHeNormal(mode)  # NumPy draws: keras' VarianceScaling compiles a program per shape on JAX


def check_initializer(registry_name, initializer):
    if isinstance(initializer, str) and initializer in INITIALIZERS:
        return
    raise ValueError(
        f"{registry_name}(): `initializer` must be one of {', '.join(map(repr, INITIALIZERS))}. "
        f"Received: initializer={initializer!r}"
    )


def conv(x, filters, kernel, *, stride=1, pad=0, use_bias=False, name, init=None):
    """Caffe ``Convolution`` (symmetric ``pad``) on a (B, H, W, C) tensor; no bias by default.

    Stride 1 with ``pad = kernel // 2`` is Keras ``"same"`` exactly; any other padded case gets an
    explicit ``ZeroPadding2D`` (named ``{name}_pad``) because TF/JAX "same" with stride 2 pads
    bottom/right only. Output size ``floor((H + 2 pad - kernel) / stride) + 1``. ``init``: the
    kernel's He normal ``"fan_in"`` / ``"fan_out"`` (:func:`he_normal`), or ``None`` for Keras' default.
    """
    padding = "valid"
    if pad:
        if stride == 1 and kernel == 2 * pad + 1:
            padding = "same"
        else:
            x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=use_bias,
                         kernel_initializer=he_normal(init), name=name)(x)


def batch_norm(x, name):
    """Caffe ``BatchNorm`` + ``Scale`` as one Keras ``BatchNormalization`` (epsilon 1e-5)."""
    return layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=name)(x)


def relu(x, name):
    return layers.ReLU(name=name)(x)


def conv_output_size(size, kernel, stride, pad):
    """Caffe/Keras convolution output size along one axis (floor rounding)."""
    return (size + 2 * pad - kernel) // stride + 1


def stem_min_input_size(pool1=CAFFE_POOL1) -> int:
    """Smallest input side (pixels) for which every layer of the network has an output >= 1.

    Only the stem can fail: conv1 (7x7/2, pad 3) always gives >= 1 pixel, pool1 needs enough of
    them for one window under its rounding rule, and the later strided convolutions (1x1/2 pad 0
    or 3x3/2 pad 1) map any size >= 1 to >= 1. Computed, not hard-coded: 3 for Caffe's pad-0
    ceil pool1, 1 for torchvision's pad-1 floor pool1.
    """
    k, s, p, ceil_mode = pool1
    for size in range(1, 64):
        c1 = conv_output_size(size, 7, 2, 3)
        if c1 >= 1 and caffe_pool_output_size(c1, k, s, p, ceil_mode) >= 1:
            return size
    raise AssertionError("unreachable: pool1 fits a 63-pixel input")  # pragma: no cover


def check_builder_args(registry_name, *, weights, include_top, pooling, classes, classifier_activation):
    """Validate the common builder arguments; raise ``ValueError``/``TypeError`` naming the argument."""
    if weights is not None:
        raise ValueError(
            f"{registry_name}(): the builder only makes the architecture and takes `weights=None`; "
            f"load weights with `zoo.get('{registry_name}', weights=...)`. Received: weights={weights!r}"
        )
    if not isinstance(include_top, bool):
        raise TypeError(
            f"{registry_name}(): `include_top` must be True or False. Received: include_top={include_top!r}"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"{registry_name}(): `pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    if include_top:
        if pooling == "max":
            raise ValueError(
                f"{registry_name}(): with `include_top=True` the classifier follows Caffe's average pool5; "
                f"`pooling` must be None or 'avg'. Received: pooling={pooling!r}"
            )
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ValueError(
                f"{registry_name}(): `classes` must be a positive int when include_top=True. "
                f"Received: classes={classes!r}"
            )
        if classifier_activation is not None:
            try:
                keras.activations.get(classifier_activation)
            except (ValueError, TypeError):
                raise ValueError(
                    f"{registry_name}(): `classifier_activation` must be None or a Keras activation "
                    f"name such as 'softmax'. Received: classifier_activation={classifier_activation!r}"
                ) from None


def classifier_head(x, *, include_top, pooling, classes, classifier_activation, dense_name, init=None):
    """``pool5`` (global average) + Dense ``dense_name`` (logits) + ``prob`` activation, or pooling only.

    Args:
        x: last feature map (B, h, w, C).
        init: the Dense layer's initialisation: ``"fan_in"`` (He normal, bias 0), ``"torch"``
            (``nn.Linear``: weight and bias ~ U(-1/sqrt(C), 1/sqrt(C))), ``"torch_zero_bias"``
            (that weight, bias 0: fb.resnet.torch), ``None`` (Keras' defaults).
    Returns:
        (B, K) probabilities/logits with ``include_top``; (B, C) with ``pooling``; else ``x``.
    """
    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool5")(x)
        kwargs = {}
        if init in ("torch", "torch_zero_bias"):
            bound = 1.0 / x.shape[-1] ** 0.5
            kwargs = dict(kernel_initializer=HostUniform(-bound, bound))
            if init == "torch":
                kwargs["bias_initializer"] = HostUniform(-bound, bound)
        elif init is not None:
            kwargs = dict(kernel_initializer=he_normal(init))
        x = layers.Dense(classes, name=dense_name, **kwargs)(x)
        if classifier_activation is not None:
            x = layers.Activation(classifier_activation, name="prob")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="pool5")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="pool5")(x)
    return x


# --------------------------------------------------------------------------------------------
# Blocks and stages
# --------------------------------------------------------------------------------------------


def block_suffixes(stage: int, count: int, *, numbered: bool) -> list[str]:
    """Kaiming's block names of one stage: ``["2a", "2b", "2c"]`` or ``["4a", "4b1", ..., "4b22"]``."""
    if numbered:
        return [f"{stage}a"] + [f"{stage}b{i}" for i in range(1, count)]
    if count > 26:
        raise ValueError(f"Stage {stage} has {count} blocks; letter names go up to 26. Use numbered names.")
    return [f"{stage}{chr(ord('a') + i)}" for i in range(count)]


def bottleneck_block(x, filters, *, stride=1, projection=False, stride_in_3x3=False, suffix, init=None):
    """Post-activation bottleneck (1x1 -> 3x3 -> 1x1 with 4x ``filters`` channels), Caffe names.

    Args:
        x: tensor (B, H, W, C).
        filters: width of the 1x1/3x3 convs; the block outputs ``4 * filters`` channels.
        stride: 1 or 2; on the first 1x1 (Caffe v1) or on the 3x3 (``stride_in_3x3``, v1.5).
        projection: 1x1 conv + BN shortcut ``res{suffix}_branch1`` instead of the identity.
        suffix: block id such as ``"3a"`` or ``"4b12"``; layers are ``res{suffix}_branch2a``,
            ``bn{suffix}_branch2a``, ..., ``res{suffix}`` (Add), ``res{suffix}_relu``.
        init: conv kernels' He normal ``"fan_in"`` / ``"fan_out"``, or ``None`` (Keras' default).
    Returns:
        Tensor (B, ceil(H / stride), ceil(W / stride), 4 * filters).
    """
    s1, s3 = (1, stride) if stride_in_3x3 else (stride, 1)
    shortcut = x
    if projection:
        shortcut = conv(x, 4 * filters, 1, stride=stride, name=f"res{suffix}_branch1", init=init)
        shortcut = batch_norm(shortcut, f"bn{suffix}_branch1")
    y = conv(x, filters, 1, stride=s1, name=f"res{suffix}_branch2a", init=init)
    y = relu(batch_norm(y, f"bn{suffix}_branch2a"), f"res{suffix}_branch2a_relu")
    y = conv(y, filters, 3, stride=s3, pad=1, name=f"res{suffix}_branch2b", init=init)
    y = relu(batch_norm(y, f"bn{suffix}_branch2b"), f"res{suffix}_branch2b_relu")
    y = conv(y, 4 * filters, 1, name=f"res{suffix}_branch2c", init=init)
    y = batch_norm(y, f"bn{suffix}_branch2c")
    return relu(layers.Add(name=f"res{suffix}")([shortcut, y]), f"res{suffix}_relu")


def basic_block(x, filters, *, stride=1, projection=False, suffix, init=None, **_):
    """Post-activation basic block (3x3 -> 3x3, ``filters`` channels), torchvision layout, Caffe names.

    Args:
        x: tensor (B, H, W, C).
        filters: output channels.
        stride: 1 or 2, on the first 3x3 (``res{suffix}_branch2a``).
        projection: 1x1 conv + BN shortcut ``res{suffix}_branch1``.
        suffix: block id such as ``"3a"``.
        init: conv kernels' He normal ``"fan_in"`` / ``"fan_out"``, or ``None`` (Keras' default).
    Returns:
        Tensor (B, ceil(H / stride), ceil(W / stride), filters).
    """
    shortcut = x
    if projection:
        shortcut = conv(x, filters, 1, stride=stride, name=f"res{suffix}_branch1", init=init)
        shortcut = batch_norm(shortcut, f"bn{suffix}_branch1")
    y = conv(x, filters, 3, stride=stride, pad=1, name=f"res{suffix}_branch2a", init=init)
    y = relu(batch_norm(y, f"bn{suffix}_branch2a"), f"res{suffix}_branch2a_relu")
    y = conv(y, filters, 3, pad=1, name=f"res{suffix}_branch2b", init=init)
    y = batch_norm(y, f"bn{suffix}_branch2b")
    return relu(layers.Add(name=f"res{suffix}")([shortcut, y]), f"res{suffix}_relu")


def _resnet(depth, *, registry_name, weights, input_tensor, input_shape, include_top, pooling, classes,
            classifier_activation, stride_in_3x3, initializer, name):
    arch = _ARCHS[depth]
    check_initializer(registry_name, initializer)
    check_builder_args(registry_name, weights=weights, include_top=include_top, pooling=pooling,
                       classes=classes, classifier_activation=classifier_activation)
    if not isinstance(stride_in_3x3, bool):
        raise TypeError(
            f"{registry_name}(): `stride_in_3x3` must be True or False. Received: stride_in_3x3={stride_in_3x3!r}"
        )
    inputs = stem_input(registry_name, input_tensor, input_shape, arch.pool1)
    # Kaiming's Caffe nets: [13]'s fan-in rule; torchvision (18/34): kaiming_normal_(mode="fan_out").
    init = None if initializer == "keras" else ("fan_out" if arch.block == "basic" else "fan_in")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, use_bias=arch.conv1_bias, kernel_initializer=he_normal(init),
                      name="conv1")(x)
    x = relu(batch_norm(x, "bn_conv1"), "conv1_relu")
    k, s, p, ceil_mode = arch.pool1
    x = CaffePooling2D("max", k, s, p, ceil_mode=ceil_mode, name="pool1")(x)

    block_fn = bottleneck_block if arch.block == "bottleneck" else basic_block
    expansion = 4 if arch.block == "bottleneck" else 1
    channels = 64
    for stage, (filters, count) in enumerate(zip(STAGE_FILTERS, arch.blocks), start=2):
        suffixes = block_suffixes(stage, count, numbered=stage in arch.numbered_stages)
        for i, suffix in enumerate(suffixes):
            stride = 2 if (i == 0 and stage > 2) else 1
            projection = stride != 1 or channels != filters * expansion
            x = block_fn(x, filters, stride=stride, projection=projection,
                         stride_in_3x3=stride_in_3x3, suffix=suffix, init=init)
            channels = filters * expansion

    x = classifier_head(x, include_top=include_top, pooling=pooling, classes=classes,
                        classifier_activation=classifier_activation, dense_name="fc1000",
                        init="torch" if init == "fan_out" else init)
    return build_model([inputs], x, name=name)


_ARGS_DOC = """
    Args:
        weights: must be ``None``: this function builds the architecture only; use
            ``zoo.get(name, weights=...)`` for pretrained or converted weights.
""" + INPUT_TENSOR_DOC + """        input_shape: ``(H, W, 3)``, ``None`` dims allowed; defaults to ``(224, 224, 3)``. The
            smallest size is the one at which pool1 still has a window (see
            :func:`stem_min_input_size`); smaller raises :class:`zoo.errors.InputShapeError`.
        include_top: add ``pool5`` (global average) + ``fc1000`` + ``prob``. Defaults to ``True``.
        pooling: without the top: ``None`` (feature map (B, h5, w5, C)), ``"avg"`` or ``"max"``
            ((B, C), layer ``pool5``). Defaults to ``None``.
        classes: size K of ``fc1000`` (the layer keeps its Caffe name). Defaults to ``1000``.
        classifier_activation: activation of the ``prob`` layer; ``None`` returns the logits
            of ``fc1000``. Defaults to ``"softmax"``.
        stride_in_3x3: put the stride of stages 3-5 on the 3x3 conv (ResNet v1.5) instead of
            the first 1x1 (Caffe v1). Basic blocks (18/34) always stride their first 3x3.
            Defaults to ``False``.
        initializer: ``"original"``: ResNet-50/101/152 as the paper's [13], He normal std
            sqrt(2 / (k * k * C_in)) for every conv and ``fc1000``, biases 0; ResNet-18/34 as
            torchvision, He normal std sqrt(2 / (k * k * C_out)) and ``fc1000`` ~ U(-1/sqrt(C),
            1/sqrt(C)) with its bias. BN gamma 1, beta 0. ``"keras"``: Keras' defaults
            (Glorot-uniform kernels). Loaded weights replace either. Defaults to ``"original"``.
        name: Keras model name.
    Returns:
        A ``keras.Model``: (B, H, W, 3) -> (B, K), or (B, h5, w5, C) / (B, C) without the top.
    Raises:
        ValueError, TypeError: bad argument (the message names it); ``input_tensor`` not a Keras tensor.
        InputShapeError: ``input_shape`` (or ``input_tensor``'s shape) too small or not ``(H, W, 3)``,
            or the two disagree.
"""


_REGISTER = dict(family="resnet", head_layers=("fc1000",), head_kwarg="classes")

for _depth, _arch in _ARCHS.items():  # at import: a saved any-size model's size-check layer looks its rule up
    if stem_min_input_size(_arch.pool1) > 1:
        register_size_rule(f"resnet{_depth}", input_check(f"resnet{_depth}", _arch.pool1))


@register("resnet18", **_REGISTER)
def resnet18(*, weights=None, input_tensor=None, input_shape=None, include_top=True, pooling=None,
             classes=1000, classifier_activation="softmax", stride_in_3x3=False, initializer="original",
             name="resnet18"):
    """ResNet-18 v1: basic blocks (2, 2, 2, 2), torchvision layout, Caffe-style names."""
    return _resnet(18, registry_name="resnet18", **locals())


@register("resnet34", **_REGISTER)
def resnet34(*, weights=None, input_tensor=None, input_shape=None, include_top=True, pooling=None,
             classes=1000, classifier_activation="softmax", stride_in_3x3=False, initializer="original",
             name="resnet34"):
    """ResNet-34 v1: basic blocks (3, 4, 6, 3), torchvision layout, Caffe-style names."""
    return _resnet(34, registry_name="resnet34", **locals())


@register("resnet50", **_REGISTER)
def resnet50(*, weights=None, input_tensor=None, input_shape=None, include_top=True, pooling=None,
             classes=1000, classifier_activation="softmax", stride_in_3x3=False, initializer="original",
             name="resnet50"):
    """ResNet-50 v1: bottlenecks (3, 4, 6, 3), Kaiming He's Caffe layout (conv1 has a bias)."""
    return _resnet(50, registry_name="resnet50", **locals())


@register("resnet101", **_REGISTER)
def resnet101(*, weights=None, input_tensor=None, input_shape=None, include_top=True, pooling=None,
              classes=1000, classifier_activation="softmax", stride_in_3x3=False, initializer="original",
              name="resnet101"):
    """ResNet-101 v1: bottlenecks (3, 4, 23, 3), Kaiming He's Caffe layout (res4b1..res4b22)."""
    return _resnet(101, registry_name="resnet101", **locals())


@register("resnet152", **_REGISTER)
def resnet152(*, weights=None, input_tensor=None, input_shape=None, include_top=True, pooling=None,
              classes=1000, classifier_activation="softmax", stride_in_3x3=False, initializer="original",
              name="resnet152"):
    """ResNet-152 v1: bottlenecks (3, 8, 36, 3), Kaiming He's Caffe layout (res3b1..b7, res4b1..b35)."""
    return _resnet(152, registry_name="resnet152", **locals())


for _fn in (resnet18, resnet34, resnet50, resnet101, resnet152):
    _fn.__doc__ += "\n" + _ARGS_DOC
# Basic blocks have no 1x1 to move the stride from: stride_in_3x3 builds the same network either way, so weights do
# not fix it (zoo.api.architecture_kwargs leaves it out; for ResNet-50/101/152 a weights file's value is checked).
for _fn in (resnet18, resnet34):
    _fn.inert_kwargs = ("stride_in_3x3",)
