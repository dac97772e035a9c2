"""Registry, weights records and the name-keyed weights format."""

import json
import warnings

import h5py
import keras
import numpy as np
import pytest

import zoo
from zoo import registry
from zoo.errors import WeightsFileError, WeightsMismatchError

# Tests of names, tags, records and argument checks build no model (nothing a Keras backend computes) and run in
# ./dev test's TensorFlow pass alone; those that build, save or load a model are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic


def _tiny(*, weights=None, input_shape=None, classes=5, width=4, name="tiny"):
    """A tiny conv net with a head that depends on ``classes``."""
    inputs = keras.Input(input_shape or (8, 8, 3), name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(classes, name="fc")(x)
    return keras.Model(inputs, out, name=name)


@pytest.fixture
def tiny_name():
    name = "test_tiny_net"
    registry.register(name, family="test", head_layers=("fc",), head_kwarg="classes")(_tiny)
    yield name
    registry._MODELS.pop(name, None)


def test_list_models_wildcards_and_sorting(tiny_name):
    names = zoo.list_models()
    assert names == sorted(names, key=registry._natural_key)
    assert tiny_name in names
    assert zoo.list_models("test_tiny*") == [tiny_name]
    assert zoo.list_models(["nothing*", "test_t?ny_net"]) == [tiny_name]
    assert zoo.list_models("no-such-*") == []


def test_natural_sort():
    assert sorted(["resnet101", "resnet18", "resnet50"], key=registry._natural_key) == [
        "resnet18", "resnet50", "resnet101"]


def test_duplicate_registration_is_refused(tiny_name):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(tiny_name)(_tiny)


def test_unknown_name_lists_close_matches(tiny_name):
    with pytest.raises(ValueError, match=r"Unknown model 'test_tiny_nte'.*Did you mean: test_tiny_net"):
        zoo.get("test_tiny_nte")
    # list_models ignores case, so the hint does too (no suggestion at all, before)
    with pytest.raises(ValueError, match=r"Unknown model 'TEST_TINY_NET'. Did you mean: test_tiny_net\?"):
        zoo.get("TEST_TINY_NET")


@pytest.mark.parametrize("bad", ["test_my.net", "test_my:net"])
def test_names_get_cannot_reach_are_refused(bad):
    # "arch.tag": such a name was listed by list_models but zoo.get said "Unknown model ... Did you mean: <it>"
    with pytest.raises(ValueError, match=r"cannot contain '\.' or ':'"):
        registry.register(bad)(_tiny)
    assert bad not in registry._MODELS


def test_a_weights_tag_is_registered_once(tiny_name):
    first, second = zoo.WeightsRecord(channel_order="BGR"), zoo.WeightsRecord(channel_order="RGB")
    zoo.register_weights(tiny_name, "demo", first)
    with pytest.raises(ValueError, match=f"{tiny_name} already has weights tagged 'demo'"):
        zoo.register_weights(tiny_name, "demo", second)  # silently replaced the first, before
    assert zoo.get_spec(tiny_name).weights["demo"] is first
    with pytest.raises(ValueError, match="non-empty string"):
        zoo.register_weights(tiny_name, "", second)


def test_unknown_kwarg_names_it_and_the_allowed_ones(tiny_name):
    with pytest.raises(TypeError, match=r"'stacks'.*Allowed arguments: input_shape, classes, width, name"):
        zoo.get(tiny_name, stacks=3)


@agnostic
def test_the_builders_name_argument_names_the_model(tiny_name, tmp_path):
    # listed as allowed above, but zoo.get's own first parameter took it: "get() got multiple values for argument
    # 'name'"
    model = zoo.get(tiny_name, name="mine", classes=3)
    assert model.name == "mine"
    zoo.save_weights(model, tmp_path / "mine.h5")
    assert zoo.get(tiny_name, weights=tmp_path / "mine.h5").name == "mine"  # the record rebuilds it
    assert zoo.get(tiny_name, weights=tmp_path / "mine.h5", name="other").name == "other"


def test_info_has_builder_defaults_and_weights(tiny_name):
    rec = zoo.WeightsRecord(num_classes=5, class_names=tuple("abcde"), channel_order="BGR")
    zoo.register_weights(tiny_name, "demo", rec)
    info = zoo.info(tiny_name)
    assert info["defaults"]["classes"] == 5
    assert info["builder"].endswith("_tiny")
    assert info["weights"]["demo"]["channel_order"] == "BGR"
    assert zoo.list_models("test_tiny*", pretrained=True) == [f"{tiny_name}.demo"]


def _save(tmp_path, name, **kwargs):
    model = zoo.get(name, **kwargs)
    rec = zoo.WeightsRecord(num_classes=kwargs.get("classes", 5), builder_kwargs=kwargs, mean=(1.0, 2.0, 3.0))
    path = zoo.save_weights(model, tmp_path / "w.h5", rec)
    return model, path


@agnostic
def test_save_load_roundtrip_by_name(tmp_path, tiny_name, rng):
    model, path = _save(tmp_path, tiny_name, classes=5, width=4)
    with h5py.File(path) as f:
        assert f.attrs["format"] == "kerazoo-weights"
        assert set(f["layers"]) == {"conv1", "bn1", "fc"}
    again = zoo.get(tiny_name, weights=str(path))
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
    # metadata travels with the weights
    assert zoo.weights_record(again).mean == (1.0, 2.0, 3.0)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file


@agnostic
def test_weights_set_the_config(tmp_path, tiny_name):
    _, path = _save(tmp_path, tiny_name, classes=5, width=6)
    model = zoo.get(tiny_name, weights=path)  # width=6 comes from the file's record
    assert model.get_layer("conv1").filters == 6


@agnostic
def test_head_mismatch_loads_all_but_head(tmp_path, tiny_name):
    model, path = _save(tmp_path, tiny_name, classes=5, width=4)
    with pytest.warns(UserWarning, match=r"classes=5 but classes=3.*everything but the head.*fc"):
        other = zoo.get(tiny_name, weights=path, classes=3)
    np.testing.assert_array_equal(other.get_layer("conv1").get_weights()[0], model.get_layer("conv1").get_weights()[0])
    assert other.get_layer("fc").get_weights()[0].shape == (4, 3)
    assert zoo.weights_record(other).num_classes == 3


@agnostic
def test_head_size_from_a_record_without_builder_arguments(tmp_path, tiny_name):
    # A record made by hand says num_classes=7 but has no builder_kwargs: the model was built with the
    # default 5 classes and refused ("fc: file [(4, 7), (7,)] vs model [(4, 5), (5,)]"), also with classes=3
    model = _tiny(classes=7)  # built outside zoo.get: save_weights knows no builder arguments
    path = zoo.save_weights(model, tmp_path / "w.h5", zoo.WeightsRecord(num_classes=7), model_name=tiny_name)
    assert zoo.read_record(path)[1].builder_kwargs == {}
    assert zoo.get(tiny_name, weights=path).get_layer("fc").units == 7
    with pytest.warns(UserWarning, match=r"classes=7 but classes=3.*fc"):
        other = zoo.get(tiny_name, weights=path, classes=3)
    np.testing.assert_array_equal(other.get_layer("conv1").get_weights()[0], model.get_layer("conv1").get_weights()[0])


@agnostic
def test_strict_loading_reports_every_layer(tmp_path, tiny_name):
    _, path = _save(tmp_path, tiny_name, classes=5, width=4)
    model = _tiny(width=8)  # conv1, bn1, fc shapes all differ
    with pytest.raises(WeightsMismatchError) as err:
        zoo.load_weights(model, path)
    msg = str(err.value)
    for layer in ("conv1", "bn1", "fc"):
        assert f"{layer}: file" in msg
    before = model.get_layer("conv1").get_weights()[0].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = zoo.load_weights(model, path, skip_mismatch=True)
    assert len(report.mismatched) == 3 and not report.loaded
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], before)


