"""One handler per Caffe layer type (:data:`LAYER_HANDLERS`), used by :mod:`converters.caffe.keras` to build the model.

A handler gets ``(layer, inputs, ctx)``: the :class:`graph.Layer`, the Keras tensors of its bottoms, and the
:class:`context.Context`; it returns one Keras tensor per top and assigns the layer's blobs.

Layout: 4-D blobs become NHWC tensors ``(B, H, W, C)``; blobs of other ranks keep Caffe's axis
order (``(B, N)`` after InnerProduct). Caffe NCHW axes map to NHWC as ``{0: 0, 1: 3, 2: 1, 3: 2}``.
Keras layer names are the Caffe layer names (``ctx.name``); helper layers get a suffix (``conv1_pad``).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import keras

from converters.caffe import blobs as B
from converters.caffe import keras_layers as L
from converters.caffe import keras_math as M
from converters.caffe.context import at, bn_epsilon, uses_batch_stats
from converters.caffe.errors import GraphError, UnsupportedLayerError, WeightsMismatchError
from converters.caffe.graph import Layer
from converters.caffe.params import conv_geometry, enum, opt, pool_geometry, rep, sub
from zoo.layers import ChannelScale, CropToReference, CaffePooling2D, InterpAlignCorners

__all__ = ["LAYER_HANDLERS"]


def convert_input(layer, inputs, ctx):
    return [ctx.tensors[t] for t in layer.tops]


def _init(layer):
    """Zero initializers when blobs overwrite the weights: random ones cost a compile per shape on JAX.

    Initializer objects, not names: Keras resolves a name through its deserializer (~15 us per layer),
    and the config is the same.
    """
    if not layer.blobs:
        return {}
    return dict(kernel_initializer=keras.initializers.Zeros(), bias_initializer=keras.initializers.Zeros())


def _bn_init():
    """``BatchNormalization``'s default initializers, as objects (see :func:`_init`)."""
    zeros, ones = keras.initializers.Zeros, keras.initializers.Ones
    return dict(beta_initializer=zeros(), gamma_initializer=ones(), moving_mean_initializer=zeros(),
                moving_variance_initializer=ones())


def _num_output(layer, p):
    n = opt(p, "num_output", None)
    if n is None and layer.blobs:
        return None
    if not n:
        raise GraphError(f"layer '{layer.name}' ({layer.type}{at(layer)}): num_output is missing or 0")
    return int(n)


def convert_convolution(layer, inputs, ctx):
    cp = sub(layer.param, "convolution_param")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv_geometry(cp, layer)
    groups, bias = int(opt(cp, "group", 1)), bool(opt(cp, "bias_term", True))
    n = _num_output(layer, cp) or layer.blobs[0].shape[0]
    if max(sh, sw) > 1 and max(dh, dw) > 1:
        raise UnsupportedLayerError(
            f"layer '{layer.name}' (Convolution{at(layer)}): stride > 1 together with dilation > 1 is not supported"
        )
    x = inputs[0]
    # Stride 1 with pad = d (k - 1) / 2 on both axes is Keras "same" exactly: no ZeroPadding2D layer
    # (one layer and one copy of the blob fewer; a ResNet's every 3x3 conv). Other pads are explicit,
    # since "same" with stride 2 pads the bottom/right only.
    same = (sh, sw) == (1, 1) and (ph, pw) != (0, 0) and (2 * ph, 2 * pw) == (dh * (kh - 1), dw * (kw - 1))
    if (ph or pw) and not same:
        x = keras.layers.ZeroPadding2D(((ph, ph), (pw, pw)), name=ctx.aux(layer.name, "pad"))(x)
    cls = L.GroupedConv2D if groups > 1 else keras.layers.Conv2D
    conv = cls(n, (kh, kw), strides=(sh, sw), padding="same" if same else "valid", dilation_rate=(dh, dw),
               groups=groups, use_bias=bias, name=ctx.name(layer), **_init(layer))
    arrays = [B.conv_kernel(layer.blobs[0])] + ([B.vector(layer.blobs[1])] if bias else []) if layer.blobs else None
    return [ctx.call(conv, x, arrays, layer)]


