"""Release files with a SHA-1 published by an independent party (``SourceFile.sha1``): checked on every read,
the first download included, as a file on its own or as an archive's member once extracted.

The stand-in releases are test_pretrained's twins (file:// URLs, the offline folder); their published SHA-1 is
computed here with hashlib from the bytes written, as a publisher computes it from the real file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

import zoo
from tests.zoo.test_pretrained import _zip, cache, twin  # noqa: F401 - fixtures: a fresh cache, fake releases
from zoo import pretrained, registry, sources
from zoo.records import SourceFile, WeightsRecord

agnostic = pytest.mark.backend_agnostic  # on the tests that convert a release into a Keras model

PUBLISHER = "a test's publisher"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _published(name, tag, record, data: bytes):
    """Register ``record`` with its first source carrying ``data``'s SHA-1 as published; returns that source."""
    src = dataclasses.replace(record.sources[0], sha1=_sha1(data), sha1_from=PUBLISHER)
    registry._MODELS[name].weights[tag] = record.replace(sources=(src, *record.sources[1:]))
    return src


def test_the_registered_sha1s_are_opencvs():
    # opencv_extra testdata/dnn/download_models.py (OpenCV's CI checks its downloads with them):
    #   Model(name='Fcn', url='http://dl.caffe.berkeleyvision.org/fcn8s-heavy-pascal.caffemodel',
    #         sha='c449ea74dd7d83751d1357d6a8c323fcf4038962', filename='fcn8s-heavy-pascal.caffemodel')
    #   Model(name='ResNet50', url='https://onedrive.live.com/download?cid=4006CBB8476FF777&...',
    #         sha='b7c79ccc21ad0479cddc0dd78b1d20c4d722908d', filename='ResNet-50-model.caffemodel')
    fcn = zoo.get_spec("fcn8s").weights["voc"].sources[0]
    assert (fcn.name, fcn.url, fcn.member) == ("fcn8s-heavy-pascal.caffemodel",
                                               "http://dl.caffe.berkeleyvision.org/fcn8s-heavy-pascal.caffemodel", None)
    assert fcn.sha1 == "c449ea74dd7d83751d1357d6a8c323fcf4038962"
    resnet = zoo.get_spec("resnet50").weights["imagenet"].sources[0]
    assert (resnet.name, resnet.member) == ("models.zip", "ResNet-50-model.caffemodel")  # the SHA-1 is the member's
    assert resnet.sha1 == "b7c79ccc21ad0479cddc0dd78b1d20c4d722908d"
    for src in (fcn, resnet):
        assert src.sha1_from == "OpenCV, opencv_extra testdata/dnn/download_models.py"
    tags = [n.split(".") for n in zoo.list_models(pretrained=True)]
    others = [s for arch, tag in tags for s in zoo.get_spec(arch).weights[tag].sources if s.sha1 and s not in (fcn, resnet)]
    assert others == []  # nothing else published: every other file is trusted on first use
    record = zoo.get_spec("resnet50").weights["imagenet"]
    assert WeightsRecord.from_dict(json.loads(record.to_json())) == record == record.replace()


def test_source_file_refuses_a_malformed_sha1():
    for bad in ("abc", "d41d8cd98f00b204e9800998ecf8427e", "ab" * 32, "g" * 40, 123):  # short, an MD5, a SHA-256
        with pytest.raises(ValueError, match=r"sha1 of source file 'a\.caffemodel' must be a SHA-1 digest "
                                             r"\(40 hex digits\), got " + repr(bad)):
            SourceFile("a.caffemodel", sha1=bad, sha1_from=PUBLISHER)
    assert SourceFile("a.caffemodel", sha1=" " + "AB" * 20 + "\n", sha1_from=PUBLISHER).sha1 == "ab" * 20
    for sha1, by in (("ab" * 20, None), ("ab" * 20, " "), (None, PUBLISHER)):  # a digest without its publisher
        with pytest.raises(ValueError, match=r"source file 'a\.caffemodel': sha1 and sha1_from .* go together"):
            SourceFile("a.caffemodel", sha1=sha1, sha1_from=by)


