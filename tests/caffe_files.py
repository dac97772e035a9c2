"""The project's small Caffe file writer, for tests: prototxt text + binary caffemodels from numpy blobs.

    proto, model = write_net(tmp_path, PROTOTXT, blobs=random_blobs_for(PROTOTXT, rng))
    net = caffe.load(proto, model)

Caffemodels are written with ``schema.BVLC`` (BVLC field numbers), so OpenCV's importer reads them too.
``format="v2"`` writes ``layer {}`` entries with ``shape`` blobs; ``format="v1"`` writes ``layers {}``
entries (enum types) with legacy 4-D num/channels/height/width blobs, as old BVLC caffemodels do.
"""

from __future__ import annotations

import os

import numpy as np

from converters.caffe.reader import blob_shapes, loads, parse_prototxt
from converters.caffe.schema import BVLC, V1_TYPE_NAMES
from converters.caffe.upgrade import upgrade_layers

__all__ = ["write_net", "caffemodel_bytes", "random_blobs_for", "blob_message_bytes", "V1_ENUM"]

#: V2 type string -> V1 enum value (inverse of Caffe's UpgradeV1LayerType).
V1_ENUM = {name: num for num, name in V1_TYPE_NAMES.items() if name}


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def blob_message_bytes(array, *, legacy=False, double=False):
    """Serialized ``BlobProto`` of ``array``: ``shape`` (or legacy 4-D dims) + packed data / double_data.

    The packed data field is appended by hand (tag, length, little-endian values): protobuf merges
    concatenated fields, and this is ~50x faster than filling the repeated field value by value.
    """
    a = np.asarray(array)
    blob = BVLC.BlobProto()
    if legacy:
        if a.ndim > 4:
            raise ValueError(f"legacy 4-D blobs cannot hold shape {a.shape}")
        dims = (1,) * (4 - a.ndim) + tuple(a.shape)
        blob.num, blob.channels, blob.height, blob.width = (int(d) for d in dims)
    else:
        blob.shape.dim.extend(int(d) for d in a.shape)
    raw = a.astype("<f8" if double else "<f4").tobytes()
    field = 8 if double else 5
    return blob.SerializeToString() + _varint(field << 3 | 2) + _varint(len(raw)) + raw


def caffemodel_bytes(prototxt_text, blobs=None, *, format="v2", legacy=None, double=False, extra_layers=()):
    """Binary ``NetParameter`` for the layers of ``prototxt_text`` with ``blobs`` {layer name: [arrays]}.

    Every prototxt layer is written (name, type, bottoms, tops, like a trained caffemodel); names in
    ``blobs`` that the prototxt lacks are appended as extra layers. ``legacy`` defaults to True for v1.
    ``extra_layers`` are (name, type) pairs appended without blobs.
    """
    if format not in ("v1", "v2"):
        raise ValueError(f"format must be 'v1' or 'v2'. Received: format={format!r}")
    legacy = (format == "v1") if legacy is None else legacy
    blobs = dict(blobs or {})
    net_param, l1, l2 = parse_prototxt(prototxt_text)
    layers, _ = upgrade_layers(net_param, l1, l2, "<prototxt>")
    entries = [(p.name, p.type, list(p.bottom), list(p.top)) for p in layers]
    names = {e[0] for e in entries}
    entries += [(n, "Convolution", [], []) for n in blobs if n not in names]
    entries += [(n, t, [], []) for n, t in extra_layers]
    out = BVLC.NetParameter(name=net_param.name)
    for name, type_, bottoms, tops in entries:
        if format == "v2":
            layer = out.layer.add(name=name, type=type_)
        else:
            if type_ not in V1_ENUM:
                raise ValueError(f"layer '{name}': type '{type_}' has no V1 enum; write format='v2'")
            layer = out.layers.add(name=name, type=V1_ENUM[type_])
        layer.bottom.extend(bottoms)
        layer.top.extend(tops)
        for a in blobs.get(name, []):
            layer.blobs.add().MergeFromString(blob_message_bytes(a, legacy=legacy, double=double))
    return out.SerializeToString()


def write_net(directory, prototxt_text, blobs=None, *, format="v2", name="net", **kwargs):
    """Write ``<name>.prototxt`` (text as given) and, when ``blobs`` is not None, ``<name>.caffemodel``.

    Returns:
        (prototxt_path, caffemodel_path or None) as strings.
    """
    directory = os.fspath(directory)
    proto = os.path.join(directory, f"{name}.prototxt")
    with open(proto, "w", encoding="utf-8") as f:
        f.write(prototxt_text)
    if blobs is None:
        return proto, None
    model = os.path.join(directory, f"{name}.caffemodel")
    with open(model, "wb") as f:
        f.write(caffemodel_bytes(prototxt_text, blobs, format=format, **kwargs))
    return proto, model


def random_blobs_for(prototxt_text, rng, *, input_shape=None, scale_factor=999.98):
    """Correctly shaped random blobs for every layer with weights, using the reader's shape inference.

    BatchNorm gets [mean * sf, var * sf (var > 0), [sf]] with ``sf = scale_factor`` (!= 1, as
    Caffe-trained models), Scale [gamma, beta] (gamma > 0), PSPNet BN [slope, bias, mean, var > 0];
    other blobs are N(0, 0.1) float32 (+ PReLU slopes in [0, 0.5)).
    """
    net = loads(prototxt_text, input_shape=input_shape)
    types = {l.name: l.type for l in net.layers}
    out = {}
    for name, shapes in blob_shapes(net).items():
        t = types[name]
        if t == "BatchNorm":
            c = shapes[0]
            mean = rng.normal(0, 0.5, c)
            var = rng.uniform(0.5, 2.0, c)
            out[name] = [(mean * scale_factor).astype(np.float32), (var * scale_factor).astype(np.float32),
                         np.full(shapes[2], scale_factor, np.float32)]
        elif t == "BN":
            c = shapes[0]
            out[name] = [rng.uniform(0.5, 1.5, c).astype(np.float32), rng.normal(0, 0.1, c).astype(np.float32),
                         rng.normal(0, 0.5, c).astype(np.float32), rng.uniform(0.5, 2.0, c).astype(np.float32)]
        elif t == "Scale":
            out[name] = [rng.uniform(0.5, 1.5, shapes[0]).astype(np.float32)] + \
                [rng.normal(0, 0.1, s).astype(np.float32) for s in shapes[1:]]
        elif t == "PReLU":
            out[name] = [rng.uniform(0, 0.5, shapes[0]).astype(np.float32)]
        else:
            out[name] = [rng.normal(0, 0.1, s).astype(np.float32) for s in shapes]
    return out