def convert_deconvolution(layer, inputs, ctx):
    cp = sub(layer.param, "convolution_param")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv_geometry(cp, layer)
    groups, bias = int(opt(cp, "group", 1)), bool(opt(cp, "bias_term", True))
    n = _num_output(layer, cp) or layer.blobs[0].shape[1] * groups
    keh, kew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    deconv = keras.layers.Conv2DTranspose(n, (keh, kew), strides=(sh, sw), padding="valid",
                                          use_bias=bias, name=ctx.name(layer), **_init(layer))
    arrays = None
    if layer.blobs:
        arrays = [B.deconv_kernel(layer.blobs[0], groups, (dh, dw))] + ([B.vector(layer.blobs[1])] if bias else [])
    y = ctx.call(deconv, inputs[0], arrays, layer)
    # Keras 'valid' gives s*i + max(k - s, 0); Caffe s*(i - 1) + k - 2p, aligned at the start.
    crop = ((ph, ph + max(sh - keh, 0)), (pw, pw + max(sw - kew, 0)))
    if any(c for pair in crop for c in pair):
        y = keras.layers.Cropping2D(crop, name=ctx.aux(layer.name, "crop"))(y)
    return [y]


def _static_chw(x, bottom, ctx, layer):
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    if None in (h, w, c):
        raise GraphError(
            f"layer '{layer.name}' (InnerProduct{at(layer)}) flattens the spatial blob '{bottom}': "
            f"the model needs a fixed input size (pass input_shape=(H, W))"
        )
    return (c, h, w)


def convert_inner_product(layer, inputs, ctx):
    ip = sub(layer.param, "inner_product_param")
    bias, transpose = bool(opt(ip, "bias_term", True)), bool(opt(ip, "transpose", False))
    n = _num_output(layer, ip) or layer.blobs[0].shape[1 if transpose else 0]
    x = inputs[0]
    rank = len(x.shape)
    axis = int(opt(ip, "axis", 1))
    axis = axis + rank if axis < 0 else axis
    chw, nchw = None, rank == 4 and axis == 3
    if nchw:  # Caffe's last axis is W, NHWC's is C: apply the Dense in Caffe's (N, C, H, W) order
        x = keras.layers.Permute((3, 1, 2), name=ctx.aux(layer.name, "to_nchw"))(x)
    elif rank == 4 and axis == 1:
        chw = _static_chw(x, layer.bottoms[0], ctx, layer)
        x = keras.layers.Flatten(name=ctx.aux(layer.name, "flatten"))(x)  # NHWC order: kernel reordered
    elif rank != axis + 1:
        if axis + 1 == 4:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' (InnerProduct{at(layer)}): axis {axis} on a {rank}-D blob is not supported"
            )
        x = L.CaffeReshape((-1,), axis=axis, num_axes=-1, name=ctx.aux(layer.name, "flatten"))(x)
    dense = keras.layers.Dense(n, use_bias=bias, name=ctx.name(layer), **_init(layer))
    arrays = None
    if layer.blobs:
        try:
            kernel = B.dense_kernel(layer.blobs[0], transpose=transpose, chw=chw)
        except WeightsMismatchError as e:  # the net read at one size, converted at another
            raise WeightsMismatchError(
                f"layer '{layer.name}' (InnerProduct{at(layer)}): {e}; its weights fit another input size (an "
                f"InnerProduct on a spatial blob takes the size the net was trained at)") from None
        arrays = [kernel] + ([B.vector(layer.blobs[1])] if bias else [])
    y = ctx.call(dense, x, arrays, layer)
    if nchw:  # the 4-D top (N, C, H, num_output) back to NHWC
        y = keras.layers.Permute((2, 3, 1), name=ctx.aux(layer.name, "to_nhwc"))(y)
    return [y]