@agnostic
def test_a_mismatch_through_get_names_an_option_that_exists(tmp_path, tiny_name):
    _, path = _save(tmp_path, tiny_name, classes=5, width=4)
    with pytest.raises(WeightsMismatchError) as err:
        zoo.get(tiny_name, weights=path, width=8)
    # said "Pass skip_mismatch=True", which zoo.get refuses as an unexpected argument
    assert "Pass skip_mismatch" not in str(err.value)
    assert f"zoo.load_weights(model, '{path}', skip_mismatch=True)" in str(err.value)
    with pytest.raises(TypeError, match="unexpected argument"):
        zoo.get(tiny_name, weights=path, skip_mismatch=True)


@agnostic
def test_missing_and_unexpected_layers_are_named(tmp_path, tiny_name):
    _, path = _save(tmp_path, tiny_name)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.Conv2D(2, 1, name="extra")(x)
    model = keras.Model(inputs, x)
    with pytest.raises(WeightsMismatchError, match=r"(?s)missing from the file:.*extra.*the model does not have:.*bn1.*fc"):
        zoo.load_weights(model, path)


def test_missing_weights_file_names_the_path(tiny_name, tmp_path):
    missing = tmp_path / "nope" / "weights.h5"
    with pytest.raises(WeightsFileError, match=str(missing).replace("\\", "\\\\")):
        zoo.get(tiny_name, weights=str(missing))


