"""Stacked Hourglass networks for human pose estimation (Newell, Yang & Deng, ECCV 2016).

Follows the Torch release ``princeton-vl/pose-hg-train`` (``src/models/hg.lua``,
``src/models/layers/Residual.lua``) layer for layer, so its weights port one-to-one:

- Residual module: pre-activation bottleneck BN-ReLU-1x1(n/2)-BN-ReLU-3x3(n/2)-BN-ReLU-1x1(n); the
  skip is the identity, or a 1x1 conv when the channel count changes. Every conv has a bias.
- Stem: 7x7/2 conv 64 (pad 3) + BN + ReLU -> Residual(64->128) -> maxpool 2 -> Residual(128->128)
  -> Residual(128->features): a 256x256 image gives a 64x64 feature map.
- Hourglass of depth 4: upper branch ``modules`` residuals; lower branch maxpool 2 -> residuals ->
  (hourglass of depth n-1, or residuals at the bottom) -> residuals -> nearest upsampling x2; sum.
- Per stack: hourglass -> ``modules`` residuals -> ``lin`` (1x1 conv + BN + ReLU) -> 1x1 conv to K
  heatmaps, the stack's output. Between stacks ``inter = inter + conv1x1(ll) + conv1x1(heatmaps)``.
- ``post_residuals=False`` gives the layout of the released MPII model (``umich-stacked-hourglass.t7``)
  and of the earlier ``hg.lua``: after each hourglass ``modules`` lin layers and no residual. (A module
  dump of that file, ``net:get(1..261)``, goes from the hourglass's CAddTable straight to the lin
  convolution; 261 modules = 8 + 7 x 32 + 29 for 8 stacks with one lin each.)

Note:
    Shapes use B (batch), H, W (input height, width in pixels), K (keypoints). Every stack outputs
    heatmaps (B, H/4, W/4, K) for intermediate supervision; the last one is the prediction.
    Inputs are RGB images scaled to [0, 1] (Torch ``image.load``). BatchNormalization uses Torch's
    epsilon 1e-5 and momentum 0.1 (Keras ``momentum=0.9``).

Initialisation (``initializer="original"``, the default) is Torch7 ``nn``'s, which ``hg.lua`` keeps
(it overrides no ``reset``): ``nn.SpatialConvolution:reset()`` (``cudnn.SpatialConvolution``
inherits it) draws weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = kW * kH *
nInputPlane; ``nn.SpatialBatchNormalization:reset()`` draws gamma from U(0, 1) (``weight:uniform()``)
with beta 0, running mean 0 and variance 1. ``initializer="keras"`` gives Keras' defaults instead
(Glorot-uniform kernels, zero biases, gamma 1).
"""

from __future__ import annotations

from keras import layers

from zoo.errors import InputShapeError
from zoo.initializers import HostUniform
from zoo.models.inputs import build_model, builder_input, check_input_shape, register_size_rule
from zoo.registry import register

__all__ = ["hourglass", "hourglass_feature_size", "residual_module", "hourglass_module"]

DEFAULT_INPUT_SHAPE = (256, 256, 3)
DEPTH = 4  # downsamplings per hourglass (64 -> 4 px)
MIN_INPUT_SIZE = 63  # smallest input whose stem feature map (16 px) survives 4 halvings
BN_EPSILON = 1e-5  # torch nn.SpatialBatchNormalization
BN_MOMENTUM = 0.9  # torch momentum 0.1 = weight of the new batch
HEAD_LAYERS = ("stack*_heatmaps", "stack*_inter_heatmaps")
INITIALIZERS = ("original", "keras")


def hourglass_feature_size(size: int) -> int:
    """Feature-map size (pixels) after the stem for an input of ``size`` pixels along one axis.

    The 7x7/2 conv with pad 3 gives ``ceil(size / 2)``; Torch's 2x2/2 max pooling then floors.
    """
    return (size + 1) // 2 // 2


