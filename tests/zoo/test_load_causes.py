"""zoo.get(name, weights=FILE) of a file that does not fit says the cause to act on before (or instead of) the
list of layers that differ: another registered model's .keras, a copy zoo.optimize_for_inference made, and not
"include_top=False" for a file of some other network."""

import keras
import numpy as np
import pytest

import zoo
from zoo.errors import WeightsMismatchError
from zoo.saving import save_model

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.tf_pass_only
def test_a_copy_optimised_for_inference_is_named_with_how_to_load_it(tmp_path):
    model = zoo.get("hourglass", stacks=1, features=16, num_keypoints=2, input_shape=(64, 64, 3))
    fast = zoo.optimize_for_inference(model, min_channels=1, min_size=1)
    zoo.save_weights(fast, tmp_path / "fast.h5")
    save_model(fast, tmp_path / "fast.keras")
    # the .h5 listed 17 layers' shapes ((36, 64, 64) vs (3, 3, 64, 64)); the .keras gave Keras' "A total of 47
    # objects could not be loaded"
    with pytest.raises(WeightsMismatchError, match=r"hourglass: '.*fast.h5' was saved from a copy optimised for "
                                                   r"inference \(zoo.optimize_for_inference: \d+ Conv2D layers as "
                                                   r"WinogradConv2D, .*\), whose .*; save the model before optimising it"):
        zoo.get("hourglass", weights=str(tmp_path / "fast.h5"))
    # the remedy it gives works
    again = zoo.optimize_for_inference(zoo.get("hourglass", stacks=1, features=16, num_keypoints=2,
                                               input_shape=(64, 64, 3)), min_channels=1, min_size=1)
    zoo.load_weights(again, tmp_path / "fast.h5")
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), keras.ops.convert_to_numpy(fast(x)), atol=1e-6)
    with pytest.raises(WeightsMismatchError, match=r"'.*fast.keras' was saved from a copy optimised .* "
                                                   r"zoo.load_keras_model\('.*fast.keras'\) loads it whole"):
        zoo.get("hourglass", weights=str(tmp_path / "fast.keras"))
    assert zoo.load_keras_model(tmp_path / "fast.keras").count_params() == fast.count_params()


def test_another_registered_models_keras_file_is_named(tmp_path):
    save_model(zoo.get("resnet18", input_shape=(32, 32, 3), classes=5), tmp_path / "r18.keras")
    with pytest.raises(WeightsMismatchError, match=r"resnet34: '.*r18.keras' holds weights of 'resnet18' \(its "
                                                   r"kerazoo.json\); zoo.get\('resnet18', weights=...\)"):
        zoo.get("resnet34", weights=str(tmp_path / "r18.keras"))


def test_some_other_networks_file_is_not_called_a_backbone(tmp_path):
    i = keras.Input((4,))
    zoo.save_weights(keras.Model(i, keras.layers.Dense(3, name="d")(i), name="plain"), tmp_path / "plain.h5")
    with pytest.raises(WeightsMismatchError) as e:
        zoo.get("resnet18", weights=str(tmp_path / "plain.h5"))
    assert "include_top=False" not in str(e.value)  # it said the file was saved with include_top=False
    assert "41 layers of the model missing from the file" in str(e.value)
    # a real backbone still gets that one line
    zoo.save_weights(zoo.get("resnet18", input_shape=(32, 32, 3), include_top=False), tmp_path / "backbone.h5")
    with pytest.raises(WeightsMismatchError, match=r"has no classifier head \(no fc1000\): it was saved from a "
                                                   r"model built with include_top=False"):
        zoo.get("resnet18", weights=str(tmp_path / "backbone.h5"), include_top=True)


def test_a_keras_file_with_another_head_size_says_so(tmp_path):
    model = zoo.get("resnet18", input_shape=(32, 32, 3), classes=5)
    model.save(tmp_path / "r5.keras")  # Keras' own save: no kerazoo.json to rebuild the head from
    # was Keras' "A total of 1 objects could not be loaded ... variable.shape=(512, 1000), Received: (512, 5)"
    with pytest.raises(WeightsMismatchError, match=r"resnet18: '.*r5.keras' was saved with another head: its fc1000 "
                                                   r"has 5 outputs, this model's 1000; pass the classes= the model"):
        zoo.get("resnet18", weights=str(tmp_path / "r5.keras"))
    assert zoo.get("resnet18", weights=str(tmp_path / "r5.keras"), classes=5).output_shape == (None, 5)


