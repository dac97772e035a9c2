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