def test_unknown_tag_lists_known_tags(tiny_name):
    with pytest.raises(ValueError, match="unknown weights tag 'imagenet'"):
        zoo.get(tiny_name, weights="imagenet")


@agnostic
def test_a_tag_in_the_name_is_a_tag_never_a_file(tmp_path, tiny_name, monkeypatch):
    zoo.register_weights(tiny_name, "demo", zoo.WeightsRecord())
    _, path = _save(tmp_path, tiny_name, classes=5, width=4)
    monkeypatch.chdir(tmp_path)
    # "arch.w.h5" loaded ./w.h5 from the working folder as if weights="w.h5" had been passed
    with pytest.raises(ValueError, match=rf"unknown weights tag 'w.h5' \(in '{tiny_name}.w.h5'\). Known tags: demo"):
        zoo.get(f"{tiny_name}.w.h5")
    assert zoo.get(f"{tiny_name}:demo", weights=path).get_layer("conv1").filters == 4  # weights= wins, as documented
    with pytest.raises(ValueError, match=rf"unknown weights tag 'nope' \(in '{tiny_name}.nope'\)"):
        zoo.preprocess(f"{tiny_name}.nope", np.zeros((2, 2, 3)))  # a bare KeyError: 'nope', before


@pytest.mark.parametrize("weights, error, match", [
    ("", ValueError, r"weights='' is neither a tag nor a file"),  # "weights path '.' is a directory", before
    (5, TypeError, r"weights must be None, a tag or a file path \(str or Path\), got int: 5"),
])
def test_weights_argument_of_the_wrong_kind_is_named(tiny_name, weights, error, match):
    with pytest.raises(error, match=match):
        zoo.get(tiny_name, weights=weights)


@agnostic
def test_corrupt_weights_file_names_the_path(tiny_name, tmp_path):
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 50)
    with pytest.raises(WeightsFileError, match="corrupt.h5"):
        zoo.get(tiny_name, weights=bad)
    _, good = _save(tmp_path, tiny_name)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsFileError, match="trunc.h5"):
        zoo.get(tiny_name, weights=trunc)


