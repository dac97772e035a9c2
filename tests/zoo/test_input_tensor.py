"""``input_tensor=`` (keras.applications' argument) on every zoo builder: composition, checks, weights, saving."""

import warnings

import keras
import numpy as np
import pytest

import zoo
from tests.zoo.helpers import forward_numpy, randomize_batchnorm, structure_only
from zoo.errors import InputShapeError
from zoo.weights import read_record

pytestmark = pytest.mark.backend_agnostic

SCALE, OFFSET = 1 / 127.5, -1.0  # the caller's preprocessing: pixels in [0, 255] -> [-1, 1]

# One small configuration per builder family (the sizes fit each builder's own rules).
SMALL = {
    "resnet18": dict(include_top=False),
    "resnet50v2": dict(include_top=False),
    "fcn8s": dict(classes=3),
    "hourglass": dict(stacks=1, features=16, num_keypoints=2),
    "cpm": dict(stages=2, num_keypoints=2),
    "pspnet50": dict(classes=3),
}
SIZE = {"resnet18": (40, 44), "resnet50v2": (40, 44), "fcn8s": (40, 44), "hourglass": (64, 128), "cpm": (32, 40),
        "pspnet50": (40, 48)}



def _rescaled(inp):
    return keras.layers.Rescaling(SCALE, offset=OFFSET, name="to_unit")(inp)


@pytest.fixture(scope="module")
def composed_resnet50(tmp_path_factory):
    """resnet50 built on Rescaling(keras.Input((225, 231, 3))), non-trivial BN, and its zoo weights file."""
    keras.backend.clear_session()
    inp = keras.Input((225, 231, 3), name="pixels")
    model = zoo.get("resnet50", input_tensor=_rescaled(inp), classifier_activation=None)
    randomize_batchnorm(model, np.random.default_rng(0))
    path = tmp_path_factory.mktemp("w") / "composed.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the tensor must not reach the record (it warned "not JSON")
        zoo.save_weights(model, path)
    return inp, model, path


def test_resnet50_on_a_preprocessing_layer_equals_the_standalone_model_on_numpy_rescaled_images(composed_resnet50):
    inp, model, path = composed_resnet50
    assert model.input is inp  # keras.utils.get_source_inputs(input_tensor): the caller's Input
    assert [l.name for l in model.layers[:3]] == ["pixels", "to_unit", "conv1_pad"]
    assert model.output.shape == (None, 1000)

    # the same builder standalone, with the same weights (name-keyed file; its record rebuilds 225x231)
    standalone = zoo.get("resnet50", weights=path)
    assert standalone.input_shape == (None, 225, 231, 3)
    assert "to_unit" not in [l.name for l in standalone.layers]

    rng = np.random.default_rng(1)
    pixels = rng.uniform(0, 255, (2, 225, 231, 3)).astype(np.float32)
    reference = forward_numpy(standalone, (pixels * SCALE + OFFSET).astype(np.float32))  # rescaled in NumPy
    # float32 round-off grows with the logits' scale (about 1e4 here: He-initialised convs, random BN statistics),
    # so the absolute tolerance follows it; a wrong composition is off by far more
    np.testing.assert_allclose(forward_numpy(model, pixels), reference, rtol=1e-4,
                               atol=1e-6 * np.abs(reference).max())


@pytest.mark.tf_pass_only
def test_weights_load_by_name_into_a_model_built_on_an_input_tensor(composed_resnet50):
    inp, model, path = composed_resnet50
    # another caller graph, with a layer that has weights in front: zoo weights leave it alone
    inp2 = keras.Input((225, 231, 3))
    adapter = keras.layers.Dense(3, name="adapter")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # quietly: the adapter is the caller's, not a missing weight
        loaded = zoo.get("resnet50", weights=path, input_tensor=adapter(_rescaled(inp2)))
    assert loaded.input is inp2
    adapter.set_weights([np.eye(3, dtype=np.float32), np.zeros(3, np.float32)])  # identity
    pixels = np.random.default_rng(2).uniform(0, 255, (1, 225, 231, 3)).astype(np.float32)
    np.testing.assert_allclose(forward_numpy(loaded, pixels), forward_numpy(model, pixels), rtol=1e-4, atol=1e-4)


