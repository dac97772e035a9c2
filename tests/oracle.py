"""Independent references: OpenCV's dnn Caffe importer, and NumPy ports of Caffe code where OpenCV
departs from Caffe."""

import numpy as np
import pytest


def opencv_forward(prototxt_text, inputs, caffemodel=None, outputs=None, blobs=None):
    """Run a Caffe net through OpenCV's dnn importer (the independent oracle).

    ``inputs`` maps input names to NHWC arrays; returns NHWC (or 2-D) float32 arrays per output.
    ``outputs``: layer names (their first top), ``(layer, i)`` (the i-th top) or ``(layer, i, top)``
    (the top's name when OpenCV names the layer after it); the default is every unconnected output layer.
    ``blobs`` (optional) maps layer names to lists of Caffe-layout arrays set on the layers
    instead of a caffemodel (e.g. conv weights (O, I, kh, kw) and bias (1, O)).
    """
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise RuntimeError("OpenCV without the Caffe importer; install opencv-python-headless<5")
    proto = prototxt_text.encode() if isinstance(prototxt_text, str) else prototxt_text
    model = b"" if caffemodel is None else caffemodel
    net = cv2.dnn.readNetFromCaffe(bytearray(proto), bytearray(model)) if model else \
        cv2.dnn.readNetFromCaffe(bytearray(proto))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.enableFusion(False)
    net.enableWinograd(False)
    for name, arrays in (blobs or {}).items():
        net.getLayer(net.getLayerId(name)).blobs = [np.ascontiguousarray(a, np.float32) for a in arrays]
    for name, x in inputs.items():
        x = np.asarray(x, np.float32)
        net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x, name)
    names = outputs or list(net.getUnconnectedOutLayersNames())
    # A name is a layer's first output; (layer, i) its i-th top (layers with several tops, e.g. Slice);
    # (layer, i, top) falls back to the top's name, which OpenCV 4.14 gives some layers instead.
    known = set(net.getLayerNames())
    pairs = [(n, 0) if isinstance(n, str) else (n[0] if n[0] in known or len(n) < 3 else n[2], n[1]) for n in names]
    layers = list(dict.fromkeys(layer for layer, _ in pairs))
    per_layer = dict(zip(layers, net.forwardAndRetrieve(layers)))
    outs = [per_layer[layer][i] for layer, i in pairs]
    return {n: (o.transpose(0, 2, 3, 1) if o.ndim == 4 else o) for n, o in zip(names, outs)}


def caffe_pool_numpy(x, mode, k, s, p):
    """NumPy port of Caffe's ``PoolingLayer::Reshape`` + ``Forward_cpu`` (float64, NHWC), ceil mode."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    _, h, w, _ = x.shape
    oh, ow = -(-(h + 2 * ph - kh) // sh) + 1, -(-(w + 2 * pw - kw) // sw) + 1
    if ph or pw:  # Caffe tests pad_h || pad_w, then clips both axes
        oh -= (oh - 1) * sh >= h + ph
        ow -= (ow - 1) * sw >= w + pw
    y = np.empty((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
            win = x[:, max(hs, 0):min(he, h), max(ws, 0):min(we, w)].astype(np.float64)
            if mode == "max":  # top starts at -FLT_MAX
                y[:, i, j] = np.maximum(win.max(axis=(1, 2), initial=-np.inf), -np.finfo(np.float32).max)
            else:
                y[:, i, j] = win.sum(axis=(1, 2)) / ((he - hs) * (we - ws))
    return y


# NumPy ports of BVLC Caffe's Forward_cpu for layer types OpenCV 4.14 lacks or computes otherwise (its MVN
# adds eps to the variance, its Swish has no beta, its Tile does not read tile_param). Arrays are in
# Caffe's layout (NCHW for images) and are walked with Caffe's own index arithmetic over the flat blob.


def _count(shape, start, end=None):
    return int(np.prod(shape[start:end], dtype=np.int64))


def caffe_bias_numpy(x, bias, axis):
    """bias_layer.cpp: ``top[(n * bias_dim + d) * inner + i] = bottom[...] + bias[d]``."""
    bias = np.asarray(bias, np.float32)
    axis = 0 if bias.ndim == 0 else axis
    outer, bias_dim, inner = _count(x.shape, 0, axis), bias.size, _count(x.shape, axis + bias.ndim)
    flat, b = x.astype(np.float32).reshape(-1).copy(), bias.reshape(-1)
    for n in range(outer):
        for d in range(bias_dim):
            start = (n * bias_dim + d) * inner
            flat[start:start + inner] += b[d]
    return flat.reshape(x.shape)


def caffe_argmax_numpy(x, top_k=1, out_max_val=False, axis=None):
    """argmax_layer.cpp: ``partial_sort`` of ``(value, index)`` pairs with ``std::greater``, per position."""
    bottom = x.astype(np.float32).reshape(-1)
    if axis is not None:
        shape = list(x.shape)
        shape[axis] = top_k
        dim, axis_dist = x.shape[axis], _count(x.shape, axis) // x.shape[axis]
    else:
        shape = [x.shape[0], 2 if out_max_val else 1, top_k] + [1] * (max(x.ndim, 3) - 3)
        dim, axis_dist = _count(x.shape, 1), 1
    top = np.zeros(_count(shape, 0), np.float32)
    for i in range(bottom.size // dim):
        pairs = [(bottom[(i // axis_dist * dim + j) * axis_dist + i % axis_dist], j) for j in range(dim)]
        pairs.sort(reverse=True)  # lexicographic on (value, index), greatest first
        for j in range(top_k):
            value, index = pairs[j]
            if out_max_val and axis is None:
                top[2 * i * top_k + j] = index
                top[2 * i * top_k + top_k + j] = value
            else:
                top[(i // axis_dist * top_k + j) * axis_dist + i % axis_dist] = value if out_max_val else index
    return top.reshape(shape)


def caffe_reduction_numpy(x, operation, axis, coeff=1.0):
    """reduction_layer.cpp: one value per index of the axes before ``axis``; MEAN's coeff is coeff / dim."""
    num, dim = _count(x.shape, 0, axis), _count(x.shape, axis)
    rows = x.astype(np.float64).reshape(num, dim)
    out = np.empty(num)
    for i in range(num):
        r = rows[i]
        out[i] = {"SUM": r.sum(), "MEAN": r.sum(), "ASUM": np.abs(r).sum(), "SUMSQ": (r * r).sum()}[operation]
    c = coeff / dim if operation == "MEAN" else coeff
    return (out * c).reshape(x.shape[:axis])


