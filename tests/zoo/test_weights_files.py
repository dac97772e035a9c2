"""Edited or foreign zoo weights files and hash records: one clear error naming the file, never a
traceback from deep inside (found by an adversarial review)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

import zoo
from tests.training.helpers import ROOT
from zoo import pretrained

# The hash-record tests read JSON (in-process and in `kerazoo list`; nothing a Keras backend computes) and run in
# ./dev test's TensorFlow pass alone; those that build, save or load a model are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic


@pytest.fixture(scope="module")
def _saved_once(tmp_path_factory):
    path = tmp_path_factory.mktemp("r18") / "r18.h5"
    zoo.save_weights(zoo.get("resnet18", input_shape=(32, 32, 3)), path)
    return path


@pytest.fixture
def saved(_saved_once, tmp_path):
    """A zoo.save_weights file of a 32 px ResNet-18, this test's own copy to edit (the model is built once)."""
    return Path(shutil.copyfile(_saved_once, tmp_path / "r18.h5"))


@agnostic
@pytest.mark.parametrize("record, match", [("[]", "a record is a JSON object, found list"),
                                           ('{"builder_kwargs": [1]}', "'builder_kwargs' must be a JSON object")])
def test_edited_record_is_named(saved, record, match):
    with h5py.File(saved, "r+") as f:
        f.attrs["record"] = record
    with pytest.raises(zoo.WeightsFileError, match=f"metadata record is corrupt: {match}"):
        zoo.get("resnet18", weights=saved)


@agnostic
@pytest.mark.parametrize("kind", ["complex", "text", "dataset_for_group"])
def test_edited_arrays_are_named(saved, kind):
    with h5py.File(saved, "r+") as f:
        g = f["layers"]["conv1"]
        if kind == "complex":
            value = g["0"][()] + 2j
            del g["0"]
            g["0"] = value.astype(np.complex64)  # loaded silently, imaginary part dropped, before
        elif kind == "text":
            del g["0"]
            g["0"] = np.array([b"x"] * 3)
        else:
            del f["layers"]["conv1"]
            f["layers"]["conv1"] = np.zeros(3)
    with pytest.raises(zoo.WeightsFileError, match=r"r18.h5': layer 'conv1' (holds complex64|is corrupt|holds \|S1)"):
        zoo.get("resnet18", weights=saved)