def test_foreign_hdf5_file_is_refused(tiny_name, tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(WeightsFileError, match="not a kerazoo weights file"):
        zoo.get(tiny_name, weights=p)


@agnostic
def test_keras_native_weights_files(tmp_path, tiny_name, rng):
    model = zoo.get(tiny_name)
    model.save_weights(tmp_path / "m.weights.h5")
    model.save(tmp_path / "m.keras")
    x = rng.normal(size=(1, 8, 8, 3)).astype("float32")
    for p in ("m.weights.h5", "m.keras"):
        again = zoo.get(tiny_name, weights=tmp_path / p)
        np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(WeightsMismatchError, match="m.weights.h5"):
            zoo.get(tiny_name, weights=tmp_path / "m.weights.h5", width=7)
    assert not [w for w in caught if "container" in str(w.message)]  # our error only, no Keras noise first


@agnostic
def test_a_keras_files_weights_are_read_from_a_copy_that_goes_afterwards(tmp_path, tiny_name, monkeypatch):
    # zoo.get extracts a .keras file's model.weights.h5 to a temporary folder (Keras read it through the zip archive:
    # 3-4x as long for PSPNet-50's 188 MB); the copy goes whether the weights load or are refused
    import tempfile

    model = zoo.get(tiny_name, width=6)
    model.save(tmp_path / "m.keras")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    again = zoo.get(tiny_name, weights=tmp_path / "m.keras", width=6)
    for got, want in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(WeightsMismatchError, match="m.keras"):
        zoo.get(tiny_name, weights=tmp_path / "m.keras", width=7)
    assert not list(scratch.iterdir())


@agnostic
def test_a_zoo_file_named_like_a_keras_file(tmp_path, tiny_name, rng):
    # zoo.save_weights(model, "x.weights.h5") went to Keras' loader: "41 objects could not be loaded"
    model = zoo.get(tiny_name, width=6)
    path = zoo.save_weights(model, tmp_path / "mine.weights.h5")
    again = zoo.get(tiny_name, weights=path)
    x = rng.normal(size=(1, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))


def test_a_model_name_that_is_not_a_string_is_refused():
    for bad in (3, None, ["hourglass"]):  # was "expected string or bytes-like object" from inside re
        with pytest.raises(TypeError, match=rf"A model name must be a string such as 'hourglass' or 'cpm:mpii' .*"
                                            rf"Received: {type(bad).__name__}"):
            zoo.get(bad)
    with pytest.raises(TypeError, match="A model name must be a string"):
        zoo.info(3)


def test_preprocess_applies_the_record():
    rec = zoo.WeightsRecord(channel_order="BGR", scale=1 / 256, mean=(0.5, 0.5, 0.5))
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0] = 255  # red
    out = zoo.preprocess(None, img, record=rec)
    np.testing.assert_allclose(out[0, 0], [-0.5, -0.5, 255 / 256 - 0.5])
    with pytest.raises(ValueError, match="3 channels"):
        zoo.preprocess(None, np.zeros((2, 2, 4)), record=rec)
    # 16-bit images (65535 = white, as predict reads them) were taken as 0-255: white came out 257x too bright
    wide = (img.astype(np.uint16) * 257)
    np.testing.assert_allclose(zoo.preprocess(None, wide, record=rec), out, atol=1e-6)
    np.testing.assert_allclose(zoo.preprocess(None, np.full((1, 1, 3), 65535, np.uint16), record=rec),
                               [[[255 / 256 - 0.5] * 3]], atol=1e-6)
    for bad in ({"scale": 1 / 256}, "mpii"):  # an AttributeError from inside before
        with pytest.raises(TypeError, match=r"preprocess: record must be a zoo.WeightsRecord or None .*"
                                            rf"Received: {type(bad).__name__}"):
            zoo.preprocess(None, img, record=bad)


