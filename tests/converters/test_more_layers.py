"""Bias, ArgMax, Threshold, Clip, Swish, Tile, Reduction and MVN against NumPy ports of BVLC Caffe's Forward_cpu (tests/oracle.py): OpenCV 4.14 lacks Bias, ArgMax,
Threshold, Clip and Reduction, adds MVN's eps to the variance, ignores Swish's beta and Tile's tile_param.

Input (2, 5, 7, 9) NCHW on a coarse grid (steps of 0.5), so ArgMax meets many equal values.
"""

import keras
import numpy as np
import pytest

from converters import caffe
from converters.caffe.errors import GraphError, UnsupportedLayerError
from converters.caffe.reader import loads
from tests.caffe_files import write_net
from tests.oracle import (caffe_argmax_numpy, caffe_bias_numpy, caffe_clip_numpy, caffe_mvn_numpy,
                          caffe_reduction_numpy, caffe_swish_numpy, caffe_threshold_numpy, caffe_tile_numpy)

# Tests that only read a prototxt (loads: parsing and shape inference, nothing a Keras backend computes) run in
# ./dev test's TensorFlow pass alone; those that convert to Keras are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic

SHAPE = (2, 5, 7, 9)

NET = """
name: "more_layers"
input: "data" input_shape { dim: 2 dim: 5 dim: 7 dim: 9 }
layer { name: "pos" type: "ReLU" bottom: "data" top: "pos" }
layer { name: "bias_c" type: "Bias" bottom: "data" top: "bias_c" }
layer { name: "bias_hw" type: "Bias" bottom: "data" top: "bias_hw" bias_param { axis: 2 num_axes: -1 } }
layer { name: "bias_h" type: "Bias" bottom: "data" top: "bias_h" bias_param { axis: -2 } }
layer { name: "red_hw" type: "Reduction" bottom: "data" top: "red_hw" reduction_param { axis: 2 } }
layer { name: "bias_2b" type: "Bias" bottom: "data" bottom: "red_hw" top: "bias_2b" bias_param { axis: 0 } }
layer { name: "am_c" type: "ArgMax" bottom: "pos" top: "am_c" argmax_param { axis: 1 top_k: 3 } }
layer { name: "am_c_val" type: "ArgMax" bottom: "pos" top: "am_c_val" argmax_param { axis: 1 top_k: 2 out_max_val: true } }
layer { name: "am_w" type: "ArgMax" bottom: "data" top: "am_w" argmax_param { axis: -1 } }
layer { name: "am_flat" type: "ArgMax" bottom: "pos" top: "am_flat" argmax_param { top_k: 4 out_max_val: true } }
layer { name: "am_flat_idx" type: "ArgMax" bottom: "data" top: "am_flat_idx" }
layer { name: "am_2d" type: "ArgMax" bottom: "red_hw" top: "am_2d" argmax_param { top_k: 2 } }
layer { name: "thr" type: "Threshold" bottom: "data" top: "thr" threshold_param { threshold: 0.5 } }
layer { name: "thr0" type: "Threshold" bottom: "data" top: "thr0" }
layer { name: "clip" type: "Clip" bottom: "data" top: "clip" clip_param { min: -0.5 max: 1 } }
layer { name: "swish" type: "Swish" bottom: "data" top: "swish" swish_param { beta: 1.7 } }
layer { name: "swish1" type: "Swish" bottom: "data" top: "swish1" }
layer { name: "tile_c" type: "Tile" bottom: "data" top: "tile_c" tile_param { tiles: 3 } }
layer { name: "tile_h" type: "Tile" bottom: "data" top: "tile_h" tile_param { axis: 2 tiles: 2 } }
layer { name: "tile_w" type: "Tile" bottom: "data" top: "tile_w" tile_param { axis: -1 tiles: 4 } }
layer { name: "red_sum" type: "Reduction" bottom: "data" top: "red_sum" reduction_param { axis: 1 } }
layer { name: "red_asum" type: "Reduction" bottom: "data" top: "red_asum"
  reduction_param { operation: ASUM axis: 2 coeff: 0.5 } }
layer { name: "red_sumsq" type: "Reduction" bottom: "data" top: "red_sumsq" reduction_param { operation: SUMSQ axis: 3 } }
layer { name: "red_mean" type: "Reduction" bottom: "data" top: "red_mean"
  reduction_param { operation: MEAN axis: -2 coeff: 2 } }
layer { name: "mvn" type: "MVN" bottom: "data" top: "mvn" }
layer { name: "mvn_across" type: "MVN" bottom: "data" top: "mvn_across" mvn_param { across_channels: true eps: 0.5 } }
layer { name: "mvn_mean" type: "MVN" bottom: "data" top: "mvn_mean" mvn_param { normalize_variance: false } }
layer { name: "mvn_eps" type: "MVN" bottom: "data" top: "mvn_eps" mvn_param { eps: 0.25 } }
layer { name: "mvn_2d" type: "MVN" bottom: "red_hw" top: "mvn_2d" mvn_param { across_channels: true eps: 0.1 } }
"""