@agnostic
@pytest.mark.tf_pass_only
def test_a_batchnorm_epsilon_other_than_the_builders_survives_save_and_load(tmp_path, rng):
    # caffe.port sets each BatchNormalization's epsilon to its Caffe layer's (PSPNet's earlier var_eps 1e-10, a
    # prototxt's batch_norm_param eps): zoo.get(weights=) rebuilt the builder's 1e-5, the outputs moved without a word
    model = zoo.get("resnet18", input_shape=(32, 32, 3))
    bn = model.get_layer("bn_conv1")
    bn.moving_variance.assign(rng.uniform(1e-4, 1e-3, bn.moving_variance.shape).astype("float32"))
    bn.epsilon = 1e-3
    x = rng.normal(size=(1, 32, 32, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(model(x))
    path = zoo.save_weights(model, tmp_path / "eps.h5")
    again = zoo.get("resnet18", weights=path)
    assert again.get_layer("bn_conv1").epsilon == 1e-3 and again.get_layer("bn2a_branch2a").epsilon == 1e-5
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    with h5py.File(path, "r+") as f:  # a file written before epsilons were stored: the builder's
        del f["layers"]["bn_conv1"].attrs["epsilon"]
    assert zoo.get("resnet18", weights=path).get_layer("bn_conv1").epsilon == 1e-5
    for bad in (0.0, float("nan"), "x"):
        with h5py.File(path, "r+") as f:
            f["layers"]["bn_conv1"].attrs["epsilon"] = bad
        with pytest.raises(zoo.WeightsFileError, match=r"eps.h5': layer 'bn_conv1' has epsilon .*; expected a finite "
                                                       r"number > 0"):
            zoo.get("resnet18", weights=path)


@agnostic
def test_a_keras_archive_or_a_folder_given_to_load_weights_is_named_as_such(saved, tmp_path):
    # a training run's best.keras (a zip) was "not a readable HDF5 file (truncated or corrupt?)" with h5py's
    # "file signature not found"; a folder gave h5py's errno-21 dump
    model = zoo.get("resnet18", input_shape=(32, 32, 3))
    model.save(tmp_path / "best.keras")
    with pytest.raises(zoo.WeightsFileError, match=r"best.keras' is a .keras archive \(a whole Keras model\), not a "
                                                   r"kerazoo weights file: load it with zoo.get\(NAME, weights="):
        zoo.load_weights(model, tmp_path / "best.keras")
    with pytest.raises(zoo.WeightsFileError, match=r"is a directory, expected a zoo weights file \(.h5\)\.$"):
        zoo.load_weights(model, tmp_path)
    (tmp_path / "cut.h5").write_bytes(saved.read_bytes()[:5000])  # still the HDF5 message
    with pytest.raises(zoo.WeightsFileError, match=r"cut.h5' is not a readable HDF5 file \(truncated or corrupt\?\)"):
        zoo.load_weights(model, tmp_path / "cut.h5")


@agnostic
def test_another_models_file_says_whose_it_is_first(saved):
    # resnet18's stored input_shape (32x32) is too small for an hourglass: the hint used to be lost
    with pytest.raises(zoo.WeightsMismatchError, match=r"hourglass: '.*r18.h5' holds weights of 'resnet18'"):
        zoo.get("hourglass", weights=saved)


# One child process runs `python -m zoo list --pretrained` once per home (each start loads Keras, ~6 s: one
# process per case was three); runpy.run_module is how `python -m` runs zoo/__main__.py.
_LIST_IN_EACH_HOME = """
import os, runpy, sys
for home in sys.argv[1:]:
    os.environ["KERAZOO_HOME"] = home
    sys.argv = ["zoo", "list", "--pretrained"]
    try:
        runpy.run_module("zoo", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        print(f"<exit {e.code}>", file=sys.stderr, flush=True)
"""


_FOREIGN_RECORDS = ["[]", '{"k": "abc"}', "{not json"]


@pytest.fixture(scope="module")
def foreign_homes_listed(tmp_path_factory):
    """{content: (KERAZOO_HOME holding it as sources/sha256.json, what `kerazoo list --pretrained` wrote there)}."""
    homes = []
    for content in _FOREIGN_RECORDS:
        home = tmp_path_factory.mktemp("home")
        (home / "sources").mkdir()
        (home / "sources" / "sha256.json").write_text(content)
        homes.append(str(home))
    res = subprocess.run([sys.executable, "-c", _LIST_IN_EACH_HOME, *homes], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT),
                                                      "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    runs = res.stderr.split("<exit ")
    assert len(runs) == 4 and all(r.startswith("2>") for r in runs[1:]), res.stderr[-2000:]
    return dict(zip(_FOREIGN_RECORDS, zip(homes, runs[:-1])))


@pytest.mark.parametrize("content", _FOREIGN_RECORDS)
def test_foreign_hash_records_are_named_in_api_and_cli(foreign_homes_listed, monkeypatch, content):
    home, listed = foreign_homes_listed[content]
    monkeypatch.setenv("KERAZOO_HOME", home)
    with pytest.raises(zoo.WeightsFileError, match="sha256.json' are (unreadable|not kerazoo's).*delete the file"):
        pretrained.recorded_sha256("x")
    # exit status 2 and the CLI's one-line error for this home's file (not a record cached from another home)
    assert "kerazoo list: error: Recorded hashes" in listed and home in listed, listed[-2000:]


# --- released weights into a model built without the head, or with a training-only head ------------------------

def _tiny(*, weights=None, input_shape=None, classes=5, include_top=True, aux=False, name="tiny"):
    """TINY's Keras twin (tests/zoo/test_pretrained.py), with keras.applications' include_top and an aux head."""
    import keras

    x = inp = keras.Input(input_shape or (9, 9, 3), name="data")
    x = keras.layers.Conv2D(4, 3, name="conv1")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, name="bn1")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    outs = [keras.layers.Dense(classes, name="fc")(x)] if include_top else [x]
    if aux:
        outs.append(keras.layers.Dense(classes, name="aux_fc")(x))
    return keras.Model(inp, outs if len(outs) > 1 else outs[0], name=name)


@pytest.fixture
def tiny_spec(monkeypatch):
    from zoo import registry

    spec = registry.ModelSpec("tiny_top", _tiny, "tiny", ("fc", "aux_fc"), "classes", optional_layers=("aux_*",))
    monkeypatch.setitem(registry._MODELS, "tiny_top", spec)
    return spec


@agnostic
@pytest.mark.parametrize("source", ["zoo_h5", "caffemodel"])
def test_release_into_a_model_without_its_head_or_with_an_aux_head(tmp_path, rng, tiny_spec, source):
    # keras.applications' feature-extractor use (include_top=False) and PSPNet's aux=True fine-tuning
    # both failed: the file's classifier had no place, the aux head no weights.
    from tests.caffe_files import random_blobs_for, write_net
    from tests.zoo.test_pretrained import TINY

    proto = TINY % 5
    blobs = random_blobs_for(proto, rng)
    if source == "caffemodel":
        path = write_net(tmp_path, proto, blobs, name="tiny")[1]
    else:
        from converters.caffe import load
        from converters.caffe.port import port

        full = _tiny()
        port(load(*write_net(tmp_path, proto, blobs, name="tiny")), full)
        path = tmp_path / "tiny.h5"
        zoo.save_weights(full, path, model_name="tiny_top")
    kernel = blobs["conv1"][0].transpose(2, 3, 1, 0)
    notop = zoo.get("tiny_top", weights=path, include_top=False)
    assert "fc" not in [l.name for l in notop.layers]
    np.testing.assert_allclose(notop.get_layer("conv1").get_weights()[0], kernel)
    if source == "zoo_h5":
        with pytest.warns(UserWarning, match="has no weights for aux_fc .*keep their initial values"):
            withaux = zoo.get("tiny_top", weights=path, aux=True)
    else:
        withaux = zoo.get("tiny_top", weights=path, aux=True)
    np.testing.assert_allclose(withaux.get_layer("fc").get_weights()[0].T, blobs["fc"][0].reshape(5, -1))
    if source == "zoo_h5":  # without the registry's say-so, a missing layer still fails
        with pytest.raises(zoo.WeightsMismatchError, match="aux_fc"):
            zoo.weights.load_weights(_tiny(aux=True), path)


@agnostic
def test_resnet_without_top_loads_its_backbone(saved):
    model = zoo.get("resnet18", weights=saved, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    assert model.output.shape[-1] == 512 and "fc1000" not in [l.name for l in model.layers]


@agnostic
def test_two_nested_layers_of_one_name_are_refused(tmp_path):
    # Two copies of one backbone in a model: saving failed inside h5py ("name already exists"), and
    # loading filled one of the two 'fc' layers and left the other at its initial values, silently.
    import keras

    def branch(name):
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, name="fc")], name=name)

    x = keras.Input((3,))
    twins = keras.Model(x, branch("b")(branch("a")(x)))
    with pytest.raises(ValueError, match=r"more than one layer named 'fc'.*unique names"):
        zoo.save_weights(twins, tmp_path / "twins.h5")
    assert not list(tmp_path.iterdir())
    single = keras.Model(x, keras.layers.Dense(3, name="fc")(x))
    zoo.save_weights(single, tmp_path / "single.h5")
    with pytest.raises(ValueError, match=r"more than one layer named 'fc'"):
        zoo.load_weights(twins, tmp_path / "single.h5", skip_mismatch=True)