def convert_pooling(layer, inputs, ctx):
    pp = sub(layer.param, "pooling_param")
    mode = enum(opt(pp, "pool", 0), ("MAX", "AVE", "STOCHASTIC"))
    if mode == "STOCHASTIC":
        raise UnsupportedLayerError(f"layer '{layer.name}' (Pooling{at(layer)}): pool STOCHASTIC is not supported")
    kernel, stride, pad, global_pooling, ceil_mode = pool_geometry(pp, layer)
    pool = CaffePooling2D("max" if mode == "MAX" else "ave", kernel, stride, pad, ceil_mode=ceil_mode,
                          global_pooling=global_pooling, name=ctx.name(layer))
    return [pool(inputs[0])]


def _simple(make: Callable[[Layer, Any], Any]):
    """Handler for a weightless one-bottom, one-top layer built by ``make(layer, name)``."""

    def handler(layer, inputs, ctx):
        return [make(layer, ctx.name(layer))(inputs[0])]

    return handler


def _relu(layer, name):
    slope = float(opt(sub(layer.param, "relu_param"), "negative_slope", 0.0))
    if slope < 0:  # Keras' ReLU and LeakyReLU refuse negative slopes; Caffe takes any
        return M.CaffeReLU(slope, name=name)
    return keras.layers.ReLU(negative_slope=slope, name=name) if slope else keras.layers.ReLU(name=name)


def _power(layer, name):
    p = sub(layer.param, "power_param")
    return M.CaffePower(opt(p, "power", 1.0), opt(p, "scale", 1.0), opt(p, "shift", 0.0), name=name)


def _exp_log(cls, field_name):
    def make(layer, name):
        p = sub(layer.param, field_name)
        base = opt(p, "base", -1.0)
        if base != -1 and not base > 0:  # as Caffe's CHECK_GT(base, 0) in exp_layer.cpp / log_layer.cpp
            raise GraphError(f"layer '{layer.name}' ({layer.type}{at(layer)}): {field_name}.base must be -1 (e) "
                             f"or > 0, got {base:g}")
        return cls(base, opt(p, "scale", 1.0), opt(p, "shift", 0.0), name=name)

    return make


def convert_prelu(layer, inputs, ctx):
    x = inputs[0]
    shared = bool(opt(sub(layer.param, "prelu_param"), "channel_shared", False))
    rank = len(x.shape)
    shared_axes = list(range(1, rank)) if shared else [a for a in range(1, rank) if a != L.keras_axis(1, rank)]
    prelu = keras.layers.PReLU(shared_axes=shared_axes or None, name=ctx.name(layer))
    y = prelu(x)
    if layer.blobs:
        shape = tuple(prelu.weights[0].shape)
        n = math.prod(shape)  # only the channel axis is unshared: (1, 1, C) NHWC, (C, 1) for (N, C, L)
        alpha = B.vector(layer.blobs[0], n, what=f"layer '{layer.name}' (PReLU)")
        ctx.assign(prelu, [alpha.reshape(shape)], layer)
    return [y]


def convert_batchnorm(layer, inputs, ctx):
    bp = sub(layer.param, "batch_norm_param")
    x = inputs[0]
    eps = bn_epsilon(layer, batch_stats=True)
    if uses_batch_stats(layer):  # the stored statistics are not used
        return [M.BatchStatsNorm(L.keras_axis(1, len(x.shape)), eps, name=ctx.name(layer))(x)]
    scale = ctx.fold.get(layer.name)
    bn = keras.layers.BatchNormalization(axis=L.keras_axis(1, len(x.shape)), epsilon=eps,
                                         momentum=float(opt(bp, "moving_average_fraction", 0.999)),
                                         name=ctx.name(layer), **_bn_init())
    if scale is not None:
        ctx.folded += 1
    arrays = None
    if layer.blobs:
        arrays = B.bn_weights(layer.blobs, scale.blobs if scale else None, what=f"layer '{layer.name}'")
    return [ctx.call(bn, x, arrays, layer)]


