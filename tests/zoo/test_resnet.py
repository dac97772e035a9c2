"""ResNet v1 (Kaiming's Caffe layout; 18/34 torchvision) and pre-activation v2 (soeaver Caffe layout).

Expected numbers are written out here, not computed with the code under test: parameter counts
from torchvision's ``num_params`` (v1; ResNet-50 + 64 for its conv1 bias) and from arithmetic
over the Caffe prototxts (v2 = torchvision count - the 4 shortcut BNs); feature-map sizes from
Caffe's rules by hand: conv ``floor((n + 2p - k) / s) + 1``, Caffe pool ``ceil((n - k) / s) + 1``,
torchvision pool ``floor((n + 2 - 3) / 2) + 1``.
"""

import keras
import numpy as np
import pytest

import zoo
from tests.zoo.helpers import forward_numpy, structure_only, trainable_count
from zoo.errors import InputShapeError
from zoo.models import resnet, resnet_v2

pytestmark = pytest.mark.backend_agnostic



def _names(model):
    return [layer.name for layer in model.layers]


def _of_type(model, cls):
    return [layer for layer in model.layers if type(layer) is cls]


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _source(model, layer_name):
    """Name of the layer whose output feeds ``layer_name`` (single-input layers)."""
    return model.get_layer(layer_name).input._keras_history.operation.name


@pytest.fixture(scope="module", autouse=True)
def _free_models_after_module():
    yield
    keras.backend.clear_session()  # frees this file's models (and their reference cycles) for later files


@pytest.fixture(autouse=True)
def _fresh_session():
    # Fresh name counters (and no undrawn variables left by structure_only) without clear_session's gc.collect(),
    # a full collection of TensorFlow's heap, 0.3-1.5 s a call: twice per test, it was most of the time of the
    # tests that build nothing.
    keras.backend.clear_session(free_memory=False)


@pytest.fixture(scope="module")
def resnet50_model():
    """``zoo.get("resnet50")`` (the builder's defaults), built once for the tests that read its structure."""
    with structure_only():
        return zoo.get("resnet50")


# ---------------------------------------------------------------------------------------------
# Parameter counts + layer names (one build per big model)
# ---------------------------------------------------------------------------------------------

V1_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032 + 64,  # Kaiming's ResNet-50 conv1 keeps its bias
    "resnet101": 44_549_160,  # Kaiming's ResNet-101/152 prototxts: conv1 bias_term: false
    "resnet152": 60_192_808,
}
V1_NAMES = {
    "resnet18": ["res2a_branch2a", "bn2a_branch2b", "res2b", "res3a_branch1", "bn3a_branch1", "res5b_relu"],
    "resnet34": ["res3d_branch2b", "res4f", "res5c_relu", "bn4a_branch1"],
    "resnet50": ["res2a_branch1", "bn2a_branch1", "res2a_branch2c", "bn2a_branch2c", "res2a_branch2a_relu",
                 "res3a_branch2a", "res4f", "res5c_branch2c", "bn5c_branch2c", "res5c_relu"],
    "resnet101": ["res3b1", "res3b3_branch2c", "res4b1_branch2a", "bn4b22_branch2c", "res4b22_relu", "res5c"],
    "resnet152": ["res3b7_relu", "bn3b7_branch2a", "res4b35", "res4b35_branch2b", "res5c"],
}
V1_ABSENT = {
    "resnet18": ["res2a_branch1", "res2a_branch2c", "res2c"],
    "resnet34": ["res2a_branch1", "res3b_branch1"],
    "resnet50": ["res2b_branch1", "res3g", "res3b1"],
    "resnet101": ["res4c", "res3b", "res4b23", "res3b4"],
    "resnet152": ["res3b8", "res4b36", "res4c"],
}
V1_CONVS = {"resnet18": 20, "resnet34": 36, "resnet50": 53, "resnet101": 104, "resnet152": 155}


