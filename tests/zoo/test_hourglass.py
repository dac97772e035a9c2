"""Stacked Hourglass: parameter counts of the pose-hg-train structure, shapes, names, errors, save/load."""

import keras
import numpy as np
import pytest

import zoo
from tests.zoo.helpers import forward_numpy, randomize_batchnorm, structure_only, trainable_count
from zoo.errors import InputShapeError
from zoo.models.hourglass import hourglass, hourglass_feature_size

pytestmark = pytest.mark.backend_agnostic

SMALL = dict(stacks=2, features=32, num_keypoints=5, input_shape=(64, 64, 3))





@pytest.fixture(scope="module")
def small():
    keras.backend.clear_session()
    model = hourglass(**SMALL)
    randomize_batchnorm(model, np.random.default_rng(1))
    return model


# Counts from the Lua structure (hg.lua + Residual.lua), zoo-conventions.md §2.3.
@pytest.mark.parametrize("stacks,expected", [(1, 3_426_448), (2, 6_570_400), (8, 25_434_112)])
def test_parameter_counts_and_default_outputs(stacks, expected):
    keras.backend.clear_session()
    with structure_only():  # shapes only: skip the random initialisation
        model = hourglass(stacks=stacks)
    assert trainable_count(model) == expected
    assert len(model.outputs) == stacks
    assert [o.shape for o in model.outputs] == [(None, 64, 64, 16)] * stacks
    assert model.output_names == [f"stack{i}_heatmaps" for i in range(1, stacks + 1)]
    # Inter-stack feedback exists between stacks only, not after the last one.
    names = {layer.name for layer in model.layers}
    assert f"stack{stacks}_inter_add" not in names
    assert (f"stack{stacks - 1}_inter_add" in names) == (stacks > 1)


def test_released_layout_has_no_residual_after_the_hourglass():
    # umich-stacked-hourglass.t7: 8 stacks, lin right after each hourglass (a module dump lists 261
    # modules = 8 + 7 x 32 + 29); 8 residuals fewer than the final hg.lua (214,528 parameters each).
    keras.backend.clear_session()
    with structure_only():
        model = hourglass(stacks=8, post_residuals=False)
    assert trainable_count(model) == 25_434_112 - 8 * 214_528 == 23_717_888
    names = {layer.name for layer in model.layers}
    assert "stack1_res1_add" not in names and "stack8_lin_conv" in names
    with structure_only():
        two = hourglass(stacks=1, modules=2, post_residuals=False, features=8, num_keypoints=3)
    assert {"stack1_lin_conv", "stack1_lin2_conv", "stack1_lin2_bn"} <= {l.name for l in two.layers}


def test_layer_names_are_hierarchical_and_stable(small):
    names = [layer.name for layer in small.layers]
    assert len(names) == len(set(names))
    for expected in [
        "stem_conv_pad", "stem_conv", "stem_bn", "stem_res1_skip", "stem_pool", "stem_res3_conv3",
        "stack1_hg4_up1_res1_bn1", "stack1_hg4_pool", "stack1_hg4_low1_res1_conv2",
        "stack1_hg1_low2_res1_conv3", "stack1_hg4_low3_res1_add", "stack1_hg4_up2", "stack1_hg4_add",
        "stack1_res1_add", "stack1_lin_conv", "stack1_lin_bn", "stack1_heatmaps",
        "stack1_inter_ll", "stack1_inter_heatmaps", "stack1_inter_add", "stack2_heatmaps",
    ]:
        assert expected in names, expected
    # features == 32 everywhere in the hourglass: no skip convs there, only in the stem.
    assert not [n for n in names if n.startswith("stack") and n.endswith("_skip")]
    assert small.get_layer("stem_res3_skip").kernel.shape == (1, 1, 128, 32)
    bns = [l for l in small.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.epsilon == 1e-5 and l.momentum == 0.9 for l in bns)


def test_head_layers_are_exactly_the_keypoint_dependent_ones(small):
    spec = zoo.get_spec("hourglass")
    k = SMALL["num_keypoints"]  # 5: no other kernel or channel size in the model is 5
    depends = {l.name for l in small.layers if any(k in w.shape for w in l.weights)}
    head = {l.name for l in small.layers if spec.is_head_layer(l.name)}
    assert depends == head == {"stack1_heatmaps", "stack2_heatmaps", "stack1_inter_heatmaps"}


# --- an independent float64 NumPy forward pass written from hg.lua / Residual.lua -------------------------------

def _np_conv(model, name, x, stride=1, pad=0):
    w, b = (np.asarray(v, np.float64) for v in model.get_layer(name).get_weights())  # (kh, kw, in, out)
    kh, kw = w.shape[:2]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, wd = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.broadcast_to(b, (x.shape[0], h, wd, w.shape[3])).copy()
    for i in range(kh):
        for j in range(kw):
            out += x[:, i:i + stride * h:stride, j:j + stride * wd:stride] @ w[i, j]
    return out


def _np_bn_relu(model, name, x, relu=True):
    gamma, beta, mean, var = (np.asarray(v, np.float64) for v in model.get_layer(name).get_weights())
    y = (x - mean) / np.sqrt(var + 1e-5) * gamma + beta
    return np.maximum(y, 0) if relu else y