# --- builder arguments that contradict the weights: one error naming the argument, both values and the file --------

@pytest.fixture(scope="module")
def cpm2(tmp_path_factory):
    """A 2-stage, 3-keypoint CPM at 64 px saved by zoo.save_weights (its record holds stages=2, num_keypoints=3)."""
    path = tmp_path_factory.mktemp("cpm") / "cpm2.h5"
    zoo.save_weights(zoo.get("cpm", stages=2, num_keypoints=3, input_shape=(64, 64, 3)), path)
    return path


@pytest.fixture(scope="module")
def hg1(tmp_path_factory):
    """A 1-stack, 16-feature, 4-keypoint hourglass (modules and post_residuals left at the builder's defaults)."""
    path = tmp_path_factory.mktemp("hg") / "hg1.h5"
    zoo.save_weights(zoo.get("hourglass", stacks=1, features=16, num_keypoints=4, input_shape=(64, 64, 3)), path)
    return path


def _one_line(e):
    msg = str(e.value)
    assert "\n" not in msg and "Mconv" not in msg and "stack1_" not in msg and "stem_" not in msg, msg  # no layer list
    return msg


@agnostic
def test_zoo_h5_with_a_contradicting_stage_or_stack_count_is_one_error(cpm2, hg1):
    # was: 'does not fit model ...' and a list of the 6 (CPM) / 89 (hourglass) layers missing from the file
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("cpm", weights=cpm2, stages=3)
    assert _one_line(e) == (f"cpm: '{cpm2}' (its weights record) holds stages=2, but stages=3 was asked for; leave out "
                            f"stages (the weights give it) or pass stages=2.")
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("hourglass", weights=hg1, stacks=2, features=32)
    assert _one_line(e) == (f"hourglass: '{hg1}' (its weights record) holds stacks=1, features=16, but stacks=2, "
                            f"features=32 was asked for; leave out stacks, features (the weights give them) or pass "
                            f"stacks=1, features=16.")
    # what fits still loads: the file's own stages, another input size (fully convolutional: the weights fit any
    # size) and another head size (all but the head, with a warning)
    kernel = zoo.get("cpm", weights=cpm2).get_layer("Mconv3_stage2").get_weights()[0]
    same = zoo.get("cpm", weights=cpm2, stages=2)
    larger = zoo.get("cpm", weights=cpm2, input_shape=(96, 96, 3))
    assert larger.outputs[-1].shape[1:] == (12, 12, 4)  # 96 / 8, 3 keypoints + background
    with pytest.warns(UserWarning, match="num_keypoints=3 but num_keypoints=5 was asked for; loading everything but"):
        head5 = zoo.get("cpm", weights=cpm2, num_keypoints=5)
    for model in (same, larger, head5):
        np.testing.assert_array_equal(model.get_layer("Mconv3_stage2").get_weights()[0], kernel)


