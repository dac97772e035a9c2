"""Caffe shape inference (NCHW) and the blob shapes each layer expects, per layer type.

Every handler takes ``(param, bottoms, where)``: the V2 ``LayerParameter`` (TEXT schema), the bottom shapes
as tuples, and a string naming the layer for messages; it returns ``(top_shapes, blob_shapes)``. Formulas
follow BVLC Caffe's ``*_layer.cpp`` ``Reshape`` / ``LayerSetUp``. Blob shapes are the canonical ones the
reader squeezes legacy 4-D blobs to: conv weights (N, C/g, kh, kw), deconv (C, N/g, kh, kw), biases (N,),
InnerProduct (N, K) ((K, N) with ``transpose``), BatchNorm [(C,), (C,), (1,)], PSPNet BN 4 x (C,),
PReLU (C,) or (1,), Scale and Bias the covered bottom dims.
"""

from __future__ import annotations

import math

from converters.caffe.errors import GraphError, UnsupportedLayerError
from converters.caffe.schema import ROUND_FLOOR

__all__ = ["SHAPE_HANDLERS", "infer"]


def _fail(where, msg):
    raise GraphError(f"{where}: {msg}")


def _axis(axis, ndim, where, field="axis"):
    """Caffe's CanonicalAxisIndex."""
    if not -ndim <= axis < ndim:
        _fail(where, f"{field}={axis} is out of range for a {ndim}-D bottom")
    return axis % ndim


def _n_bottoms(bottoms, where, n, at_least=False):
    if (len(bottoms) < n) if at_least else (len(bottoms) != n):
        _fail(where, f"takes {'at least ' if at_least else ''}{n} bottom(s), got {len(bottoms)}")


def _four_d(shape, where):
    if len(shape) != 4:
        _fail(where, f"needs a 4-D (N, C, H, W) bottom, got shape {shape}")


def _hw(p, single, base, where, default=None, scalar=False, partial_default=None):
    """(h, w) from ``single`` (repeated, or a scalar for pooling) or from ``{base}_h`` / ``{base}_w``.

    ``default`` applies when nothing is given; ``partial_default`` to a missing half of ``_h``/``_w``
    (Caffe's conv pads), else both halves are required.
    """
    has_h = base is not None and p.HasField(f"{base}_h")
    has_w = base is not None and p.HasField(f"{base}_w")
    has_single = p.HasField(single) if scalar else len(getattr(p, single)) > 0
    if has_h or has_w:
        if has_single:
            _fail(where, f"give either {single} or {base}_h/{base}_w, not both")
        if not (has_h and has_w) and partial_default is None:
            _fail(where, f"give both {base}_h and {base}_w")
        h = getattr(p, f"{base}_h") if has_h else partial_default
        w = getattr(p, f"{base}_w") if has_w else partial_default
        return int(h), int(w)
    if not has_single:
        if default is None:
            _fail(where, f"missing {single}")
        return default, default
    if scalar:
        v = getattr(p, single)
        return int(v), int(v)
    vals = [int(v) for v in getattr(p, single)]
    if len(vals) > 2:
        _fail(where, f"{single} has {len(vals)} values; only 2-D (1 or 2 values) is supported")
    return (vals[0], vals[-1])


def _conv_geometry(p, bottom, where):
    _four_d(bottom, where)
    if _axis(p.axis, 4, where) != 1:
        raise UnsupportedLayerError(f"{where}: convolution_param.axis={p.axis} (only channels, 1, is supported)")
    if p.num_output <= 0:
        _fail(where, "convolution_param.num_output must be > 0")
    kh, kw = _hw(p, "kernel_size", "kernel", where)
    ph, pw = _hw(p, "pad", "pad", where, default=0, partial_default=0)
    sh, sw = _hw(p, "stride", "stride", where, default=1)
    dh, dw = _hw(p, "dilation", None, where, default=1)
    if min(kh, kw, sh, sw, dh, dw) <= 0:
        _fail(where, f"kernel {kh}x{kw}, stride {sh}x{sw} and dilation {dh}x{dw} must be positive")
    g = p.group
    if g <= 0 or bottom[1] % g or p.num_output % g:
        _fail(where, f"group={g} must divide the input channels ({bottom[1]}) and num_output ({p.num_output})")
    return (kh, kw), (ph, pw), (sh, sw), (dh, dw), g


