"""zoo.layers against OpenCV's Caffe engine: pooling (ceil, clip, divisor) and align-corners Interp."""

import keras
import numpy as np
import pytest

from tests.oracle import caffe_pool_numpy, opencv_forward
from zoo.layers import CaffePooling2D, CropToReference, InterpAlignCorners, caffe_pool_output_size

# test_pool_output_size_rules is integer arithmetic (nothing a Keras backend computes) and runs in ./dev test's
# TensorFlow pass alone; the layer tests are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic

POOL_CASES = [
    # (H, W, kernel, stride, pad)
    (17, 23, 3, 2, 0),
    (17, 23, 3, 2, 1),
    (112, 113, 3, 2, 0),  # ResNet pool1: 112 -> 56
    (25, 31, 9, 8, 0),  # CPM centre map pooling: partial last window
    (21, 19, 3, 3, 1),
    (13, 11, 2, 2, 0),
    (15, 15, 5, 3, 2),
    (9, 14, 3, 1, 1),
    # AVE windows >= 64 pixels go through 0/1 window matrices instead of reduce_window
    (60, 60, 20, 20, 0),  # PSPNet pyramid: exact tiling
    (65, 63, 15, 10, 0),  # pyramid on a map not divisible by the bins: overlapping windows
    (23, 29, 9, 7, 3),  # padding inside the divisor, ceil overhang outside it
]


def _pool_prototxt(h, w, mode, k, s, p):
    return f"""
name: "pool"
input: "data"
input_dim: 1 input_dim: 3 input_dim: {h} input_dim: {w}
layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool"
  pooling_param {{ pool: {mode} kernel_size: {k} stride: {s} pad: {p} }} }}
"""


@agnostic
@pytest.mark.parametrize("mode", ["MAX", "AVE"])
@pytest.mark.parametrize("h,w,k,s,p", POOL_CASES)
def test_caffe_pooling_matches_opencv(mode, h, w, k, s, p, rng):
    x = rng.normal(size=(1, h, w, 3)).astype(np.float32) - 0.5  # negatives: padding must not win MAX
    ref = opencv_forward(_pool_prototxt(h, w, mode, k, s, p), {"data": x})["pool"]
    layer = CaffePooling2D("max" if mode == "MAX" else "ave", k, s, p)
    for training in (False, True):  # training: AVE windows >= 64 pixels use window matrices
        ours = keras.ops.convert_to_numpy(layer(x, training=training))
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    assert layer.compute_output_shape((1, h, w, 3)) == ref.shape


def test_pool_output_size_rules():
    assert caffe_pool_output_size(112, 3, 2, 0) == 56  # floor would give 55
    assert caffe_pool_output_size(368, 9, 8, 0) == 46
    assert caffe_pool_output_size(112, 3, 2, 0, ceil_mode=False) == 55
    assert caffe_pool_output_size(5, 3, 2, 2) == 4  # last window starting beyond H + p is dropped


@agnostic
@pytest.mark.parametrize("h,w,k,s,p", [(23, 29, 9, 7, 3), (60, 60, 20, 20, 0)])  # window matrices / reshape
def test_large_average_windows_train_without_reduce_window_gradient(rng, h, w, k, s, p):
    """Training avoids reduce_window (static or dynamic shapes); the gradient is the exact average's."""
    x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
    layer = CaffePooling2D("ave", k, s, p)
    ref = keras.ops.convert_to_numpy(layer(x))
    for shape in ((h, w, 3), (None, None, 3)):
        inp = keras.Input(shape)
        model = keras.Model(inp, layer(inp, training=True))
        np.testing.assert_allclose(model(x, training=True), ref, atol=1e-6, rtol=0)
    if keras.backend.backend() == "jax":  # the gradient equals reduce_window's (inference path)
        import jax

        w = rng.normal(size=ref.shape).astype(np.float32)
        grad = jax.grad(lambda v: keras.ops.sum(layer(v, training=True) * w))(x)
        want = jax.grad(lambda v: keras.ops.sum(layer(v, training=False) * w))(x)
        np.testing.assert_allclose(grad, want, atol=1e-6, rtol=0)


