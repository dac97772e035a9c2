"""OpenCV's Caffe engine as an independent check of a conversion (``--verify`` of the CLI).

OpenCV (``cv2.dnn.readNetFromCaffe``, opencv-python < 5) cannot read PSPNet's ``BN`` layers nor
BVLC's ``round_mode``; :func:`opencv_files` writes the net back as a prototxt + caffemodel that it
reads: every ``BN`` becomes ``BatchNorm`` (use_global_stats, blobs ``[mean, var, [1]]``) +
``Scale`` (bias_term, blobs ``[slope, bias]``), ``round_mode: FLOOR`` becomes ``ceil_mode: false``.
The caffemodel is written with a minimal protobuf encoder (only names, types and blobs are read
from it).
"""

from __future__ import annotations

import re

import numpy as np

from converters.caffe.context import bn_epsilon, uses_batch_stats
from converters.caffe.graph import Net

__all__ = ["caffemodel_bytes", "opencv_files", "opencv_output_layers", "opencv_departures", "opencv_forward",
           "OpenCVRefused", "available"]


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _blob(a) -> bytes:
    a = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
    shape = _field(1, b"".join(_varint(int(d)) for d in a.shape))  # BlobShape.dim, packed
    return _field(7, shape) + _field(5, a.tobytes())  # BlobProto.shape, BlobProto.data (packed)


def caffemodel_bytes(layers, name: str = "") -> bytes:
    """A binary ``NetParameter`` holding ``layers``: an iterable of ``(name, type, [arrays])``."""
    out = [_field(1, name.encode())] if name else []
    for lname, ltype, blobs in layers:
        body = _field(1, lname.encode()) + _field(2, ltype.encode()) + b"".join(_field(7, _blob(b)) for b in blobs)
        out.append(_field(100, body))
    return b"".join(out)


def _layer_text(param) -> str:
    from google.protobuf import text_format

    text = text_format.MessageToString(param, as_one_line=False)
    # OpenCV's proto knows field 13 of PoolingParameter as `ceil_mode` (bool).
    text = re.sub(r"\bround_mode:\s*FLOOR\b", "ceil_mode: false", text)
    return re.sub(r"\bround_mode:\s*CEIL\b\n?", "", text)


def opencv_files(net: Net, input_shapes: dict[str, tuple] | None = None) -> tuple[str, bytes]:
    """``(prototxt_text, caffemodel_bytes)`` of ``net`` in the dialect OpenCV 4 reads.

    Args:
        net: a loaded net whose ``layer.param`` are protobuf messages (from the reader).
        input_shapes: Caffe input name -> NCHW shape; defaults to ``net.inputs``.
    """
    shapes = input_shapes or {net.caffe_names.get(b, b): s for b, s in net.inputs.items()}
    lines = [f'name: "{net.name or "net"}"']
    for name, s in shapes.items():
        lines.append(f'input: "{name}"')
        lines.append("input_shape { " + " ".join(f"dim: {int(d)}" for d in s) + " }")
    model = []
    for layer in net.layers:
        if layer.type == "Input":
            continue
        param = layer.param
        if layer.type == "BN":
            bottom, top = param.bottom[0], param.top[0]
            eps = bn_epsilon(layer)  # PSPNet's earlier BN adds var_eps (1e-10), yjxiong's (PSPNet master's) eps (1e-5)
            lines.append(f'layer {{ name: "{param.name}" type: "BatchNorm" bottom: "{bottom}" top: "{top}" '
                         f"batch_norm_param {{ use_global_stats: true eps: {eps!r} }} }}")
            lines.append(f'layer {{ name: "{param.name}_scale" type: "Scale" bottom: "{top}" top: "{top}" '
                         f"scale_param {{ bias_term: true }} }}")
            if layer.blobs:
                slope, bias, mean, var = (np.asarray(b, np.float32).reshape(-1) for b in layer.blobs)
                model.append((param.name, "BatchNorm", [mean, var, np.ones(1, np.float32)]))
                model.append((param.name + "_scale", "Scale", [slope, bias]))
            continue
        lines.append("layer {\n" + _layer_text(param) + "}")
        if layer.blobs:
            model.append((param.name or layer.name, layer.type, layer.blobs))
    return "\n".join(lines) + "\n", caffemodel_bytes(model, net.name or "")