@agnostic
@pytest.mark.tf_pass_only
def test_zoo_h5_with_a_contradicting_stride_placement_is_one_error(tmp_path, rng):
    # stride_in_3x3 changes no weight shape: a file saved from the default ResNet-50 (stride 2 on the 1x1 branch2a, as
    # Kaiming's release) loaded into stride_in_3x3=True without a word, as another network; the record holds it now
    v1 = zoo.save_weights(zoo.get("resnet50", input_shape=(64, 64, 3)), tmp_path / "v1.h5")
    assert zoo.read_record(v1)[1].builder_kwargs["stride_in_3x3"] is False
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("resnet50", weights=v1, stride_in_3x3=True)
    assert _one_line(e) == (f"resnet50: '{v1}' (its weights record) holds stride_in_3x3=False, but stride_in_3x3=True "
                            f"was asked for; leave out stride_in_3x3 (the weights give it) or pass "
                            f"stride_in_3x3=False.")
    v15_model = zoo.get("resnet50", input_shape=(64, 64, 3), stride_in_3x3=True, classifier_activation=None)
    v15 = zoo.save_weights(v15_model, tmp_path / "v15.h5")
    with pytest.raises(zoo.WeightsMismatchError, match=r"holds stride_in_3x3=True, but stride_in_3x3=False was asked"):
        zoo.get("resnet50", weights=v15, stride_in_3x3=False)
    x = rng.normal(size=(1, 64, 64, 3)).astype("float32")  # without the argument: the network that was saved
    np.testing.assert_allclose(keras.ops.convert_to_numpy(zoo.get("resnet50", weights=v15)(x)),
                               keras.ops.convert_to_numpy(v15_model(x)), rtol=1e-5, atol=1e-5)
    # ResNet-18's basic blocks have no 1x1 to stride: the argument changes nothing, so no file fixes it
    r18 = zoo.save_weights(zoo.get("resnet18", input_shape=(32, 32, 3)), tmp_path / "r18.h5")
    assert "stride_in_3x3" not in zoo.read_record(r18)[1].builder_kwargs
    zoo.get("resnet18", weights=r18, stride_in_3x3=True)
    # None is "not given" as for ResNet-50 (an unset option forwarded): was the builder's "must be True or False"
    assert zoo.get("resnet18", weights=r18, stride_in_3x3=None).get_layer("res3a_branch2a").strides == (2, 2)