def _reference(x, blobs):
    """Caffe top name -> NCHW (or lower-rank, Caffe-order) array, from the NumPy ports."""
    pos = np.maximum(x, 0)
    red_hw = caffe_reduction_numpy(x, "SUM", 2)
    return {
        "bias_c": caffe_bias_numpy(x, blobs["bias_c"][0], 1),
        "bias_hw": caffe_bias_numpy(x, blobs["bias_hw"][0], 2),
        "bias_h": caffe_bias_numpy(x, blobs["bias_h"][0], 2),
        "bias_2b": caffe_bias_numpy(x, red_hw, 0),
        "am_c": caffe_argmax_numpy(pos, 3, False, 1),
        "am_c_val": caffe_argmax_numpy(pos, 2, True, 1),
        "am_w": caffe_argmax_numpy(x, 1, False, 3),
        "am_flat": caffe_argmax_numpy(pos, 4, True),
        "am_flat_idx": caffe_argmax_numpy(x),
        "am_2d": caffe_argmax_numpy(red_hw, 2),
        "thr": caffe_threshold_numpy(x, 0.5),
        "thr0": caffe_threshold_numpy(x, 0.0),
        "clip": caffe_clip_numpy(x, -0.5, 1.0),
        "swish": caffe_swish_numpy(x, 1.7),
        "swish1": caffe_swish_numpy(x),
        "tile_c": caffe_tile_numpy(x, 1, 3),
        "tile_h": caffe_tile_numpy(x, 2, 2),
        "tile_w": caffe_tile_numpy(x, 3, 4),
        "red_sum": caffe_reduction_numpy(x, "SUM", 1),
        "red_asum": caffe_reduction_numpy(x, "ASUM", 2, 0.5),
        "red_sumsq": caffe_reduction_numpy(x, "SUMSQ", 3),
        "red_mean": caffe_reduction_numpy(x, "MEAN", 2, 2.0),
        "mvn": caffe_mvn_numpy(x),
        "mvn_across": caffe_mvn_numpy(x, across_channels=True, eps=0.5),
        "mvn_mean": caffe_mvn_numpy(x, normalize_variance=False),
        "mvn_eps": caffe_mvn_numpy(x, eps=0.25),
        "mvn_2d": caffe_mvn_numpy(red_hw, across_channels=True, eps=0.1),
    }


def _nhwc(a):
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


@pytest.fixture
def converted(tmp_path, rng):
    blobs = {"bias_c": [rng.normal(size=5).astype(np.float32)],
             "bias_hw": [rng.normal(size=(7, 9)).astype(np.float32)],
             "bias_h": [rng.normal(size=7).astype(np.float32)]}
    p, m = write_net(tmp_path, NET, blobs)
    net = caffe.load(p, m)
    return net, caffe.to_keras(net, progress=False), blobs


@agnostic
def test_new_layers_match_caffe_forward(converted, rng):
    net, model, blobs = converted
    x = (np.round(rng.normal(size=SHAPE) * 2) / 2).astype(np.float32)
    x[1, :, 3, :] = 0.5  # a row of equal values in every channel of sample 1
    ref = _reference(x, blobs)
    tops = [net.caffe_names[b] for b in net.outputs]
    assert sorted(tops) == sorted(ref)
    ours = model.predict(_nhwc(x), verbose=0)
    for top, y in zip(tops, ours):
        r = _nhwc(ref[top])
        y = keras.ops.convert_to_numpy(y)
        assert y.shape == r.shape, f"{top}: shape {y.shape} vs Caffe {r.shape}"
        assert y.shape[1:] == tuple(model.get_layer(top).output.shape[1:]), top
        if top.startswith(("am_", "thr")) and not top.endswith("_val") and top != "am_flat":
            np.testing.assert_array_equal(y, r, err_msg=top)  # indices and 0/1: exact
        else:
            err = np.abs(y - r).max()
            assert err <= 1e-5 * max(np.abs(r).max(), 1.0), f"{top}: max abs error {err:.3g}"


@agnostic
def test_argmax_ties_go_to_the_last_index():
    # std::partial_sort with std::greater on (value, index): equal values rank by index, largest first.
    text = """input: "x" input_shape { dim: 1 dim: 6 }
layer { name: "am" type: "ArgMax" bottom: "x" top: "am" argmax_param { axis: 1 top_k: 4 } }
layer { name: "flat" type: "ArgMax" bottom: "x" top: "flat" argmax_param { top_k: 3 out_max_val: true } }"""
    model = caffe.to_keras(loads(text), progress=False)
    x = np.array([[2.0, -np.inf, 2.0, -np.inf, 1.0, 2.0]], np.float32)
    am, flat = (keras.ops.convert_to_numpy(y) for y in model.predict(x, verbose=0))
    np.testing.assert_array_equal(am, caffe_argmax_numpy(x, 4, False, 1))
    np.testing.assert_array_equal(am, [[5, 2, 0, 4]])
    np.testing.assert_array_equal(flat, caffe_argmax_numpy(x, 3, True))
    np.testing.assert_array_equal(flat, [[[5, 2, 0], [2, 2, 2]]])


