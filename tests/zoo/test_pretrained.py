"""Weights tags of the original releases: fetch (file:// URLs, a local HTTP server, the offline folder),
sha256 checks, convert once, cache, and every failure mode with its message.

Every registered tag is resolved with small stand-in files in the real formats (prototxt, caffemodel,
zip, .t7) that carry the release's own file names and archive layout. The full-size originals cannot be
used here (no internet, gigabytes): each stand-in is converted into a small "twin" model registered for
the test with the tag's family and record (sources, metadata), only the builder and URLs swapped.
``test_real_architecture_tag_offline`` then resolves one real tag (cpm:flic, 21 M parameters) into the
real builder from full-size generated files.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from converters.caffe import blobs as B
from tests.caffe_files import caffemodel_bytes, random_blobs_for
from zoo import pretrained, registry
from zoo.registry import ModelSpec

# On the tests that build, convert or load a Keras model; the others check records, downloads and cache files only
# (no model is built before their error), which no backend computes: ./dev test's TensorFlow pass runs them once.
agnostic = pytest.mark.backend_agnostic

ALL_TAGS = [(n.split(".")[0], n.split(".")[1]) for n in zoo.list_models(pretrained=True)]

TINY = """
name: "tiny"
input: "data" input_shape { dim: 1 dim: 3 dim: 9 dim: 9 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool" type: "Pooling" bottom: "conv1" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: %d } }
"""


def tiny(*, weights=None, input_shape=None, classes=5, name="tiny"):
    """The Keras twin of TINY (same layer names)."""
    x = inp = keras.Input(input_shape or (9, 9, 3), name="data")
    x = keras.layers.Conv2D(4, 3, name="conv1")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(classes, name="fc")(x), name=name)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAZOO_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(pretrained.OFFLINE_ENV, raising=False)
    yield tmp_path / "cache"
    # fresh layer-name counters; no gc.collect (free_memory): a full collection of TensorFlow's ~350k objects took
    # 0.2-0.7 s after every test (Python's own collector frees the tests' tiny models)
    keras.backend.clear_session(free_memory=False)


def _release_files(record, rng, classes=5):
    """{source key: bytes} stand-ins in the real formats, and the caffemodel blobs used."""
    proto = TINY % classes
    blobs = random_blobs_for(proto, rng)
    blobs["bn1"] = [rng.normal(size=4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32),
                    np.ones(1, np.float32)]
    content = {".prototxt": proto.encode(), ".caffemodel": caffemodel_bytes(proto, blobs)}
    return {src.key: content[Path(src.provides).suffix] for src in record.sources}, blobs


def _zip(path: Path, member: str, data: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{Path(path.name).stem}/{member}", data)  # releases keep members in a folder


def _publish(record, files, root: Path):
    """Write the release files under ``root`` (archives zipped) and point the record's URLs at them."""
    sources = []
    for src in record.sources:
        path = root / src.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if src.member:
            _zip(path, src.member, files[src.key])
        else:
            path.write_bytes(files[src.key])
        sources.append(dataclasses.replace(src, url=path.as_uri()))
    return record.replace(sources=tuple(sources))


@pytest.fixture
def twin(monkeypatch, tmp_path, rng):
    """twin(arch, tag) -> (name, record, blobs): a tiny model registered with the tag's record."""

    def make(arch, tag, *, publish=True, **changes):
        spec = zoo.get_spec(arch)
        real = spec.weights[tag]
        assert real.source_format == "caffe", "the .t7 tag has its own test"
        files, blobs = _release_files(real, rng)
        # stand-ins, not the real files: the SHA-1 OpenCV published for two of them (fcn8s, resnet50) would refuse them
        unpublished = tuple(dataclasses.replace(s, sha1=None, sha1_from=None) for s in real.sources)
        record = real.replace(builder_kwargs={"classes": 5}, sources=unpublished, **changes)
        if publish:
            record = _publish(record, files, tmp_path / "web")
        name = f"twin_{arch}"
        monkeypatch.setitem(registry._MODELS, name, ModelSpec(name, tiny, spec.family, ("fc",), "classes", {tag: record}))
        return name, record, blobs, files

    return make


def _kernel(model, layer="conv1"):
    return keras.ops.convert_to_numpy(model.get_layer(layer).weights[0])


def _no_conversion(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("converted again although a converted file was cached")

    monkeypatch.setattr(pretrained, "_convert", fail)


# --- every registered tag ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch,tag", ALL_TAGS)
def test_every_tag_has_a_complete_record(arch, tag):
    spec = zoo.get_spec(arch)
    rec = spec.weights[tag]
    assert rec.source_format in ("caffe", "torch7") and rec.sources and rec.source_page and rec.paper and rec.license
    for src in rec.sources:
        assert src.url or src.page, src
        assert src.sha256 is None or len(src.sha256) == 64  # pinned only when computed from the real file
    provided = sorted(Path(s.provides).suffix for s in rec.sources)
    assert provided == ([".t7"] if rec.source_format == "torch7" else [".caffemodel", ".prototxt"])
    assert rec.input_size and rec.channel_order in ("RGB", "BGR") and rec.output_stride
    head = spec.head_kwarg
    assert head in rec.builder_kwargs  # so asking for another head size is detected
    if head == "classes":
        assert rec.num_classes == rec.builder_kwargs[head]
        assert rec.class_names is None or len(rec.class_names) == rec.num_classes
    else:
        assert rec.num_keypoints == rec.builder_kwargs[head]
        assert rec.keypoint_names is None or len(rec.keypoint_names) == rec.num_keypoints
        for a, b in rec.flip_pairs or ():
            assert 0 <= a < rec.num_keypoints and 0 <= b < rec.num_keypoints
    info = zoo.info(f"{arch}.{tag}")["weights"][tag]
    published = "sha1 published (OpenCV, opencv_extra testdata/dnn/download_models.py); sha256 "
    assert [s["sha256_status"] for s in info["sources"]] == [
        (published if src.sha1 else "") + "unknown (recorded on first download)" for src in rec.sources]



@agnostic
@pytest.mark.parametrize("arch,tag,size", [("pspnet50", "ade20k", 473), ("pspnet101", "voc", 473),
                                           ("pspnet101", "cityscapes", 713)])
def test_pspnet_tags_build_the_releases_input_size(arch, tag, size):
    # PSPNet is fixed-size: hszhao's evaluation/prototxt/<file>_<size>.prototxt pools its conv5 map (F = 60 at 473 px,
    # 90 at 713 px) with F/1, F/2, F/3, F/6 px windows. The cityscapes record gave no input_shape, so its conversion
    # and zoo.get("pspnet101", weights="cityscapes") (both build spec.builder(**builder_kwargs)) were the 473 px net
    from tests.zoo.helpers import structure_only

    spec = zoo.get_spec(arch)
    with structure_only():  # no weight values: only the graph is looked at
        model = spec.builder(**spec.weights[tag].builder_kwargs)
        assert tuple(model.inputs[0].shape[1:]) == (size, size, 3)
        feature = {473: 60, 713: 90}[size]
        for bins in (1, 2, 3, 6):
            assert tuple(model.get_layer(f"conv5_3_pool{bins}").pool_size) == (feature // bins,) * 2


CAFFE_TAGS = [(a, t) for a, t in ALL_TAGS if zoo.get_spec(a).weights[t].source_format == "caffe"]


@agnostic
@pytest.mark.parametrize("arch,tag", CAFFE_TAGS)
def test_every_caffe_tag_downloads_verifies_converts_and_caches(arch, tag, twin, cache, capsys, monkeypatch):
    name, record, blobs, _ = twin(arch, tag)
    model = zoo.get(name, weights=tag)
    np.testing.assert_array_equal(_kernel(model), B.conv_kernel(blobs["conv1"][0]))
    assert zoo.weights_record(model).source_page == record.source_page
    out = capsys.readouterr().out
    for src in record.sources:
        assert f"sha256 of {src.name} recorded on first use" in out
        assert pretrained.recorded_sha256(src.name) is not None
    assert "converting" in out
    row = pretrained.status(name, tag)
    assert row["converted"] and {s["state"] for s in row["sources"]} == {"cached"}
    assert all(s["sha256"].startswith("recorded ") for s in row["sources"])
    # Second call: served from the converted cache, the release files are not even read.
    _no_conversion(monkeypatch)
    for p in (cache / "sources").iterdir():
        if p.is_file() and p.name != "sha256.json":
            p.unlink()
    again = zoo.get(name, weights=tag)
    np.testing.assert_array_equal(_kernel(again), _kernel(model))


@agnostic
@pytest.mark.parametrize("arch,tag", CAFFE_TAGS)
def test_every_caffe_tag_resolves_from_the_offline_folder(arch, tag, twin, tmp_path, monkeypatch):
    name, record, blobs, files = twin(arch, tag, publish=False)
    offline = tmp_path / "offline"
    for i, src in enumerate(record.sources):  # original names; archives either whole or just the member
        if src.member and i % 2 == 0:
            (offline / src.provides).parent.mkdir(parents=True, exist_ok=True)
            (offline / src.provides).write_bytes(files[src.key])
        else:
            (offline / src.name).parent.mkdir(parents=True, exist_ok=True)
            if src.member:
                _zip(offline / src.name, src.member, files[src.key])
            else:
                (offline / src.name).write_bytes(files[src.key])
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(offline))
    model = zoo.get(name, weights=tag)  # the record's URLs are the real ones: nothing is downloaded
    np.testing.assert_array_equal(_kernel(model), B.conv_kernel(blobs["conv1"][0]))
    assert {s["state"] for s in pretrained.status(name, tag)["sources"]} == {"offline"}


# --- heads, corruption, bad input ----------------------------------------------------------------------------


@agnostic
def test_other_head_size_loads_all_but_the_head(twin):
    name, record, blobs, _ = twin("fcn8s", "voc")
    with pytest.warns(UserWarning, match=r"classes=5 but classes=3 was asked for; loading everything but the head"):
        model = zoo.get(name, weights="voc", classes=3)
    assert model.get_layer("fc").weights[0].shape == (4, 3)
    np.testing.assert_array_equal(_kernel(model), B.conv_kernel(blobs["conv1"][0]))
    rec = zoo.weights_record(model)
    assert rec.num_classes == 3 and rec.class_names is None


@agnostic
def test_corrupt_cache_entries_are_detected_and_replaced(twin, cache):
    name, record, blobs, _ = twin("resnet50", "imagenet")
    zoo.get(name, weights="imagenet")
    converted = next((cache / "converted").glob("*.h5"))
    converted.write_bytes(converted.read_bytes()[:-100] + b"x" * 100)
    with pytest.warns(UserWarning, match="corrupt or incomplete; converting the release again"):
        model = zoo.get(name, weights="imagenet")
    np.testing.assert_array_equal(_kernel(model), B.conv_kernel(blobs["conv1"][0]))
    # A damaged cached source: deleted and downloaded again.
    archive = cache / "sources" / "models.zip"
    archive.write_bytes(archive.read_bytes()[:50])
    converted.unlink()
    with pytest.warns(UserWarning, match=r"models\.zip.*has sha256 .* expected .*Deleted the cached copy"):
        zoo.get(name, weights="imagenet")
    assert zipfile.is_zipfile(archive)


def test_hash_mismatch_deletes_the_download_and_names_the_file(twin, cache):
    name, record, _, _ = twin("cpm", "lsp", publish=True)
    bad = "0" * 64
    src = dataclasses.replace(record.sources[0], sha256=bad)
    registry._MODELS[name].weights["lsp"] = record.replace(sources=(src, record.sources[1]))
    with pytest.raises(zoo.WeightsFileError, match=rf"pose_iter_395000\.caffemodel.*expected {bad} \(pinned in kerazoo\)"):
        zoo.get(name, weights="lsp")
    assert not list((cache / "sources").glob("*.caffemodel*"))  # neither the file nor a .part remains


@agnostic
def test_changed_file_fails_against_the_hash_recorded_on_first_download(twin, cache, tmp_path):
    name, record, _, _ = twin("fcn32s", "voc")
    zoo.get(name, weights="voc")
    web = Path(record.sources[1].url.removeprefix("file://"))
    web.write_text(web.read_text() + "\n# changed upstream\n")
    for p in (cache / "sources").glob("*deploy.prototxt"):
        p.unlink()
    for p in (cache / "converted").iterdir():
        p.unlink()
    with pytest.raises(zoo.WeightsFileError, match=r"voc-fcn32s/deploy\.prototxt.*recorded on first download"):
        zoo.get(name, weights="voc")


class _ShortHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes and sends 10: a connection cut mid-download."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")

    def log_message(self, *args):
        pass


def test_partial_download_leaves_nothing_behind(twin, cache):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ShortHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        name, record, _, _ = twin("pspnet50", "ade20k")
        url = f"http://127.0.0.1:{server.server_address[1]}/pspnet50_ADE20K.caffemodel"
        src = dataclasses.replace(record.sources[0], url=url)
        registry._MODELS[name].weights["ade20k"] = record.replace(sources=(src, record.sources[1]))
        with pytest.raises(zoo.WeightsFileError, match=r"Could not download 'pspnet50_ADE20K\.caffemodel'.*Partial data was deleted"):
            zoo.get(name, weights="ade20k")
    finally:
        server.shutdown()
    assert not list((cache / "sources").glob("pspnet50*"))
    assert pretrained.recorded_sha256("pspnet50_ADE20K.caffemodel") is None


def test_web_page_instead_of_the_file(twin, tmp_path):
    name, record, _, _ = twin("pspnet101", "voc")
    page = tmp_path / "confirm.html"
    page.write_text("<!DOCTYPE html><html><body>Google Drive can't scan this file for viruses</body></html>")
    src = dataclasses.replace(record.sources[0], url=page.as_uri())
    registry._MODELS[name].weights["voc"] = record.replace(sources=(src, record.sources[1]))
    with pytest.raises(zoo.WeightsFileError, match=r"returned a web page instead of 'pspnet101_VOC2012\.caffemodel'.*drive\.google\.com/open"):
        zoo.get(name, weights="voc")


def test_offline_folder_without_the_file_names_it_and_its_url(twin, tmp_path, monkeypatch):
    name, record, _, _ = twin("resnet101", "imagenet", publish=False)
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(tmp_path / "empty"))
    with pytest.raises(zoo.WeightsFileError) as e:
        zoo.get(name, weights="imagenet")
    msg = str(e.value)
    assert "has no 'models.zip' (or its member 'ResNet-101-model.caffemodel' on its own)" in msg
    assert "http://research.microsoft.com/en-us/um/people/kahe/resnet/models.zip" in msg
    assert pretrained.status(name, "imagenet")["sources"][0]["state"] == "missing offline"