@pytest.mark.parametrize("arch", list(V1_COUNTS))
def test_v1_params_and_caffe_names(arch, request):
    if arch == "resnet50":
        model = request.getfixturevalue("resnet50_model")  # shared with test_v1_stride_placement
    else:
        with structure_only():  # counts, names and layer settings: no weight is read
            model = zoo.get(arch)
    assert trainable_count(model) == V1_COUNTS[arch]
    names = _names(model)
    assert len(names) == len(set(names))
    for key in ["data", "conv1", "bn_conv1", "conv1_relu", "pool1", "pool5", "fc1000", "prob"] + V1_NAMES[arch]:
        assert key in names, key
    for absent in V1_ABSENT[arch]:
        assert absent not in names, absent
    convs = _of_type(model, keras.layers.Conv2D)
    assert len(convs) == V1_CONVS[arch]
    assert len(_of_type(model, keras.layers.BatchNormalization)) == V1_CONVS[arch]
    assert all(bn.epsilon == 1e-5 for bn in _of_type(model, keras.layers.BatchNormalization))
    biased = [c.name for c in convs if c.use_bias]
    assert biased == (["conv1"] if arch == "resnet50" else [])
    assert model.get_layer("fc1000").use_bias
    assert model.output.shape == (None, 1000)


V2_COUNTS = {
    "resnet50v2": 25_549_352,
    "resnet101v2": 44_541_480,
    "resnet152v2": 60_185_128,
    "resnet200v2": 64_666_152,
}
V2_BLOCKS = {"resnet50v2": (3, 4, 6, 3), "resnet101v2": (3, 4, 23, 3), "resnet152v2": (3, 8, 36, 3),
             "resnet200v2": (3, 24, 36, 3)}


@pytest.mark.parametrize("arch", list(V2_COUNTS))
def test_v2_params_and_caffe_structure(arch):
    with structure_only():
        model = zoo.get(arch)
    assert trainable_count(model) == V2_COUNTS[arch]
    names = _names(model)
    assert len(names) == len(set(names))
    blocks = V2_BLOCKS[arch]
    n = sum(blocks)
    firsts = [1, 1 + blocks[0], 1 + blocks[0] + blocks[1], 1 + blocks[0] + blocks[1] + blocks[2]]
    for key in ["data", "conv1", "conv1_bn", "conv1_relu", "pool1", "res1_conv1", "res1_conv1_bn",
                "res1_eletwise", "res2_bn", "res2_relu", f"res{n}_eletwise", f"res{n}_eletwise_bn",
                f"res{n}_eletwise_relu", "pool5", "classifier", "prob"]:
        assert key in names, key
    # res1 is not pre-activated (its input is the stem's BN-ReLU-pool); every later block is.
    assert "res1_bn" not in names and "res1_relu" not in names
    assert f"res{n + 1}_conv1" not in names
    # Projection shortcuts only in each stage's first block, reading the pre-activated tensor.
    assert [i for i in range(1, n + 1) if f"res{i}_match_conv" in names] == firsts
    assert _source(model, "res1_match_conv") == "pool1"
    for i in firsts[1:]:
        assert _source(model, f"res{i}_match_conv") == f"res{i}_relu"
        assert model.get_layer(f"res{i}_match_conv").strides == (2, 2)
        assert model.get_layer(f"res{i}_conv2").strides == (2, 2)  # stride on the 3x3
        assert model.get_layer(f"res{i}_conv1").strides == (1, 1)
    convs = _of_type(model, keras.layers.Conv2D)
    assert len(convs) == 1 + 3 * n + 4
    assert not any(c.use_bias for c in convs)
    assert len(_of_type(model, keras.layers.BatchNormalization)) == 1 + 2 * n + (n - 1) + 1
    # No ReLU after the sums: each block's Add feeds the next block's BN (and identity shortcut).
    assert _source(model, "res2_bn") == "res1_eletwise"
    assert _source(model, f"res{n}_eletwise_bn") == f"res{n}_eletwise"
    assert model.get_layer("classifier").use_bias
    assert model.output.shape == (None, 1000)


def test_v1_stride_placement(resnet50_model):
    v1 = resnet50_model  # resnet.resnet50() with its defaults
    assert v1.get_layer("res3a_branch2a").strides == (2, 2)
    assert v1.get_layer("res3a_branch2b").strides == (1, 1)
    with structure_only():
        v15 = resnet.resnet50(stride_in_3x3=True)
    assert v15.get_layer("res3a_branch2a").strides == (1, 1)
    assert v15.get_layer("res4a_branch2b").strides == (2, 2)
    assert v15.get_layer("res4a_branch1").strides == (2, 2)
    assert trainable_count(v15) == V1_COUNTS["resnet50"]


