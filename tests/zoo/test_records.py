"""WeightsRecord: what a record may hold, and that the files' readers refuse the rest by file and field.

The refusals are checked on records as a file holds them (JSON), through ``from_dict``, a zoo ``.h5`` file
(h5py writes its attributes here, not zoo.save_weights) and a ``.keras`` archive's kerazoo.json (zipfile writes it).
"""

import json
import math
import zipfile

import h5py
import numpy as np
import pytest

import zoo
from zoo.errors import WeightsFileError
from zoo.records import WeightsRecord
from zoo.weights import read_keras_metadata, read_record


def _registered():
    """Every registered release: (name:tag, record)."""
    specs = {zoo.registry.get_spec(name).name: zoo.registry.get_spec(name) for name in zoo.list_models(pretrained=True)}
    out = [(f"{name}:{tag}", rec) for name, spec in specs.items() for tag, rec in spec.weights.items()]
    assert len(out) >= 15  # resnet v1 x3, v2 x2, fcn x4, cpm x3, pspnet x3, hourglass
    return out


def _zoo_h5(path, record_json: str):
    """A zoo weights file as the format describes it (attributes format/record, group /layers), no weights."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "kerazoo-weights"
        f.attrs["format_version"] = 1
        f.attrs["model_name"] = "hourglass"
        f.attrs["record"] = record_json
        f.create_group("layers")
    return path


def _keras_archive(path, record: dict):
    """A .keras archive (a zip) holding only the kerazoo.json entry."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("kerazoo.json", json.dumps({"format": "kerazoo-model", "format_version": 1,
                                               "model_name": "hourglass", "record": record}))
    return path


def _same(back, rec):
    """Equal records; builder_kwargs as JSON gives them (a tuple input_shape comes back a list, builders take both)."""
    return back.replace(builder_kwargs={}) == rec.replace(builder_kwargs={}) and back.to_json() == rec.to_json()


def test_every_registered_release_round_trips_through_json_and_both_files(tmp_path):
    for i, (name, rec) in enumerate(_registered()):
        d = json.loads(rec.to_json())
        assert _same(WeightsRecord.from_dict(d), rec), name
        _, from_h5 = read_record(_zoo_h5(tmp_path / f"{i}.h5", rec.to_json()))
        assert _same(from_h5, rec), name
        assert _same(read_keras_metadata(_keras_archive(tmp_path / f"{i}.keras", d))["record"], rec), name


def test_registered_release_values_are_kept():
    """The checks convert types (lists from JSON, ints) but keep the values the releases were written with."""
    rec = dict(_registered())["cpm:mpii"]
    assert rec.channel_order == "BGR" and rec.scale == 1 / 256 and rec.mean == (0.5, 0.5, 0.5)
    assert rec.flip_pairs == ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13))
    assert rec.input_size == (368, 368) and rec.output_stride == 8 and rec.num_keypoints == 14
    flic = dict(_registered())["cpm:flic"]  # testing/config.m's part_str (they were left unnamed, unflippable)
    assert flic.keypoint_names == ("l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist", "l_hip",
                                   "r_hip", "head")
    assert flic.flip_pairs == ((0, 3), (1, 4), (2, 5), (6, 7)) and flic.num_keypoints == 9
    resnet = dict(_registered())["resnet50:imagenet"]  # Kaiming's mean image averaged (was VGG's ILSVRC mean)
    assert resnet.mean == (103.0626238, 115.90288257, 123.15163084) and resnet.channel_order == "BGR"