def test_archive_without_the_member(twin, tmp_path):
    name, record, _, files = twin("resnet152", "imagenet")
    web = Path(record.sources[0].url.removeprefix("file://"))
    with zipfile.ZipFile(web, "w") as z:
        z.writestr("models/README.txt", "no weights here")
    with pytest.raises(zoo.WeightsFileError, match=r"has no member\(s\) named 'ResNet-152-model\.caffemodel'.*README"):
        zoo.get(name, weights="imagenet")


def test_source_without_a_url_points_to_the_page(twin):
    name, record, _, _ = twin("resnet152v2", "imagenet")
    src = dataclasses.replace(record.sources[0], url=None)
    registry._MODELS[name].weights["imagenet"] = record.replace(sources=(src, record.sources[1]))
    with pytest.raises(zoo.WeightsFileError, match=r"no direct download URL; download it from https://drive"):
        zoo.get(name, weights="imagenet")


def test_unknown_tag_and_model_without_releases():
    with pytest.raises(ValueError, match="unknown weights tag 'coco'. Known tags: mpii, lsp, flic"):
        pretrained.resolve("cpm:coco")
    with pytest.raises(ValueError, match="resnet18 has no pretrained weights"):
        pretrained.resolve("resnet18")


@agnostic
def test_cli_download_and_list(twin, capsys):
    from zoo.cli import main

    name, record, _, _ = twin("cpm", "mpii")
    assert main(["download", f"{name}:mpii", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{name}:mpii: " in out
    assert "Downloading data from" not in out and "/step" not in out  # --quiet: get_file's bar was printed
    assert main(["list", f"{name}*", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert f"{name}:mpii" in out and "yes" in out and "_trained_MPI/pose_deploy_centerMap.prototxt" in out
    assert "recorded " in out



@agnostic
def test_real_architecture_tag_offline(tmp_path, monkeypatch, rng):
    """cpm:flic end to end into the real builder (4 stages, 9 parts, 21,323,816 parameters) from full-size
    files generated in the release's layout."""
    from tests.converters import nets

    proto = nets.cpm(368, 368, stages=4, parts=9)
    blobs = random_blobs_for(proto, rng)
    offline = tmp_path / "offline" / "_trained_FLIC"
    offline.mkdir(parents=True)
    (offline / "pose_deploy.prototxt").write_text(proto)
    (offline / "pose_iter_40000.caffemodel").write_bytes(caffemodel_bytes(proto, blobs))
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(tmp_path / "offline"))
    model = zoo.get("cpm", weights="flic", input_shape=(64, 64, 3))
    assert len(model.outputs) == 4 and model.outputs[-1].shape[-1] == 10
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 21_323_816
    for layer in ("conv1_stage1", "Mconv5_stage4"):
        np.testing.assert_array_equal(_kernel(model, layer), B.conv_kernel(blobs[layer][0]))
    rec = zoo.weights_record(model)
    assert rec.num_keypoints == 9 and rec.output_stride == 8 and rec.channel_order == "BGR"


@agnostic
def test_release_of_another_architecture_names_the_tag_and_files(tmp_path, monkeypatch, rng):
    offline = tmp_path / "offline" / "_trained_FLIC"
    offline.mkdir(parents=True)
    proto = TINY % 5
    (offline / "pose_deploy.prototxt").write_text(proto)
    (offline / "pose_iter_40000.caffemodel").write_bytes(caffemodel_bytes(proto, random_blobs_for(proto, rng)))
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(tmp_path / "offline"))
    with pytest.raises(zoo.WeightsMismatchError, match=r"(?s)cpm:flic: the release files .*pose_iter_40000\.caffemodel.* do not convert .*'conv1'"):
        zoo.get("cpm", weights="flic")
    assert not (tmp_path / "cache" / "converted").exists() or not list((tmp_path / "cache" / "converted").iterdir())


def test_cli_subprocess_list_pretrained_and_offline_error(tmp_path):
    import subprocess
    import sys

    from tests.test_cli import ENV, _one_line_error

    env = {**ENV, "KERAZOO_HOME": str(tmp_path / "cache"), pretrained.OFFLINE_ENV: str(tmp_path / "empty")}

    def kerazoo(*args):
        return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, env=env, timeout=300)

    r = kerazoo("list", "*", "--pretrained")
    assert r.returncode == 0, r.stderr
    assert "hourglass:mpii" in r.stdout and "umich-stacked-hourglass.zip!umich-stacked-hourglass.t7" in r.stdout
    assert r.stdout.count("missing offline") == sum(len(zoo.get_spec(a).weights[t].sources) for a, t in ALL_TAGS)
    line = _one_line_error(kerazoo("download", "pspnet101:cityscapes", "--quiet"))
    assert "has no 'pspnet101_cityscapes.caffemodel'" in line and "drive.google.com" in line
    assert "unknown weights tag 'x'" in _one_line_error(kerazoo("download", "cpm:x"))


def _hourglass_twin(monkeypatch, tmp_path, rng, *, offline: bool):
    """hourglass:mpii with its zip (folder/umich-stacked-hourglass.t7) holding a 1-stack, 16-feature net."""
    from tests.converters.torch7_files import dumps, gmodule, hourglass_nodes

    spec = zoo.get_spec("hourglass")
    real = spec.weights["mpii"]
    t7 = dumps(gmodule(*hourglass_nodes(rng, stacks=1, features=16, keypoints=16, lin_only=True)))  # the release's layout
    record = real.replace(builder_kwargs={**real.builder_kwargs, "stacks": 1, "features": 16})
    files = {record.sources[0].key: t7}
    if offline:
        (tmp_path / "offline").mkdir()
        _zip(tmp_path / "offline" / record.sources[0].name, record.sources[0].member, t7)
        monkeypatch.setenv(pretrained.OFFLINE_ENV, str(tmp_path / "offline"))
    else:
        record = _publish(record, files, tmp_path / "web")
    (tmp_path / "direct.t7").write_bytes(t7)
    monkeypatch.setitem(registry._MODELS, "twin_hourglass",
                        ModelSpec("twin_hourglass", spec.builder, "hourglass", spec.head_layers, "num_keypoints", {"mpii": record}))
    return tmp_path / "direct.t7"


@agnostic
@pytest.mark.parametrize("offline", [False, True])
@pytest.mark.tf_pass_only
def test_hourglass_tag_from_the_torch7_zip(offline, monkeypatch, tmp_path, rng, capsys):
    direct = _hourglass_twin(monkeypatch, tmp_path, rng, offline=offline)
    x = rng.uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    model = zoo.get("twin_hourglass", weights="mpii", input_shape=(64, 64, 3))
    reference = zoo.get("hourglass", weights=str(direct), input_shape=(64, 64, 3))  # the .t7 port, tested vs NumPy
    rec = zoo.weights_record(reference)  # a .t7 by path: the release's conventions (there was no record)
    assert (rec.channel_order, rec.scale, rec.heatmap_offset, rec.keypoint_names) == ("RGB", 1 / 255, 1.5, None)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)[0]), keras.ops.convert_to_numpy(reference(x)[0]))
    assert zoo.weights_record(model).keypoint_names[9] == "head_top"
    assert "sha256 of umich-stacked-hourglass.zip recorded on first use" in capsys.readouterr().out
    _no_conversion(monkeypatch)
    with pytest.warns(UserWarning, match="num_keypoints=16 but num_keypoints=5 was asked for"):
        headless = zoo.get("twin_hourglass", weights="mpii", input_shape=(64, 64, 3), num_keypoints=5)
    np.testing.assert_array_equal(_kernel(headless, "stem_conv"), _kernel(model, "stem_conv"))


