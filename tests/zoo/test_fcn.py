"""FCN builders: exact parameter counts, Caffe names, any input size, OpenCV's Caffe engine as oracle."""

import gc

import keras
import numpy as np
import pytest

import zoo
from tests.zoo.helpers import trainable_count
from tests.oracle import opencv_forward
from zoo.errors import InputShapeError
from zoo.models import fcn

agnostic = pytest.mark.backend_agnostic

# (total, trainable) with 21 classes; total counts the fixed bilinear deconvs (and at-once's scales).
COUNTS = {
    "fcn32s": (136_152_917, 134_346_581),
    "fcn16s": (134_815_994, 134_357_354),
    "fcn8s": (134_489_759, 134_362_751),
    "fcn8s_atonce": (134_489_759 + 512 + 256, 134_362_751),
}
BUILDERS = {"fcn32s": fcn.fcn32s, "fcn16s": fcn.fcn16s, "fcn8s": fcn.fcn8s, "fcn8s_atonce": fcn.fcn8s_atonce}
VGG_NAMES = [f"conv{b}_{i}" for b, _, n in fcn.VGG16_BLOCKS for i in range(1, n + 1)] + [
    f"pool{b}" for b in range(1, 6)
]
HEAD_NAMES = {
    "fcn32s": ["score_fr", "upscore", "score"],
    "fcn16s": ["score_fr", "upscore2", "score_pool4", "score_pool4c", "fuse_pool4", "upscore16", "score"],
    "fcn8s": ["score_fr", "upscore2", "score_pool4", "score_pool4c", "fuse_pool4", "upscore_pool4",
              "score_pool3", "score_pool3c", "fuse_pool3", "upscore8", "score"],
}
HEAD_NAMES["fcn8s_atonce"] = HEAD_NAMES["fcn8s"] + ["scale_pool4", "scale_pool3"]


# ./dev test's JAX pass builds fcn32s and fcn8s_atonce only: between them they hold every layer type and crop of the
# four (fcn16s' and fcn8s' heads are fcn8s_atonce's without its scales), and each variant costs its JAX pass ~10 s
# (a VGG-16 build, compiled at 201 x 201 for OpenCV's check). The TensorFlow pass builds all four.
@pytest.fixture(scope="module", params=[pytest.param(v, marks=agnostic if v in ("fcn32s", "fcn8s_atonce") else ())
                                        for v in BUILDERS])
def variant_model(request):
    """One ~540 MB model per variant at a time, any input size; freed before the next one."""
    model = BUILDERS[request.param](input_shape=(None, None, 3))
    yield request.param, model
    del model
    keras.backend.clear_session()
    gc.collect()



@pytest.mark.tf_pass_only
def test_parameter_counts(variant_model):
    variant, model = variant_model
    assert (model.count_params(), trainable_count(model)) == COUNTS[variant]


@agnostic
@pytest.mark.tf_pass_only
def test_score_layers_start_at_zero_like_caffe(rng):
    """voc-fcn*/net.py gives score_fr/score_pool4/score_pool3 no weight_filler: Caffe's default constant 0.
    A fresh net therefore predicts all-zero logits (uniform class probabilities) for any input."""
    model = fcn.fcn8s(input_shape=(None, None, 3), classes=3)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        for w in model.get_layer(name).weights:
            assert not np.any(keras.ops.convert_to_numpy(w)), name
    x = rng.normal(0.0, 50.0, size=(1, 5, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), np.zeros((1, 5, 7, 3), np.float32))
    assert np.any(keras.ops.convert_to_numpy(model.get_layer("fc7").kernel))  # VGG layers keep random init
    del model
    keras.backend.clear_session()
    gc.collect()


def test_layer_names_are_caffe_names_and_unique(variant_model):
    variant, model = variant_model
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    for expected in VGG_NAMES + ["fc6", "fc7", "drop6", "drop7"] + HEAD_NAMES[variant]:
        assert expected in names, expected
    assert model.get_layer("fc6").kernel.shape == (7, 7, 512, 4096)


def test_head_layers_are_exactly_the_class_dependent_layers(variant_model):
    variant, model = variant_model
    spec = zoo.get_spec(variant)
    with_classes = {l.name for l in model.layers if any(21 in w.shape for w in l.weights)}
    head = {l.name for l in model.layers if l.weights and spec.is_head_layer(l.name)}
    assert with_classes == head


