"""Any-size models refuse an image size their family cannot take with the builder's own message (InputSizeCheck),
not with the backend's error from an ``Add`` or ``Concatenate`` deep inside."""

import keras
import numpy as np
import pytest

import zoo
from zoo.errors import InputShapeError
from zoo.models.inputs import InputSizeCheck

pytestmark = pytest.mark.backend_agnostic

HOURGLASS = dict(stacks=1, features=16, num_keypoints=2)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _checks(model):
    return [l.name for l in model.layers if isinstance(l, InputSizeCheck)]


def _any_size_hourglass():
    keras.backend.clear_session()
    return zoo.get("hourglass", input_shape=(None, None, 3), **HOURGLASS)


@pytest.mark.tf_pass_only
def test_plain_predict_of_a_size_the_hourglass_cannot_take_names_the_rule():
    model = _any_size_hourglass()
    bad = np.zeros((1, 100, 70, 3), np.float32)  # 100 -> a 25-pixel map after the stem, halved 4 times
    with pytest.raises(InputShapeError, match=r"input height 100"):  # a direct call
        model(bad)
    # TensorFlow checks in predict's first trace, which has the sizes (after several sizes they are relaxed to None)
    with pytest.raises(InputShapeError, match=r"hourglass: input height 100 gives a 25-pixel feature map .* a multiple "
                                              r"of 64 \(e.g. 64, 128, 192, 256\). Received: a batch of shape "
                                              r"\(1, 100, 70, 3\) \(batch, height, width, channels\), at layer "
                                              r"'image_size_check' of a model built for any size."):
        model.predict(bad, verbose=0)
    # what it takes is unchanged (a fresh model: Keras 3.15's predict on JAX leaves the weights emptied after an error)
    out = _any_size_hourglass().predict(np.zeros((2, 128, 64, 3), np.float32), verbose=0)
    assert np.asarray(out).shape == (2, 32, 16, 2)


def _any_size_cpm():
    keras.backend.clear_session()
    return zoo.get("cpm", input_shape=(None, None, 3), stages=2, num_keypoints=3)


def test_cpm_of_any_size_refuses_a_size_its_concat_cannot_join():
    model = _any_size_cpm()
    assert _checks(model) == ["image_size_check"]
    image, centre = np.zeros((1, 100, 97, 3), np.float32), np.zeros((1, 100, 97, 1), np.float32)
    with pytest.raises(InputShapeError, match=r"cpm: input height 100 does not fit .*nearest: 97 or 104 "
                                              r".* Received: a batch of shape \(1, 100, 97, 3\)"):
        model.predict([image, centre], verbose=0)
    taken = [np.zeros((1, 96, 105, 3), np.float32), np.zeros((1, 96, 105, 1), np.float32)]
    out = _any_size_cpm().predict(taken, verbose=0)
    assert np.asarray(out[-1]).shape == (1, 12, 13, 4)


def test_the_check_is_only_where_a_size_is_left_open():
    keras.backend.clear_session()
    assert _checks(zoo.get("hourglass", input_shape=(64, 64, 3), **HOURGLASS)) == []
    assert _checks(zoo.get("hourglass", input_shape=(64, None, 3), **HOURGLASS)) == ["image_size_check"]
    inp = keras.Input((None, None, 3), name="pixels")  # on the caller's tensor: after it
    model = zoo.get("hourglass", input_tensor=keras.layers.Rescaling(1 / 255, name="scale")(inp), **HOURGLASS)
    assert [l.name for l in model.layers[:3]] == ["pixels", "scale", "image_size_check"]
    with pytest.raises(InputShapeError, match=r"input width 70 .* Received: a batch of shape \(1, 64, 70, 3\)"):
        model(np.zeros((1, 64, 70, 3), np.float32))
    assert _checks(zoo.get("resnet18", input_shape=(None, None, 3), weights=None)) == []  # every size >= 1 works
    assert _checks(zoo.get("resnet50", input_shape=(64, 64, 3), include_top=False)) == []


@pytest.mark.parametrize("name", ["resnet50", "resnet50v2"])
def test_any_size_resnet_refuses_an_image_below_its_stems_minimum(name):
    """Caffe's pool1 (3x3/2, pad 0, ceil) needs a 3x3 image; a 2x2 one gave NaNs on JAX, and TensorFlow's MaxPool
    killed the process in a relaxed trace (tests/zoo/test_layers.py)."""
    keras.backend.clear_session()
    model = zoo.get(name, input_shape=(None, None, 3), include_top=False, pooling="avg")
    assert _checks(model) == ["data_size_check"]
    with pytest.raises(InputShapeError, match=rf"{name}: input size 2x2 is too small; the minimum is 3x3 "
                                              r"\(height x width\). Received: a batch of shape \(1, 2, 2, 3\)"):
        model.predict(np.ones((1, 2, 2, 3), np.float32), verbose=0)
    keras.backend.clear_session()
    model = zoo.get(name, input_shape=(None, None, 3), include_top=False, pooling="avg")
    out = _numpy(model(np.ones((1, 3, 5, 3), np.float32)))
    assert out.shape == (1, 2048) and np.isfinite(out).all()


@pytest.mark.tf_pass_only
def test_saved_models_keep_the_check_and_weights_files_ignore_it(tmp_path, rng):
    model = _any_size_hourglass()
    path = tmp_path / "hg.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # a registered layer, no Lambda
    with pytest.raises(InputShapeError, match=r"input height 100 gives a 25-pixel"):
        loaded(np.zeros((1, 100, 64, 3), np.float32))

    # weights of a fixed-size model (no check layer) load into an any-size one, and back: by Keras' structure
    # and by the zoo's layer names
    fixed = zoo.get("hourglass", input_shape=(64, 64, 3), **HOURGLASS)
    fixed.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in fixed.get_weights()])
    x = rng.uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    want = _numpy(fixed(x))
    fixed.save_weights(tmp_path / "fixed.weights.h5")
    zoo.save_weights(fixed, tmp_path / "fixed.h5")
    model.load_weights(tmp_path / "fixed.weights.h5")
    np.testing.assert_allclose(_numpy(model(x)), want, rtol=1e-5, atol=1e-6)
    named = zoo.get("hourglass", input_shape=(None, None, 3), weights=str(tmp_path / "fixed.h5"))
    np.testing.assert_allclose(_numpy(named(x)), want, rtol=1e-5, atol=1e-6)
    zoo.save_weights(named, tmp_path / "any.h5")
    back = zoo.get("hourglass", input_shape=(64, 64, 3), weights=str(tmp_path / "any.h5"))
    np.testing.assert_allclose(_numpy(back(x)), want, rtol=1e-5, atol=1e-6)


def test_an_unknown_rule_is_refused_by_name():
    with pytest.raises(ValueError, match=r"no size rule named 'nope'; known: cpm, hourglass, resnet101, resnet101v2"):
        InputSizeCheck("nope")
