"""``zoo.load_keras_model`` re-creates a saved model without Keras' initialisers (on JAX they compiled one XLA
program per weight shape, only for the file's values to replace them) and gives the model Keras' loader gives."""

import json
import zipfile

import keras
import numpy as np
import pytest

import zoo
from tests.zoo.helpers import count_keras_draws
from zoo.errors import WeightsFileError

pytestmark = pytest.mark.backend_agnostic

MODELS = {
    "hourglass": dict(stacks=1, features=16, num_keypoints=2, input_shape=(64, 64, 3)),  # RandomUniform (Torch7's)
    "cpm": dict(stages=2, num_keypoints=3, input_shape=(64, 64, 3)),  # RandomNormal
    "resnet18": dict(input_shape=(32, 32, 3)),  # VarianceScaling (He normal, fan out), RandomUniform
}


@pytest.fixture
def keras_draws(monkeypatch):
    return count_keras_draws(monkeypatch)


def _config(model_or_path):
    """A model's config as a .keras file holds it, without the ids of shared objects."""
    if isinstance(model_or_path, keras.Model):
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(model_or_path)))
    else:
        config = json.loads(zipfile.ZipFile(model_or_path).read("config.json"))

    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k != "shared_object_id"}
        return [strip(v) for v in o] if isinstance(o, list) else o

    return strip(config)["config"]


@pytest.mark.parametrize("name", MODELS)
def test_the_model_comes_back_without_keras_drawing_its_weights(name, tmp_path, keras_draws):
    keras.backend.clear_session()
    model = zoo.get(name, **MODELS[name])
    path = zoo.save_model(model, tmp_path / "m.keras")
    keras_draws.clear()
    loaded = zoo.load_keras_model(path)
    assert keras_draws == []  # Keras' loader: one draw per kernel (and hourglass bias, CPM bias...)
    for got, want in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    # Keras' initialisers are back in place: it saves the config it was saved with, and a clone draws as Keras' would
    assert _config(loaded) == _config(path)
    reference = keras.saving.load_model(path, compile=False, safe_mode=True)
    assert keras_draws  # the count would see Keras' draws
    assert _config(reference) == _config(loaded)


def test_an_archive_with_more_than_a_config_and_weights_goes_to_keras_loader(tmp_path, keras_draws):
    keras.backend.clear_session()
    model = zoo.get("hourglass", **MODELS["hourglass"])
    path = zoo.save_model(model, tmp_path / "m.keras")
    with zipfile.ZipFile(path, "a") as z:  # an asset, as a layer with assets saves one
        z.writestr("assets/vocabulary.txt", "a\nb\n")
    keras_draws.clear()
    loaded = zoo.load_keras_model(path)
    assert keras_draws  # Keras' own loader, which also reads assets
    for got, want in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_weights_that_do_not_fit_the_config_are_refused_by_name(tmp_path):
    keras.backend.clear_session()
    path = zoo.save_model(zoo.get("hourglass", **MODELS["hourglass"]), tmp_path / "m.keras")
    edited = tmp_path / "edited.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":  # a head of 3 keypoints, the weights of 2
                config = json.loads(data)
                head = next(l for l in config["config"]["layers"] if l["name"] == "stack1_heatmaps")
                head["config"]["filters"] = 3
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(WeightsFileError, match=r"edited.keras': Keras could not load the model: .*stack1_heatmaps"):
        zoo.load_keras_model(edited)


def test_save_weights_of_a_loaded_keras_model_keeps_its_builder_arguments(tmp_path):
    """A .keras read by load_keras_model (a training run's best.keras) saved with zoo.save_weights: the file's record
    held no builder arguments, so zoo.get(NAME, weights=FILE) built the default 8-stack hourglass and refused every
    weight of the 1-stack one."""
    model = zoo.get("hourglass", stacks=1, features=16, num_keypoints=3, input_shape=(64, 64, 3))
    zoo.save_model(model, tmp_path / "run.keras")
    loaded = zoo.load_keras_model(tmp_path / "run.keras")
    zoo.save_weights(loaded, tmp_path / "w.h5")
    assert zoo.read_record(tmp_path / "w.h5")[1].builder_kwargs["stacks"] == 1
    again = zoo.get("hourglass", weights=tmp_path / "w.h5")
    x = np.random.default_rng(0).random((1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