def _np_residual(m, name, x, n_out):
    y = _np_conv(m, f"{name}_conv1", _np_bn_relu(m, f"{name}_bn1", x))
    y = _np_conv(m, f"{name}_conv2", _np_bn_relu(m, f"{name}_bn2", y), pad=1)
    y = _np_conv(m, f"{name}_conv3", _np_bn_relu(m, f"{name}_bn3", y))
    skip = x if x.shape[-1] == n_out else _np_conv(m, f"{name}_skip", x)
    return skip + y


def _np_hourglass(m, n, f, x, s):
    up1 = _np_residual(m, f"{s}_hg{n}_up1_res1", x, f)
    b, h, w, c = x.shape
    low1 = x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))  # SpatialMaxPooling(2, 2, 2, 2)
    low1 = _np_residual(m, f"{s}_hg{n}_low1_res1", low1, f)
    low2 = _np_hourglass(m, n - 1, f, low1, s) if n > 1 else _np_residual(m, f"{s}_hg{n}_low2_res1", low1, f)
    low3 = _np_residual(m, f"{s}_hg{n}_low3_res1", low2, f)
    return up1 + low3.repeat(2, axis=1).repeat(2, axis=2)  # SpatialUpSamplingNearest(2)


def _np_model(m, x, stacks, f):
    cnv1 = _np_bn_relu(m, "stem_bn", _np_conv(m, "stem_conv", x, stride=2, pad=3))
    r1 = _np_residual(m, "stem_res1", cnv1, 128)
    b, h, w, c = r1.shape
    pool = r1.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    inter = _np_residual(m, "stem_res3", _np_residual(m, "stem_res2", pool, 128), f)
    out = []
    for i in range(1, stacks + 1):
        s = f"stack{i}"
        ll = _np_residual(m, f"{s}_res1", _np_hourglass(m, 4, f, inter, s), f)
        ll = _np_bn_relu(m, f"{s}_lin_bn", _np_conv(m, f"{s}_lin_conv", ll))
        out.append(_np_conv(m, f"{s}_heatmaps", ll))
        if i < stacks:
            inter = inter + _np_conv(m, f"{s}_inter_ll", ll) + _np_conv(m, f"{s}_inter_heatmaps", out[-1])
    return out


def test_matches_numpy_reference_of_the_lua_model(small, rng):
    x = rng.uniform(0, 1, size=(1, 64, 64, 3))
    ours = forward_numpy(small, x.astype(np.float32))
    ref = _np_model(small, x, SMALL["stacks"], SMALL["features"])
    for a, b in zip(ours, ref):
        assert a.shape == b.shape == (1, 16, 16, 5)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_odd_input_size():
    keras.backend.clear_session()
    model = hourglass(stacks=1, features=16, num_keypoints=3, input_shape=(128, 192, 3))
    assert model.outputs[0].shape == (None, 32, 48, 3)
    y = forward_numpy(model, np.zeros((1, 128, 192, 3), np.float32))
    y = y[0] if isinstance(y, list) else y
    assert y.shape == (1, 32, 48, 3)
    assert hourglass_feature_size(256) == 64 and hourglass_feature_size(63) == 16


def test_save_load_round_trip(small, tmp_path, rng):
    x = rng.uniform(0, 1, size=(2, 64, 64, 3)).astype(np.float32)
    before = forward_numpy(small, x)
    path = tmp_path / "hg.keras"
    small.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    after = forward_numpy(loaded, x)
    assert len(before) == len(after) == 2
    for a, b in zip(before, after):
        assert a.shape == (2, 16, 16, 5)
        np.testing.assert_array_equal(a, b)
    assert [l.name for l in loaded.layers] == [l.name for l in small.layers]


def test_registry_builds_it():
    keras.backend.clear_session()
    model = zoo.get("hourglass", stacks=1, features=16, num_keypoints=4, input_shape=(64, 128, 3))
    assert model.outputs[0].shape == (None, 16, 32, 4)
    info = zoo.info("hourglass")
    assert info["head_kwarg"] == "num_keypoints" and info["defaults"]["stacks"] == 8


@pytest.mark.parametrize(
    "shape,match",
    [
        ((100, 100, 3), r"height 100 .*25-pixel feature map.*multiple of 2\^4 = 16"),
        ((128, 200, 3), r"width 200 .*50-pixel feature map"),
        ((32, 32, 3), r"minimum is 63x63"),
        ((256, 256, 1), r"expected 3 input channels"),
        ((256, 256), r"\(height, width, channels\)"),
    ],
)
def test_bad_input_shapes_raise(shape, match):
    with pytest.raises(InputShapeError, match=match):
        hourglass(stacks=1, input_shape=shape)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(weights="mpii"), r"zoo\.get\('hourglass', weights=\.\.\.\)"),
        (dict(stacks=0), r"`stacks` must be an integer >= 1\. Received: stacks=0"),
        (dict(num_keypoints=2.5), r"`num_keypoints`"),
        (dict(features=33), r"`features` must be even"),
        (dict(modules=True), r"`modules`"),
        (dict(post_residuals="yes"), r"`post_residuals` must be True or False"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hourglass(**kwargs)