def test_records_written_by_training_runs_and_examples_are_accepted():
    from training.models import _run_settings
    from training.normalization import Normalization

    config = {"task": "pose", "train_data": {"heatmap_offset": -0.5, "flip_pairs": [[0, 5], [1, 4], [2, 3]],
                                             "normalization": {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406],
                                                               "std": [0.229, 0.224, 0.225],
                                                               "channel_order": "RGB"}}}
    rec = _run_settings(config)["record"]
    assert rec.flip_pairs == ((0, 5), (1, 4), (2, 3)) and rec.heatmap_offset == -0.5  # any finite offset
    assert rec.heatmap_sigma is None  # a run from before its sigma was recorded
    config["train_data"]["sigma"] = 1.5
    assert _run_settings(config)["record"].heatmap_sigma == 1.5
    config["train_data"]["sigma"] = "x"  # an edited file: not recorded rather than refused
    assert _run_settings(config)["record"].heatmap_sigma is None
    config["train_data"]["sigma"] = 1.5
    assert WeightsRecord.from_dict(json.loads(rec.to_json())) == rec
    n = Normalization()  # the trainer's record for a run without one: its data's convention
    assert WeightsRecord(scale=n.scale, mean=n.mean, std=n.std, channel_order=n.channel_order,
                         heatmap_offset=1.5).scale == 1 / 255
    # finetune_pose / quickstart: no left/right joints, sizes and strides as Python ints
    assert WeightsRecord(num_keypoints=4, input_size=(64, 64), flip_pairs=(), output_stride=4).flip_pairs == ()


@pytest.mark.parametrize("fields, expected", [
    ({"channel_order": "bgr"}, {"channel_order": "BGR"}),  # preprocess and the Normalize layer read it so
    ({"mean": [127.5], "std": [127.5]}, {"mean": (127.5,), "std": (127.5,)}),  # one value for all channels
    ({"mean": [1, 2, 3], "scale": 1}, {"mean": (1.0, 2.0, 3.0), "scale": 1.0}),
    ({"input_size": [256.0, 192.0], "output_stride": 4.0}, {"input_size": (256, 192), "output_stride": 4}),
    ({"num_keypoints": 3, "flip_pairs": [[2, 0]], "keypoint_names": ["l", "m", "r"]}, {"flip_pairs": ((2, 0),)}),
    ({"num_classes": 2, "class_names": ["bg", "fg"]}, {"class_names": ("bg", "fg")}),
    ({"heatmap_sigma": 2}, {"heatmap_sigma": 2.0}),
])
def test_from_dict_accepts_and_normalises(fields, expected):
    rec = WeightsRecord.from_dict(fields)
    for key, value in expected.items():
        got = getattr(rec, key)
        assert got == value and type(got) is type(value), key
    assert WeightsRecord.from_dict(json.loads(rec.to_json())) == rec


def test_numpy_values_become_json_types():
    rec = WeightsRecord(mean=np.array([1.0, 2.0, 3.0]), flip_pairs=np.array([[0, 1]]), num_keypoints=np.int64(2))
    assert json.loads(rec.to_json())["flip_pairs"] == [[0, 1]] and rec.num_keypoints == 2


