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

# Tests that only read a prototxt (loads: parsing and shape inference, nothing a Keras backend computes) run in
# ./dev test's TensorFlow pass alone; those that convert to Keras are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic


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


def argmax_cpp(bottom, top_k=1, out_max_val=False, axis=None):
    """argmax_layer.cpp: per position, ``std::partial_sort`` of ``(value, index)`` pairs with
    ``std::greater``; without ``axis`` the top is ``(N, 1 or 2, top_k)`` padded with 1s to the bottom's
    rank, holding ``top_k`` indices then (``out_max_val``) ``top_k`` values per sample."""
    data = bottom.astype(np.float32).reshape(-1)
    if axis is not None:
        axis = axis + bottom.ndim if axis < 0 else axis
        shape = list(bottom.shape)
        shape[axis] = top_k
        dim = bottom.shape[axis]
        dist = int(np.prod(bottom.shape[axis:])) // dim
    else:
        shape = [bottom.shape[0], 2 if out_max_val else 1, top_k] + [1] * (max(bottom.ndim, 3) - 3)
        dim, dist = int(np.prod(bottom.shape[1:])), 1
    top = np.zeros(int(np.prod(shape)), np.float64)
    for i in range(data.size // dim):
        pairs = sorted(((data[(i // dist * dim + j) * dist + i % dist], j) for j in range(dim)), reverse=True)
        for j, (value, index) in enumerate(pairs[:top_k]):
            if out_max_val and axis is None:
                top[2 * i * top_k + j], top[2 * i * top_k + top_k + j] = index, value
            else:
                top[(i // dist * top_k + j) * dist + i % dist] = value if out_max_val else index
    return top.reshape(shape)


def reduction_cpp(bottom, operation, axis, coeff=1.0):
    """reduction_layer.cpp: ``num = count(0, axis)`` rows of ``dim = count(axis)`` values; SUM/MEAN
    ``caffe_cpu_dot`` with ones, ASUM ``caffe_cpu_asum``, SUMSQ ``caffe_cpu_dot(x, x)``; then
    ``caffe_scal`` by ``coeff`` (``coeff / dim`` for MEAN). The top keeps the axes before ``axis``."""
    axis = axis + bottom.ndim if axis < 0 else axis
    num, dim = int(np.prod(bottom.shape[:axis])), int(np.prod(bottom.shape[axis:]))
    rows = bottom.astype(np.float64).reshape(num, dim)
    coeff = np.float32(coeff) / np.float32(dim) if operation == "MEAN" else np.float32(coeff)
    top = [{"SUM": r.sum(), "MEAN": r.sum(), "ASUM": np.abs(r).sum(), "SUMSQ": r @ r}[operation] for r in rows]
    return (np.array(top) * coeff).reshape(bottom.shape[:axis])


def _nhwc(a):
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def _forward(text, x):
    model = caffe.to_keras(loads(text), progress=False)
    return keras.ops.convert_to_numpy(model.predict(_nhwc(x), verbose=0))


@agnostic
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


@agnostic
@pytest.mark.parametrize("policy", ["bfloat16", "float16", "mixed_bfloat16"])
def test_argmax_indices_are_exact_under_16_bit_policies(policy):
    # Caffe's top is float: indices up to 2^24 are exact. bfloat16 holds integers exactly only up to 256
    # (index 999 of 1000 classes was 1000), float16 up to 2048.
    text = """input: "x" input_shape { dim: 2 dim: 3 dim: 40 dim: 40 }
layer { name: "flat" type: "ArgMax" bottom: "x" top: "flat" argmax_param { top_k: 2 out_max_val: true } }
layer { name: "f" type: "Flatten" bottom: "x" top: "f" }
layer { name: "am" type: "ArgMax" bottom: "f" top: "am" argmax_param { axis: 1 top_k: 3 } }"""
    x = np.zeros((2, 3, 40, 40), np.float32)
    x[0, 2, 39, 39], x[0, 2, 39, 37], x[0, 1, 0, 1] = 4.0, 3.0, 2.0  # indices 4799, 4797, 1601
    x[1, 0, 0, 3], x[1, 2, 39, 38] = 1.5, 1.0  # indices 3, 4798; then the last of the zeros, 4799
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = caffe.to_keras(loads(text), progress=False)
        flat, am = (np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")), np.float64)
                    for y in model(_nhwc(x)))
    finally:
        keras.config.set_dtype_policy(before)
    np.testing.assert_array_equal(flat, _nhwc(argmax_cpp(x, 2, True)))
    np.testing.assert_array_equal(am, argmax_cpp(x.reshape(2, -1), 3, False, 1))
    np.testing.assert_array_equal(am, [[4799, 4797, 1601], [3, 4798, 4799]])  # ties: the last index


@agnostic
@pytest.mark.parametrize("policy", ["float16", "mixed_float16"])
def test_mvn_of_a_constant_channel_is_zero_under_float16(policy, rng):
    # eps = 1e-9 is 0 in float16: a channel that ReLU zeroed gave 0 / 0 = NaN, Caffe 0 / (0 + eps) = 0.
    text = """input: "x" input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }
layer { name: "relu" type: "ReLU" bottom: "x" top: "x" }
layer { name: "mvn" type: "MVN" bottom: "x" top: "mvn" }"""
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    x[:, 1] = -1.0
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = caffe.to_keras(loads(text), progress=False)
        y = keras.ops.convert_to_numpy(keras.ops.cast(model(_nhwc(x)), "float32"))
    finally:
        keras.config.set_dtype_policy(before)
    want = _nhwc(mvn_cpp(np.maximum(x, 0).astype(np.float16)))
    np.testing.assert_array_equal(y[..., 1], 0.0)
    np.testing.assert_allclose(y, want, rtol=0, atol=4e-3)  # float16 rounding of values up to ~4


@pytest.mark.parametrize("bias_param", ["axis: 0", "axis: -4 num_axes: 2", "axis: 0 num_axes: -1"])
def test_learned_bias_over_the_batch_axis_is_refused_naming_the_field(bias_param):
    # bias_layer.cpp: the blob has the bottom's dims from `axis` on, the batch size among them when
    # axis is 0; a Keras model takes any batch size. It failed in to_keras with a broadcasting TypeError.
    text = f"""input: "x" input_shape {{ dim: 2 dim: 3 dim: 4 dim: 5 }}
layer {{ name: "b" type: "Bias" bottom: "x" top: "y" bias_param {{ {bias_param} }} }}"""
    with pytest.raises(caffe.UnsupportedLayerError, match=r"layer 'b' \(Bias.*bias_param.axis=0 .*batch axis"):
        loads(text)
    scalar = loads(text.replace(bias_param, "axis: 0 num_axes: 0"))  # a scalar lines up anywhere
    assert scalar.shapes[scalar.outputs[0]] == (2, 3, 4, 5)


@agnostic
@pytest.mark.parametrize("policy", ["float16", "mixed_float16"])
def test_reduction_sums_do_not_overflow_under_float16(policy, rng):
    # Caffe sums in float, then scales by coeff: 128 * 128 values of 30 squared is 1.5e7 (float16 ends at
    # 65504), times coeff 0.001 is 14746. The float16 sum was inf before the coeff.
    text = """input: "x" input_shape { dim: 2 dim: 2 dim: 128 dim: 128 }
layer { name: "sumsq" type: "Reduction" bottom: "x" top: "sumsq" reduction_param { operation: SUMSQ axis: 2 coeff: 0.001 } }
layer { name: "sum" type: "Reduction" bottom: "x" top: "sum" reduction_param { operation: SUM axis: 1 coeff: 0.0001 } }"""
    x = rng.uniform(25, 35, size=(2, 2, 128, 128)).astype(np.float16).astype(np.float32)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = caffe.to_keras(loads(text), progress=False)
        sumsq, total = (keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")) for y in model(_nhwc(x)))
    finally:
        keras.config.set_dtype_policy(before)
    np.testing.assert_allclose(sumsq, reduction_cpp(x, "SUMSQ", 2, 0.001), rtol=2e-3)  # float16 result rounding
    np.testing.assert_allclose(total, reduction_cpp(x, "SUM", 1, 0.0001), rtol=2e-3)


def batch_norm_batch_stats_cpp(bottom, eps=1e-5):
    """batch_norm_layer.cpp, ``use_global_stats: false``: per channel over N and the spatial axes,
    ``mean = E(X)``, ``var = E((X - EX)^2)``; ``top = (X - mean) / sqrt(var + eps)``."""
    x = bottom.astype(np.float64)
    axes = tuple(a for a in range(x.ndim) if a != 1)
    centred = x - x.mean(axis=axes, keepdims=True)
    return centred / np.sqrt((centred * centred).mean(axis=axes, keepdims=True) + np.float32(eps))


def _under_policy(policy, text, *inputs):
    """Outputs (float64, NHWC) of ``text`` converted and run under the dtype policy ``policy``."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = caffe.to_keras(loads(text), progress=False)
        ys = model([_nhwc(x) for x in inputs] if len(inputs) > 1 else _nhwc(inputs[0]))
    finally:
        keras.config.set_dtype_policy(before)
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    return [np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")), np.float64) for y in ys]


@agnostic
@pytest.mark.parametrize("policy", ["float16", "mixed_float16", "bfloat16"])
def test_batch_statistics_batchnorm_does_not_overflow_under_16_bit_policies(policy, rng):
    # Caffe computes the batch mean and variance in float. In float16 a deviation of 256 or more squares
    # past 65504 (inf): the variance was inf and every output 0. Multiples of 4 up to 1024 are exact in both
    # float16 and bfloat16, so the reference sees the same input.
    text = """input: "x" input_shape { dim: 3 dim: 5 dim: 7 dim: 9 }
layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" batch_norm_param { use_global_stats: false eps: 0.001 } }"""
    x = 4.0 * rng.integers(-120, 121, size=(3, 5, 7, 9))
    x[:, 2] += 300.0  # a channel with a large mean besides its spread
    x[:, 3] = 300.0 + 2.0 * rng.integers(0, 2, size=(3, 7, 9))  # and one of 300s and 302s: its mean ~301 was
    # rounded to 300 or 302 in bfloat16, one standard deviation off
    (y,) = _under_policy(policy, text, x.astype(np.float32))
    want = _nhwc(batch_norm_batch_stats_cpp(x, 0.001))
    # float16 keeps ~3 digits of outputs up to ~2 (one ulp 0.002); bfloat16 ~2 (0.016).
    np.testing.assert_allclose(y, want, rtol=0, atol=1.6e-2 if policy == "bfloat16" else 2e-3)


def lrn_cpp(bottom, local_size=5, alpha=1.0, beta=0.75, k=1.0, across=True):
    """lrn_layer.cpp. ACROSS_CHANNELS: ``scale = k + alpha / size * sum`` of the squares of the ``size``
    channels around c (zero beyond the ends); WITHIN_CHANNEL: a Power (``x^2``), an AVE Pooling of
    ``size x size`` with pad ``(size - 1) / 2`` (the divisor counts padding: always ``size^2``), then
    ``(1 + alpha * avg)``; ``top = x * scale^-beta``."""
    x = bottom.astype(np.float64)
    p = (local_size - 1) // 2
    if across:
        sq = np.pad(x * x, ((0, 0), (p, p), (0, 0), (0, 0)))
        scale = k + alpha / local_size * sum(sq[:, i:i + x.shape[1]] for i in range(local_size))
    else:
        sq = np.pad(x * x, ((0, 0), (0, 0), (p, p), (p, p)))
        h, w = x.shape[2:]
        scale = 1.0 + alpha * sum(sq[:, :, i:i + h, j:j + w] for i in range(local_size)
                                  for j in range(local_size)) / local_size ** 2
    return x * scale ** -beta


@agnostic
@pytest.mark.parametrize("policy", ["float16", "mixed_float16", "bfloat16"])
def test_lrn_sums_of_squares_do_not_overflow_under_16_bit_policies(policy, rng):
    # AlexNet's LRN after conv1 + ReLU sees activations in the hundreds: in float16 256^2 is past 65504,
    # the sum of squares was inf and the output 0 where Caffe (float) gives x / 10^0.75 or so.
    # Even integers up to 512 are exact in float16 and bfloat16: the reference sees the same input.
    text = """input: "x" input_shape { dim: 2 dim: 7 dim: 9 dim: 11 }
layer { name: "across" type: "LRN" bottom: "x" top: "across" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 k: 2 } }
layer { name: "within" type: "LRN" bottom: "x" top: "within"
        lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 norm_region: WITHIN_CHANNEL } }"""
    x = 2.0 * rng.integers(0, 200, size=(2, 7, 9, 11))
    across, within = _under_policy(policy, text, x.astype(np.float32))
    rtol = 8e-3 if policy == "bfloat16" else 1e-3  # a 16-bit result: 3 (bfloat16 2) significant digits
    np.testing.assert_allclose(across, _nhwc(lrn_cpp(x, 5, 1e-4, 0.75, 2.0)), rtol=rtol, atol=1e-2)
    np.testing.assert_allclose(within, _nhwc(lrn_cpp(x, 3, 1e-4, 0.75, across=False)), rtol=rtol, atol=1e-2)


@agnostic
@pytest.mark.parametrize("policy", ["float16", "mixed_float16", "bfloat16"])
def test_power_computes_in_float_under_16_bit_policies(policy, rng):
    # power_layer.cpp works in float: (1 + 1000 x)^0.5 of x = 300 is 548, though 1000 x is past float16's
    # 65504 (it was inf). Even integers up to 512 are exact in float16 and bfloat16.
    text = """input: "x" input_shape { dim: 2 dim: 3 dim: 5 dim: 7 }
layer { name: "p" type: "Power" bottom: "x" top: "p" power_param { power: 0.5 scale: 1000 shift: 1 } }"""
    x = 2.0 * rng.integers(0, 200, size=(2, 3, 5, 7))
    (y,) = _under_policy(policy, text, x.astype(np.float32))
    rtol = 4e-3 if policy == "bfloat16" else 5e-4  # half a unit in the last place of a 16-bit result
    np.testing.assert_allclose(y, _nhwc((1.0 + 1000.0 * x) ** 0.5), rtol=rtol)


@agnostic
@pytest.mark.parametrize("policy", ["float16", "mixed_float16", "bfloat16"])
def test_exp_and_log_compute_in_float_under_16_bit_policies(policy, rng):
    # exp_layer.cpp / log_layer.cpp work in float. In float16: log(1 + x) of x < 0.0005 was log(1) = 0
    # (1 + x rounds to 1) and of x ~ 0.002 up to 25% off, log10(1 + 300 x) of x > 218 was inf (300 x is past
    # 65504), and 2^(1.5 x - 3) up to 0.7% off from its exponent rounded to float16. Multiples of 1/16 in
    # [-4, 10] and of 2^-14 in [0.001, 0.0156] are exact in float16 and bfloat16 (no subnormals): the
    # reference sees the same input.
    text = """input: "x" input_shape { dim: 2 dim: 3 dim: 5 dim: 7 }
input: "small" input_shape { dim: 2 dim: 3 dim: 5 dim: 7 }
layer { name: "log1p" type: "Log" bottom: "small" top: "log1p" log_param { shift: 1 } }
layer { name: "abs" type: "AbsVal" bottom: "x" top: "abs" }
layer { name: "pow" type: "Power" bottom: "abs" top: "big" power_param { scale: 32 } }
layer { name: "log10" type: "Log" bottom: "big" top: "log10" log_param { base: 10 scale: 300 shift: 1 } }
layer { name: "exp2" type: "Exp" bottom: "x" top: "exp2" exp_param { base: 2 scale: 1.5 shift: -3 } }"""
    x = rng.integers(-64, 161, size=(2, 3, 5, 7)) / 16.0  # 2^(1.5 x - 3) in [2^-9, 2^12]: no subnormals
    small = rng.integers(16, 256, size=(2, 3, 5, 7)) / 2.0 ** 14
    log1p, log10, exp2 = _under_policy(policy, text, x.astype(np.float32), small.astype(np.float32))
    rtol = 4e-3 if policy == "bfloat16" else 5e-4  # half a unit in the last place of a 16-bit result
    np.testing.assert_allclose(log1p, _nhwc(np.log1p(small)), rtol=rtol)
    np.testing.assert_allclose(log10, _nhwc(np.log10(1.0 + 300.0 * 32.0 * np.abs(x))), rtol=rtol)
    np.testing.assert_allclose(exp2, _nhwc(2.0 ** (1.5 * x - 3.0)), rtol=rtol)


@agnostic
@pytest.mark.parametrize("scale_param", ["axis: 0", "axis: -4 num_axes: 2", "axis: 0 num_axes: -1 bias_term: true"])
def test_learned_scale_over_the_batch_axis_is_refused_naming_the_field(scale_param, rng):
    # scale_layer.cpp: the blob has the bottom's dims from `axis` on, the batch size among them when axis
    # is 0; a Keras model takes any batch size. It failed in to_keras with "mul got incompatible shapes".
    text = f"""input: "x" input_shape {{ dim: 2 dim: 3 dim: 4 dim: 5 }}
layer {{ name: "s" type: "Scale" bottom: "x" top: "y" scale_param {{ {scale_param} }} }}"""
    with pytest.raises(caffe.UnsupportedLayerError, match=r"layer 's' \(Scale.*scale_param.axis=0 .*batch axis"):
        loads(text)
    # A scalar (num_axes: 0) lines up anywhere: y = x * 1.5 + 0.25, from the blobs set here.
    net = loads(text.replace(scale_param, "axis: 0 num_axes: 0 bias_term: true"))
    model = caffe.to_keras(net, progress=False)
    model.get_layer("s").set_weights([np.float32(1.5), np.float32(0.25)])
    x = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(_nhwc(x))), _nhwc(x * 1.5 + 0.25), rtol=1e-6)


def tile_cpp(bottom, axis, tiles):
    """tile_layer.cpp: ``outer = count(0, axis)`` rows of ``inner = count(axis)`` values, each row copied
    ``tiles`` times one after another."""
    axis = axis + bottom.ndim if axis < 0 else axis
    rows = bottom.reshape(int(np.prod(bottom.shape[:axis])), -1)
    shape = list(bottom.shape)
    shape[axis] *= tiles
    return np.concatenate([rows] * tiles, axis=1).reshape(shape)


@agnostic
def test_learned_blobs_over_open_spatial_axes_are_refused_naming_input_shape(rng):
    # A learned Bias/Scale blob over H or W has the sizes it was learned for: with input_shape=(None, None)
    # it failed inside Keras ("add got incompatible shapes", wrapped in a GraphError) on JAX, and on
    # TensorFlow built a model that takes only that size; a wrong fixed size failed the same way.
    head = 'input: "x" input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }\n'
    bias = head + 'layer { name: "b" type: "Bias" bottom: "x" top: "y" bias_param { axis: 2 num_axes: -1 } }'
    scale = head + ('layer { name: "s" type: "Scale" bottom: "x" top: "y" '
                    'scale_param { axis: 1 num_axes: 2 bias_term: true } }')
    for text, name, field in [(bias, r"'b' \(Bias", "bias_param"), (scale, r"'s' \(Scale", "scale_param")]:
        with pytest.raises(caffe.GraphError, match=rf"layer {name}.*\({field}.axis \d\) covers axis 2 \(H\) of 'x' "
                                                    r"with size 4, but that axis is left open \(None\).*input_shape"):
            caffe.to_keras(loads(text), input_shape=(None, None), progress=False)
        with pytest.raises(caffe.GraphError, match=rf"layer {name}.*covers axis 2 \(H\) of 'x' with size 4, but "
                                                    r"that axis is 6 .*shape \(2, 3, 4, 5\)"):
            caffe.to_keras(loads(text), input_shape=(6, 5), progress=False)
    # At the blob's size both convert: y = x + b over (H, W), y = x * s + t over (C, H).
    x = rng.normal(size=(2, 3, 4, 5))
    b, s, t = rng.normal(size=(4, 5)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    for text, name, weights, want in [(bias, "b", [b], x + b[None, None]),
                                      (scale, "s", [s, t], x * s[None, :, :, None] + t[None, :, :, None])]:
        model = caffe.to_keras(loads(text), input_shape=(4, 5), progress=False)
        model.get_layer(name).set_weights(weights)
        y = keras.ops.convert_to_numpy(model(_nhwc(x.astype(np.float32))))
        np.testing.assert_allclose(y, _nhwc(want), rtol=1e-5, atol=1e-5)
    # A Tile of an open axis is well defined (tiles * size) and converts: checked here at 7 x 9.
    text = head + "\n".join(f'layer {{ name: "t{a}" type: "Tile" bottom: "x" top: "t{a}" '
                            f'tile_param {{ axis: {a} tiles: 3 }} }}' for a in (1, 2, -1))
    model = caffe.to_keras(loads(text), input_shape=(None, None), progress=False)
    x = rng.normal(size=(2, 3, 7, 9)).astype(np.float32)
    for a, y in zip((1, 2, -1), model(_nhwc(x))):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), _nhwc(tile_cpp(x, a, 3)))
