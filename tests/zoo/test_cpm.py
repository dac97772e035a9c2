"""CPM builder and centre map: parameter counts, Caffe names and sizes, OpenCV's Caffe engine as oracle."""

import gc

import keras
import numpy as np
import pytest

import zoo
from tests.oracle import opencv_forward
from tests.zoo.helpers import structure_only
from zoo.errors import InputShapeError
from zoo.models import cpm as cpm_module
from zoo.models.cpm import cpm, cpm_blob_sizes, cpm_center_map

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture(scope="module")
def model():
    """The released 6-stage net (14 parts + background), any input size."""
    m = cpm(input_shape=(None, None, 3))
    yield m
    del m
    keras.backend.clear_session()
    gc.collect()


def _expected_conv_names(stages):
    names = [f"conv{i}_stage1" for i in range(1, 8)] + [f"conv{i}_stage2" for i in range(1, 5)]
    names += [f"conv1_stage{t}" for t in range(3, stages + 1)]
    names += [f"Mconv{i}_stage{t}" for t in range(2, stages + 1) for i in range(1, 6)]
    return names


def test_parameter_count_of_the_release(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == model.count_params() == 31_219_866


def test_flic_variant_parameter_count():
    # model/_trained_FLIC/pose_deploy.prototxt: 4 stages, 9 parts + background (conv7: 10 maps).
    with structure_only():  # counts and shapes only: the 21 M weights are never drawn
        m = cpm(stages=4, num_keypoints=9)
    assert m.count_params() == 21_323_816
    assert m.get_layer("Mconv5_stage4").kernel.shape == (1, 1, 128, 10)


def test_layer_names_are_the_prototxt_names(model):
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    convs = [l.name for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert sorted(convs) == sorted(_expected_conv_names(6))  # the 40 convolutions of the deploy file
    assert {"pool_center_lower", "pool3_stage2", "concat_stage6"} <= set(names)
    assert [t.name for t in model.inputs] == ["image", "center_map"]
    assert model.output_names == ["conv7_stage1"] + [f"Mconv5_stage{t}" for t in range(2, 7)]


def test_concat_order_is_features_beliefs_centre(model):
    # The prototxt concatenates [conv4_stage2 | conv1_stage{t}, previous beliefs, pool_center_lower].
    concat = model.get_layer("concat_stage3")
    parents = [t._keras_history.operation.name for t in concat.input]
    assert parents == ["relu1_stage3", "Mconv5_stage2", "pool_center_lower"]
    assert model.get_layer("Mconv1_stage3").kernel.shape == (11, 11, 32 + 15 + 1, 128)


def test_head_layers_are_exactly_the_keypoint_dependent_layers():
    small = {l.name: [w.shape for w in l.weights] for l in cpm(stages=3, num_keypoints=3).layers}
    big = {l.name: [w.shape for w in l.weights] for l in cpm(stages=3, num_keypoints=14).layers}
    changed = {name for name in big if big[name] != small[name]}
    spec = zoo.get_spec("cpm")
    assert changed == {name for name in big if big[name] and spec.is_head_layer(name)}
    assert spec.head_kwarg == "num_keypoints"


def test_default_shapes():
    m = cpm(stages=2)  # the default input is the release's 368 x 368 box
    assert m.input_shape == [(None, 368, 368, 3), (None, 368, 368, 1)]
    assert [tuple(o.shape) for o in m.outputs] == [(None, 46, 46, 15)] * 2


def test_odd_sizes_follow_caffe_ceil_rounding(model, rng):
    # 369 x 361 (both % 8 == 1): ceil pools give 46 x 45 in both branches; checked symbolically
    # there (a real forward pass at that size costs seconds) and run for real at 105 x 89.
    specs = model.compute_output_spec([keras.KerasTensor((1, 369, 361, 3)), keras.KerasTensor((1, 369, 361, 1))])
    assert [tuple(s.shape) for s in specs] == [(1, 46, 45, 15)] * 6
    assert cpm_blob_sizes(369) == (46, 46) and cpm_blob_sizes(361) == (45, 45)
    h, w = 105, 89
    x = rng.normal(size=(1, h, w, 3)).astype(np.float32)
    outs = model.predict([x, cpm_center_map(h, w)[None]], verbose=0)
    assert [o.shape for o in outs] == [(1, 13, 11, 15)] * 6


@pytest.mark.parametrize(
    "shape, message",
    [
        ((375, 361, 3), r"height 375 .* pools it to 46 but pool_center_lower to 47 .* nearest: 369 or 376"),
        ((368, 370, 3), r"width 370 .* nearest: 369 or 376"),
        ((7, 368, 3), "minimum is 8x8"),
        ((368, 4, 3), "minimum is 8x8"),
        ((368, 368, 4), "expected 3 input channels"),
    ],
)
def test_invalid_input_shape_raises(shape, message):
    with pytest.raises(InputShapeError, match=message):
        cpm(input_shape=shape)


def test_minimum_size_is_computed_from_caffe_rounding():
    assert cpm_module.CPM_MIN_INPUT_SIZE == 8
    valid = [n for n in range(1, 50) if cpm_module._is_valid(n)]
    assert valid == [8, 9, 16, 17, 24, 25, 32, 33, 40, 41, 48, 49]
    m = cpm(stages=2, input_shape=(8, 9, 3))
    assert [tuple(o.shape) for o in m.outputs] == [(None, 1, 1, 15)] * 2


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"zoo.get\('cpm', weights=...\)"):
        cpm(weights="mpii")
    with pytest.raises(ValueError, match="`stages` must be an int >= 2. Received: stages=1"):
        cpm(stages=1)
    with pytest.raises(ValueError, match="`num_keypoints` must be an int >= 1"):
        cpm(num_keypoints=0)


def test_center_map_formula():
    h, w, sigma = 9, 12, 2.5
    m = cpm_center_map(h, w, sigma=sigma)
    assert m.shape == (h, w, 1) and m.dtype == np.float32
    assert np.unravel_index(np.argmax(m[..., 0]), (h, w)) == (4, 6)  # (h // 2, w // 2)
    assert m[4, 6, 0] == 1.0
    np.testing.assert_allclose(m[4, 6 + 2, 0], np.exp(-4 / (2 * sigma**2)), rtol=1e-6)
    np.testing.assert_allclose(m[4 + 1, 6 - 3, 0], np.exp(-10 / (2 * sigma**2)), rtol=1e-6)
    default = cpm_center_map(368, 368)
    np.testing.assert_allclose(default[184, 184 + 21, 0], np.exp(-0.5), rtol=1e-6)  # sigma 21 px


def test_center_map_custom_centre_and_errors():
    m = cpm_center_map(10, 20, sigma=3.0, center=(2.5, 7))
    np.testing.assert_allclose(m[7, 2, 0], m[7, 3, 0], rtol=1e-6)  # symmetric about x = 2.5
    assert np.unravel_index(np.argmax(m[..., 0]), (10, 20))[0] == 7
    with pytest.raises(ValueError, match="`sigma` must be > 0"):
        cpm_center_map(10, 10, sigma=0)
    with pytest.raises(ValueError, match="`h` must be a positive int"):
        cpm_center_map(0, 10)
    with pytest.raises(ValueError, match="`center` must be a pair"):
        cpm_center_map(10, 10, center=3)
    # Were numpy's "ufunc 'isfinite' not supported" TypeError, a map made with sigma 1, an all-NaN map.
    for bad in ("21", None, True):
        with pytest.raises(ValueError, match=r"`sigma` must be > 0 \(pixels\)"):
            cpm_center_map(10, 10, sigma=bad)
    with pytest.raises(ValueError, match="`center` must be a pair"):
        cpm_center_map(10, 10, center=(float("nan"), 3))


def _cpm_prototxt(h, w, stages, outputs):
    """The released deploy net (4-channel data, Slice, pool_center_lower, stages), for OpenCV."""
    lines = [
        f'input: "data"\ninput_dim: 1 input_dim: 4 input_dim: {h} input_dim: {w}',
        'layer { name: "image" type: "Slice" bottom: "data" top: "image" top: "center_map" '
        "slice_param { slice_point: 3 axis: 1 } }",
        'layer { name: "pool_center_lower" type: "Pooling" bottom: "center_map" top: "pool_center_lower" '
        "pooling_param { pool: AVE kernel_size: 9 stride: 8 } }",
    ]

    def conv(name, bottom, num, k, relu=None):
        lines.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                     f"convolution_param {{ num_output: {num} pad: {(k - 1) // 2} kernel_size: {k} }} }}")
        if relu:
            lines.append(f'layer {{ name: "{relu}" type: "ReLU" bottom: "{name}" top: "{name}" }}')
        return name

    def pool(name, bottom):
        lines.append(f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
                     "pooling_param { pool: MAX kernel_size: 3 stride: 2 } }")
        return name

    def features(stage):
        x = "image"
        for i in (1, 2, 3):
            x = pool(f"pool{i}_stage{stage}", conv(f"conv{i}_stage{stage}", x, 128, 9, f"relu{i}_stage{stage}"))
        return x

    x = conv("conv4_stage1", features(1), 32, 5, "relu4_stage1")
    x = conv("conv5_stage1", x, 512, 9, "relu5_stage1")
    x = conv("conv6_stage1", x, 512, 1, "relu6_stage1")
    beliefs = conv("conv7_stage1", x, outputs, 1)
    shared = features(2)
    for t in range(2, stages + 1):
        name = "conv4_stage2" if t == 2 else f"conv1_stage{t}"
        f = conv(name, shared, 32, 5, name.replace("conv", "relu"))
        lines.append(f'layer {{ name: "concat_stage{t}" type: "Concat" bottom: "{f}" bottom: "{beliefs}" '
                     f'bottom: "pool_center_lower" top: "concat_stage{t}" concat_param {{ axis: 1 }} }}')
        x = f"concat_stage{t}"
        for i in (1, 2, 3):
            x = conv(f"Mconv{i}_stage{t}", x, 128, 11, f"Mrelu{i}_stage{t}")
        x = conv(f"Mconv4_stage{t}", x, 128, 1, f"Mrelu4_stage{t}")
        beliefs = conv(f"Mconv5_stage{t}", x, outputs, 1)
    return "\n".join(lines) + "\n"