def convert_psp_bn(layer, inputs, ctx):
    x = inputs[0]
    bn = keras.layers.BatchNormalization(axis=L.keras_axis(1, len(x.shape)), epsilon=bn_epsilon(layer),
                                         name=ctx.name(layer), **_bn_init())
    arrays = B.psp_bn_weights(layer.blobs, what=f"layer '{layer.name}'") if layer.blobs else None
    return [ctx.call(bn, x, arrays, layer)]


def _check_blob_axes(layer, field, x, axis, wshape, ctx):
    """A learned Scale/Bias blob of shape ``wshape`` covers the bottom's Caffe axes from ``axis`` on with
    fixed sizes: each must be a static size of ``x`` equal to the blob's (with ``input_shape=(None, None)``
    a blob over H or W failed inside Keras with a broadcasting TypeError)."""
    rank = len(x.shape)
    caffe_shape = (x.shape[0], x.shape[3], x.shape[1], x.shape[2]) if rank == 4 else tuple(x.shape)
    for a, want in enumerate(wshape, start=axis):
        have = caffe_shape[a]
        if have == want:
            continue
        bottom = ctx.net.caffe_names.get(layer.bottoms[0], layer.bottoms[0])
        name = f" ({'NCHW'[a]})" if rank == 4 else ""
        size = "left open (None)" if have is None else f"{have}"
        declared = ctx.shape(layer.bottoms[0])
        raise GraphError(
            f"layer '{layer.name}' ({layer.type}{at(layer)}): its learned blob of shape {tuple(wshape)} "
            f"({field}.axis {axis}) covers axis {a}{name} of '{bottom}' with size {want}, but that axis is {size} "
            f"in this conversion; pass an input_shape=(H, W) under which it is {want}"
            + (f" (the prototxt's input size gives '{bottom}' the shape {tuple(declared)})" if declared else "")
        )


def _param_shape(layer, type_name, ctx, axis, num_axes) -> tuple:
    """Caffe shape of a Scale/Bias parameter: its blob's, else ``num_axes`` axes of the bottom from ``axis``."""
    if layer.blobs:
        return tuple(layer.blobs[0].shape)
    shape = ctx.shape(layer.bottoms[0])
    if shape is None:
        raise GraphError(f"layer '{layer.name}' ({type_name}{at(layer)}): unknown shape of '{layer.bottoms[0]}'")
    return tuple(shape[axis:] if num_axes == -1 else shape[axis:axis + num_axes])


def convert_scale(layer, inputs, ctx):
    sp = sub(layer.param, "scale_param")
    axis, num_axes, bias = int(opt(sp, "axis", 1)), int(opt(sp, "num_axes", 1)), bool(opt(sp, "bias_term", False))
    x = inputs[0]
    rank = len(x.shape)
    axis = axis + rank if axis < 0 else axis
    if len(inputs) == 2:
        if bias:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' (Scale{at(layer)}): two bottoms with bias_term: true is not supported"
            )
        return [L.ScaleByBlob(axis, name=ctx.name(layer))(inputs)]
    wshape = _param_shape(layer, "Scale", ctx, axis, num_axes)
    _check_blob_axes(layer, "scale_param", x, axis, wshape, ctx)
    if not bias and axis == 1 and len(wshape) == 1 and rank in (2, 4):
        s = ChannelScale(name=ctx.name(layer))
        arrays = [B.vector(layer.blobs[0])] if layer.blobs else None
    else:
        s = L.CaffeScale(wshape, axis=axis, rank=rank, bias_term=bias, name=ctx.name(layer))
        arrays = [B._f32(b).reshape(wshape) for b in layer.blobs] if layer.blobs else None
    return [ctx.call(s, x, arrays, layer)]