@agnostic
def test_a_record_cannot_be_edited_through_a_model(tmp_path, tiny_name, monkeypatch):
    # zoo.get("arch.tag") attaches the registry's own record: editing weights_record(model).builder_kwargs
    # changed zoo.info and what the next conversion of the tag builds, for every caller.
    import copy
    import json
    import pickle

    monkeypatch.setenv("KERAZOO_HOME", str(tmp_path / "cache"))
    path = zoo.save_weights(zoo.get(tiny_name, width=4), tmp_path / "w.h5")
    zoo.register_weights(tiny_name, "demo", zoo.WeightsRecord(
        url=path.as_uri(), file_name="tiny.demo.h5", sha256=zoo.weights.sha256sum(path),
        builder_kwargs={"classes": 5, "width": 4}, metrics={"top1": 0.5}, class_names=list("abcde")))
    got = zoo.weights_record(zoo.get(f"{tiny_name}.demo"))
    edits = [lambda r: r.builder_kwargs.__setitem__("classes", 3), lambda r: r.builder_kwargs.update(width=8),
             lambda r: r.builder_kwargs.pop("width"), lambda r: r.metrics.clear(),
             lambda r: r.class_names.append("f")]
    for edit in edits:
        with pytest.raises((TypeError, AttributeError)):
            edit(got)
    assert zoo.get_spec(tiny_name).weights["demo"].builder_kwargs == {"classes": 5, "width": 4}
    assert zoo.get_spec(tiny_name).weights["demo"].class_names == tuple("abcde")
    shown = zoo.info(tiny_name)["weights"]["demo"]
    shown["builder_kwargs"]["classes"] = 3  # info's dicts are the caller's own copy
    assert zoo.info(tiny_name)["weights"]["demo"]["builder_kwargs"]["classes"] == 5
    for again in (copy.deepcopy(got), pickle.loads(pickle.dumps(got)), got.replace()):
        assert again == got and again.builder_kwargs == {"classes": 5, "width": 4}
    assert json.loads(got.to_json())["builder_kwargs"] == {"classes": 5, "width": 4}


@pytest.mark.parametrize("written", ["upper", "spaced"])
def test_sha256_as_other_tools_write_it(written):
    # Windows' Get-FileHash / certutil print upper case: such a pinned hash refused every download, before
    digest = "ab" * 32
    text = digest.upper() if written == "upper" else f" {digest}\n"
    assert zoo.WeightsRecord(sha256=text).sha256 == digest
    assert zoo.weights.SourceFile("a.caffemodel", sha256=text).sha256 == digest
    with pytest.raises(ValueError, match=r"sha256 of source file 'a.caffemodel' must be a SHA-256 digest.*'abc'"):
        zoo.weights.SourceFile("a.caffemodel", sha256="abc")
    with pytest.raises(ValueError, match=r"WeightsRecord.sha256 must be a SHA-256 digest"):
        zoo.WeightsRecord(sha256="d41d8cd98f00b204e9800998ecf8427e")  # an MD5


@agnostic
def test_heatmap_offset_travels_with_the_weights_file(tmp_path, tiny_name):
    model = _tiny()
    path = zoo.save_weights(model, tmp_path / "w.h5", zoo.WeightsRecord(num_classes=5, heatmap_offset=3.5),
                            model_name=tiny_name)
    assert zoo.read_record(path)[1].heatmap_offset == 3.5
    assert zoo.weights_record(zoo.get(tiny_name, weights=path)).heatmap_offset == 3.5
    # a file written before the field existed: its record has no heatmap_offset and reads as 0.0 (our convention)
    with h5py.File(path, "r+") as f:
        rec = json.loads(f.attrs["record"])
        del rec["heatmap_offset"]
        f.attrs["record"] = json.dumps(rec)
    assert zoo.read_record(path)[1].heatmap_offset == 0.0
    assert zoo.WeightsRecord().heatmap_offset == 0.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "3.5", True, None, (1.0,)])
def test_heatmap_offset_must_be_a_finite_number(bad):
    with pytest.raises(ValueError, match=r"WeightsRecord.heatmap_offset must be a finite number.*got"):
        zoo.WeightsRecord(heatmap_offset=bad)
    with pytest.raises(ValueError, match=r"heatmap_offset"):
        zoo.WeightsRecord().replace(heatmap_offset=bad)
    assert zoo.WeightsRecord(heatmap_offset=np.float32(1.5)).heatmap_offset == 1.5
    assert type(zoo.WeightsRecord(heatmap_offset=2).heatmap_offset) is float