@agnostic
@pytest.mark.parametrize("mode", ["max", "ave"])
@pytest.mark.parametrize("h,w,k,s,p", [(5, 5, (2, 1), (1, 3), (1, 0)), (4, 5, (3, 1), (2, 3), (1, 0))])
def test_pad_on_one_axis_drops_the_last_window_on_both_as_caffe(mode, h, w, k, s, p, rng):
    """Caffe drops a last window starting at or beyond W + pad_w whenever pad_h || pad_w, so with
    pad only on H and stride > kernel on W a column goes (OpenCV's importer keeps it: not the oracle)."""
    x = rng.normal(size=(1, h, w, 2)).astype(np.float32)
    ref = caffe_pool_numpy(x, mode, k, s, p)
    layer = CaffePooling2D(mode, k, s, p)
    assert layer.compute_output_shape((1, h, w, 2)) == ref.shape
    for training in (False, True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=training)), ref, atol=1e-6)


@agnostic
def test_max_window_past_the_image_gives_caffes_minus_flt_max(rng):
    """1x1/2 on an even map: Caffe's ceil makes a last window starting at H, with no pixel; MAX
    leaves its initial -FLT_MAX there (finite: a following conv with a zero weight stays finite)."""
    x = rng.normal(size=(1, 6, 5, 2)).astype(np.float32)
    y = keras.ops.convert_to_numpy(CaffePooling2D("max", 1, 2)(x))
    np.testing.assert_array_equal(y, caffe_pool_numpy(x, "max", (1, 1), (2, 2), (0, 0)).astype(np.float32))
    assert y.shape == (1, 4, 3, 2) and np.isfinite(y).all()


@agnostic
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("h,w,k,s,p", [(60, 60, 30, 30, 0), (23, 29, 9, 7, 3), (17, 23, 3, 2, 1)])
def test_average_pooling_under_mixed_precision_sums_in_float32(policy, h, w, k, s, p, rng):
    """A float16 30x30 window sum of values ~100 is inf, and JAX's bfloat16 reduce_window was 30%
    off: both paths now sum in float32 and agree to the 16-bit rounding of the result."""
    x = rng.uniform(50, 150, size=(1, h, w, 2)).astype(np.float32)
    ref = caffe_pool_numpy(x, "ave", (k, k), (s, s), (p, p))
    layer = CaffePooling2D("ave", k, s, p, dtype=policy)
    for training in (False, True):
        y = layer(x, training=training)
        assert keras.backend.standardize_dtype(y.dtype) == policy[6:]
        y = keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))
        np.testing.assert_allclose(y, ref, rtol=2 ** -7, atol=0)


@agnostic
def test_global_pooling(rng):
    x = rng.normal(size=(2, 7, 5, 4)).astype(np.float32)
    y = keras.ops.convert_to_numpy(CaffePooling2D("ave", global_pooling=True)(x))
    np.testing.assert_allclose(y[:, 0, 0], x.mean(axis=(1, 2)), atol=1e-6)


@agnostic
@pytest.mark.parametrize(
    "h,w,spec,param",
    [
        (7, 9, "zoom_factor: 8", None),  # PSPNet final upsampling: 7 -> 49
        (6, 6, "height: 37 width: 29", (37, 29)),
        (13, 17, "height: 5 width: 7", (5, 7)),  # downsampling
        (1, 3, "height: 5 width: 4", (5, 4)),
    ],
)
def test_interp_align_corners_matches_opencv(h, w, spec, param, rng):
    x = rng.normal(size=(1, h, w, 2)).astype(np.float32)
    proto = f"""
input: "data"
input_dim: 1 input_dim: 2 input_dim: {h} input_dim: {w}
layer {{ name: "interp" type: "Interp" bottom: "data" top: "interp" interp_param {{ {spec} }} }}
"""
    ref = opencv_forward(proto, {"data": x})["interp"]
    layer = InterpAlignCorners(size=param) if param else InterpAlignCorners(zoom_factor=8)
    ours = keras.ops.convert_to_numpy(layer(x))
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