def _bn(x, name, initializer="original"):
    # Torch nn BatchNormalization:reset(): weight:uniform() (gamma ~ U(0, 1)), bias:zero().
    gamma = HostUniform(0.0, 1.0) if initializer == "original" else "ones"
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, gamma_initializer=gamma, name=name)(x)


def _conv(x, filters, kernel, *, name, initializer="original", **kwargs):
    """Conv2D with a bias; ``"original"``: Torch ``SpatialConvolution:reset()``, weight and bias
    ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = kernel * kernel * input channels."""
    if initializer == "original":
        bound = 1.0 / (kernel * kernel * x.shape[-1]) ** 0.5
        # One instance per weight: each draws its own seed, as Keras' default initializers do. Host
        # (NumPy) draws: keras.initializers.RandomUniform compiles a program per weight shape on JAX.
        kwargs.update(kernel_initializer=HostUniform(-bound, bound), bias_initializer=HostUniform(-bound, bound))
    return layers.Conv2D(filters, kernel, name=name, **kwargs)(x)


def residual_module(x, filters, *, name, initializer="original"):
    """Pre-activation bottleneck residual module (``Residual.lua``).

    Args:
        x: tensor (B, H, W, C_in).
        filters: output channels ``n``; the bottleneck has ``n // 2``.
        name: prefix of every layer name, e.g. ``"stack1_hg4_up1_res1"``.
        initializer: ``"original"`` (Torch7 ``nn``'s, see the module docstring) or ``"keras"``.
    Returns:
        Tensor (B, H, W, filters).
    """
    init = initializer
    mid = filters // 2
    y = _bn(x, f"{name}_bn1", init)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(y, mid, 1, name=f"{name}_conv1", initializer=init)
    y = _bn(y, f"{name}_bn2", init)
    y = layers.ReLU(name=f"{name}_relu2")(y)
    y = _conv(y, mid, 3, padding="same", name=f"{name}_conv2", initializer=init)  # stride 1, pad 1
    y = _bn(y, f"{name}_bn3", init)
    y = layers.ReLU(name=f"{name}_relu3")(y)
    y = _conv(y, filters, 1, name=f"{name}_conv3", initializer=init)
    skip = x
    if x.shape[-1] != filters:
        skip = _conv(x, filters, 1, name=f"{name}_skip", initializer=init)
    return layers.Add(name=f"{name}_add")([skip, y])


def _residuals(x, filters, modules, name, initializer):
    for m in range(1, modules + 1):
        x = residual_module(x, filters, name=f"{name}_res{m}", initializer=initializer)
    return x


def hourglass_module(x, *, depth, features, modules, name, initializer="original"):
    """One hourglass of ``depth`` downsamplings (``hourglass(n, f, inp)`` in ``hg.lua``).

    Levels are named by their depth: the outermost is ``{name}{depth}`` (``stack1_hg4``), the
    innermost ``{name}1``. Branches follow the Lua variables: ``up1``, ``low1``, ``low2`` (bottom
    level only), ``low3``.

    Args:
        x: tensor (B, H, W, features) with H and W divisible by ``2**depth``.
        depth: number of 2x downsamplings (4 in the paper).
        features: channels everywhere in the hourglass.
        modules: residual modules per branch (``nModules``).
        name: prefix, e.g. ``"stack1_hg"``.
        initializer: ``"original"`` (Torch7 ``nn``'s, see the module docstring) or ``"keras"``.
    Returns:
        Tensor (B, H, W, features).
    """
    init = initializer
    level = f"{name}{depth}"
    up1 = _residuals(x, features, modules, f"{level}_up1", init)
    low1 = layers.MaxPooling2D(2, 2, name=f"{level}_pool")(x)
    low1 = _residuals(low1, features, modules, f"{level}_low1", init)
    if depth > 1:
        low2 = hourglass_module(low1, depth=depth - 1, features=features, modules=modules, name=name,
                                initializer=init)
    else:
        low2 = _residuals(low1, features, modules, f"{level}_low2", init)
    low3 = _residuals(low2, features, modules, f"{level}_low3", init)
    up2 = layers.UpSampling2D(2, interpolation="nearest", name=f"{level}_up2")(low3)
    return layers.Add(name=f"{level}_add")([up1, up2])