@agnostic
@pytest.mark.tf_pass_only
def test_keras_files_give_or_need_the_stride_placement(tmp_path, rng):
    # Keras loads by structure and stride_in_3x3 changes no weight shape: a v1.5 model's .keras or .weights.h5 loaded
    # into zoo.get's default (stride on the 1x1 branch2a) without a word, as another network. A .keras file's config
    # says where the strides are (and builds it); a .weights.h5 says nothing, so the caller must.
    import zipfile

    args = {"input_shape": (32, 32, 3), "classes": 3, "classifier_activation": None}
    v15 = zoo.get("resnet50", stride_in_3x3=True, **args)
    v15.save(tmp_path / "v15.keras")
    v15.save_weights(tmp_path / "v15.weights.h5")
    x = rng.normal(size=(1, 32, 32, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(v15(x))

    def same(model):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())

    model = zoo.get("resnet50", weights=tmp_path / "v15.keras", **args)
    assert (model.get_layer("res4a_branch2a").strides, model.get_layer("res4a_branch2b").strides) == ((1, 1), (2, 2))
    same(model)
    copy = zoo.save_weights(model, tmp_path / "copy.h5")  # the record keeps what the config gave
    assert zoo.read_record(copy)[1].builder_kwargs["stride_in_3x3"] is True
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("resnet50", weights=tmp_path / "v15.keras", stride_in_3x3=False, **args)
    assert _one_line(e) == (f"resnet50: '{tmp_path / 'v15.keras'}' (its model config) holds stride_in_3x3=True, but "
                            f"stride_in_3x3=False was asked for; leave out stride_in_3x3 (the weights give it) or pass "
                            f"stride_in_3x3=True.")
    for asked in ({}, {"stride_in_3x3": None}):
        with pytest.raises(zoo.WeightsMismatchError) as e:
            zoo.get("resnet50", weights=tmp_path / "v15.weights.h5", **asked, **args)
        assert _one_line(e) == (
            f"resnet50: '{tmp_path / 'v15.weights.h5'}' is a Keras weights-only file: it does not hold stride_in_3x3, "
            f"which changes no weight shape (weights of one network load into the other without an error). Pass "
            f"stride_in_3x3=False (stride 2 of stages 3-5 on the 1x1 branch2a, Kaiming's release) or "
            f"stride_in_3x3=True (on the 3x3 branch2b, v1.5), as the model that saved it was built; a .keras file "
            f"(model.save) or zoo.save_weights keeps it.")
    same(zoo.get("resnet50", weights=tmp_path / "v15.weights.h5", stride_in_3x3=True, **args))
    # a config strided as no zoo ResNet is (res4a on its 3x3, res3a and res5a on the 1x1): refused, each stage named
    with zipfile.ZipFile(tmp_path / "v15.keras") as z:
        items = {i.filename: z.read(i.filename) for i in z.infolist()}
    config = json.loads(items["config.json"])
    for layer in config["config"]["layers"]:
        if layer["config"]["name"] in ("res3a_branch2a", "res3a_branch2b", "res5a_branch2a", "res5a_branch2b"):
            layer["config"]["strides"] = [3 - s for s in layer["config"]["strides"]]
    items["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "mixed.keras", "w") as z:
        for name, data in items.items():
            z.writestr(name, data)
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("resnet50", weights=tmp_path / "mixed.keras", **args)
    assert _one_line(e) == (f"resnet50: '{tmp_path / 'mixed.keras'}' (its model config) strides its stages 3-5 in a way "
                            f"no resnet50 builds (res3a branch2a/branch2b 2/1, res4a branch2a/branch2b 1/2, res5a "
                            f"branch2a/branch2b 2/1); load it whole with zoo.load_keras_model instead.")
    # ResNet-18's basic blocks have no 1x1 to stride: nothing to hold, nothing asked
    r18 = zoo.get("resnet18", input_shape=(32, 32, 3))
    r18.save_weights(tmp_path / "r18.weights.h5")
    zoo.get("resnet18", weights=tmp_path / "r18.weights.h5", input_shape=(32, 32, 3))


@agnostic
@pytest.mark.jax_pass_only
def test_pspnet_keras_file_builds_its_input_size(tmp_path, rng):
    # PSPNet's pyramid pooling is fixed to the input size, which no weight shape shows: a .keras file of a 39 x 41 px
    # PSPNet loaded into the builder's 473 px default (windows for a 60 px conv5 map) without a word. Its config gives
    # the size, as a deploy prototxt's input does; an explicit input_shape still wins.
    saved = zoo.get("pspnet50", input_shape=(39, 41, 3), classes=3)
    saved.save(tmp_path / "p.keras")
    model = zoo.get("pspnet50", weights=tmp_path / "p.keras", classes=3)
    assert tuple(model.inputs[0].shape[1:]) == (39, 41, 3)
    assert zoo.api.build_info(model)[1]["input_shape"] == (39, 41, 3)  # what zoo.save_weights records
    x = rng.normal(size=(1, 39, 41, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(saved(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    other = zoo.get("pspnet50", weights=tmp_path / "p.keras", classes=3, input_shape=(49, 49, 3))
    assert tuple(other.inputs[0].shape[1:]) == (49, 49, 3)


@agnostic
def test_caffemodel_refusals_the_prototxt_decides_come_before_the_weights_are_read(tmp_path, rng):
    # zoo.get read the whole .caffemodel (ResNet-152's: 230 MB) before a refusal its deploy prototxt alone decides: a
    # truncated file beside a contradicting prototxt got "truncated or corrupt caffemodel", not the contradiction
    from converters.caffe.errors import CaffeFormatError
    from tests.caffe_files import random_blobs_for, write_net
    from tests.converters import nets

    def truncated(folder, proto, name):
        folder.mkdir()
        deploy, path = write_net(folder, proto, random_blobs_for(proto, rng), name=name)
        with open(path, "r+b") as f:
            f.truncate(1000)
        return deploy, path

    deploy, path = truncated(tmp_path / "cpm2", nets.cpm(41, 33, stages=2, parts=3), "pose_iter_1")
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("cpm", weights=path, input_shape=(41, 33, 3), stages=3)
    assert str(e.value) == (f"cpm: '{path}' (its deploy prototxt '{deploy}') holds stages=2, but stages=3 was asked "
                            f"for; leave out stages (the weights give it) or pass stages=2.")
    with pytest.raises(CaffeFormatError, match="truncated"):  # what the prototxt allows needs the weights
        zoo.get("cpm", weights=path, input_shape=(41, 33, 3))
    deploy, path = truncated(tmp_path / "cpm1", nets.cpm(41, 33, stages=1, parts=3), "pose_iter_1")
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("cpm", weights=path, input_shape=(41, 33, 3))
    assert str(e.value) == (f"cpm: '{path}' holds stages=1, num_keypoints=3 (read from its deploy prototxt '{deploy}'), "
                            f"which the zoo's cpm cannot build: cpm(): `stages` must be an int >= 2. Received: stages=1")
    deploy, path = truncated(tmp_path / "v15", nets.resnet50(35, 37, classes=3, stride_in_3x3=True), "ResNet-50-model")
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("resnet50", weights=path, input_shape=(35, 37, 3), stride_in_3x3=False)
    assert str(e.value).startswith(f"resnet50: '{path}' (its deploy prototxt '{deploy}') holds stride_in_3x3=True, "
                                   f"but stride_in_3x3=False was asked for;")


@agnostic
def test_zoo_h5_without_a_classifier_head_into_include_top_true_says_so(tmp_path):
    # was: "does not fit model 'resnet18': 1 layers of the model missing from the file: - fc1000 [(512, 1000), ...]"
    path = zoo.save_weights(zoo.get("resnet18", input_shape=(32, 32, 3), include_top=False), tmp_path / "backbone.h5")
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("resnet18", weights=path, include_top=True)
    assert str(e.value) == (f"resnet18: '{path}' has no classifier head (no fc1000): it was saved from a model built "
                            f"with include_top=False. Pass include_top=False to load it without the head.")
    assert "fc1000" not in [l.name for l in zoo.get("resnet18", weights=path, include_top=False).layers]


@agnostic
@pytest.mark.jax_pass_only
def test_zoo_h5_saved_before_records_held_the_stride_placement(tmp_path):
    # Before 2026-12-06 zoo.save_weights recorded the arguments zoo.get was given and the head size, never the
    # default stride_in_3x3: a ResNet-50 record with a head size but no stride_in_3x3 was saved at False (Kaiming's
    # placement). stride_in_3x3=True loaded it as another network without a word (strides moved to the 3x3).
    path = zoo.save_weights(zoo.get("resnet50", input_shape=(32, 32, 3), classes=3), tmp_path / "old.h5")
    with h5py.File(path, "r+") as f:
        record = json.loads(f.attrs["record"])
        assert record["builder_kwargs"].pop("stride_in_3x3") is False
        f.attrs["record"] = json.dumps(record)
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("resnet50", weights=path, stride_in_3x3=True)
    assert _one_line(e) == (
        f"resnet50: '{path}' (its weights record, saved before records held stride_in_3x3: the builder's default) "
        f"holds stride_in_3x3=False, but stride_in_3x3=True was asked for; leave out stride_in_3x3 (the weights give "
        f"it) or pass stride_in_3x3=False.")
    for asked in ({}, {"stride_in_3x3": None}, {"stride_in_3x3": False}):  # still loads, as saved
        assert zoo.get("resnet50", weights=path, **asked).get_layer("res3a_branch2a").strides == (2, 2), asked
    # a record without builder arguments (made by hand) says nothing about it: the caller's value is built
    with h5py.File(path, "r+") as f:
        f.attrs["record"] = json.dumps({**record, "builder_kwargs": {}})
    model = zoo.get("resnet50", weights=path, input_shape=(32, 32, 3), classes=3, stride_in_3x3=True)
    assert model.get_layer("res3a_branch2a").strides == (1, 1)


@agnostic
def test_zoo_h5_architecture_the_record_leaves_out_is_named_with_the_builders_default(hg1):
    # zoo.save_weights records the arguments zoo.get was given: modules=1 and post_residuals=True are not in hg1's
    for key, asked, default in [("modules", 2, 1), ("post_residuals", False, True)]:
        with pytest.raises(zoo.WeightsMismatchError) as e:
            zoo.get("hourglass", weights=hg1, **{key: asked})
        msg = _one_line(e)
        assert msg.startswith(f"hourglass: '{hg1}' does not fit {key}={asked} ")
        assert f"does not give {key}, so it was saved with the builder's default {key}={default} " in msg


@agnostic
@pytest.mark.tf_pass_only
def test_explicit_none_for_an_argument_the_weights_give_means_not_given(cpm2, hg1, tmp_path, rng):
    # was: cpm(): `stages` must be an int >= 2. Received: stages=None (the file's value overridden by None)
    for kwargs in ({"stages": None}, {"num_keypoints": None}, {"stages": None, "num_keypoints": None}):
        model = zoo.get("cpm", weights=cpm2, **kwargs)
        assert len(model.outputs) == 2 and model.outputs[-1].shape[-1] == 3 + 1, kwargs
    model = zoo.get("hourglass", weights=hg1, stacks=None, num_keypoints=None)
    assert len(model.outputs) == 1 and model.outputs[0].shape[-1] == 4
    # the same for a .caffemodel (its deploy prototxt gives them) and a .t7
    from tests.caffe_files import random_blobs_for, write_net
    from tests.converters import nets
    from tests.converters.torch7_files import dumps, gmodule, hourglass_nodes

    proto = nets.cpm(41, 33, stages=2, parts=3)
    _, caffemodel = write_net(tmp_path, proto, random_blobs_for(proto, rng), name="pose_iter_1")
    model = zoo.get("cpm", weights=caffemodel, input_shape=(41, 33, 3), stages=None, num_keypoints=None)
    assert len(model.outputs) == 2 and model.outputs[-1].shape[-1] == 3 + 1
    t7 = tmp_path / "hg2.t7"
    t7.write_bytes(dumps(gmodule(*hourglass_nodes(rng, stacks=2, features=16, keypoints=4))))
    model = zoo.get("hourglass", weights=t7, input_shape=(64, 64, 3), stacks=None, features=None)
    assert len(model.outputs) == 2 and model.outputs[-1].shape[-1] == 4


@agnostic
def test_a_target_that_cannot_be_written_is_named_before_anything_is_saved(saved, tmp_path, capsys):
    """The OS's words named a temporary file ('/sys/.m.h5.5v9ijmbd.tmp') or only '[Errno 17] File exists', and
    save_model onto a folder wrote the whole model before the rename failed."""
    from zoo.export import check_target
    from zoo.errors import ExportError
    from zoo.saving import save_model

    model = zoo.get("resnet18", weights=str(saved))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder.keras").mkdir()
    blocked = r"cannot write '.*afile.m\.{0}': '.*afile' is a file, expected a folder"
    with pytest.raises(ValueError, match="save_weights: " + blocked.format("h5")):
        zoo.save_weights(model, tmp_path / "afile" / "m.h5")
    with pytest.raises(ValueError, match="save_model: " + blocked.format("keras")):
        save_model(model, tmp_path / "afile" / "m.keras")
    with pytest.raises(ValueError, match=r"save_model: '.*folder.keras' is a folder; expected a file name"):
        save_model(model, tmp_path / "folder.keras")
    with pytest.raises(ExportError, match=r"export: cannot write '.*afile.sm': '.*afile' is a file, expected a folder"):
        check_target(tmp_path / "afile" / "sm")
    from kerazoo.cli import main  # the command checks OUT before it builds the model (named first: never built)

    assert main(["export", "no_such_model", "-o", str(tmp_path / "afile" / "sm")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"kerazoo export: error: export: cannot write '{tmp_path / 'afile' / 'sm'}': '{tmp_path / 'afile'}' is a "
        f"file, expected a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder.keras", "r18.h5"]
    assert list((tmp_path / "folder.keras").iterdir()) == []
    for save, name in ((zoo.save_weights, "m.h5"), (save_model, "m.keras")):  # a read-only file system
        with pytest.raises(OSError, match=rf"\(folder '/sys'\): '/sys/{name}'$"):
            save(model, Path("/sys") / name)