@agnostic
def test_clip_and_threshold_on_nan_and_inf():
    text = """input: "x" input_shape { dim: 1 dim: 5 }
layer { name: "clip" type: "Clip" bottom: "x" top: "clip" clip_param { min: -1 max: 2 } }
layer { name: "thr" type: "Threshold" bottom: "x" top: "thr" threshold_param { threshold: -1 } }"""
    model = caffe.to_keras(loads(text), progress=False)
    x = np.array([[np.nan, np.inf, -np.inf, -1.0, 1.5]], np.float32)
    clip, thr = (keras.ops.convert_to_numpy(y) for y in model.predict(x, verbose=0))
    np.testing.assert_array_equal(clip, caffe_clip_numpy(x, -1, 2))  # NaN -> min, as std::max(min, NaN)
    np.testing.assert_array_equal(thr, caffe_threshold_numpy(x, -1))


@agnostic
def test_scalar_bias_blob(tmp_path, rng):
    text = """input: "data" input_shape { dim: 1 dim: 3 dim: 5 dim: 7 }
layer { name: "b" type: "Bias" bottom: "data" top: "b" bias_param { num_axes: 0 } }"""
    bias = np.array(0.75, np.float32)
    p, m = write_net(tmp_path, text, {"b": [bias]})
    model = caffe.to_keras(caffe.load(p, m), progress=False)
    x = rng.normal(size=(1, 3, 5, 7)).astype(np.float32)
    y = model.predict(_nhwc(x), verbose=0)
    np.testing.assert_allclose(y, _nhwc(caffe_bias_numpy(x, bias, 1)), rtol=0, atol=1e-6)


@agnostic
def test_new_layers_reload_in_safe_mode(converted, tmp_path, rng):
    _, model, _ = converted
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    x = _nhwc(rng.normal(size=SHAPE).astype(np.float32))
    for a, b in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@pytest.mark.parametrize("layer, error, pattern", [
    ('type: "Reduction" bottom: "data" top: "y"', UnsupportedLayerError, r"reduction_param.axis=0 .*batch axis"),
    ('type: "ArgMax" bottom: "data" top: "y" argmax_param { axis: 0 }', UnsupportedLayerError,
     r"argmax_param.axis=0 .*batch axis"),
    ('type: "ArgMax" bottom: "data" top: "y" argmax_param { axis: 1 top_k: 4 }', GraphError,
     r"argmax_param.top_k=4 exceeds the size 3 of axis 1"),
    ('type: "ArgMax" bottom: "data" top: "y" argmax_param { top_k: 0 }', GraphError, r"argmax_param.top_k=0"),
    ('type: "Tile" bottom: "data" top: "y" tile_param { axis: 0 tiles: 2 }', UnsupportedLayerError,
     r"tile_param.axis=0"),
    ('type: "Tile" bottom: "data" top: "y"', GraphError, r"tile_param.tiles must be given"),
    ('type: "Clip" bottom: "data" top: "y" clip_param { min: 0 }', GraphError, r"clip_param.max must be given"),
    ('type: "Bias" bottom: "data" top: "y" bias_param { axis: 2 num_axes: 3 }', GraphError,
     r"bias_param.num_axes=3 does not fit"),
    ('type: "Bias" bottom: "data" bottom: "data" top: "y"', GraphError, r"bottom\[1\] shape .* does not match"),
])
def test_unsupported_parameters_name_layer_and_field(layer, error, pattern):
    text = f"""input: "data" input_shape {{ dim: 1 dim: 3 dim: 5 dim: 7 }}
layer {{ name: "bad" {layer} }}"""
    with pytest.raises(error, match=r"layer 'bad' \(\w+.*" + pattern):
        loads(text)


@agnostic
def test_verify_says_opencv_cannot_check_these_layers(converted):
    # OpenCV 4.14 lacks Bias/ArgMax/Threshold/Clip/Reduction and departs on Tile, Swish beta and MVN's eps.
    from converters.caffe.opencv import opencv_departures

    net, _, _ = converted
    found = opencv_departures(net)
    flagged = {d.split("'")[1] for d in found}
    assert flagged == {n for n in _reference(np.zeros(SHAPE, np.float32), {"bias_c": [0], "bias_hw": [0], "bias_h": [0]})
                       if n not in ("swish1", "mvn_mean")} | {"red_hw"}, found