def convert_eltwise(layer, inputs, ctx):
    ep = sub(layer.param, "eltwise_param")
    op = enum(opt(ep, "operation", 1), ("PROD", "SUM", "MAX"))
    coeffs = [float(c) for c in rep(ep, "coeff")]
    if coeffs and len(coeffs) != len(inputs):
        raise GraphError(f"layer '{layer.name}' (Eltwise{at(layer)}): {len(coeffs)} coeff for {len(inputs)} bottoms")
    if op == "SUM" and coeffs and any(c != 1.0 for c in coeffs):
        return [L.EltwiseSum(coeffs, name=ctx.name(layer))(inputs)]
    cls = {"SUM": keras.layers.Add, "PROD": keras.layers.Multiply, "MAX": keras.layers.Maximum}[op]
    return [cls(name=ctx.name(layer))(list(inputs))]


def convert_concat(layer, inputs, ctx):
    cp = sub(layer.param, "concat_param")
    axis = int(opt(cp, "axis", opt(cp, "concat_dim", 1)))
    if len(inputs) == 1:
        return [keras.layers.Identity(name=ctx.name(layer))(inputs[0])]
    return [keras.layers.Concatenate(axis=L.keras_axis(axis, len(inputs[0].shape)), name=ctx.name(layer))(inputs)]


def convert_slice(layer, inputs, ctx):
    sp = sub(layer.param, "slice_param")
    axis = int(opt(sp, "axis", opt(sp, "slice_dim", 1)))
    points = [int(p) for p in rep(sp, "slice_point")]
    if axis in (0, -len(inputs[0].shape)):
        raise UnsupportedLayerError(f"layer '{layer.name}' (Slice{at(layer)}): slicing the batch axis (axis 0) "
                                    "is not supported")
    if points and len(points) != len(layer.tops) - 1:
        raise GraphError(
            f"layer '{layer.name}' (Slice{at(layer)}): {len(points)} slice_point for {len(layer.tops)} tops"
        )
    outs = L.CaffeSlice(L.keras_axis(axis, len(inputs[0].shape)), points, len(layer.tops), name=ctx.name(layer))(
        inputs[0])
    return list(outs)


def convert_split(layer, inputs, ctx):
    return [inputs[0]] * len(layer.tops)


def convert_crop(layer, inputs, ctx):
    cp = sub(layer.param, "crop_param")
    offsets = tuple(int(o) for o in rep(cp, "offset"))
    if len(inputs[0].shape) != 4:
        raise UnsupportedLayerError(f"layer '{layer.name}' (Crop{at(layer)}): only 4-D (N, C, H, W) blobs are "
                                    f"supported, got a {len(inputs[0].shape)}-D blob")
    return [CropToReference(axis=int(opt(cp, "axis", 2)), offset=offsets, name=ctx.name(layer))(list(inputs))]


def convert_interp(layer, inputs, ctx):
    ip = sub(layer.param, "interp_param")
    kind = opt(ip, "interp_type", "bilinear")
    if kind != "bilinear":
        raise UnsupportedLayerError(
            f"layer '{layer.name}' (Interp{at(layer)}): interp_type '{kind}' is not supported; only 'bilinear'"
        )
    h, w = opt(ip, "height", None), opt(ip, "width", None)
    zoom, shrink = opt(ip, "zoom_factor", None), opt(ip, "shrink_factor", None)
    pads = dict(pad_beg=int(opt(ip, "pad_beg", 0)), pad_end=int(opt(ip, "pad_end", 0)))
    name = ctx.name(layer)
    if len(inputs) == 2:
        return [InterpAlignCorners(name=name, **pads)(list(inputs))]
    # Precedence as in interp_layer.cpp: shrink only, zoom only, height+width, shrink then zoom.
    if shrink and not zoom:
        kw = dict(shrink_factor=int(shrink))
    elif zoom and not shrink:
        kw = dict(zoom_factor=int(zoom))
    elif h and w:
        kw = dict(size=(int(h), int(w)))
    elif zoom and shrink:
        kw = dict(zoom_factor=int(zoom), shrink_factor=int(shrink))
    else:
        raise GraphError(
            f"layer '{layer.name}' (Interp{at(layer)}): set zoom_factor, shrink_factor or height and width"
        )
    return [InterpAlignCorners(name=name, **kw, **pads)(inputs[0])]


