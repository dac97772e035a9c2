"""The pretrained cache under failure and concurrency: what a bad first download, a wrong offline
file, a damaged converted file and simultaneous first uses leave behind (found by an adversarial review)."""

import dataclasses
import hashlib
import http.server
import re
import threading
import time
import zipfile
from pathlib import Path

import pytest

import zoo
from zoo import pretrained, registry, sources
from tests.zoo.test_pretrained import cache, twin  # noqa: F401 - fixtures: a fresh cache, fake releases

# On the tests that convert a release into a Keras model; the others check downloads, hash records and cache files
# only (zoo.weights.fetch, sources.obtain), which no backend computes: ./dev test's TensorFlow pass runs them once.
agnostic = pytest.mark.backend_agnostic


class _CutNoLengthHandler(http.server.BaseHTTPRequestHandler):
    """Sends half of ``data`` with no Content-Length, then closes: a short read urllib cannot see."""

    data = b""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.data[: len(self.data) // 2])

    def log_message(self, *args):
        pass


@agnostic
def test_short_download_without_length_is_neither_kept_nor_recorded(twin, cache):
    # Only the converter sees the file is short: its hash must not become the one later reads must match.
    name, record, _, files = twin("pspnet50", "ade20k")
    _CutNoLengthHandler.data = files[record.sources[0].key]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutNoLengthHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/pspnet50_ADE20K.caffemodel"
        src = dataclasses.replace(record.sources[0], url=url)
        registry._MODELS[name].weights["ade20k"] = record.replace(sources=(src, record.sources[1]))
        with pytest.raises(Exception, match=r"truncated or corrupt.*had no known sha256 and was deleted"):
            zoo.get(name, weights="ade20k")
    finally:
        server.shutdown()
    assert pretrained.recorded_sha256("pspnet50_ADE20K.caffemodel") is None
    assert not (cache / "sources" / "pspnet50_ADE20K.caffemodel").exists()
    registry._MODELS[name].weights["ade20k"] = record  # the real file is reachable again
    zoo.get(name, weights="ade20k")
    assert pretrained.recorded_sha256("pspnet50_ADE20K.caffemodel") is not None


@agnostic
def test_wrong_offline_file_is_not_recorded(twin, tmp_path, monkeypatch):
    # The offline folder also takes a file by its base name: another FCN's deploy.prototxt must not
    # become the recorded hash of voc-fcn8s/deploy.prototxt.
    name, record, _, files = twin("fcn8s", "voc", publish=False)
    off = tmp_path / "off"
    off.mkdir()
    caffemodel, proto = record.sources
    (off / Path(caffemodel.name).name).write_bytes(files[caffemodel.key])
    (off / "deploy.prototxt").write_bytes(files[proto.key].replace(b"num_output: 5", b"num_output: 7"))
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(off))
    with pytest.raises(Exception, match="No sha256 was recorded for these files") as e:
        zoo.get(name, weights="voc")
    assert re.search(r"[.!?)] No sha256 was recorded", str(e.value)), str(e.value)  # two sentences, not run on
    assert pretrained.recorded_sha256(proto.name) is None
    (off / "deploy.prototxt").write_bytes(files[proto.key])  # the right file
    zoo.get(name, weights="voc")


@agnostic
def test_a_bad_converted_file_is_replaced_not_deleted(twin, cache, monkeypatch):
    # Another process may be loading it, or have just written it (hash beside it a moment later, before):
    # the new conversion takes its place atomically; the path never stops existing.
    name, record, blobs, _ = twin("fcn32s", "voc")
    zoo.get(name, weights="voc")
    converted = next((cache / "converted").glob("*.h5"))
    converted.with_name(converted.name + ".sha256").write_text("0" * 64 + "\n")
    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):
        assert self.name not in (converted.name, converted.name + ".sha256"), f"deleted {self}"
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.warns(UserWarning, match="corrupt or incomplete; converting the release again"):
        zoo.get(name, weights="voc")
    side = converted.with_name(converted.name + ".sha256").read_text().strip()
    assert side == zoo.weights.sha256sum(converted) and not list((cache / "converted").glob(".*.tmp"))