# ---------------------------------------------------------------------------------------------
# Feature-map sizes: Caffe rules at an odd size
# ---------------------------------------------------------------------------------------------

# 225x231: conv1 floor((n + 6 - 7) / 2) + 1 = 113x116; Caffe pool1 ceil((n - 3) / 2) + 1 = 56x58
# (floor would give 56x57); each stride-2 stage floor((n - 1) / 2) + 1: 28x29, 14x15, 7x8.
CAFFE_225x231 = {"conv1": (113, 116), "pool1": (56, 58), "stage2": (56, 58), "stage3": (28, 29),
                 "stage4": (14, 15), "stage5": (7, 8)}
# torchvision pool1 (pad 1, floor): floor((113 - 1) / 2) + 1 = 57, floor((116 - 1) / 2) + 1 = 58.
TORCH_225x231 = {"conv1": (113, 116), "pool1": (57, 58), "stage2": (57, 58), "stage3": (29, 29),
                 "stage4": (15, 15), "stage5": (8, 8)}
STAGE_OUTPUTS = {
    "resnet50": ("res2c", "res3d", "res4f", "res5c_relu", 2048),
    "resnet18": ("res2b", "res3b", "res4b", "res5b_relu", 512),
    "resnet50v2": ("res3_eletwise", "res7_eletwise", "res13_eletwise", "res16_eletwise_relu", 2048),
}


@pytest.mark.parametrize("arch,expected", [("resnet50", CAFFE_225x231), ("resnet18", TORCH_225x231),
                                           ("resnet50v2", CAFFE_225x231)])
def test_feature_sizes_at_odd_input(arch, expected):
    with structure_only():
        model = zoo.get(arch, input_shape=(225, 231, 3), include_top=False)
    *stages, channels = STAGE_OUTPUTS[arch]
    assert model.get_layer("conv1").output.shape[1:3] == expected["conv1"]
    assert model.get_layer("pool1").output.shape[1:3] == expected["pool1"]
    for layer_name, key in zip(stages, ["stage2", "stage3", "stage4", "stage5"]):
        assert model.get_layer(layer_name).output.shape[1:3] == expected[key], layer_name
    assert model.output.shape == (None, *expected["stage5"], channels)


def test_runtime_sizes_follow_caffe_ceil_with_unknown_dims(rng):
    # 35x41: conv1 18x21; Caffe pool1 ceil -> 9x10 (floor would give 8x10); stages 5x5, 3x3, 2x2.
    model = resnet_v2.resnet50v2(input_shape=(None, None, 3), include_top=False)
    probe = keras.Model(model.input, [model.get_layer("pool1").output, model.output])
    pool1, last = forward_numpy(probe, rng.normal(size=(1, 35, 41, 3)).astype("float32"))
    assert pool1.shape == (1, 9, 10, 64)
    assert last.shape == (1, 2, 2, 2048)
    assert np.isfinite(last).all()


def test_default_shapes_and_head_options():
    with structure_only():
        assert resnet.resnet18(include_top=False).output.shape == (None, 7, 7, 512)
        assert resnet.resnet18(include_top=False, pooling="avg").output.shape == (None, 512)
        model = resnet.resnet18(include_top=False, pooling="max")
        assert model.output.shape == (None, 512) and isinstance(model.layers[-1], keras.layers.GlobalMaxPooling2D)
        logits = resnet.resnet18(classes=7, classifier_activation=None)
        assert logits.layers[-1].name == "fc1000" and logits.output.shape == (None, 7)
        assert resnet_v2.resnet50v2(include_top=False).output.shape == (None, 7, 7, 2048)


# ---------------------------------------------------------------------------------------------
# Input-size limits
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("builder", [resnet.resnet50, resnet.resnet152, resnet_v2.resnet50v2])
@pytest.mark.parametrize("shape", [(2, 2, 3), (2, 64, 3), (64, 1, 3)])
def test_too_small_input_names_the_minimum(builder, shape):
    with pytest.raises(InputShapeError, match=r"minimum is 3x3"):
        builder(input_shape=shape)


