"""MVN, ArgMax and Bias on the blobs test_more_layers.py does not cover (1-D to 3-D bottoms, 16-bit dtype
policies, the batch axis), against NumPy transcriptions written here from BVLC Caffe's .cpp files, apart
from tests/oracle.py (a second reading of the same source).
"""

import keras
import numpy as np
import pytest

from converters import caffe
from converters.caffe.opencv import opencv_departures
from converters.caffe.reader import loads

pytestmark = pytest.mark.backend_agnostic


def _legacy_shape(shape):
    """Blob::LegacyShape: num(), channels(), height(), width(); an axis past the blob's last is 1."""
    assert len(shape) <= 4
    return tuple(shape[i] if i < len(shape) else 1 for i in range(4))


def mvn_cpp(bottom, normalize_variance=True, across_channels=False, eps=1e-9):
    """mvn_layer.cpp. Reshape: ``top->Reshape(num(), channels(), height(), width())`` (always 4-D).
    Forward_cpu: rows of ``dim = count / num`` values, ``num = num()`` (across_channels) or
    ``num() * channels()``; ``X - EX``, then ``/ (pow(E((X-EX)^2), 0.5) + eps)``."""
    n, c, h, w = _legacy_shape(bottom.shape)
    num = n if across_channels else n * c
    flat = bottom.astype(np.float64).reshape(-1)
    dim = flat.size // num
    top = np.empty_like(flat)
    for i in range(num):
        row = flat[i * dim:(i + 1) * dim]
        row = row - row.sum() / dim
        if normalize_variance:
            row = row / (np.sqrt((row * row).sum() / dim) + np.float32(eps))
        top[i * dim:(i + 1) * dim] = row
    return top.reshape(n, c, h, w)


def _nhwc(a):
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def _forward(text, x):
    model = caffe.to_keras(loads(text), progress=False)
    return keras.ops.convert_to_numpy(model.predict(_nhwc(x), verbose=0))


@pytest.mark.parametrize("shape", [(2,), (2, 6), (2, 3, 5)])
@pytest.mark.parametrize("mvn_param", ["", "across_channels: true", "normalize_variance: false"])
def test_mvn_top_is_four_d_for_lower_rank_bottoms(shape, mvn_param, rng):
    # MVN's Reshape uses the legacy 4-D accessors: a (N, C) bottom (after InnerProduct) gives (N, C, 1, 1).
    dims = " ".join(f"dim: {d}" for d in shape)
    text = f"""input: "x" input_shape {{ {dims} }}
layer {{ name: "mvn" type: "MVN" bottom: "x" top: "mvn" mvn_param {{ {mvn_param} }} }}"""
    x = rng.normal(size=shape).astype(np.float32)
    want = _nhwc(mvn_cpp(x, "normalize_variance: false" not in mvn_param, "across_channels" in mvn_param))
    net = loads(text)
    assert net.shapes[net.outputs[0]] == _legacy_shape(shape)
    y = _forward(text, x)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-5)
    # OpenCV keeps the bottom's shape, so --verify cannot compare it
    assert any("MVN 'mvn'" in d for d in opencv_departures(net))