@agnostic
def test_a_first_download_matching_its_published_sha1_is_reported_as_checked(twin, cache, capsys):
    from zoo.cli import main

    name, record, _, files = twin("fcn8s", "voc")
    data = files[record.sources[0].key]
    _published(name, "voc", record, data)
    zoo.get(name, weights="voc")
    out = capsys.readouterr().out
    assert (f"sha256 of fcn8s-heavy-pascal.caffemodel recorded on first use: {hashlib.sha256(data).hexdigest()} "
            f"(checked against the SHA-1 published by {PUBLISHER}; later reads must match it)") in out
    assert "sha256 of voc-fcn8s/deploy.prototxt recorded on first use" in out  # not published: trusted on first use
    hashes = json.loads((cache / "sources" / "sha256.json").read_text())
    assert hashes["fcn8s-heavy-pascal.caffemodel"]["checked"] == f"checked against the SHA-1 published by {PUBLISHER}"
    assert "checked" not in hashes["voc-fcn8s/deploy.prototxt"]
    rows = pretrained.status(name, "voc")["sources"]
    assert rows[0]["sha256"] == f"sha1 published ({PUBLISHER}); sha256 recorded {hashlib.sha256(data).hexdigest()}"
    assert rows[1]["sha256"].startswith("recorded ")
    assert main(["list", f"{name}*", "--pretrained"]) == 0
    assert f"sha1 published ({PUBLISHER})" in capsys.readouterr().out


def test_a_download_not_matching_its_published_sha1_is_refused_and_not_kept(twin, cache):
    name, record, _, files = twin("fcn8s", "voc")
    real = files[record.sources[0].key]
    src = _published(name, "voc", record, real)
    served = real + b"\0"  # what the URL serves: not the published file
    Path(src.url.removeprefix("file://")).write_bytes(served)
    with pytest.raises(zoo.WeightsFileError, match=rf"fcn8s-heavy-pascal\.caffemodel.* has SHA-1 {_sha1(served)}, "
                                                   rf"expected {_sha1(real)} \(published by {PUBLISHER}\)"):
        zoo.get(name, weights="voc")
    assert not list((cache / "sources").glob("fcn8s*"))  # neither the file nor a .part remains
    assert pretrained.recorded_sha256(src.name) is None


def test_a_cached_copy_not_matching_its_published_sha1_is_deleted_and_downloaded_again(twin, cache):
    # e.g. left by a version that trusted it on first use: nothing recorded, but the published SHA-1 refuses it
    name, record, _, files = twin("fcn8s", "voc")
    real = files[record.sources[0].key]
    src = _published(name, "voc", record, real)
    (cache / "sources").mkdir(parents=True)
    (cache / "sources" / src.name).write_bytes(real[:-1])
    with pytest.warns(UserWarning, match=rf"has SHA-1 {_sha1(real[:-1])}, expected {_sha1(real)} .*Deleted the "
                                         rf"cached copy; downloading it again"):
        path, _ = sources.obtain(src, {}, progress=False)
    assert path.read_bytes() == real


def test_an_offline_file_not_matching_its_published_sha1_is_refused_and_left_alone(twin, tmp_path, monkeypatch):
    name, record, _, files = twin("fcn8s", "voc", publish=False)
    real = files[record.sources[0].key]
    src = _published(name, "voc", record, real)
    offline, wrong = tmp_path / "offline", real + b"\0"
    offline.mkdir()
    (offline / src.name).write_bytes(wrong)
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(offline))
    with pytest.raises(zoo.WeightsFileError, match=rf"'{offline / src.name}' \(fcn8s-heavy-pascal\.caffemodel\) has "
                                                   rf"SHA-1 {_sha1(wrong)}, expected {_sha1(real)}"):
        sources.obtain(src, {})
    assert (offline / src.name).read_bytes() == wrong  # the user's file
    (offline / src.name).write_bytes(real)
    unverified = {}
    assert sources.obtain(src, unverified)[0] == offline / src.name
    assert unverified[src.name][2] == f"checked against the SHA-1 published by {PUBLISHER}"