@agnostic
def test_hourglass_tag_with_a_t7_of_another_architecture(monkeypatch, tmp_path, rng):
    from tests.converters.torch7_files import dumps, gmodule, hg_stacked_nodes

    _hourglass_twin(monkeypatch, tmp_path, rng, offline=True)
    zip_path = tmp_path / "offline" / "umich-stacked-hourglass.zip"
    _zip(zip_path, "umich-stacked-hourglass.t7", dumps(gmodule(*hg_stacked_nodes(rng, features=16, keypoints=16))))
    with pytest.raises(zoo.WeightsMismatchError, match=r"(?s)hourglass:mpii: the release files .*umich-stacked-hourglass\.t7"):
        zoo.get("twin_hourglass", weights="mpii", input_shape=(64, 64, 3))


@agnostic
def test_tag_with_a_contradicting_architecture_argument_is_one_error_before_any_download(monkeypatch, tmp_path, rng,
                                                                                         cache):
    # was: the release fetched and converted, then 'does not fit model' and a list of every layer that differs
    _hourglass_twin(monkeypatch, tmp_path, rng, offline=False)  # the twin's release: 1 stack of 16 features
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("twin_hourglass", weights="mpii", input_shape=(64, 64, 3), stacks=2)
    assert str(e.value) == ("twin_hourglass: the release twin_hourglass:mpii (umich-stacked-hourglass.t7) holds "
                            "stacks=1, but stacks=2 was asked for; leave out stacks (the weights give it) or pass "
                            "stacks=1.")
    assert not (cache / "sources").exists() and not (cache / "converted").exists()  # nothing fetched or converted
    # None is "not given": the release's 1 stack and 16 keypoints, not the builder's `stacks must be >= 1`
    model = zoo.get("twin_hourglass", weights="mpii", input_shape=(64, 64, 3), stacks=None, num_keypoints=None)
    assert len(model.outputs) == 1 and model.outputs[0].shape[-1] == 16
    # the real CPM tags: CMU's LSP release is 6 stages (pose_deploy.prototxt: Mconv1_stage2..6), refused offline
    # with no file there (the check needs none)
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(tmp_path / "empty"))
    with pytest.raises(zoo.WeightsMismatchError, match=r"^cpm: the release cpm:lsp \(pose_iter_395000\.caffemodel\) "
                                                       r"holds stages=6, but stages=3 was asked for;"):
        zoo.get("cpm", weights="lsp", stages=3)
    with pytest.raises(zoo.WeightsMismatchError, match=r"^cpm: the release cpm:flic .* holds stages=4, but stages=6 "):
        zoo.get("cpm:flic", stages=6)
    # Kaiming's ResNets stride the 1x1 branch2a: the release is converted into the builder's default
    # stride_in_3x3=False, which no weight shape shows (was: fetched, converted and loaded as another network)
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("resnet101:imagenet", stride_in_3x3=True)
    assert str(e.value) == ("resnet101: the release resnet101:imagenet (ResNet-101-model.caffemodel) holds "
                            "stride_in_3x3=False, but stride_in_3x3=True was asked for; leave out stride_in_3x3 (the "
                            "weights give it) or pass stride_in_3x3=False.")
    assert not [p for p in cache.rglob("*") if "models.zip" in p.name or "resnet101" in p.name]  # nothing fetched