def _lin(x, features, name, initializer):
    """``lin`` of ``hg.lua``: 1x1 conv (bias) + BN + ReLU, named ``{name}_conv`` / ``_bn`` / ``_relu``."""
    x = _conv(x, features, 1, name=f"{name}_conv", initializer=initializer)
    return layers.ReLU(name=f"{name}_relu")(_bn(x, f"{name}_bn", initializer))


def _check_positive_int(value, arg, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"hourglass: `{arg}` must be an integer >= {minimum}. Received: {arg}={value!r}")


def _check_input(input_shape):
    shape = check_input_shape(
        "hourglass", input_shape, default=DEFAULT_INPUT_SHAPE, minimum=(MIN_INPUT_SIZE, MIN_INPUT_SIZE)
    )
    for axis, size in zip(("height", "width"), shape[:2]):
        if size is None:
            continue
        feat = hourglass_feature_size(size)
        if feat % 2**DEPTH:
            raise InputShapeError(
                f"hourglass: input {axis} {size} gives a {feat}-pixel feature map after the stem "
                f"(ceil({axis} / 2) // 2), but each hourglass halves it {DEPTH} times, so it must be a "
                f"multiple of 2^{DEPTH} = {2**DEPTH}: use an input {axis} that is a multiple of 64 "
                f"(e.g. 64, 128, 192, 256). Received: input_shape={tuple(input_shape)}"
            )
    return shape


register_size_rule("hourglass", _check_input)