@agnostic
def test_an_archive_member_is_checked_against_its_published_sha1_after_extraction(twin, cache, capsys):
    name, record, _, files = twin("resnet50", "imagenet")
    member = files[record.sources[0].key]
    _published(name, "imagenet", record, member)
    zoo.get(name, weights="imagenet")
    archive = (cache / "sources" / "models.zip").read_bytes()
    assert (f"sha256 of models.zip recorded on first use: {hashlib.sha256(archive).hexdigest()} (its member "
            f"ResNet-50-model.caffemodel checked against the SHA-1 published by {PUBLISHER}; later reads must "
            f"match it)") in capsys.readouterr().out


def test_an_archive_member_not_matching_its_published_sha1_is_refused_and_not_kept(twin, cache):
    name, record, _, files = twin("resnet50", "imagenet")
    member = files[record.sources[0].key]
    src = _published(name, "imagenet", record, member)
    _zip(Path(src.url.removeprefix("file://")), src.member, member[:-1])  # the archive holds another member
    with pytest.raises(zoo.WeightsFileError, match=rf"Member 'models/ResNet-50-model\.caffemodel' of '.*models\.zip' "
                                                   rf"\(models\.zip!ResNet-50-model\.caffemodel\) has SHA-1 "
                                                   rf"{_sha1(member[:-1])}, expected {_sha1(member)} \(published by "
                                                   rf"{PUBLISHER}\).*the archive was deleted from the cache"):
        zoo.get(name, weights="imagenet")
    assert [p for p in (cache / "sources").rglob("*") if p.is_file() and "models" in p.name] == []
    assert pretrained.recorded_sha256("models.zip") is None


def test_an_offline_archive_or_member_not_matching_its_published_sha1_is_refused(twin, tmp_path, monkeypatch):
    name, record, _, files = twin("resnet50", "imagenet", publish=False)
    member = files[record.sources[0].key]
    src = _published(name, "imagenet", record, member)
    offline = tmp_path / "offline"
    offline.mkdir()
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(offline))
    _zip(offline / "models.zip", src.member, member[:-1])
    with pytest.raises(zoo.WeightsFileError, match=rf"Member .* has SHA-1 {_sha1(member[:-1])}, "
                                                   rf"expected {_sha1(member)}"):
        sources.obtain(src, {})
    assert zipfile.is_zipfile(offline / "models.zip")  # the user's file stays
    (offline / "models.zip").unlink()
    (offline / src.member).write_bytes(member[:-1])  # the member on its own
    with pytest.raises(zoo.WeightsFileError, match=rf"\(models\.zip!ResNet-50-model\.caffemodel\) has SHA-1 "
                                                   rf"{_sha1(member[:-1])}, expected {_sha1(member)}"):
        sources.obtain(src, {})


def test_an_extraction_changed_since_is_extracted_again(twin, cache, tmp_path, monkeypatch):
    # Same size and newer than the archive: only the published SHA-1 shows the reused copy is not the member.
    name, record, _, files = twin("resnet50", "imagenet", publish=False)
    member = files[record.sources[0].key]
    src = _published(name, "imagenet", record, member)
    offline = tmp_path / "offline"
    offline.mkdir()
    _zip(offline / "models.zip", src.member, member)
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(offline))
    path, _ = sources.obtain(src, {})
    path.write_bytes(member[:-1] + bytes([member[-1] ^ 1]))
    again, _ = sources.obtain(src, {})
    assert again == path and again.read_bytes() == member


@agnostic
def test_a_checked_download_stays_when_the_conversion_fails(twin, cache):
    # Only the files no hash vouched for are deleted after a failed conversion (a short read only the converter
    # sees): one matching its published SHA-1 is the release's, and would be downloaded again for nothing.
    name, record, _, files = twin("fcn8s", "voc")
    src = _published(name, "voc", record, files[record.sources[0].key])
    deploy = Path(record.sources[1].url.removeprefix("file://"))
    deploy.write_bytes(deploy.read_bytes().replace(b"num_output: 5", b"num_output: 7"))  # another head
    with pytest.raises(Exception, match=r"do not convert .*voc-fcn8s__deploy\.prototxt had no known sha256 and was "
                                        r"deleted"):
        zoo.get(name, weights="voc")
    assert (cache / "sources" / src.name).read_bytes() == files[src.key]
    assert not (cache / "sources" / "voc-fcn8s__deploy.prototxt").exists()
