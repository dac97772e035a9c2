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


def test_backend_optimizer_modules_are_named_by_their_public_class():
    """Keras on PyTorch saves TorchRMSprop's module (keras.src.backend.torch.optimizers.torch_rmsprop), which only
    imports where torch is installed; a LossScaleOptimizer nests it."""
    from zoo.saving import _backend_free

    inner = {"module": "keras.src.backend.torch.optimizers.torch_rmsprop", "class_name": "RMSprop",
             "config": {"rho": 0.9}, "registered_name": "RMSprop"}
    config = {"compile_config": {"optimizer": {"module": "keras.optimizers", "class_name": "LossScaleOptimizer",
                                               "config": {"inner_optimizer": inner}},
                                 "loss": {"module": "training.losses", "class_name": "HeatmapMSE"}},
              "config": {"layers": [{"module": "keras.layers", "class_name": "Dense"}]}}
    out, found = _backend_free(config)
    assert found and out["compile_config"]["optimizer"]["config"]["inner_optimizer"] == {**inner,
                                                                                         "module": "keras.optimizers"}
    assert out["compile_config"]["loss"] == config["compile_config"]["loss"] and out["config"] == config["config"]
    assert _backend_free(out) == (out, False)


def test_a_trained_models_keras_file_loads_compiled_where_torch_is_not_installed(tmp_path):
    """Saved on this suite's backend (on PyTorch: TorchRMSprop), loaded compiled on JAX with torch made unimportable:
    `Could not deserialize class 'RMSprop'` for a PyTorch run's checkpoint before."""
    import subprocess
    import sys

    from tests.test_cli import ENV

    import json

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    spe = 1 if keras.backend.backend() == "torch" else 2  # PyTorch takes only 1
    model.compile(keras.optimizers.RMSprop(1e-3), "mse", steps_per_execution=spe)
    model.fit(np.ones((8, 4), "float32"), np.zeros((8, 2), "float32"), verbose=0, batch_size=4)
    zoo.save_model(model, tmp_path / "m.keras")
    # the saving backend's run settings are left to the loading one: a JAX run's steps_per_execution=2 made the file
    # refuse every call on PyTorch; jit_compile=True asked PyTorch for torch.compile
    compiled = json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))["compile_config"]
    assert (compiled["steps_per_execution"], compiled["jit_compile"]) == (1, "auto"), compiled
    code = ("import sys; sys.modules['torch'] = None\n"
            "import keras\n"
            f"m = keras.saving.load_model({str(tmp_path / 'm.keras')!r}, safe_mode=True)\n"
            "print(type(m.optimizer).__name__, int(m.optimizer.iterations))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["RMSprop", "2"], r.stderr[-2000:]