@agnostic
def test_interp_resizes_to_reference_and_half_pixel_resize_differs(rng):
    x = rng.normal(size=(1, 6, 6, 2)).astype(np.float32)
    ref = np.zeros((1, 60, 60, 1), np.float32)
    y = keras.ops.convert_to_numpy(InterpAlignCorners()([x, ref]))
    assert y.shape == (1, 60, 60, 2)
    np.testing.assert_allclose(y[0, 0, 0], x[0, 0, 0], atol=1e-6)  # corners align
    np.testing.assert_allclose(y[0, -1, -1], x[0, -1, -1], atol=1e-6)
    half_pixel = keras.ops.convert_to_numpy(keras.ops.image.resize(x, (60, 60)))
    assert np.abs(half_pixel - y).max() > 1e-2


@agnostic
def test_crop_to_reference_uses_top_left_offsets(rng):
    x = rng.normal(size=(1, 20, 22, 3)).astype(np.float32)
    ref = np.zeros((1, 9, 10, 5), np.float32)
    y = keras.ops.convert_to_numpy(CropToReference(axis=2, offset=(5,))([x, ref]))
    np.testing.assert_array_equal(y, x[:, 5:14, 5:15, :])
    y = keras.ops.convert_to_numpy(CropToReference(axis=2, offset=(2, 3))([x, ref]))
    np.testing.assert_array_equal(y, x[:, 2:11, 3:13, :])


@agnostic
@pytest.mark.parametrize("axis,offset", [(2, (5,)), (2, (1, 4)), (1, (0,))])
def test_crop_past_the_input_raises_as_caffe(axis, offset):
    """Caffe CHECKs size - offset >= reference size; a slice would come out short (5x5 for 9x9) silently."""
    x, ref = np.zeros((1, 10, 12, 3), np.float32), np.zeros((1, 9, 9, 5), np.float32)
    with pytest.raises(ValueError, match="cropping"):
        CropToReference(axis=axis, offset=offset)([x, ref])
    with pytest.raises(ValueError, match="cropping"):
        CropToReference(axis=axis, offset=offset)([keras.Input(x.shape[1:]), keras.Input(ref.shape[1:])])
    with pytest.raises(ValueError, match=">= 0"):
        CropToReference(offset=(-1,))


@agnostic
def test_pooling_a_map_smaller_than_its_window_names_the_layer():
    i = keras.Input((None, None, 4))
    model = keras.Model(i, CaffePooling2D("max", 3, 2, name="pool1")(i))
    with pytest.raises(ValueError, match=r"pool1: a 1x2 feature map \(height x width\) is smaller than one 3x3 "
                                         r"pooling window \(stride 2x2, pad 0x0\): Caffe's output would be 0x1"):
        model(np.ones((1, 1, 2, 4), np.float32))
    assert tuple(model(np.ones((1, 2, 2, 4), np.float32)).shape) == (1, 1, 1, 4)  # one window, clipped


_RELAXED_TRACE = """
import numpy as np, keras
from zoo.layers import CaffePooling2D
for mode in ("max", "ave"):
    i = keras.Input((None, None, 4))
    model = keras.Model(i, CaffePooling2D(mode, 3, 2, name="pool1")(i))
    for size in (9, 8, 7, 6, 1):  # after a few sizes Keras relaxes predict's tf.function to any size
        print(mode, size, model.predict(np.ones((1, size, size, 4), "float32"), verbose=0).shape, flush=True)
"""


def test_a_relaxed_tensorflow_trace_does_not_feed_maxpool_less_than_a_window():
    """In a relaxed trace the sizes are unknown, so nothing can refuse a 1x1 map before TensorFlow's MaxPool,
    which killed the process on it (SIGFPE, exit -8): now an empty output, as AVE gave."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", _RELAXED_TRACE], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "max 1 (1, 0, 0, 4)" in done.stdout and "ave 1 (1, 0, 0, 4)" in done.stdout
    assert "max 9 (1, 4, 4, 4)" in done.stdout and "max 6 (1, 3, 3, 4)" in done.stdout
