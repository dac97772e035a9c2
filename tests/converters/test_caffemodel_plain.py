"""converters.caffe.caffemodel reads layers in Caffe's plain form by hand, as zero-copy views of the file's
bytes. Every answer it gives must be protobuf's: checked on the forms Caffe and protobuf write and on
thousands of mutated layers; whatever it declines goes to protobuf."""

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from converters.caffe import caffemodel as cm
from converters.caffe.reader import loads
from converters.caffe.schema import BVLC
from tests.caffe_files import _varint, blob_message_bytes, caffemodel_bytes, random_blobs_for
from tests.converters.test_reader import SMALL, V1_TEXT


def _protobuf(data, kind):
    """(name, [(shape, float64 values)]) as protobuf parses the layer, or 'error'."""
    try:
        if kind == cm._V2_LAYER:
            view = BVLC.LayerBlobsView.FromString(bytes(data))
            name, blobs = view.name, view.blobs
        else:
            view = BVLC.V1LayerBlobsView.FromString(bytes(data))
            name = view.name or view.layer.name
            blobs = view.blobs if len(view.blobs) else view.layer.blobs
    except DecodeError:
        return "error"
    out = []
    for b in blobs:
        legacy = any(b.HasField(f) for f in ("num", "channels", "height", "width"))
        shape = (b.num, b.channels, b.height, b.width) if legacy else tuple(b.shape.dim)
        values = list(b.double_data) if len(b.double_data) else list(b.data)
        with np.errstate(over="ignore"):  # double_data beyond float32 is inf, as the reader casts it
            out.append((shape, np.asarray(values, np.float32)))
    return name, out


def _plain(data, kind):
    try:
        return cm._plain_layer(data, kind)
    except cm._NotPlain:
        return None


def _same(plain, proto):
    assert proto != "error"
    assert plain[0] == proto[0]
    assert len(plain[1]) == len(proto[1])
    for (s1, a1), (s2, a2) in zip(plain[1], proto[1]):
        assert tuple(s1) == tuple(s2)
        assert a1.dtype.kind == "f" and a1.itemsize == 4
        nan = np.isnan(a1)  # protobuf's Python floats quiet a signalling NaN; the views keep its bits
        np.testing.assert_array_equal(nan, np.isnan(a2))
        np.testing.assert_array_equal(a1[~nan].view(np.uint32), a2[~nan].view(np.uint32))  # -0.0 too


def _layers(rng):
    """(kind, serialized layer) in the forms Caffe, protobuf's serializer and old files write."""
    w = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    v2 = BVLC.LayerParameter(name="conv/1", type="Convolution", bottom=["data"], top=["conv/1"])
    blob = v2.blobs.add()
    blob.shape.dim.extend(w.shape)
    blob.data.extend(w.ravel().tolist())  # protobuf's own packed encoding
    v2.blobs.add().MergeFromString(blob_message_bytes(b))
    v2.blobs.add().MergeFromString(blob_message_bytes(b.reshape(1, 1, 1, 3), legacy=True))
    v2.blobs.add()  # an empty blob
    yield cm._V2_LAYER, v2.SerializeToString()
    e = BVLC.LayerParameter(name="ünï", type="ReLU")  # no blobs, non-ASCII name
    yield cm._V2_LAYER, e.SerializeToString()
    v1 = BVLC.V1LayerParameter(name="fc", type=14, bottom=["x"], top=["fc"])
    v1.blobs.add().MergeFromString(blob_message_bytes(w.reshape(3, 8), legacy=True))
    v1.blobs.add().MergeFromString(blob_message_bytes(b, legacy=True, double=True))  # protobuf's to read
    yield cm._V1_LAYERS, v1.SerializeToString()
    v1.ClearField("blobs")
    v1.blobs.add().MergeFromString(blob_message_bytes(b, legacy=True))
    yield cm._V1_LAYERS, v1.SerializeToString()
    odd = BVLC.BlobProto(num=-1)  # a negative int32 is a 10-byte varint
    odd.data.extend([float("nan"), -0.0, float("inf")])
    raw = odd.SerializeToString() + b"\x10" + _varint(2**33 + 3)  # channels beyond int32: its low 32 bits
    yield cm._V2_LAYER, b"\x0a\x03odd" + b"\x3a" + _varint(len(raw)) + raw


def test_plain_forms_equal_protobuf_and_view_the_bytes():
    declined = []
    for i, (kind, data) in enumerate(_layers(np.random.default_rng(0))):
        buf = bytearray(data)
        plain = _plain(buf, kind)
        if plain is None:
            declined.append(i)
            continue
        _same(plain, _protobuf(buf, kind))
        for _, a in plain[1]:
            assert a.size == 0 or (np.shares_memory(a, np.frombuffer(buf, np.uint8)) and a.flags.writeable)
    assert declined == [2]  # only the layer with a double_data blob is protobuf's to read


def test_mutated_layers_read_as_protobuf_reads_them():
    """A mutated layer is either declined or read exactly as protobuf reads it, never accepted where
    protobuf fails."""
    rng = np.random.default_rng(1)
    seeds = list(_layers(rng))
    taken = declined = 0
    for i in range(10000):
        kind, data = seeds[i % len(seeds)]
        buf = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            op, pos = rng.integers(4), int(rng.integers(len(buf)))
            if op == 0:
                buf[pos] ^= 1 << int(rng.integers(8))
            elif op == 1:
                buf[pos] = int(rng.integers(256))
            elif op == 2:
                del buf[pos:pos + int(rng.integers(1, 5))]
            else:
                buf[pos:pos] = rng.integers(256, size=int(rng.integers(1, 4)), dtype=np.uint8).tobytes()
        plain, proto = _plain(buf, kind), _protobuf(buf, kind)
        if plain is None:
            declined += 1
        else:
            taken += 1
            _same(plain, proto)
    assert taken > 1000 and declined > 5000  # both ways exercised


@pytest.mark.parametrize("fmt", ["v2", "v1"])
def test_whole_file_blobs_are_writable_views_of_the_read(fmt):
    text = SMALL if fmt == "v2" else V1_TEXT.replace('bottom: "label" ', "")
    blobs = random_blobs_for(text, np.random.default_rng(2))
    net = loads(text, caffemodel_bytes(text, blobs, format=fmt))
    for layer in net.layers:
        for got, want in zip(layer.blobs, blobs.get(layer.name, [])):
            np.testing.assert_array_equal(got, want.astype(np.float32).reshape(got.shape))
            assert got.flags.writeable and isinstance(got.base, (bytearray, np.ndarray))