def test_hash_records_written_at_once_are_all_kept(cache, monkeypatch):
    read = sources._read_hashes

    def slow_read():  # widen the read-modify-write window that two first uses at once fall into
        hashes = read()
        time.sleep(0.01)
        return hashes

    monkeypatch.setattr(sources, "_read_hashes", slow_read)
    workers = [threading.Thread(target=lambda t=t: [sources.record_hash(f"f{t}_{i}", f"{t:02d}{i:062d}", "test")
                                                    for i in range(10)]) for t in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert all(pretrained.recorded_sha256(f"f{t}_{i}") for t in range(4) for i in range(10))


# --- zoo.weights.fetch: a record whose file is already in the zoo's format --------------------------------------

class _ChunkedHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``data`` chunked; ``/cut`` stops in the middle of a chunk and closes, ``/stall`` sends the
    headers and then nothing."""

    protocol_version = "HTTP/1.1"
    data = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.path == "/stall":
            time.sleep(3)
        elif self.path == "/cut":
            half = len(self.data) // 2
            self.wfile.write(b"%x\r\n" % len(self.data) + self.data[:half])
        else:
            self.wfile.write(b"%x\r\n" % len(self.data) + self.data + b"\r\n0\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def chunked_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ChunkedHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_under_failure_never_leaves_a_bad_file(cache, chunked_server):
    _ChunkedHandler.data = data = bytes(range(256)) * 4000
    rec = zoo.WeightsRecord(url=f"{chunked_server}/cut", file_name="w.h5", sha256=hashlib.sha256(data).hexdigest())
    # A cut chunked reply raised http.client.IncompleteRead itself, naming neither the URL nor the file
    with pytest.raises(zoo.WeightsFileError, match=r"Could not download 'http://127.0.0.1:\d+/cut'.*IncompleteRead"):
        zoo.weights.fetch(rec, progress=False)
    # a server that stops sending hung forever (no timeout)
    start = time.monotonic()
    with pytest.raises(zoo.WeightsFileError, match=r"/stall'.*timed out"):
        zoo.weights.fetch(rec.replace(url=f"{chunked_server}/stall"), progress=False, timeout=0.5)
    assert time.monotonic() - start < 2.5
    assert not list(cache.iterdir())  # no file, no temporary file
    good = zoo.weights.fetch(rec.replace(url=f"{chunked_server}/full"), progress=False)
    assert good == cache / "w.h5" and good.read_bytes() == data
    good.write_bytes(data[:-1] + b"x")  # damaged in the cache: fetched again, with a warning
    with pytest.warns(UserWarning, match="fail their sha256 check; downloading again"):
        assert zoo.weights.fetch(rec.replace(url=f"{chunked_server}/full"), progress=False).read_bytes() == data
    assert sorted(p.name for p in cache.iterdir()) == ["w.h5"]


@pytest.mark.parametrize("file_name", ["../escaped.h5", "sub/w.h5", ".."])
def test_fetch_writes_only_into_the_cache(cache, tmp_path, file_name):
    src = tmp_path / "w.h5"
    src.write_bytes(b"weights")
    rec = zoo.WeightsRecord(url=src.as_uri(), file_name=file_name, sha256=hashlib.sha256(b"weights").hexdigest())
    with pytest.raises(zoo.WeightsFileError, match="must be a plain file name"):
        zoo.weights.fetch(rec, progress=False)  # wrote tmp_path/escaped.h5, outside the cache, before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.h5"]


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``data`` in 8 pieces 50 ms apart, so downloads started together overlap."""

    data = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        step = -(-len(self.data) // 8)
        for i in range(0, len(self.data), step):
            self.wfile.write(self.data[i:i + step])
            self.wfile.flush()
            time.sleep(0.05)

    def log_message(self, *args):
        pass


def test_threads_fetching_one_release_at_once(twin, cache):
    # The '.part' name was per process only: two threads of one process wrote into one file and the
    # first to finish renamed it under the other, which then failed (or recorded a mixed file's hash).
    name, record, _, files = twin("resnet50", "imagenet", publish=False)
    src = record.sources[0]
    assert src.member  # models.zip holding ResNet-50-model.caffemodel
    archive = cache.parent / "models.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"models/{src.member}", files[src.key])
    _SlowHandler.data = archive.read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    src = dataclasses.replace(src, url=f"http://127.0.0.1:{server.server_address[1]}/models.zip")
    results, errors = [], []

    def obtain():
        try:
            results.append(sources.obtain(src, {}))
        except Exception as e:  # noqa: BLE001 - collected for the assertion below
            errors.append(e)

    try:
        workers = [threading.Thread(target=obtain) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        server.shutdown()
    assert not errors, errors
    digest = hashlib.sha256(_SlowHandler.data).hexdigest()
    assert [d for _, d in results] == [digest] * 3
    assert all(p.read_bytes() == files[src.key] for p, _ in results)
    assert not list((cache / "sources").glob("*.part"))


def test_an_extracted_member_cut_since_is_extracted_again(twin, cache, tmp_path, monkeypatch):
    # The member of a release archive is extracted once and reused while newer than the archive; a
    # copy cut since (disk full, an edit) failed every later conversion until deleted by hand.
    name, record, _, files = twin("resnet50", "imagenet", publish=False)
    src = record.sources[0]
    assert src.member
    off = tmp_path / "off"
    off.mkdir()
    with zipfile.ZipFile(off / Path(src.name).name, "w") as z:
        z.writestr(f"models/{src.member}", files[src.key])
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(off))
    path, _ = sources.obtain(src, {})
    assert path.read_bytes() == files[src.key]
    path.write_bytes(files[src.key][:100])  # newer than the archive, but short
    again, _ = sources.obtain(src, {})
    assert again == path and again.read_bytes() == files[src.key]


class _CountingSlowHandler(_SlowHandler):
    """:class:`_SlowHandler` serving ``files`` by path, counting the requests of each."""

    files: dict = {}
    requests: dict = {}

    def do_GET(self):
        path = self.path.lstrip("/")
        self.requests[path] = self.requests.get(path, 0) + 1
        self.data = self.files[path]
        super().do_GET()


def _resolve_in_a_process(name, spec_args, tag, queue):
    """A fresh (spawned) process: register the twin as the test did, resolve it, report what it saw."""
    import contextlib
    import io

    from tests.zoo.test_pretrained import tiny
    from zoo.registry import ModelSpec

    registry._MODELS[name] = ModelSpec(name, tiny, *spec_args)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            path = pretrained.resolve(name, tag, progress=False)
        queue.put((str(path), out.getvalue()))
    except BaseException as e:  # noqa: BLE001 - reported to the test
        queue.put((f"{type(e).__name__}: {e}", out.getvalue()))


@agnostic
@pytest.mark.jax_pass_only
def test_processes_resolving_one_name_at_once_fetch_and_convert_it_once(twin, cache):
    """Three processes (real ones, spawned) resolving a release at once: each downloaded every file (hundreds
    of MB each for the real releases) and converted it; now one does, the others wait and use its files.
    A '.part' left by a process killed mid-download stayed in the cache forever; it is deleted."""
    import multiprocessing

    name, record, _, files = twin("fcn32s", "voc", publish=False)
    _CountingSlowHandler.files = {src.name: files[src.key] for src in record.sources}
    _CountingSlowHandler.requests = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingSlowHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    record = record.replace(sources=tuple(dataclasses.replace(s, url=f"{base}/{s.name}") for s in record.sources))
    stale = cache / "sources" / f"{sources.cache_name(record.sources[0].name)}.4242-1.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a download")
    spec = registry._MODELS[name]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_resolve_in_a_process,
                           args=(name, (spec.family, ("fc",), "classes", {"voc": record}), "voc", queue))
               for _ in range(3)]
    try:
        for w in workers:
            w.start()
        results = [queue.get(timeout=240) for _ in workers]
        for w in workers:
            w.join(timeout=60)
    finally:
        server.shutdown()
    converted = sorted((cache / "converted").glob("*.h5"))
    assert len(converted) == 1 and [p for p, _ in results] == [str(converted[0])] * 3, results
    assert _CountingSlowHandler.requests == {src.name: 1 for src in record.sources}
    assert sum(out.count("sha256 of") for _, out in results) == len(record.sources)  # recorded by the one converting
    assert not list((cache / "sources").glob("*.part"))