def test_minimum_input_runs(rng):
    # Caffe stem: 3 px -> conv1 2 px -> ceil pool1 1 px; torchvision stem: 1 px -> 1 px -> 1 px.
    x = rng.normal(size=(1, 3, 3, 3)).astype("float32")
    probs = _np(resnet_v2.resnet50v2(input_shape=(3, 3, 3), classes=5)(x, training=False))
    assert probs.shape == (1, 5) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
    tiny = resnet.resnet18(input_shape=(1, 1, 3), include_top=False)
    assert tiny.output.shape == (None, 1, 1, 512)
    assert np.isfinite(_np(tiny(x[:, :1, :1], training=False))).all()
    with pytest.raises(InputShapeError):
        resnet.resnet18(input_shape=(0, 8, 3))
    with pytest.raises(InputShapeError, match="channels"):
        resnet.resnet50(input_shape=(64, 64, 1))


@pytest.mark.parametrize(
    "shape,pattern",
    [
        ((True, 64, 3), r"resnet18: the input height must be an int \(pixels\) or None"),  # built a 1-px model
        ((64, 64.0, 3), r"resnet18: the input width must be an int"),  # Keras' "Cannot convert ... to a shape"
        (("64", 64, 3), r"resnet18: the input height must be an int"),  # was a bare TypeError from '<'
        ((64, 64, None), r"resnet18: expected 3 input channels"),  # was "unsupported operand type(s) for %"
        (64, r"resnet18: `input_shape` must be \(height, width, channels\)"),
    ],
)
def test_bad_input_shape_types_are_named(shape, pattern):
    with pytest.raises(InputShapeError, match=pattern):
        resnet.resnet18(input_shape=shape)


# ---------------------------------------------------------------------------------------------
# Arguments, registry, serialization
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        ({"weights": "imagenet"}, ValueError, r"zoo\.get\('resnet50', weights="),
        ({"pooling": "mean"}, ValueError, "`pooling`"),
        ({"pooling": "max"}, ValueError, "include_top"),
        ({"classes": 0}, ValueError, "`classes`"),
        ({"classes": 2.0}, ValueError, "`classes`"),
        ({"classifier_activation": "no_such_fn"}, ValueError, "`classifier_activation`"),
        ({"include_top": "yes"}, TypeError, "`include_top`"),
        ({"stride_in_3x3": 1}, TypeError, "`stride_in_3x3`"),
    ],
)
def test_bad_arguments_are_named(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        resnet.resnet50(**kwargs)


def test_v2_rejects_weights_and_unknown_args():
    with pytest.raises(ValueError, match=r"zoo\.get\('resnet101v2'"):
        resnet_v2.resnet101v2(weights="imagenet")
    with pytest.raises(TypeError, match="stride_in_3x3"):
        zoo.get("resnet50v2", stride_in_3x3=True)


def test_registry_entries():
    assert zoo.list_models("resnet*") == ["resnet18", "resnet34", "resnet50", "resnet50v2", "resnet101",
                                          "resnet101v2", "resnet152", "resnet152v2", "resnet200v2"]
    assert zoo.info("resnet50")["head_layers"] == ["fc1000"]
    assert zoo.info("resnet101v2")["head_layers"] == ["classifier"]
    assert zoo.info("resnet50")["defaults"]["stride_in_3x3"] is False
    with structure_only():
        model = zoo.get("resnet50", classes=10)
    assert model.output.shape == (None, 10)
    assert tuple(model.get_layer("fc1000").kernel.shape) == (2048, 10)
    assert zoo.get_spec("resnet50").is_head_layer("fc1000")


def _randomize(model, rng):
    """Non-trivial BN statistics/affines so a round trip that mixed up weights would show."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.0, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
                               rng.uniform(0.5, 1.5, c)])


@pytest.mark.parametrize("builder,kwargs", [(resnet.resnet18, {"classes": 10}),
                                            (resnet_v2.resnet50v2, {"include_top": False, "pooling": "avg"})])
@pytest.mark.tf_pass_only
def test_keras_round_trip_safe_mode(builder, kwargs, tmp_path, rng):
    model = builder(input_shape=(64, 64, 3), **kwargs)
    _randomize(model, rng)
    x = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    before = _np(model(x, training=False))
    model.save(tmp_path / "x.keras")
    keras.backend.clear_session()
    loaded = keras.models.load_model(tmp_path / "x.keras", safe_mode=True)
    assert _names(loaded) == _names(model)
    after = _np(loaded(x, training=False))
    assert np.isfinite(before).all()
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