def test_the_record_keeps_the_tensor_shape_not_the_tensor(composed_resnet50):
    _, _, path = composed_resnet50
    _, record = read_record(path)
    assert "input_tensor" not in record.builder_kwargs
    assert list(record.builder_kwargs["input_shape"]) == [225, 231, 3]


def test_a_stored_input_shape_gives_way_to_the_tensor(composed_resnet50):
    # the file records 225x231; the name-keyed weights fit a model built on a 97x65 tensor
    _, _, path = composed_resnet50
    model = zoo.get("resnet50", weights=path, input_tensor=keras.Input((97, 65, 3)))
    assert model.input_shape == (None, 97, 65, 3)


@pytest.mark.parametrize("name", list(SMALL))
def test_every_builder_builds_on_the_callers_tensor(name):
    keras.backend.clear_session()
    h, w = SIZE[name]
    inp = keras.Input((h, w, 3))
    with structure_only():  # skip the random initialisation
        model = zoo.get(name, input_tensor=_rescaled(inp), **SMALL[name])
        standalone = zoo.get(name, input_shape=(h, w, 3), **SMALL[name])
    inputs = model.inputs
    assert inputs[0] is inp
    if name == "cpm":  # the centre map is still the model's own input
        assert [t.shape for t in inputs] == [(None, h, w, 3), (None, h, w, 1)]
    else:
        assert len(inputs) == 1
    def names(m):
        return [l.name for l in m.layers if not isinstance(l, keras.layers.InputLayer)]

    assert names(model) == ["to_unit", *names(standalone)]
    out, ref = model.outputs, standalone.outputs
    assert [t.shape for t in out] == [t.shape for t in ref]


def test_cpm_on_an_image_tensor_and_on_a_pair(tmp_path):
    keras.backend.clear_session()
    kw = SMALL["cpm"]
    image = keras.Input((32, 32, 3), name="pixels")
    model = zoo.get("cpm", input_tensor=_rescaled(image), **kw)
    randomize_batchnorm(model, np.random.default_rng(0))
    zoo.save_weights(model, tmp_path / "cpm.h5")
    standalone = zoo.get("cpm", weights=tmp_path / "cpm.h5")

    centre = keras.Input((32, 32, 1), name="centre")
    pair = zoo.get("cpm", weights=tmp_path / "cpm.h5", input_tensor=(_rescaled(image), centre))
    assert pair.inputs[0] is image and pair.inputs[1] is centre

    rng = np.random.default_rng(3)
    pixels = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    cmap = zoo.models.cpm.cpm_center_map(32, 32, sigma=5.0)[None]
    reference = forward_numpy(standalone, [(pixels * SCALE + OFFSET).astype(np.float32), cmap])
    for m in (model, pair):
        for o, r in zip(forward_numpy(m, [pixels, cmap]), reference):
            np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)


@pytest.mark.tf_pass_only
def test_a_model_on_an_input_tensor_saves_and_reloads_in_safe_mode(tmp_path):
    keras.backend.clear_session()
    inp = keras.Input((64, 64, 3), name="pixels")
    model = zoo.get("hourglass", input_tensor=_rescaled(inp), **SMALL["hourglass"])
    randomize_batchnorm(model, np.random.default_rng(4))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert [l.name for l in loaded.layers[:2]] == ["pixels", "to_unit"]
    pixels = np.random.default_rng(5).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    standalone = zoo.get("hourglass", input_shape=(64, 64, 3), **SMALL["hourglass"])
    for layer in standalone.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights() if layer.name != "image" else [])
    reference = forward_numpy(standalone, (pixels * SCALE + OFFSET).astype(np.float32))
    for o, r in zip(forward_numpy(loaded, pixels), reference):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)


