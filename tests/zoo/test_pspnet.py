"""PSPNet: parameter counts, Caffe geometry, names, errors, save/load, and numerics against OpenCV.

The OpenCV checks run hand-written Caffe prototxts (transcribed from hszhao/PSPNet's
``pspnet50_ADE20K_473.prototxt``, with BVLC ``BatchNorm`` + ``Scale`` in place of PSPNet's ``BN``,
which computes the same at test time) with the Keras weights written into a ``.caffemodel``.
"""

import keras
import numpy as np
import pytest

import zoo
from tests.zoo.helpers import forward_numpy, randomize_batchnorm, structure_only, trainable_count
from tests.oracle import opencv_forward
from zoo.errors import InputShapeError
from zoo.layers import InterpAlignCorners
from zoo.models.pspnet import (
    bottleneck_block, pspnet50, pspnet101, pspnet_feature_size, pspnet_output_size,
    pyramid_pool_geometry, pyramid_pooling_module,
)

pytestmark = pytest.mark.backend_agnostic




# --- a minimal .caffemodel writer (protobuf wire format: NetParameter.layer = 100) -------------------------

def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, payload):  # length-delimited field
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob(a):  # BlobProto: shape = 7 (BlobShape.dim = 1, packed), data = 5 (packed float)
    a = np.asarray(a, np.float32)
    shape = _field(1, b"".join(_varint(d) for d in a.shape))
    return _field(7, shape) + _field(5, a.astype("<f4").tobytes())