# (field, JSON value, words of the expectation) for each refusal; the rest of the record is the default
BAD = [
    ("mean", "abc", "1 or 3"),
    ("mean", [1.0, 2.0], "1 or 3"),
    ("mean", [1.0, 2.0, 3.0, 4.0], "1 or 3"),
    ("mean", [1.0, None, 3.0], "finite"),
    ("mean", [1.0, math.nan, 3.0], "finite"),
    ("mean", 5.0, "1 or 3"),
    ("std", [0, 0, 0], "> 0"),
    ("std", [1.0, -1.0, 1.0], "> 0"),
    ("std", [1.0, math.inf, 1.0], "finite"),
    ("std", "1", "1 or 3"),
    ("channel_order", "XYZ", "'RGB' or 'BGR'"),
    ("channel_order", None, "'RGB' or 'BGR'"),
    ("scale", None, "number > 0"),
    ("scale", "1/255", "number > 0"),
    ("scale", 0, "number > 0"),
    ("scale", -1.0, "number > 0"),
    ("scale", math.nan, "number > 0"),
    ("scale", True, "number > 0"),
    ("input_size", [256], "(H, W)"),
    ("input_size", [256, 256, 3], "(H, W)"),
    ("input_size", [256, 0], "(H, W)"),
    ("input_size", [256.5, 256], "(H, W)"),
    ("input_size", "256x256", "(H, W)"),
    ("output_stride", 0, "integer > 0"),
    ("output_stride", 2.5, "integer > 0"),
    ("num_keypoints", -1, "integer > 0"),
    ("num_classes", "21", "integer > 0"),
    ("eval_base_size", True, "integer > 0"),
    ("keypoint_names", [1, 2], "strings"),
    ("keypoint_names", "head", "a list of strings"),
    ("class_names", ["bg", None], "strings"),
    ("flip_pairs", [[0]], "pairs"),
    ("flip_pairs", [[0, 1, 2]], "pairs"),
    ("flip_pairs", [0, 1], "pairs"),
    ("flip_pairs", [[0, 0]], "distinct"),
    ("flip_pairs", [[0, 1], [1, 2]], "one pair at most"),
    ("flip_pairs", [[0, 1], [1, 0]], "one pair at most"),
    ("flip_pairs", [[-1, 2]], "index >= 0"),
    ("flip_pairs", [["a", "b"]], "pairs"),
    ("flip_pairs", [[0.5, 2]], "pairs"),
    ("flip_pairs", "01", "pairs"),
    ("heatmap_sigma", 0, "number > 0"),
    ("heatmap_sigma", -1.75, "number > 0"),
    ("heatmap_sigma", math.inf, "number > 0"),
    ("heatmap_sigma", "1.75", "number > 0"),
    ("heatmap_sigma", True, "number > 0"),
]


@pytest.mark.parametrize("key, value, expected", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_from_dict_refuses_by_field_value_and_expectation(key, value, expected):
    with pytest.raises(ValueError) as e:
        WeightsRecord.from_dict({key: value})
    msg = str(e.value)
    assert f"WeightsRecord.{key}" in msg and expected in msg and repr(value) in msg, msg


# refusals that depend on two fields (the head's size and its names / pairs)
BAD_HEADS = [
    ({"num_keypoints": 14, "flip_pairs": [[2, 5], [10, 14]]}, "flip_pairs", "< 14"),
    ({"keypoint_names": ["l", "r"], "flip_pairs": [[0, 2]]}, "flip_pairs", "< 2"),
    ({"num_keypoints": 3, "keypoint_names": ["a", "b"]}, "keypoint_names", "num_keypoints=3"),
    ({"num_classes": 21, "class_names": ["bg", "fg"]}, "class_names", "num_classes=21"),
]


@pytest.mark.parametrize("d, key, expected", BAD_HEADS)
def test_from_dict_refuses_names_and_pairs_that_do_not_fit_the_head(d, key, expected):
    with pytest.raises(ValueError, match=rf"WeightsRecord\.{key}.*{expected}"):
        WeightsRecord.from_dict(d)


@pytest.mark.parametrize("key, value", [("std", (1.0, 0.0, 1.0)), ("channel_order", "RBG"), ("scale", None),
                                        ("flip_pairs", ((0,),)), ("mean", "abc")])
def test_construction_and_replace_refuse_too(key, value):
    with pytest.raises(ValueError, match=rf"WeightsRecord\.{key}"):
        WeightsRecord(**{key: value})
    with pytest.raises(ValueError, match=rf"WeightsRecord\.{key}"):
        WeightsRecord().replace(**{key: value})


@pytest.mark.parametrize("key, value", [("std", [0, 0, 0]), ("channel_order", "XYZ"), ("flip_pairs", [[0]]),
                                        ("input_size", [256])])
def test_file_readers_name_the_file_and_the_field(tmp_path, key, value):
    h5 = _zoo_h5(tmp_path / "bad.h5", json.dumps({key: value}))
    with pytest.raises(WeightsFileError, match=rf"bad\.h5.*WeightsRecord\.{key}"):
        read_record(h5)
    archive = _keras_archive(tmp_path / "bad.keras", {key: value})
    with pytest.raises(WeightsFileError, match=rf"bad\.keras.*WeightsRecord\.{key}"):
        read_keras_metadata(archive)