@pytest.mark.tf_pass_only
def test_save_weights_leaves_out_a_weighted_layer_in_front_and_the_file_loads_without_the_tensor(tmp_path):
    # the file held 'adapter', and zoo.get(name, weights=file) refused it as a layer the model lacks
    keras.backend.clear_session()
    inp = keras.Input((64, 64, 3), name="pixels")
    adapter = keras.layers.Conv2D(3, 1, name="adapter")
    model = zoo.get("hourglass", input_tensor=adapter(inp), **SMALL["hourglass"])
    randomize_batchnorm(model, np.random.default_rng(6))
    w = np.random.default_rng(7).normal(0, 1, (1, 1, 3, 3)).astype(np.float32)
    b = np.array([0.5, -1.0, 2.0], np.float32)
    adapter.set_weights([w, b])
    with pytest.warns(UserWarning, match=r"hg\.h5' holds the weights of 'hourglass' only.*\(adapter\)"):
        zoo.save_weights(model, tmp_path / "hg.h5")
    standalone = zoo.get("hourglass", weights=tmp_path / "hg.h5")
    assert standalone.input_shape == (None, 64, 64, 3)
    pixels = np.random.default_rng(8).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    reference = forward_numpy(standalone, np.einsum("bhwc,cd->bhwd", pixels, w[0, 0]) + b)  # adapter in NumPy
    for o, r in zip(forward_numpy(model, pixels), reference):  # outputs reach ~250: float32 round-off scales with them
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5 * np.abs(r).max())


# ---------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------


def test_input_shape_and_tensor_shape_must_agree():
    with pytest.raises(InputShapeError, match=r"resnet18: `input_shape` and the shape of `input_tensor` disagree.*"
                                              r"input_shape=\(224, 224, 3\), input_tensor of shape \(None, 225, 231, 3\)"):
        zoo.get("resnet18", input_tensor=keras.Input((225, 231, 3)), input_shape=(224, 224, 3))
    # equal ones are fine
    with structure_only():
        zoo.get("resnet18", input_tensor=keras.Input((225, 231, 3)), input_shape=(225, 231, 3), include_top=False)


@pytest.mark.parametrize("name,shape,message", [
    ("resnet50", (2, 2, 3), r"resnet50: input size 2x2 is too small; the minimum is 3x3"),
    ("resnet50v2", (64, 64, 1), r"expected 3 input channels"),
    ("fcn32s", (64, 64, 4), r"expected 3 input channels"),
    ("hourglass", (100, 128, 3), r"hourglass: input height 100 gives a 25-pixel feature map"),
    ("cpm", (30, 32, 3), r"cpm: input height 30 does not fit.*nearest: 25 or 32"),
    ("pspnet50", (38, 48, 3), r"pspnet50: input size 38x48 is too small; the minimum is 39x39"),
    ("pspnet101", (None, 48, 3), r"pspnet101: height and width must be fixed"),
])
def test_the_builders_size_rules_apply_to_the_tensor(name, shape, message):
    with pytest.raises(InputShapeError, match=message + rf".*the shape of `input_tensor`: \(None, {shape[0]}, "):
        zoo.get(name, input_tensor=keras.layers.Rescaling(1.0)(keras.Input(shape)))


def test_a_concrete_tensor_or_wrong_rank_is_refused_by_name():
    with pytest.raises(TypeError, match=r"hourglass: `input_tensor` must be a Keras tensor .* ndarray of shape "
                                        r"\(1, 64, 64, 3\)"):
        zoo.get("hourglass", input_tensor=np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(InputShapeError, match=r"fcn8s: `input_tensor` must be a batch of images .* \(None, 64, 3\)"):
        zoo.get("fcn8s", input_tensor=keras.Input((64, 3)))


def test_cpm_centre_map_tensor_is_checked():
    image = keras.Input((32, 32, 3))
    with pytest.raises(InputShapeError, match=r"cpm: the centre map must be \(B, H, W, 1\) with the image's "
                                              r"H x W = 32x32.*`input_tensor\[1\]`: \(None, 16, 16, 1\)"):
        zoo.get("cpm", input_tensor=(image, keras.Input((16, 16, 1))))
    with pytest.raises(TypeError, match=r"cpm\(\): `input_tensor` must be the image tensor .* a tuple of 3 item"):
        zoo.get("cpm", input_tensor=(image, image, image))