def _caffemodel(model):
    """Keras conv/BN weights as Caffe blobs: conv (out, in, kh, kw) [+ bias]; BN -> BatchNorm + Scale."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            blobs = [keras.ops.convert_to_numpy(layer.kernel).transpose(3, 2, 0, 1)]
            if layer.use_bias:
                blobs.append(keras.ops.convert_to_numpy(layer.bias))
            layers.append((layer.name, "Convolution", blobs))
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            base = layer.name[: -len("_bn")]
            layers.append((f"{base}/bn", "BatchNorm", [mean, var, np.ones(1)]))
            layers.append((f"{base}/scale", "Scale", [gamma, beta]))
    return b"".join(
        _field(100, _field(1, name.encode()) + _field(2, kind.encode()) + b"".join(_field(7, _blob(b)) for b in blobs))
        for name, kind, blobs in layers
    )


# --- prototxt pieces, as in pspnet50_ADE20K_473.prototxt ----------------------------------------------------

def _input(name, c, h, w):
    return f'input: "{name}"\ninput_dim: 1 input_dim: {c} input_dim: {h} input_dim: {w}\n'


def _conv(name, bottom, n, k, stride=1, pad=0, dilation=1, bias=False):
    return (
        f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" convolution_param {{ '
        f'num_output: {n} kernel_size: {k} stride: {stride} pad: {pad} dilation: {dilation} '
        f'bias_term: {"true" if bias else "false"} }} }}\n'
    )


def _bn(top, relu=True):
    text = (
        f'layer {{ name: "{top}/bn" type: "BatchNorm" bottom: "{top}" top: "{top}" '
        f'batch_norm_param {{ use_global_stats: true eps: 1e-5 }} }}\n'
        f'layer {{ name: "{top}/scale" type: "Scale" bottom: "{top}" top: "{top}" '
        f'scale_param {{ bias_term: true }} }}\n'
    )
    return text + (f'layer {{ name: "{top}/relu" type: "ReLU" bottom: "{top}" top: "{top}" }}\n' if relu else "")


def _block(name, bottom, width, filters, stride=1, dilation=1, proj=False):
    text = _conv(f"{name}_1x1_reduce", bottom, width, 1, stride=stride) + _bn(f"{name}_1x1_reduce")
    text += _conv(f"{name}_3x3", f"{name}_1x1_reduce", width, 3, pad=dilation, dilation=dilation) + _bn(f"{name}_3x3")
    text += _conv(f"{name}_1x1_increase", f"{name}_3x3", filters, 1) + _bn(f"{name}_1x1_increase", relu=False)
    skip = bottom
    if proj:
        text += _conv(f"{name}_1x1_proj", bottom, filters, 1, stride=stride) + _bn(f"{name}_1x1_proj", relu=False)
        skip = f"{name}_1x1_proj"
    text += (
        f'layer {{ name: "{name}" type: "Eltwise" bottom: "{skip}" bottom: "{name}_1x1_increase" top: "{name}" '
        f'eltwise_param {{ operation: SUM }} }}\n'
        f'layer {{ name: "{name}/relu" type: "ReLU" bottom: "{name}" top: "{name}" }}\n'
    )
    return text



def _assert_close(ours, ref):
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


# --- fixtures -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    """pspnet50 at 105x97 (F = 14 x 13) with the aux head and 5 classes, non-trivial BN statistics."""
    keras.backend.clear_session()
    model = pspnet50(input_shape=(105, 97, 3), classes=5, aux=True)
    randomize_batchnorm(model, np.random.default_rng(1))
    return model


# --- parameter counts and geometry -------------------------------------------------------------------------

def _count(model, aux):
    layers = [l for l in model.layers if l.name.startswith("aux_") == aux]
    return sum(int(np.prod(w.shape)) for l in layers for w in l.trainable_weights)


# Exact arithmetic (torch counting = Keras trainable), zoo-conventions.md §2.6. Each build checks two counts:
# the whole model and the model without its aux head. structure_only skips the random initialisation of the
# 46-68 M weights (seconds of CPU each; a bare StatelessScope draws them on exit): these tests only read shapes.
@pytest.mark.parametrize(
    "builder,kwargs,expected,expected_no_aux",
    [
        (pspnet50, {}, 46_716_373, 46_716_373),
        (pspnet50, dict(aux=True, classes=150), 46_782_550 + 2_365_205 + 129 * 257, 46_782_550),
        (pspnet101, dict(aux=True), 68_073_706, 65_708_501),
    ],
)
def test_parameter_counts_and_default_shapes(builder, kwargs, expected, expected_no_aux):
    keras.backend.clear_session()
    with structure_only():
        model = builder(**kwargs)
    assert trainable_count(model) == expected
    assert _count(model, aux=False) == expected_no_aux
    classes = kwargs.get("classes", 21)
    assert [o.shape for o in model.outputs] == [(None, 473, 473, classes)] * (2 if kwargs.get("aux") else 1)
    assert model.get_layer("conv5_3").output.shape == (None, 60, 60, 2048)
    if not kwargs:  # the 473 prototxt's pyramid: AVE 60/30/20/10, Interp to 60x60, concat 4096
        for b, k in [(1, 60), (2, 30), (3, 20), (6, 10)]:
            pool = model.get_layer(f"conv5_3_pool{b}")
            assert (pool.mode, pool.pool_size, pool.strides, pool.padding) == ("ave", (k, k), (k, k), (0, 0))
            assert model.get_layer(f"conv5_3_pool{b}_interp").output.shape == (None, 60, 60, 512)
        assert model.get_layer("conv5_3_concat").output.shape == (None, 60, 60, 4096)
        stem = model.get_layer("pool1_3x3_s2")
        assert (stem.mode, stem.pool_size, stem.strides, stem.padding, stem.ceil_mode) == \
            ("max", (3, 3), (2, 2), (1, 1), True)
        assert model.get_layer("conv3_1_1x1_reduce").strides == (2, 2)  # stride on the 1x1, not the 3x3
        assert model.get_layer("conv3_1_3x3").strides == (1, 1)
        assert model.get_layer("conv4_6_3x3").dilation_rate == (2, 2)
        assert model.get_layer("conv5_1_3x3").dilation_rate == (4, 4)
        assert all(l.use_bias == (l.name == "conv6") for l in model.layers if isinstance(l, keras.layers.Conv2D))


def test_caffe_geometry_formulas():
    # 233 -> 117 -> 59 -> 30 and 201 -> 101 -> 51 -> 26 (Caffe rounding); Interp zoom 8 gives 8F - 7 back.
    assert [pspnet_feature_size(s) for s in (473, 713, 233, 201, 105, 97, 39)] == [60, 90, 30, 26, 14, 13, 6]
    assert [pspnet_output_size(s) for s in (473, 713, 233, 201, 97, 39)] == [473, 713, 233, 201, 97, 41]
    assert [pyramid_pool_geometry(90, b) for b in (1, 2, 3, 6)] == [(90, 90), (45, 45), (30, 30), (15, 15)]
    assert [pyramid_pool_geometry(26, b) for b in (1, 2, 3, 6)] == [(26, 26), (13, 13), (10, 8), (6, 4)]
    with pytest.raises(InputShapeError, match="6 bins"):
        pyramid_pool_geometry(5, 6)


def test_odd_input_size(small):
    """105x97 input: Caffe rounding at every stride, non-divisible pyramid bins, output back to 105x97."""
    assert small.get_layer("conv1_1_3x3_s2").output.shape[1:3] == (53, 49)
    assert small.get_layer("pool1_3x3_s2").output.shape[1:3] == (27, 25)
    assert small.get_layer("conv5_3").output.shape[1:3] == (14, 13)
    for b, (pool_size, strides) in {3: ((6, 5), (4, 4)), 6: ((4, 3), (2, 2))}.items():
        pool = small.get_layer(f"conv5_3_pool{b}")
        assert (pool.pool_size, pool.strides) == (pool_size, strides)
        assert pool.output.shape[1:3] == (b, b)
    assert [o.shape for o in small.outputs] == [(None, 105, 97, 5)] * 2


def test_names_and_head_layers(small):
    names = [l.name for l in small.layers]
    assert len(names) == len(set(names))
    for expected in [
        "conv1_1_3x3_s2", "conv1_1_3x3_s2_bn", "conv1_3_3x3_relu", "pool1_3x3_s2", "conv2_1_1x1_reduce",
        "conv2_1_1x1_reduce_bn", "conv2_1_3x3", "conv2_1_1x1_increase", "conv2_1_1x1_proj", "conv2_1",
        "conv2_1_relu", "conv4_6", "conv5_3_pool1", "conv5_3_pool1_conv", "conv5_3_pool1_conv_bn",
        "conv5_3_pool1_interp", "conv5_3_concat", "conv5_4", "conv5_4_bn", "conv5_4_dropout", "conv6",
        "conv6_interp", "aux_3x3", "aux_3x3_bn", "aux_dropout", "aux_conv6", "aux_conv6_interp",
    ]:
        assert expected in names, expected
    assert "conv2_2_1x1_proj" not in names and "conv4_7" not in names
    spec = zoo.get_spec("pspnet50")
    depends = {l.name for l in small.layers if any(5 in w.shape for w in l.weights)}  # classes=5
    assert depends == {l.name for l in small.layers if spec.is_head_layer(l.name)} == {"conv6", "aux_conv6"}
    bns = [l for l in small.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert all(l.epsilon == 1e-5 and l.momentum == 0.95 for l in bns)  # master's bn_param eps default, 0.95


# --- numerics against OpenCV's Caffe engine ---------------------------------------------------------------------

def test_stem_and_strided_blocks_match_opencv(small, rng):
    """105x97: stride-2 conv pad 1, ceil MAX pool pad 1, projection blocks, stride on conv3_1_1x1_reduce."""
    proto = _input("data", 3, 105, 97)
    proto += _conv("conv1_1_3x3_s2", "data", 64, 3, stride=2, pad=1) + _bn("conv1_1_3x3_s2")
    proto += _conv("conv1_2_3x3", "conv1_1_3x3_s2", 64, 3, pad=1) + _bn("conv1_2_3x3")
    proto += _conv("conv1_3_3x3", "conv1_2_3x3", 128, 3, pad=1) + _bn("conv1_3_3x3")
    proto += ('layer { name: "pool1_3x3_s2" type: "Pooling" bottom: "conv1_3_3x3" top: "pool1_3x3_s2" '
              'pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n')
    proto += _block("conv2_1", "pool1_3x3_s2", 64, 256, proj=True) + _block("conv2_2", "conv2_1", 64, 256)
    proto += _block("conv2_3", "conv2_2", 64, 256) + _block("conv3_1", "conv2_3", 128, 512, stride=2, proj=True)
    sub = keras.Model(small.input, small.get_layer("conv3_1_relu").output)
    x = rng.normal(0, 50, size=(1, 105, 97, 3)).astype(np.float32)
    ref = opencv_forward(proto, {"data": x}, caffemodel=_caffemodel(sub), outputs=["conv3_1/relu"])["conv3_1/relu"]
    assert ref.shape == (1, 14, 13, 512)
    _assert_close(forward_numpy(sub, x), ref)


def test_dilated_blocks_pyramid_and_head_match_opencv(rng):
    """13x11 features: dilation 2/4, pyramid pooling with non-divisible bins, concat order, Interp zoom 8."""
    keras.backend.clear_session()
    inp = keras.Input((13, 11, 8))
    x = bottleneck_block(inp, 4, 16, dilation=2, project=True, name="conv4_1")
    x = bottleneck_block(x, 4, 16, dilation=4, name="conv5_3")
    x = pyramid_pooling_module(x, filters=4, name="conv5_3")
    x = keras.layers.Conv2D(3, 1, name="conv6")(x)
    model = keras.Model(inp, InterpAlignCorners(zoom_factor=8, name="conv6_interp")(x))
    randomize_batchnorm(model, rng)

    proto = _input("data", 8, 13, 11)
    proto += _block("conv4_1", "data", 4, 16, dilation=2, proj=True) + _block("conv5_3", "conv4_1", 4, 16, dilation=4)
    # Kernels/strides written out for F = 13 x 11 (stride = F // bins, kernel = F - (bins - 1) * stride).
    for b, (kh, kw, sh, sw) in {1: (13, 11, 13, 11), 2: (7, 6, 6, 5), 3: (5, 5, 4, 3), 6: (3, 6, 2, 1)}.items():
        p = f"conv5_3_pool{b}"
        proto += (f'layer {{ name: "{p}" type: "Pooling" bottom: "conv5_3" top: "{p}" pooling_param {{ pool: AVE '
                  f'kernel_h: {kh} kernel_w: {kw} stride_h: {sh} stride_w: {sw} }} }}\n')
        proto += _conv(f"{p}_conv", p, 4, 1) + _bn(f"{p}_conv")
        proto += (f'layer {{ name: "{p}_interp" type: "Interp" bottom: "{p}_conv" top: "{p}_interp" '
                  f'interp_param {{ height: 13 width: 11 }} }}\n')
    proto += ('layer { name: "conv5_3_concat" type: "Concat" bottom: "conv5_3" bottom: "conv5_3_pool6_interp" '
              'bottom: "conv5_3_pool3_interp" bottom: "conv5_3_pool2_interp" bottom: "conv5_3_pool1_interp" '
              'top: "conv5_3_concat" }\n')
    proto += _conv("conv6", "conv5_3_concat", 3, 1, bias=True)
    proto += ('layer { name: "conv6_interp" type: "Interp" bottom: "conv6" top: "conv6_interp" '
              'interp_param { zoom_factor: 8 } }\n')
    x = rng.normal(size=(1, 13, 11, 8)).astype(np.float32)
    ref = opencv_forward(proto, {"data": x}, caffemodel=_caffemodel(model), outputs=["conv6_interp"])["conv6_interp"]
    assert ref.shape == (1, 97, 81, 3)
    _assert_close(forward_numpy(model, x), ref)


# --- serialization, registry, errors --------------------------------------------------------------------------

@pytest.mark.tf_pass_only
def test_save_load_round_trip(small, tmp_path, rng):
    x = rng.normal(0, 50, size=(1, 105, 97, 3)).astype(np.float32)
    before = forward_numpy(small, x)
    path = tmp_path / "pspnet50.keras"
    small.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    after = forward_numpy(loaded, x)
    assert len(before) == len(after) == 2
    for a, b in zip(before, after):
        assert a.shape == (1, 105, 97, 5)
        np.testing.assert_array_equal(a, b)


def test_registry():
    info = zoo.info("pspnet101")
    assert info["family"] == "pspnet" and info["head_kwarg"] == "classes"
    assert info["defaults"] == {"weights": None, "input_tensor": None, "input_shape": None, "classes": 21,
                                "aux": False, "dropout": 0.1, "name": "pspnet101"}
    assert "46,716,373" in (pspnet50.__doc__ or "")


@pytest.mark.parametrize("builder", [pspnet50, pspnet101])
@pytest.mark.parametrize(
    "shape,match",
    [
        ((38, 97, 3), r"input size 38x97 is too small; the minimum is 39x39"),
        ((None, None, 3), r"height and width must be fixed"),
        ((97, 97, 4), r"expected 3 input channels"),
    ],
)
def test_bad_input_shapes_raise(builder, shape, match):
    with pytest.raises(InputShapeError, match=f"{builder.__name__}: {match}"):
        builder(input_shape=shape)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(weights="ade20k"), r"zoo\.get\('pspnet50', weights=\.\.\.\)"),
        (dict(classes=0), r"`classes` must be an integer >= 1\. Received: classes=0"),
        (dict(dropout=1.0), r"`dropout` must be a float in \[0, 1\)"),
        (dict(aux="False"), r"pspnet50: `aux` must be True or False\. Received: aux='False'"),  # added the head
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pspnet50(**kwargs)