def test_symbolic_sizes_at_default_and_odd_sizes(variant_model):
    variant, model = variant_model
    for h, w in [(500, 500), (67, 75), (100, 113), (1, 1)]:
        assert model.compute_output_spec(keras.KerasTensor((2, h, w, 3))).shape == (2, h, w, 21)
    sizes, problem = fcn.fcn_blob_sizes(500, variant)
    assert problem is None and sizes["pool2"] == 175 and sizes["pool3"] == 88  # Caffe ceil: 349 -> 175


@agnostic
def test_default_input_shape_is_the_deploy_example():
    # Checked on the shape helper: a second 540 MB model only for this would cost seconds.
    assert fcn._check_shape("fcn8s", "fcn8s", None) == (500, 500, 3)
    assert fcn._check_shape("fcn8s", "fcn8s", (None, 7, 3)) == (None, 7, 3)


@agnostic
@pytest.mark.parametrize("variant", list(BUILDERS))
def test_every_size_from_the_minimum_is_valid(variant):
    """Caffe's size arithmetic: pad 100 keeps every blob non-empty and every Crop inside its input."""
    assert fcn.FCN_MIN_INPUT_SIZE[variant] == 1
    for n in range(1, 1200):
        sizes, problem = fcn.fcn_blob_sizes(n, variant)
        assert problem is None, (n, problem)
        assert sizes["score"] == n


@agnostic
@pytest.mark.parametrize("shape", [(0, 10, 3), (10, 0, 3)])
def test_too_small_input_raises(shape):
    with pytest.raises(InputShapeError, match="minimum is 1x1"):
        fcn.fcn8s(input_shape=shape)


@agnostic
@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 4)])
def test_bad_input_shape_raises(shape):
    with pytest.raises(InputShapeError, match="fcn16s"):
        fcn.fcn16s(input_shape=shape)


@agnostic
def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"zoo.get\('fcn8s', weights=...\)"):
        fcn.fcn8s(weights="voc")
    with pytest.raises(ValueError, match="`classes` must be a positive int. Received: classes=0"):
        fcn.fcn32s(classes=0)
    with pytest.raises(ValueError, match=r"fcn16s\(\): `trainable_upsampling` must be True or False"):
        fcn.fcn16s(trainable_upsampling="False")  # was truthy: the fixed bilinear deconvs trained
    with pytest.raises(TypeError):
        fcn.fcn8s(None)  # keyword-only


def _caffe_conv(name, bottom, num, k, pad=0):
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
            f"convolution_param {{ num_output: {num} kernel_size: {k} pad: {pad} }} }}\n")