def caffe_mvn_numpy(x, normalize_variance=True, across_channels=False, eps=1e-9):
    """mvn_layer.cpp: per num (or num * channels) row of the flat blob, ``x - EX``, then
    ``/ (sqrt(E((X-EX)^2)) + eps)``. num()/channels() are Caffe's legacy accessors (1 past the last axis),
    and the top is reshaped to them: always 4-D."""
    legacy = list(x.shape) + [1] * (4 - x.ndim)
    num = legacy[0] if across_channels else legacy[0] * legacy[1]
    rows = x.astype(np.float64).reshape(num, -1)
    out = np.empty_like(rows)
    for i in range(num):
        centred = rows[i] - rows[i].sum() / rows[i].size
        if normalize_variance:
            centred = centred / (np.sqrt((centred ** 2).sum() / rows[i].size) + eps)
        out[i] = centred
    return out.reshape(legacy)


def caffe_tile_numpy(x, axis, tiles):
    """tile_layer.cpp: per outer index, the inner block (axes from ``axis`` on) copied ``tiles`` times."""
    outer, inner = _count(x.shape, 0, axis), _count(x.shape, axis)
    flat = x.reshape(outer, inner)
    top = np.empty((outer, tiles * inner), x.dtype)
    for i in range(outer):
        for t in range(tiles):
            top[i, t * inner:(t + 1) * inner] = flat[i]
    shape = list(x.shape)
    shape[axis] *= tiles
    return top.reshape(shape)


def caffe_threshold_numpy(x, threshold):
    """threshold_layer.cpp: ``(x > threshold) ? 1 : 0``."""
    return np.array([1.0 if v > threshold else 0.0 for v in x.reshape(-1)], np.float32).reshape(x.shape)


def caffe_clip_numpy(x, lo, hi):
    """clip_layer.cpp: ``std::max(min, std::min(x, max))``, with the STL's comparisons (NaN -> min)."""
    def stl_min(a, b):  # std::min(a, b) = (b < a) ? b : a
        return b if b < a else a

    def stl_max(a, b):  # std::max(a, b) = (a < b) ? b : a
        return b if a < b else a

    lo, hi = np.float32(lo), np.float32(hi)
    return np.array([stl_max(lo, stl_min(v, hi)) for v in x.reshape(-1)], np.float32).reshape(x.shape)


def caffe_swish_numpy(x, beta=1.0):
    """swish_layer.cpp: ``x * sigmoid(beta * x)``, Caffe's sigmoid being ``0.5 * tanh(0.5 * x) + 0.5``."""
    x = x.astype(np.float64)
    return x * (0.5 * np.tanh(0.5 * beta * x) + 0.5)