def opencv_output_layers(net: Net) -> dict[str, tuple[str, int, str]]:
    """Caffe output top -> ``(OpenCV layer, index among that layer's tops, top)`` in :func:`opencv_files`' net.

    OpenCV names outputs after layers: the last layer writing the blob (``<name>_scale`` for a
    rewritten ``BN``); a layer with several tops (``Slice``) has one output per top. OpenCV 4.14
    names some layers after their top instead (a Convolution ``x`` with top ``y`` is ``y``), so
    :func:`opencv_forward` falls back to the top's name.
    """
    producers = net.producers()
    out = {}
    for blob in net.outputs:
        layer = producers[blob]
        name = layer.param.name if getattr(layer.param, "name", "") else layer.name
        top = net.caffe_names.get(blob, blob)
        out[top] = (name + "_scale", 0, top) if layer.type == "BN" else (name, list(layer.tops).index(blob), top)
    return out


#: Caffe layer types the converter supports that OpenCV 4's Caffe importer cannot instantiate.
_OPENCV_LACKS = frozenset({"Bias", "ArgMax", "Threshold", "Clip", "Reduction"})


def _pooling_departure(layer, shape) -> str | None:
    """Why OpenCV's Pooling departs from ``pooling_layer.cpp`` on a bottom of NCHW ``shape``, or None.

    In ceil mode with stride > kernel the last window can start past the image. Caffe drops it on both
    axes when either axis pads, OpenCV only on an axis that pads (OpenCV 4.x ``getMemoryShapes``); with no
    pad both keep it, and Caffe's MAX gives -FLT_MAX there, OpenCV's 0 (AVE gives 0 or 0/0 in both).
    """
    from converters.caffe.params import enum, opt, pool_geometry, sub

    pp = sub(layer.param, "pooling_param")
    kernel, stride, pad, global_pooling, ceil_mode = pool_geometry(pp, layer)
    if global_pooling or len(shape) != 4:
        return None
    if any(k > n + 2 * p for n, k, p in zip(shape[2:], kernel, pad)):
        # PSPNet's 60/30/20/10 pyramid pools on a smaller map: Caffe's ceil mode pools the one window there is
        # (clipped to the map), OpenCV refuses the net ("total(os[i]) > 0", measured with OpenCV 4.14)
        return "has a kernel larger than its padded input, which OpenCV refuses (Caffe pools the one window)"
    if not ceil_mode:
        return None
    # (outputs - 1) * stride >= size + pad: the last ceil-mode window starts at or past the image's end
    past = [-(-(n + 2 * p - k) // s) * s >= n + p for n, k, s, p in zip(shape[2:], kernel, stride, pad)]
    if any(pad) and any(was_past and not p for was_past, p in zip(past, pad)):
        return ("pads one axis only and its last window on the other starts past the image: Caffe drops that "
                "window (on both axes when either pads), OpenCV keeps it")
    mode = enum(opt(pp, "pool", 0), ("MAX", "AVE", "STOCHASTIC"))
    if not any(pad) and any(past) and mode == "MAX":
        return ("has a last window that starts past the image (stride > kernel, ceil mode), where Caffe's MAX "
                "gives -FLT_MAX and OpenCV's 0")
    return None


def _parameter_departure(layer, net: Net) -> str | None:
    """Why OpenCV computes ``layer`` otherwise than Caffe because of a parameter it ignores or reads
    otherwise (only where the outputs differ), or None."""
    from converters.caffe.params import conv_geometry, enum, opt, sub

    if layer.type == "LRN":
        lp = sub(layer.param, "lrn_param")
        across = enum(opt(lp, "norm_region", 0), ("ACROSS_CHANNELS", "WITHIN_CHANNEL")) == "ACROSS_CHANNELS"
        if across and opt(lp, "k", 1.0) != 1.0:
            return "has k != 1, which OpenCV ignores (it adds 1)"
    elif layer.type == "InnerProduct" and opt(sub(layer.param, "inner_product_param"), "transpose", False):
        return "has transpose: true, which OpenCV ignores"
    elif layer.type == "Deconvolution":
        kernel, _, _, dilation = conv_geometry(sub(layer.param, "convolution_param"), layer)
        if any(d > 1 and k > 1 for k, d in zip(kernel, dilation)):
            return "has a dilation, which OpenCV ignores"
    elif layer.type == "Pooling":
        return _pooling_departure(layer, net.shapes[layer.bottoms[0]])
    elif layer.type in ("Concat", "Slice"):
        # Caffe's legacy concat_dim/slice_dim stands for axis; OpenCV reads axis only (default 1).
        legacy, p = ("concat_dim", "concat_param") if layer.type == "Concat" else ("slice_dim", "slice_param")
        dim = opt(sub(layer.param, p), legacy, None)
        several = len(layer.bottoms) > 1 if layer.type == "Concat" else len(layer.tops) > 1
        if dim is not None and int(dim) != 1 and several:
            return f"has the legacy {legacy}: {int(dim)}, which OpenCV ignores (it uses axis 1)"
    return None


def opencv_departures(net: Net) -> list[str]:
    """Layers where OpenCV's Caffe engine does not compute what Caffe does, so it cannot check them.

    OpenCV's ``Interp`` ignores ``pad_beg``/``pad_end`` and sizes ``shrink_factor`` + ``zoom_factor``
    differently from ``interp_layer.cpp`` (which the converter follows). OpenCV also drops a
    (de)convolution's ``pad_h`` or ``pad_w`` given alone, which Caffe reads with the other half 0,
    and keeps a ``Split`` top's old values after an in-place write to another top of that ``Split``
    (Caffe's tops share memory; the reader then binds the name to the rewritten blob). A BatchNorm with
    batch statistics is computed by OpenCV per sample, dividing by ``std + eps``, where Caffe takes the
    statistics over the batch and divides by ``sqrt(var + eps)`` (measured with OpenCV 4.x).
    OpenCV lacks Bias, ArgMax, Threshold, Clip and Reduction, does not read Tile's ``tile_param`` nor
    Swish's ``beta``, and its MVN divides by ``sqrt(var + eps)`` where Caffe's divides by ``std + eps``
    and keeps a 2-D bottom's shape where Caffe's top is ``(N, C, 1, 1)``. It also ignores LRN's ``k``
    (across channels; Caffe's within-channel LRN ignores it too), InnerProduct's ``transpose``, a
    Deconvolution's dilation and the legacy ``concat_dim``/``slice_dim``, pools differently where a
    ceil-mode window starts past the image, and refuses a pooling kernel larger than its padded input
    (:func:`_pooling_departure`).
    """
    from converters.caffe.params import opt, sub

    found = []
    for layer in net.layers:
        if layer.type in _OPENCV_LACKS:
            found.append(f"{layer.type} '{layer.name}' is a layer type OpenCV's Caffe importer lacks")
        elif layer.type == "Tile":
            found.append(f"Tile '{layer.name}': OpenCV does not read tile_param")
        elif layer.type == "Swish" and opt(sub(layer.param, "swish_param"), "beta", 1.0) != 1.0:
            found.append(f"Swish '{layer.name}' has a beta, which OpenCV ignores")
        elif layer.type == "MVN" and opt(sub(layer.param, "mvn_param"), "normalize_variance", True):
            found.append(f"MVN '{layer.name}' normalizes the variance, which OpenCV divides by sqrt(var + eps), "
                         "Caffe by std + eps")
        elif layer.type == "MVN" and len(net.shapes[layer.bottoms[0]]) < 4:
            found.append(f"MVN '{layer.name}' has a bottom of fewer than 4 axes, whose shape OpenCV keeps "
                         "where Caffe's top is 4-D")
        else:
            why = _parameter_departure(layer, net)
            if why:
                found.append(f"{layer.type} '{layer.name}' {why}")
        if uses_batch_stats(layer):
            found.append(f"BatchNorm '{layer.name}' uses batch statistics (use_global_stats: false), which "
                         "OpenCV takes per sample and divides by std + eps")
        for name, blob in zip(getattr(layer.param, "bottom", ()), layer.bottoms):
            if net.caffe_names.get(blob, blob) != name:
                found.append(f"{layer.type} '{layer.name}' reads '{name}' after an in-place write to "
                             f"'{net.caffe_names[blob]}', which shares its memory in Caffe but not in OpenCV")
        if layer.type in ("Convolution", "Deconvolution"):
            cp = sub(layer.param, "convolution_param")
            if (opt(cp, "pad_h", None) is None) != (opt(cp, "pad_w", None) is None):
                found.append(f"{layer.type} '{layer.name}' sets only one of pad_h/pad_w, which OpenCV ignores")
        if layer.type != "Interp":
            continue
        ip = sub(layer.param, "interp_param")
        if opt(ip, "pad_beg", 0) or opt(ip, "pad_end", 0):
            found.append(f"Interp '{layer.name}' has pad_beg/pad_end, which OpenCV ignores")
        elif opt(ip, "shrink_factor", None) and opt(ip, "zoom_factor", None) and len(layer.bottoms) == 1:
            found.append(f"Interp '{layer.name}' has shrink_factor and zoom_factor, which OpenCV sizes differently")
    return found


def available() -> bool:
    """True when an OpenCV with the Caffe importer (opencv-python < 5) is importable."""
    try:
        import cv2
    except ImportError:
        return False
    return hasattr(cv2, "dnn") and hasattr(cv2.dnn, "readNetFromCaffe")


class OpenCVRefused(RuntimeError):
    """OpenCV's Caffe engine refused to read or run a net (its own message, on one line)."""


def _cv_error_text(e) -> str:
    """``cv2.error``'s message on one line: "OpenCV 4.14.0: (-215:Assertion failed) ... in function 'f'" (its text
    starts with the source file's path and may span lines, e.g. "(expected: 'total(os[i]) > 0'), where ...")."""
    import cv2

    text = " ".join(line.strip().lstrip("> ").strip() for line in str(e).splitlines() if line.strip())
    _, sep, rest = text.partition(" error: ")  # after "OpenCV(4.14.0) /io/opencv/.../pooling_layer.cpp:1378"
    return f"OpenCV {cv2.__version__}: {rest}" if sep else text


def opencv_forward(prototxt_text: str, caffemodel: bytes, inputs: dict, outputs: list[tuple[str, int, str]]) -> dict:
    """Forward NHWC ``inputs`` (name -> array) through OpenCV; returns each entry of ``outputs`` -> NHWC array.

    ``outputs`` are ``(OpenCV layer name, index among its tops, top name)``, as
    :func:`opencv_output_layers` gives them. Fusion and Winograd are off, backend OpenCV on CPU,
    so results are Caffe's to float32 rounding.

    Raises:
        OpenCVRefused: OpenCV could not read or run the net (its message, without its log lines).
    """
    import cv2

    from zoo.errors import quiet_opencv

    try:
        with quiet_opencv():  # its failures print a dozen [ERROR] lines before raising
            net = cv2.dnn.readNetFromCaffe(bytearray(prototxt_text.encode()), bytearray(caffemodel))
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            net.enableFusion(False)
            net.enableWinograd(False)
            for name, x in inputs.items():
                x = np.asarray(x, np.float32)
                net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x, name)
            known = set(net.getLayerNames())
            layer_of = {(layer, i, top): layer if layer in known else top for layer, i, top in outputs}
            layers = list(dict.fromkeys(layer_of.values()))
            per_layer = dict(zip(layers, net.forwardAndRetrieve(layers)))  # every top of each layer
    except cv2.error as e:
        raise OpenCVRefused(_cv_error_text(e)) from None
    out = {}
    for key, layer in layer_of.items():
        o = per_layer[layer][key[1]]
        out[key] = o.transpose(0, 2, 3, 1) if o.ndim == 4 else o
    return out