# Written from the released nets (voc-fcn*/net.py, voc-fcn8s/deploy.prototxt), independently of
# zoo.models.fcn: upsamplings (name, kernel, stride), skips (pool, crop offset, Scale?), final crop.
RELEASED = {
    "fcn32s": dict(ups=[("upscore", 64, 32)], skips=[], final=19),
    "fcn16s": dict(ups=[("upscore2", 4, 2), ("upscore16", 32, 16)], skips=[(4, 5, False)], final=27),
    "fcn8s": dict(ups=[("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8)],
                  skips=[(4, 5, False), (3, 9, False)], final=31),
    "fcn8s_atonce": dict(ups=[("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8)],
                         skips=[(4, 5, True), (3, 9, True)], final=31),
}


def _fcn_prototxt(variant, h, w, classes):
    """The released deploy net (TEST phase: dropout is the identity), written out for OpenCV."""
    spec = RELEASED[variant]
    out = [f'input: "data"\ninput_dim: 1 input_dim: 3 input_dim: {h} input_dim: {w}\n']
    bottom = "data"
    for block, filters, convs in [(1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3)]:
        for i in range(1, convs + 1):
            name = f"conv{block}_{i}"
            out.append(_caffe_conv(name, bottom, filters, 3, 100 if name == "conv1_1" else 1))
            out.append(f'layer {{ name: "relu{block}_{i}" type: "ReLU" bottom: "{name}" top: "{name}" }}\n')
            bottom = name
        out.append(f'layer {{ name: "pool{block}" type: "Pooling" bottom: "{bottom}" top: "pool{block}" '
                   "pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n")
        bottom = f"pool{block}"
    out.append(_caffe_conv("fc6", "pool5", 4096, 7))
    out.append('layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }\n')
    out.append(_caffe_conv("fc7", "fc6", 4096, 1))
    out.append('layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }\n')
    out.append(_caffe_conv("score_fr", "fc7", classes, 1))
    bottom = "score_fr"
    for (up, k, s), skip in zip(spec["ups"], spec["skips"] + [None]):
        out.append(f'layer {{ name: "{up}" type: "Deconvolution" bottom: "{bottom}" top: "{up}" '
                   f"convolution_param {{ num_output: {classes} bias_term: false kernel_size: {k} stride: {s} }} }}\n")
        if skip is None:
            out.append(f'layer {{ name: "score" type: "Crop" bottom: "{up}" bottom: "data" top: "score" '
                       f'crop_param {{ axis: 2 offset: {spec["final"]} }} }}\n')
            break
        block, offset, scale = skip
        src = f"pool{block}"
        if scale:
            out.append(f'layer {{ name: "scale_pool{block}" type: "Scale" bottom: "{src}" '
                       f'top: "scale_pool{block}" }}\n')
            src = f"scale_pool{block}"
        out.append(_caffe_conv(f"score_pool{block}", src, classes, 1))
        out.append(f'layer {{ name: "score_pool{block}c" type: "Crop" bottom: "score_pool{block}" '
                   f'bottom: "{up}" top: "score_pool{block}c" crop_param {{ axis: 2 offset: {offset} }} }}\n')
        out.append(f'layer {{ name: "fuse_pool{block}" type: "Eltwise" bottom: "{up}" '
                   f'bottom: "score_pool{block}c" top: "fuse_pool{block}" eltwise_param {{ operation: SUM }} }}\n')
        bottom = f"fuse_pool{block}"
    return "".join(out)


def _opencv_blobs(model):
    """Keras weights as Caffe blobs: conv (O, I, kh, kw), deconv (I, O, kh, kw), Scale (1, C)."""
    blobs = {}
    for layer in model.layers:
        ws = [np.asarray(keras.ops.convert_to_numpy(w)) for w in layer.weights]
        if not ws:
            continue
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            blobs[layer.name] = [ws[0].transpose(3, 2, 0, 1)] + [b.reshape(1, -1) for b in ws[1:]]
        else:
            blobs[layer.name] = [ws[0].reshape(1, -1)]
    return blobs


def _randomise_small_layers(model, rng):
    """Random values for the score, deconv and scale layers (normally bilinear / constant), and
    random biases everywhere, so that every blob mapping is exercised; big kernels keep their init
    (touching only small variables keeps this cheap)."""
    for layer in model.layers:
        for w in layer.weights:
            if len(w.shape) == 1 or 21 in w.shape[-2:]:
                scale = 0.1 if len(w.shape) == 1 else 0.5
                w.assign(rng.normal(0.0, scale, size=w.shape).astype(np.float32))


# Small odd sizes (the padded net is >= 201 x 201 anyway, so larger inputs only cost CPU time);
# 67x75 and 100x113 are checked symbolically above.
ORACLE_SIZES = {"fcn32s": (13, 22), "fcn16s": (7, 11), "fcn8s": (9, 4), "fcn8s_atonce": (1, 3)}


def test_matches_opencv_caffe_engine(variant_model, rng):
    """Same weights in Keras and in OpenCV's Caffe importer: crops, ceil pools, deconvs, skips."""
    variant, model = variant_model
    _randomise_small_layers(model, rng)
    h, w = ORACLE_SIZES[variant]
    x = rng.normal(0.0, 50.0, size=(1, h, w, 3)).astype(np.float32)
    ref = opencv_forward(_fcn_prototxt(variant, h, w, 21), {"data": x}, blobs=_opencv_blobs(model))["score"]
    ours = model.predict(x, verbose=0)
    assert ours.shape == ref.shape == (1, h, w, 21)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert np.abs(ref).max() > 1e-3  # the signal survives to the output


@agnostic
@pytest.mark.parametrize("variant_model", ["fcn8s_atonce"], indirect=True)
@pytest.mark.tf_pass_only
def test_save_load_safe_mode_identical(variant_model, tmp_path, rng):
    """All custom layers (CaffePooling2D, CropToReference, ChannelScale, BilinearKernel) round-trip."""
    _, model = variant_model
    # its own random score/deconv/scale layers and biases: a fresh FCN's zero score layers predict all zeros, which
    # any reload matches (it relied on test_matches_opencv_caffe_engine having randomised the shared model first)
    _randomise_small_layers(model, rng)
    path = tmp_path / "fcn8s_atonce.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert not loaded.get_layer("upscore8").trainable and not loaded.get_layer("scale_pool3").trainable
    x = rng.normal(0.0, 50.0, size=(1, 1, 3, 3)).astype(np.float32)  # 1 x 3 input: the padded net is still 201 x 203
    ours = model.predict(x, verbose=0)
    assert np.abs(ours).max() > 1e-3
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), ours)
    del loaded
    gc.collect()