def test_released_heatmap_offsets():
    # hand-derived from the releases' own target code (see zoo/releases.py): CPM's putGaussianMaps puts heatmap
    # pixel g at stride/2 - 0.5 + g * stride = 8g + 3.5 input px; pose-hg-train's transform():int() truncates
    # the target to the pixel below, and its crop puts crop px j at j + 0.5 in transform's frame, so pixel g
    # covers crop px 4g..4g+3, centre 4g + 1.5 (the same block-centre rule as CPM's (8 - 1) / 2 = 3.5)
    for tag in ("mpii", "lsp", "flic"):
        assert zoo.get_spec("cpm").weights[tag].heatmap_offset == 3.5
    assert zoo.get_spec("hourglass").weights["mpii"].heatmap_offset == 1.5
    for name in ("resnet50", "fcn8s", "pspnet50"):
        assert all(r.heatmap_offset == 0.0 for r in zoo.get_spec(name).weights.values())


def test_released_heatmap_sigmas():
    # the Gaussians the releases were trained on, heatmap px (see zoo/releases.py): CPM's genProto.py leaves
    # cpm_transform_param's sigma at caffe_train's proto default, 7 input px, at stride 8; pose-hg-train draws a
    # 7x7 torch image.gaussian, whose sigma is a quarter of its size
    for tag in ("mpii", "lsp", "flic"):
        assert zoo.get_spec("cpm").weights[tag].heatmap_sigma == 0.875
    assert zoo.get_spec("hourglass").weights["mpii"].heatmap_sigma == 1.75
    for name in ("resnet50", "fcn8s", "pspnet50"):
        assert all(r.heatmap_sigma is None for r in zoo.get_spec(name).weights.values())
    # an original file given by path carries no record: the family's releases' conventions, sigma included
    from zoo.api import _release_conventions

    assert _release_conventions(zoo.get_spec("cpm"), "caffe").heatmap_sigma == 0.875
    assert _release_conventions(zoo.get_spec("hourglass"), "torch7").heatmap_sigma == 1.75


@pytest.mark.backend_agnostic
def test_numpy_scalars_are_taken_as_pythons(tmp_path):
    # classes=np.int64(5) was refused ("`classes` must be a positive int"), while input_shape took NumPy ints
    import numpy as np

    model = zoo.get("resnet18", classes=np.int64(5), input_shape=(np.int32(32), 32, 3))
    assert model.output_shape == (None, 5) and model._zoo_kwargs["classes"] == 5
    assert type(model._zoo_kwargs["classes"]) is int and type(model._zoo_kwargs["input_shape"][0]) is int
    zoo.save_weights(model, tmp_path / "r.h5")
    assert zoo.get("resnet18", weights=str(tmp_path / "r.h5")).output_shape == (None, 5)
    hg = zoo.get("hourglass", stacks=np.int64(1), features=16, num_keypoints=np.uint8(3), input_shape=(64, 64, 3))
    assert hg.output_shape == (None, 16, 16, 3)


def test_registry_names_tags_and_patterns_are_checked(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    with pytest.raises(ValueError, match=r"cpm: unknown weights tag 'nonsense' \(in 'cpm:nonsense'\). Known tags: mpii"):
        zoo.info("cpm:nonsense")  # the tag was ignored (the command line checked it)
    assert list(zoo.info("cpm:lsp")["weights"]) == list(zoo.info("cpm")["weights"])

    def my_net(*, input_shape=None):
        return None

    zoo.register("my_net")(my_net)
    with pytest.raises(ValueError, match=r"already registered under the name 'My_Net' \('my_net': names differing "
                                         r"only in case"):
        zoo.register("My_Net")(my_net)  # list_models("my_net") listed both
    for bad in ("", "  ", 5):  # '' fell back to the function's name ('already registered'); 5: "cannot contain '.'"
        with pytest.raises(ValueError, match=r"A model name is a non-empty string \(or None: the function's name\)"):
            zoo.register(bad)
    with pytest.raises(TypeError, match=r"list_models: pattern must be a string such as 'resnet\*' or a list"):
        zoo.list_models(None)
    assert zoo.list_models(("RESNET18", "my_*")) == ["my_net", "resnet18"]