@agnostic
def test_a_cache_that_cannot_be_written_is_named_with_the_remedy(twin, cache, tmp_path, monkeypatch, capsys):
    """A cache folder that cannot be written (a read-only mount; here a regular file where a folder of the path
    should be, which stops root too) raised the bare OSError "[Errno 20] Not a directory: '<cache>/locks'" (on a
    read-only mount "[Errno 30] Read-only file system: ..."), naming neither the cache nor what to do."""
    from tests.zoo.test_pretrained import tiny
    from zoo.cli import main

    name, record, _, files = twin("fcn8s", "voc")
    (tmp_path / "a_file").write_text("x")
    unwritable = tmp_path / "a_file" / "cache"
    monkeypatch.setenv("KERAZOO_HOME", str(unwritable))

    def expect(error, cache_folder, blocker):
        message = str(error)
        assert message.startswith(f"Weights cache folder '{cache_folder}' cannot be written ('{blocker}' is a "
                                  f"file, expected a folder). Set $KERAZOO_HOME to a writable folder"), message
        assert "$KERAZOO_OFFLINE_DIR" in message

    with pytest.raises(zoo.WeightsFileError) as e:  # an empty cache: the first lock file
        zoo.get(name, weights="voc")
    expect(e.value, unwritable, tmp_path / "a_file")
    assert main(["download", f"{name}:voc", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kerazoo download: error: Weights cache folder '{unwritable}' cannot be written") \
        and err.count("\n") == 1, err
    # the original files in the offline folder: the converted weights still go into the cache
    offline = tmp_path / "offline"
    for src in record.sources:
        (offline / src.name).parent.mkdir(parents=True, exist_ok=True)
        (offline / src.name).write_bytes(files[src.key])
    monkeypatch.setenv(pretrained.OFFLINE_ENV, str(offline))
    with pytest.raises(zoo.WeightsFileError) as e:
        zoo.get(name, weights="voc")
    expect(e.value, unwritable, tmp_path / "a_file")
    monkeypatch.delenv(pretrained.OFFLINE_ENV)
    # a writable cache whose converted/ folder is blocked: "[Errno 17] File exists: '<cache>/converted'"
    monkeypatch.setenv("KERAZOO_HOME", str(cache))
    cache.mkdir()
    (cache / "converted").write_text("x")
    with pytest.raises(zoo.WeightsFileError) as e:
        zoo.get(name, weights="voc")
    expect(e.value, cache, cache / "converted")
    # a tag already in the zoo's format (zoo.weights.fetch): its temporary file beside the target
    data = b"not read: the cache fails first"
    rec = zoo.WeightsRecord(url=(tmp_path / "w.h5").as_uri(), file_name="w.h5", sha256=hashlib.sha256(data).hexdigest())
    (tmp_path / "w.h5").write_bytes(data)
    monkeypatch.setitem(registry._MODELS, "twin_zoo", registry.ModelSpec("twin_zoo", tiny, "resnet", ("fc",), "classes",
                                                                          {"w": rec}))
    monkeypatch.setenv("KERAZOO_HOME", str(unwritable))
    with pytest.raises(zoo.WeightsFileError) as e:
        zoo.get("twin_zoo", weights="w")
    expect(e.value, unwritable, tmp_path / "a_file")