def convert_flatten(layer, inputs, ctx):
    fp = sub(layer.param, "flatten_param")
    rank = len(inputs[0].shape)
    a, e = int(opt(fp, "axis", 1)), int(opt(fp, "end_axis", -1))
    a, e = (a + rank if a < 0 else a), (e + rank if e < 0 else e)
    return [L.CaffeReshape((-1,), axis=a, num_axes=e - a + 1, name=ctx.name(layer))(inputs[0])]


def convert_reshape(layer, inputs, ctx):
    rp = sub(layer.param, "reshape_param")
    dims = tuple(int(d) for d in rep(sub(rp, "shape"), "dim"))
    layer_ = L.CaffeReshape(dims, axis=int(opt(rp, "axis", 0)), num_axes=int(opt(rp, "num_axes", -1)),
                            name=ctx.name(layer))
    return [layer_(inputs[0])]


def convert_softmax(layer, inputs, ctx):
    axis = int(opt(sub(layer.param, "softmax_param"), "axis", 1))
    return [keras.layers.Softmax(axis=L.keras_axis(axis, len(inputs[0].shape)), name=ctx.name(layer))(inputs[0])]


def _lrn(layer, name):
    p = sub(layer.param, "lrn_param")
    region = enum(opt(p, "norm_region", 0), ("ACROSS_CHANNELS", "WITHIN_CHANNEL"))
    return M.CaffeLRN(int(opt(p, "local_size", 5)), float(opt(p, "alpha", 1.0)), float(opt(p, "beta", 0.75)),
                      float(opt(p, "k", 1.0)), "across" if region == "ACROSS_CHANNELS" else "within", name=name)


def _dropout(layer, name):
    # Identity at inference; Caffe's train-time dropout is inverted dropout, as Keras'.
    return keras.layers.Dropout(float(opt(sub(layer.param, "dropout_param"), "dropout_ratio", 0.5)), name=name)


def convert_bias(layer, inputs, ctx):
    bp = sub(layer.param, "bias_param")
    axis, num_axes = int(opt(bp, "axis", 1)), int(opt(bp, "num_axes", 1))
    x = inputs[0]
    rank = len(x.shape)
    axis = axis + rank if axis < 0 else axis
    if len(inputs) == 2:
        return [L.BiasByBlob(axis, name=ctx.name(layer))(list(inputs))]
    wshape = _param_shape(layer, "Bias", ctx, axis, num_axes)
    if not wshape:  # a scalar bias lines up anywhere (bias_layer.cpp uses axis 0)
        axis = 0
    _check_blob_axes(layer, "bias_param", x, axis, wshape, ctx)
    b = L.CaffeBias(wshape, axis=axis, rank=rank, name=ctx.name(layer))
    arrays = [B._f32(layer.blobs[0]).reshape(wshape)] if layer.blobs else None
    return [ctx.call(b, x, arrays, layer)]


def convert_argmax(layer, inputs, ctx):
    ap = sub(layer.param, "argmax_param")
    x = inputs[0]
    axis = opt(ap, "axis", None)
    if axis is not None:
        axis = int(axis) + len(x.shape) if int(axis) < 0 else int(axis)
    elif None in x.shape[1:]:
        raise GraphError(f"layer '{layer.name}' (ArgMax{at(layer)}) without argmax_param.axis flattens each "
                         f"sample: the model needs a fixed input size (pass input_shape=(H, W))")
    return [M.CaffeArgMax(int(opt(ap, "top_k", 1)), bool(opt(ap, "out_max_val", False)), axis,
                          name=ctx.name(layer))(x)]