@pytest.mark.jax_pass_only
def test_a_keras_file_fine_tuned_on_another_head_size_loads_all_but_the_head(tmp_path):
    """A run's best.keras (16 keypoints) asked for with num_keypoints=5: it was refused, telling to pass the size
    the file was saved with, the opposite of fine-tuning; a zoo .h5 of another head size loaded all but the head."""
    import warnings

    import numpy as np

    src = zoo.get("hourglass", stacks=1, features=16, num_keypoints=16, input_shape=(64, 64, 3))
    record = zoo.WeightsRecord(keypoint_names=tuple(f"j{i}" for i in range(16)), scale=1 / 255.0)
    zoo.save_model(src, tmp_path / "best.keras", metadata={**zoo.saving.model_metadata(src), "record": record})
    with pytest.warns(UserWarning, match=r"hourglass: weights '.*best.keras' have num_keypoints=16 but "
                                         r"num_keypoints=5 was asked for; loading everything but the head layers "
                                         r"\(stack1_heatmaps\)") as said:
        model = zoo.get("hourglass", num_keypoints=5, weights=tmp_path / "best.keras")
    assert [w.filename for w in said if "was asked for" in str(w.message)] == [__file__]  # the caller's line
    assert model.output_shape[-1] == 5 and zoo.api.build_info(model)[1]["stacks"] == 1  # the file's architecture
    given = {l.name: l for l in src.layers}
    for layer in model.layers:
        if layer.weights and layer.name != "stack1_heatmaps":
            for a, b in zip(layer.get_weights(), given[layer.name].get_weights()):
                np.testing.assert_array_equal(a, b)
    rec = zoo.weights_record(model)
    assert rec.num_keypoints == 5 and rec.keypoint_names is None  # the 16 names were the old head's
    assert rec.scale == pytest.approx(1 / 255.0)
    with warnings.catch_warnings():  # the same size: loaded as it is, nothing said
        warnings.simplefilter("error")
        zoo.get("hourglass", num_keypoints=16, weights=tmp_path / "best.keras")
    # another architecture outside the head is still refused, naming layers
    other = zoo.get("hourglass", stacks=1, features=32, num_keypoints=16, input_shape=(64, 64, 3))
    other.save(tmp_path / "plain.keras")  # Keras' own save: no metadata to take the features from
    with pytest.raises(WeightsMismatchError, match=r"holds another architecture than num_keypoints=5 .* layers "
                                                   r"outside the head are missing from it or have other shapes"):
        zoo.get("hourglass", stacks=1, features=16, num_keypoints=5, weights=tmp_path / "plain.keras")


def test_a_weights_h5_of_another_head_size_says_how_to_fine_tune_it(tmp_path):
    model = zoo.get("resnet18", input_shape=(32, 32, 3), classes=5)
    model.save_weights(tmp_path / "r5.weights.h5")
    with pytest.raises(WeightsMismatchError) as e:
        zoo.get("resnet18", input_shape=(32, 32, 3), classes=7, weights=tmp_path / "r5.weights.h5")
    said = str(e.value)
    assert "\n" not in said and len(said) < 900, said  # Keras' words dumped the tensor's values
    assert said.startswith(f"resnet18: could not load '{tmp_path / 'r5.weights.h5'}' into a model built with "
                           f"classes=7 ("), said
    assert said.endswith("A .weights.h5 holds no layer names to leave its head out by: to fine-tune it on another "
                         "classes, load it into the model it was saved from, write that with zoo.save_model(model, "
                         "'x.keras') or zoo.save_weights(model, 'x.h5'), and pass that file with classes=7."), said
    # another backbone with the same head size is not a head problem: Keras' own words, shapes and all
    zoo.get("resnet34", input_shape=(32, 32, 3), classes=7).save_weights(tmp_path / "r34.weights.h5")
    with pytest.raises(WeightsMismatchError) as e:
        zoo.get("resnet18", input_shape=(32, 32, 3), classes=7, weights=tmp_path / "r34.weights.h5")
    assert "fine-tune" not in str(e.value) and "could not load Keras weights from" in str(e.value), str(e.value)