def _convolution(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    p, b = param.convolution_param, bottoms[0]
    (kh, kw), (ph, pw), (sh, sw), (dh, dw), g = _conv_geometry(p, b, where)
    oh = (b[2] + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (b[3] + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    if oh <= 0 or ow <= 0:
        _fail(where, f"input {b[2]}x{b[3]} is too small for kernel {kh}x{kw} (dilation {dh}x{dw}, pad {ph}x{pw})")
    n = p.num_output
    blobs = [(n, b[1] // g, kh, kw)] + ([(n,)] if p.bias_term else [])
    return [(b[0], n, oh, ow)], blobs


def _deconvolution(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    p, b = param.convolution_param, bottoms[0]
    (kh, kw), (ph, pw), (sh, sw), (dh, dw), g = _conv_geometry(p, b, where)
    oh = sh * (b[2] - 1) + dh * (kh - 1) + 1 - 2 * ph
    ow = sw * (b[3] - 1) + dw * (kw - 1) + 1 - 2 * pw
    if oh <= 0 or ow <= 0:
        _fail(where, f"pad {ph}x{pw} is too large for input {b[2]}x{b[3]}: output would be {oh}x{ow}")
    n = p.num_output
    blobs = [(b[1], n // g, kh, kw)] + ([(n,)] if p.bias_term else [])
    return [(b[0], n, oh, ow)], blobs


def _inner_product(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    p, b = param.inner_product_param, bottoms[0]
    if p.num_output <= 0:
        _fail(where, "inner_product_param.num_output must be > 0")
    axis = _axis(p.axis, len(b), where)
    _no_batch_axis(axis, where, "inner_product_param.axis")  # axis 0 flattens the batch into one row
    n, k = p.num_output, math.prod(b[axis:])
    blobs = [(k, n) if p.transpose else (n, k)] + ([(n,)] if p.bias_term else [])
    return [tuple(b[:axis]) + (n,)], blobs


def _pooling(param, bottoms, where):
    from zoo.layers import caffe_pool_output_size  # lazy: zoo.layers imports keras

    _n_bottoms(bottoms, where, 1)
    p, b = param.pooling_param, bottoms[0]
    _four_d(b, where)
    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
            _fail(where, "global_pooling takes no kernel size")
        kh, kw = b[2], b[3]
    else:
        kh, kw = _hw(p, "kernel_size", "kernel", where, scalar=True)
    ph, pw = _hw(p, "pad", "pad", where, default=0, scalar=True)
    sh, sw = _hw(p, "stride", "stride", where, default=1, scalar=True)
    if min(kh, kw, sh, sw) <= 0:
        _fail(where, f"kernel {kh}x{kw} and stride {sh}x{sw} must be positive")
    if p.global_pooling and (ph or pw or sh != 1 or sw != 1):
        _fail(where, "global_pooling needs pad 0 and stride 1")
    if ph >= kh or pw >= kw:
        _fail(where, f"pad {ph}x{pw} must be smaller than the kernel {kh}x{kw}")
    ceil = p.round_mode != ROUND_FLOOR
    padded = bool(ph or pw)  # pooling_layer.cpp clips both axes when either pads
    oh = caffe_pool_output_size(b[2], kh, sh, ph, ceil_mode=ceil, padded=padded)
    ow = caffe_pool_output_size(b[3], kw, sw, pw, ceil_mode=ceil, padded=padded)
    if oh <= 0 or ow <= 0:
        _fail(where, f"input {b[2]}x{b[3]} is too small for kernel {kh}x{kw} with pad {ph}x{pw}")
    return [(b[0], b[1], oh, ow)], []


def _same(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    return [bottoms[0]], []


def _channels(shape):
    return shape[1] if len(shape) > 1 else 1


def _prelu(param, bottoms, where):
    tops, _ = _same(param, bottoms, where)
    return tops, [(1,) if param.prelu_param.channel_shared else (_channels(bottoms[0]),)]


def _lrn(param, bottoms, where):
    tops, _ = _same(param, bottoms, where)
    _four_d(bottoms[0], where)
    if param.lrn_param.local_size % 2 == 0:
        _fail(where, f"lrn_param.local_size={param.lrn_param.local_size} must be odd")
    return tops, []


def _softmax(param, bottoms, where):
    tops, _ = _same(param, bottoms, where)
    _axis(param.softmax_param.axis, len(bottoms[0]), where, "softmax_param.axis")
    return tops, []


def _batch_norm(param, bottoms, where):
    tops, _ = _same(param, bottoms, where)
    c = _channels(bottoms[0])
    return tops, [(c,), (c,), (1,)]


def _bn(param, bottoms, where):
    tops, _ = _same(param, bottoms, where)
    c = _channels(bottoms[0])
    return tops, [(c,)] * 4


def _scale(param, bottoms, where):
    _n_bottoms(bottoms, where, 1, at_least=True)
    p, b = param.scale_param, bottoms[0]
    axis = _axis(p.axis, len(b), where, "scale_param.axis")
    if len(bottoms) == 2:
        covered = bottoms[1]
        if tuple(b[axis:axis + len(covered)]) != tuple(covered):
            _fail(where, f"bottom[1] shape {covered} does not match bottom[0] {b} from axis {axis}")
        return [b], [covered] if p.bias_term else []
    if len(bottoms) > 2:
        _fail(where, f"takes 1 or 2 bottoms, got {len(bottoms)}")
    if p.num_axes < -1 or (p.num_axes >= 0 and axis + p.num_axes > len(b)):
        _fail(where, f"scale_param.num_axes={p.num_axes} does not fit bottom {b} from axis {axis}")
    covered = tuple(b[axis:]) if p.num_axes == -1 else tuple(b[axis:axis + p.num_axes])
    if covered:  # a scalar (num_axes: 0) lines up anywhere; a blob from axis 0 holds a value per sample
        _no_batch_axis(axis, where, "scale_param.axis")
    return [b], [covered] * (2 if p.bias_term else 1)


def _eltwise(param, bottoms, where):
    _n_bottoms(bottoms, where, 2, at_least=True)
    p = param.eltwise_param
    if any(s != bottoms[0] for s in bottoms):
        _fail(where, f"all bottoms must have the same shape, got {bottoms}")
    # eltwise_layer.cpp refuses coeff only with PROD; MAX ignores it.
    if len(p.coeff) and (p.operation == 0 or len(p.coeff) != len(bottoms)):
        _fail(where, f"coeff needs operation SUM or MAX and one value per bottom ({len(bottoms)}), "
                     f"got {len(p.coeff)}")
    return [bottoms[0]], []


def _concat(param, bottoms, where):
    _n_bottoms(bottoms, where, 1, at_least=True)
    p, b = param.concat_param, bottoms[0]
    if p.HasField("axis") and p.HasField("concat_dim"):  # as concat_layer.cpp's LayerSetUp CHECK
        _fail(where, "give either concat_param.axis or the legacy concat_dim, not both")
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    axis = _axis(axis, len(b), where, "concat axis")
    for s in bottoms[1:]:
        if len(s) != len(b) or any(s[i] != b[i] for i in range(len(b)) if i != axis):
            _fail(where, f"bottom shapes {bottoms} differ outside the concat axis {axis}")
    out = list(b)
    out[axis] = sum(s[axis] for s in bottoms)
    return [tuple(out)], []


def _slice(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    p, b, n = param.slice_param, bottoms[0], len(param.top)
    if p.HasField("axis") and p.HasField("slice_dim"):  # as slice_layer.cpp's LayerSetUp CHECK
        _fail(where, "give either slice_param.axis or the legacy slice_dim, not both")
    axis = _axis(p.slice_dim if p.HasField("slice_dim") else p.axis, len(b), where, "slice axis")
    dim = b[axis]
    if len(p.slice_point):
        points = [0] + [int(v) for v in p.slice_point] + [dim]
        if len(p.slice_point) != n - 1 or any(a >= c for a, c in zip(points, points[1:])):
            _fail(where, f"slice_point {list(p.slice_point)} must be {n - 1} increasing values inside (0, {dim})")
        sizes = [c - a for a, c in zip(points, points[1:])]
    else:
        if n == 0 or dim % n:
            _fail(where, f"axis {axis} of size {dim} cannot be split evenly into {n} tops")
        sizes = [dim // n] * n
    tops = []
    for size in sizes:
        out = list(b)
        out[axis] = size
        tops.append(tuple(out))
    return tops, []


def _split(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    return [bottoms[0]] * len(param.top), []


def _crop(param, bottoms, where):
    _n_bottoms(bottoms, where, 2)
    p, (b, ref) = param.crop_param, bottoms
    if len(b) != len(ref):
        _fail(where, f"bottoms {b} and {ref} must have the same rank")
    axis = _axis(p.axis, len(b), where, "crop_param.axis")
    n_crop = len(b) - axis
    offsets = list(p.offset)
    if len(offsets) not in (0, 1, n_crop):
        _fail(where, f"crop_param.offset needs 0, 1 or {n_crop} values, got {len(offsets)}")
    offsets = (offsets or [0]) * n_crop if len(offsets) <= 1 else offsets
    out = list(b)
    for i, off in zip(range(axis, len(b)), offsets):
        if off + ref[i] > b[i]:
            _fail(where, f"crop of size {ref[i]} at offset {off} does not fit axis {i} of size {b[i]}")
        out[i] = ref[i]
    return [tuple(out)], []


def _interp(param, bottoms, where):
    from zoo.layers import interp_output_size  # lazy: zoo.layers imports keras

    _n_bottoms(bottoms, where, 1, at_least=True)
    p, b = param.interp_param, bottoms[0]
    _four_d(b, where)
    if p.pad_beg > 0 or p.pad_end > 0:
        _fail(where, f"interp_param pad_beg={p.pad_beg}, pad_end={p.pad_end}: only pads <= 0 (crops) exist")
    has_s, has_z = p.HasField("shrink_factor"), p.HasField("zoom_factor")
    if (has_s and p.shrink_factor < 1) or (has_z and p.zoom_factor < 1):
        _fail(where, "interp_param shrink_factor and zoom_factor must be >= 1")
    if len(bottoms) == 2:  # DeepLab: resize to the second bottom
        _four_d(bottoms[1], where)
        size = tuple(bottoms[1][2:])
    elif has_s != has_z or (has_s and not (p.HasField("height") and p.HasField("width"))):
        # interp_layer.cpp's order: shrink only, zoom only, height + width, then shrink and zoom.
        size = tuple(interp_output_size(n, zoom_factor=p.zoom_factor if has_z else None,
                                        shrink_factor=p.shrink_factor if has_s else None,
                                        pad_beg=p.pad_beg, pad_end=p.pad_end) for n in b[2:])
    elif p.HasField("height") and p.HasField("width"):
        size = (p.height, p.width)
    else:
        _fail(where, "interp_param needs zoom_factor, shrink_factor, or height and width")
    if b[2] + p.pad_beg + p.pad_end <= 0 or b[3] + p.pad_beg + p.pad_end <= 0 or min(size) <= 0:
        _fail(where, f"interp of input {b[2]}x{b[3]} gives an empty output {size}")
    return [(b[0], b[1]) + size], []


def _flatten(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    p, b = param.flatten_param, bottoms[0]
    start = _axis(p.axis, len(b), where, "flatten_param.axis")
    end = _axis(p.end_axis, len(b), where, "flatten_param.end_axis")
    if end < start:
        _fail(where, f"flatten_param.end_axis ({p.end_axis}) is before axis ({p.axis})")
    return [tuple(b[:start]) + (math.prod(b[start:end + 1]),) + tuple(b[end + 1:])], []


def _reshape(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    p, b = param.reshape_param, bottoms[0]
    start = p.axis if p.axis >= 0 else len(b) + p.axis + 1
    if not 0 <= start <= len(b):
        _fail(where, f"reshape_param.axis={p.axis} is out of range for bottom {b}")
    if p.num_axes < -1 or (p.num_axes >= 0 and start + p.num_axes > len(b)):
        _fail(where, f"reshape_param.num_axes={p.num_axes} does not fit bottom {b}")
    end = len(b) if p.num_axes == -1 else start + p.num_axes
    dims = [int(d) for d in p.shape.dim]
    if sum(d == -1 for d in dims) > 1 or any(d < -1 for d in dims):
        _fail(where, f"reshape_param.shape {dims}: at most one -1, no other negative dims")
    new = []
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= len(b):
                _fail(where, f"reshape_param.shape dim {i} = 0 copies a bottom axis that does not exist")
            d = b[start + i]
        new.append(d)
    out = list(b[:start]) + new + list(b[end:])
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or math.prod(b) % known:
            _fail(where, f"cannot infer the -1 dim of {dims} from bottom {b}")
        out[out.index(-1)] = math.prod(b) // known
    if math.prod(out) != math.prod(b):
        _fail(where, f"reshape of {b} to {tuple(out)} changes the element count")
    return [tuple(out)], []


def _bias(param, bottoms, where):
    _n_bottoms(bottoms, where, 1, at_least=True)
    p, b = param.bias_param, bottoms[0]
    if len(bottoms) > 2:
        _fail(where, f"takes 1 or 2 bottoms, got {len(bottoms)}")
    if len(bottoms) == 2:  # bias_layer.cpp: the second bottom is the bias; num_axes is not used
        covered = bottoms[1]
        axis = 0 if not covered else _axis(p.axis, len(b), where, "bias_param.axis")
        if tuple(b[axis:axis + len(covered)]) != tuple(covered):
            _fail(where, f"bottom[1] shape {covered} does not match bottom[0] {b} from axis {axis}")
        return [b], []
    axis = _axis(p.axis, len(b), where, "bias_param.axis")
    if p.num_axes < -1 or (p.num_axes >= 0 and axis + p.num_axes > len(b)):
        _fail(where, f"bias_param.num_axes={p.num_axes} does not fit bottom {b} from axis {axis}")
    covered = tuple(b[axis:]) if p.num_axes == -1 else tuple(b[axis:axis + p.num_axes])
    if covered:  # a scalar (num_axes: 0) lines up anywhere; a blob from axis 0 holds a value per sample
        _no_batch_axis(axis, where, "bias_param.axis")
    return [b], [covered]


def _no_batch_axis(axis, where, field):
    # Keras runs a model on batches of any size: a layer across the batch axis has no per-sample meaning.
    if axis == 0:
        raise UnsupportedLayerError(f"{where}: {field}=0 works across the batch axis, which is not supported "
                                    f"(only axes >= 1)")


def _argmax(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    p, b = param.argmax_param, bottoms[0]
    if p.top_k < 1:
        _fail(where, f"argmax_param.top_k={p.top_k} must be >= 1")
    if p.HasField("axis"):
        axis = _axis(p.axis, len(b), where, "argmax_param.axis")
        _no_batch_axis(axis, where, "argmax_param.axis")
        if p.top_k > b[axis]:
            _fail(where, f"argmax_param.top_k={p.top_k} exceeds the size {b[axis]} of axis {axis}")
        top = list(b)
        top[axis] = p.top_k
        return [tuple(top)], []
    per_sample = math.prod(b[1:])
    if p.top_k > per_sample:
        _fail(where, f"argmax_param.top_k={p.top_k} exceeds the {per_sample} values per sample")
    top = [b[0], 2 if p.out_max_val else 1, p.top_k] + [1] * (max(len(b), 3) - 3)
    return [tuple(top)], []


def _clip(param, bottoms, where):
    tops, _ = _same(param, bottoms, where)
    p = param.clip_param
    missing = [f"clip_param.{f}" for f in ("min", "max") if not p.HasField(f)]
    if missing:  # `required` in caffe.proto
        _fail(where, f"{' and '.join(missing)} must be given (required in caffe.proto)")
    return tops, []


def _tile(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    p, b = param.tile_param, bottoms[0]
    axis = _axis(p.axis, len(b), where, "tile_param.axis")
    if not p.HasField("tiles") or p.tiles < 1:
        _fail(where, f"tile_param.tiles must be given and >= 1, got {p.tiles if p.HasField('tiles') else 'none'}")
    _no_batch_axis(axis, where, "tile_param.axis")
    top = list(b)
    top[axis] *= p.tiles
    return [tuple(top)], []


def _reduction(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    p, b = param.reduction_param, bottoms[0]
    axis = _axis(p.axis, len(b), where, "reduction_param.axis")
    if axis == 0:
        raise UnsupportedLayerError(f"{where}: reduction_param.axis=0 (the default) reduces the batch axis too, "
                                    "which is not supported; set axis >= 1")
    return [tuple(b[:axis])], []


def _mvn(param, bottoms, where):
    _n_bottoms(bottoms, where, 1)
    b = bottoms[0]
    if len(b) > 4:  # mvn_layer.cpp reads num()/channels(), Caffe's legacy 4-D accessors
        _fail(where, f"needs a bottom of at most 4 axes, got shape {b}")
    # Its Reshape is top->Reshape(num(), channels(), height(), width()): always 4-D, a (N, C) bottom
    # gives (N, C, 1, 1) (an axis past the bottom's last reads as 1).
    return [tuple(b) + (1,) * (4 - len(b))], []


#: Caffe type -> shape handler. The reader rejects every other type with UnsupportedLayerError.
SHAPE_HANDLERS = {
    "Convolution": _convolution, "Deconvolution": _deconvolution, "InnerProduct": _inner_product,
    "Pooling": _pooling, "ReLU": _same, "PReLU": _prelu, "ELU": _same, "Sigmoid": _same, "TanH": _same,
    "AbsVal": _same, "BNLL": _same, "Power": _same, "Exp": _same, "Log": _same, "Dropout": _same,
    "BatchNorm": _batch_norm, "Scale": _scale, "BN": _bn, "Eltwise": _eltwise, "Concat": _concat,
    "Slice": _slice, "Split": _split, "Crop": _crop, "Interp": _interp, "Flatten": _flatten,
    "Reshape": _reshape, "Softmax": _softmax, "LRN": _lrn, "Bias": _bias, "ArgMax": _argmax,
    "Threshold": _same, "Clip": _clip, "Swish": _same, "Tile": _tile, "Reduction": _reduction, "MVN": _mvn,
}


def infer(param, bottoms, where):
    """Top shapes and expected blob shapes of one layer.

    Args:
        param: ``LayerParameter`` (TEXT schema), upgraded to V2.
        bottoms: NCHW shapes of the bottoms, in order.
        where: layer description for messages, e.g. ``"layer 'conv1' (Convolution, net.prototxt:12)"``.

    Returns:
        (tops, blobs): lists of shape tuples; ``len(tops) == len(param.top)``.

    Raises:
        UnsupportedLayerError: unknown type or unsupported parameter.
        GraphError: parameters that do not fit the bottoms (sizes, axes, counts).
    """
    handler = SHAPE_HANDLERS.get(param.type)
    if handler is None:
        raise UnsupportedLayerError(
            f"{where}: Caffe layer type '{param.type}' is not supported; supported: "
            f"{', '.join(sorted(SHAPE_HANDLERS))}"
        )
    tops, blobs = handler(param, [tuple(int(d) for d in s) for s in bottoms], where)
    if len(tops) != len(param.top):
        _fail(where, f"a {param.type} layer produces {len(tops)} top(s), the prototxt names {len(param.top)}")
    return tops, blobs