@register("hourglass", family="hourglass", head_layers=HEAD_LAYERS, head_kwarg="num_keypoints")
def hourglass(*, weights=None, input_tensor=None, input_shape=None, stacks=8, num_keypoints=16, features=256,
              modules=1, post_residuals=True, initializer="original", name="hourglass"):
    """Stacked Hourglass network (Newell et al. 2016), as in ``pose-hg-train``.

    Args:
        weights: must be ``None`` here (random initialisation); load pretrained or converted
            weights with ``zoo.get("hourglass", weights=...)``.
        input_tensor: a Keras tensor (B, H, W, 3) to build the model on instead of a new
            ``keras.Input`` (as in keras.applications), e.g. a preprocessing layer's output on the
            caller's ``keras.Input``; the model's inputs are then
            ``keras.utils.get_source_inputs(input_tensor)``. ``input_shape`` may be left out, else it
            must equal the tensor's (H, W, 3); the size rule below applies to the tensor's shape.
            Defaults to ``None``.
        input_shape: ``(H, W, 3)``, RGB in [0, 1]. ``ceil(H / 2) // 2`` (and the same for W) must be
            a positive multiple of 16, e.g. H, W multiples of 64; ``None`` sizes take the images'
            sizes, checked by the same rule when the model runs (layer ``image_size_check``,
            :class:`zoo.models.inputs.InputSizeCheck`), so a 100x100 image raises this rule's
            ``InputShapeError`` rather than the backend's error from an hourglass ``_add``.
            Defaults to ``(256, 256, 3)``.
        stacks: number of stacked hourglasses (``nStack``). Defaults to `8`.
        num_keypoints: heatmaps per stack, K (``nParts``; MPII: 16). Defaults to `16`.
        features: channels in the hourglasses (``nFeats``); must be even. Defaults to `256`.
        modules: residual modules per branch and after each hourglass (``nModules``). Defaults to `1`.
        post_residuals: ``True`` (pose-hg-train's final ``hg.lua``): after each hourglass ``modules``
            residuals, then one lin (1x1 conv + BN + ReLU). ``False`` (the released MPII model
            ``umich-stacked-hourglass.t7``, the earlier ``hg.lua``): ``modules`` lin layers, no
            residual; ``zoo.get("hourglass", weights="mpii")`` sets it. Defaults to `True`.
        initializer: ``"original"``: Torch7 ``nn``'s, as pose-hg-train trains from scratch (conv
            weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = kH * kW * C_in; BN gamma
            ~ U(0, 1), beta 0). ``"keras"``: Keras' defaults (Glorot-uniform kernels, zero biases,
            gamma 1). Loaded weights replace either. Defaults to ``"original"``.
        name: model name. Defaults to ``"hourglass"``.
    Returns:
        A ``keras.Model`` from images (B, H, W, 3) to a list of ``stacks`` heatmap tensors
        (B, ceil(H/2)//2, ceil(W/2)//2, K) named ``stack{i}_heatmaps`` (64x64 for 256x256 input).
        8 stacks, 16 keypoints: 25,434,112 trainable parameters (23,717,888 with
        ``post_residuals=False``, the released model).
    Raises:
        ValueError: ``weights`` is not ``None`` or an argument is out of range.
        TypeError: ``input_tensor`` is not a Keras tensor.
        InputShapeError: ``input_shape`` (or ``input_tensor``'s shape) is not (H, W, 3) or breaks the
            size rule above, or the two disagree.
    """
    if weights is not None:
        raise ValueError(
            f"hourglass(): the builder only creates randomly initialised models (weights=None); "
            f"use zoo.get('hourglass', weights=...) to load weights. Received: weights={weights!r}"
        )
    _check_positive_int(stacks, "stacks")
    _check_positive_int(num_keypoints, "num_keypoints")
    _check_positive_int(modules, "modules")
    _check_positive_int(features, "features", minimum=2)
    if not isinstance(post_residuals, bool):
        raise ValueError(
            f"hourglass: `post_residuals` must be True or False. Received: post_residuals={post_residuals!r}"
        )
    if features % 2:
        raise ValueError(
            f"hourglass: `features` must be even (bottleneck of features / 2). Received: features={features}"
        )
    if initializer not in INITIALIZERS:
        raise ValueError(
            f"hourglass: `initializer` must be one of {', '.join(map(repr, INITIALIZERS))}. "
            f"Received: initializer={initializer!r}"
        )
    init = initializer
    inputs = builder_input("hourglass", input_tensor, input_shape, check=_check_input, name="image",
                           size_rule="hourglass")
    # Stem: symmetric pad 3 + valid conv = Torch's SpatialConvolution(3, 64, 7, 7, 2, 2, 3, 3).
    x = layers.ZeroPadding2D(3, name="stem_conv_pad")(inputs)
    x = _conv(x, 64, 7, strides=2, name="stem_conv", initializer=init)
    x = _bn(x, "stem_bn", init)
    x = layers.ReLU(name="stem_relu")(x)
    x = residual_module(x, 128, name="stem_res1", initializer=init)
    x = layers.MaxPooling2D(2, 2, name="stem_pool")(x)
    x = residual_module(x, 128, name="stem_res2", initializer=init)
    inter = residual_module(x, features, name="stem_res3", initializer=init)

    outputs = []
    for i in range(1, stacks + 1):
        s = f"stack{i}"
        hg = hourglass_module(inter, depth=DEPTH, features=features, modules=modules, name=f"{s}_hg",
                              initializer=init)
        if post_residuals:
            ll = _lin(_residuals(hg, features, modules, s, init), features, f"{s}_lin", init)
        else:  # the released model: nModules x lin, no residual
            ll = hg
            for j in range(1, modules + 1):
                ll = _lin(ll, features, f"{s}_lin" if j == 1 else f"{s}_lin{j}", init)
        heatmaps = _conv(ll, num_keypoints, 1, name=f"{s}_heatmaps", initializer=init)
        outputs.append(heatmaps)
        if i < stacks:  # feed features and predictions back into the next stack
            ll_ = _conv(ll, features, 1, name=f"{s}_inter_ll", initializer=init)
            hm_ = _conv(heatmaps, features, 1, name=f"{s}_inter_heatmaps", initializer=init)
            inter = layers.Add(name=f"{s}_inter_add")([inter, ll_, hm_])
    return build_model([inputs], outputs, name=name)