def convert_tile(layer, inputs, ctx):
    tp = sub(layer.param, "tile_param")
    axis = L.keras_axis(int(opt(tp, "axis", 1)), len(inputs[0].shape))
    return [L.CaffeTile(axis, int(opt(tp, "tiles", 1)), name=ctx.name(layer))(inputs[0])]


def convert_reduction(layer, inputs, ctx):
    rp = sub(layer.param, "reduction_param")
    op = enum(opt(rp, "operation", 1), (None, "SUM", "ASUM", "SUMSQ", "MEAN"))
    axis, rank = int(opt(rp, "axis", 0)), len(inputs[0].shape)
    axis = axis + rank if axis < 0 else axis
    return [M.CaffeReduction(op, axis, float(opt(rp, "coeff", 1.0)), name=ctx.name(layer))(inputs[0])]


def _mvn(layer, name):
    mp = sub(layer.param, "mvn_param")
    return M.CaffeMVN(bool(opt(mp, "normalize_variance", True)), bool(opt(mp, "across_channels", False)),
                      float(opt(mp, "eps", 1e-9)), name=name)


def _clip(layer, name):
    cp = sub(layer.param, "clip_param")
    lo, hi = opt(cp, "min", None), opt(cp, "max", None)
    if lo is None or hi is None:
        raise GraphError(f"layer '{layer.name}' (Clip{at(layer)}): clip_param.min and clip_param.max are required")
    return M.CaffeClip(lo, hi, name=name)


LAYER_HANDLERS: dict[str, Callable[..., list]] = {
    "Input": convert_input,
    "Convolution": convert_convolution,
    "Deconvolution": convert_deconvolution,
    "InnerProduct": convert_inner_product,
    "Pooling": convert_pooling,
    "ReLU": _simple(_relu),
    "PReLU": convert_prelu,
    "ELU": _simple(lambda l, n: keras.layers.ELU(float(opt(sub(l.param, "elu_param"), "alpha", 1.0)), name=n)),
    "Sigmoid": _simple(lambda l, n: keras.layers.Activation("sigmoid", name=n)),
    "TanH": _simple(lambda l, n: keras.layers.Activation("tanh", name=n)),
    "AbsVal": _simple(lambda l, n: M.AbsVal(name=n)),
    "BNLL": _simple(lambda l, n: keras.layers.Activation("softplus", name=n)),  # log(1 + e^x), stable
    "Power": _simple(_power),
    "Exp": _simple(_exp_log(M.CaffeExp, "exp_param")),
    "Log": _simple(_exp_log(M.CaffeLog, "log_param")),
    "BatchNorm": convert_batchnorm,
    "Scale": convert_scale,
    "BN": convert_psp_bn,
    "Eltwise": convert_eltwise,
    "Concat": convert_concat,
    "Slice": convert_slice,
    "Split": convert_split,
    "Crop": convert_crop,
    "Interp": convert_interp,
    "Flatten": convert_flatten,
    "Reshape": convert_reshape,
    "Dropout": _simple(_dropout),
    "Softmax": convert_softmax,
    "LRN": _simple(_lrn),
    "Bias": convert_bias,
    "ArgMax": convert_argmax,
    "Threshold": _simple(lambda l, n: M.CaffeThreshold(float(opt(sub(l.param, "threshold_param"), "threshold", 0.0)),
                                                       name=n)),
    "Clip": _simple(_clip),
    "Swish": _simple(lambda l, n: M.CaffeSwish(float(opt(sub(l.param, "swish_param"), "beta", 1.0)), name=n)),
    "Tile": convert_tile,
    "Reduction": convert_reduction,
    "MVN": _simple(_mvn),
}
