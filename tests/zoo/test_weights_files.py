"""Edited or foreign zoo weights files and hash records: one clear error naming the file, never a
traceback from deep inside (found by an adversarial review)."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

import zoo
from tests.training.helpers import ROOT
from zoo import pretrained

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "r18.h5"
    zoo.save_weights(zoo.get("resnet18", input_shape=(32, 32, 3)), path)
    return path


@pytest.mark.parametrize("record, match", [("[]", "a record is a JSON object, found list"),
                                           ('{"builder_kwargs": [1]}', "'builder_kwargs' must be a JSON object")])
def test_edited_record_is_named(saved, record, match):
    with h5py.File(saved, "r+") as f:
        f.attrs["record"] = record
    with pytest.raises(zoo.WeightsFileError, match=f"metadata record is corrupt: {match}"):
        zoo.get("resnet18", weights=saved)


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


def test_another_models_file_says_whose_it_is_first(saved):
    # resnet18's stored input_shape (32x32) is too small for an hourglass: the hint used to be lost
    with pytest.raises(zoo.WeightsMismatchError, match=r"hourglass: '.*r18.h5' holds weights of 'resnet18'"):
        zoo.get("hourglass", weights=saved)


@pytest.mark.parametrize("content", ["[]", '{"k": "abc"}', "{not json"])
def test_foreign_hash_records_are_named_in_api_and_cli(tmp_path, monkeypatch, content):
    home = tmp_path / "home"
    (home / "sources").mkdir(parents=True)
    (home / "sources" / "sha256.json").write_text(content)
    monkeypatch.setenv("KERAZOO_HOME", str(home))
    with pytest.raises(zoo.WeightsFileError, match="sha256.json' are (unreadable|not kerazoo's).*delete the file"):
        pretrained.recorded_sha256("x")
    res = subprocess.run([sys.executable, "-m", "zoo", "list", "--pretrained"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**__import__("os").environ, "KERAZOO_HOME": str(home),
                                                      "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "kerazoo list: error: Recorded hashes" in res.stderr