def _opencv_blobs(model, rng):
    """Keras conv weights as Caffe blobs (O, I, kh, kw) + (1, O); biases randomised first."""
    blobs = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            bias = rng.normal(0.0, 0.1, size=layer.bias.shape).astype(np.float32)
            layer.set_weights([kernel, bias])
            blobs[layer.name] = [kernel.transpose(3, 2, 0, 1), bias.reshape(1, -1)]
    return blobs


def test_matches_opencv_caffe_engine(model, rng):
    """6 stages at 41 x 33 (odd, % 8 == 1) with an off-centre map: every stage's beliefs agree."""
    h, w = 41, 33
    image = rng.uniform(-0.5, 0.5, size=(1, h, w, 3)).astype(np.float32)
    centre = cpm_center_map(h, w, sigma=7.0, center=(10, 30))[None]
    blobs = _opencv_blobs(model, rng)
    names = ["conv7_stage1"] + [f"Mconv5_stage{t}" for t in range(2, 7)]
    data = np.concatenate([image, centre], axis=-1)  # the Caffe blob: image channels, then the map
    ref = opencv_forward(_cpm_prototxt(h, w, 6, 15), {"data": data}, outputs=names, blobs=blobs)
    ours = model.predict([image, centre], verbose=0)
    for name, y in zip(names, ours):
        assert y.shape == ref[name].shape == (1, 5, 4, 15)
        np.testing.assert_allclose(y, ref[name], rtol=1e-4, atol=1e-4 * np.abs(ref[name]).max(), err_msg=name)


@pytest.mark.tf_pass_only
def test_save_load_safe_mode_identical(model, tmp_path, rng):
    path = tmp_path / "cpm.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    h, w = 17, 24
    inputs = [rng.normal(size=(2, h, w, 3)).astype(np.float32), np.repeat(cpm_center_map(h, w)[None], 2, 0)]
    for a, b in zip(model.predict(inputs, verbose=0), loaded.predict(inputs, verbose=0)):
        np.testing.assert_array_equal(a, b)
