"""Pretrained weights by tag: the original release files fetched, verified, converted once, cached.

``zoo.get("cpm", weights="mpii")`` goes through :func:`resolve`:

1. Each :class:`~zoo.records.SourceFile` of the tag's record is found in the offline folder
   (``$KERAZOO_OFFLINE_DIR``, files under their original names) or in the cache
   (``<cache>/sources``), or downloaded there with ``keras.utils.get_file`` (progress bar) to a
   ``.part`` name, checked, then renamed. Archives (``.zip``) give the member the record names.
   Processes resolving the same name at once take turns (``<cache>/locks``): one downloads and
   converts, the others then use its files.
2. Hashes: a pinned sha256 must match. A tag whose hash nobody has computed from the real file yet
   records it on first download (``<cache>/sources/sha256.json``), prints it, and ``zoo.info`` says
   so; later reads must match the recorded value. A cached file that fails its check is deleted
   and fetched again; a fresh download that fails is deleted and raises.
3. The files are converted once (Caffe prototxt + caffemodel through ``converters.caffe.port``, or
   a Torch7 ``.t7`` through ``converters.torch7``) into the zoo's name-keyed weights file
   ``<cache>/converted/<arch>.<tag>-<key>.h5``, where ``key`` hashes the sources' sha256, the
   builder arguments and :data:`CONVERSION_VERSION`. Later calls load it without converting; a
   converted file whose own sha256 (kept beside it) no longer matches is converted again.

``<cache>`` is :func:`zoo.weights.cache_dir` (``$KERAZOO_HOME``, else ``$KERAS_HOME/kerazoo``, else
``~/.keras/kerazoo``).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import re
import shutil
import threading
import warnings
import zipfile
from pathlib import Path
from typing import Any

from zoo import weights as _w
from zoo.errors import WeightsFileError, ZooError
from zoo.files import atomic_target, file_lock, replace_durably, sha256sum
from zoo.registry import ModelSpec, get_spec
from zoo.records import SourceFile, WeightsRecord

__all__ = ["CONVERSION_VERSION", "OFFLINE_ENV", "resolve", "status", "split_name", "offline_dir", "recorded_sha256"]

#: Bump when a conversion would produce different weights from the same files: the cached
#: converted files are keyed by it, so users get fresh conversions automatically.
CONVERSION_VERSION = 1
#: Environment variable naming the folder where users without internet place the original files.
OFFLINE_ENV = "KERAZOO_OFFLINE_DIR"
_HASHES = "sha256.json"


def offline_dir() -> Path | None:
    """The offline folder (``$KERAZOO_OFFLINE_DIR``), or ``None`` when downloads are allowed."""
    value = os.environ.get(OFFLINE_ENV)
    return Path(value).expanduser() if value else None


def _sources_dir() -> Path:
    return _w.cache_dir() / "sources"


def _converted_dir() -> Path:
    return _w.cache_dir() / "converted"


def _safe(name: str) -> str:
    """A flat cache file name for a release path (``voc-fcn8s/deploy.prototxt`` -> ``voc-fcn8s__deploy.prototxt``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("/", "__"))


def split_name(name: str, tag: str | None = None) -> tuple[ModelSpec, str, WeightsRecord]:
    """``"cpm:mpii"``, ``"cpm.mpii"`` or ``("cpm", "mpii")`` -> (spec, tag, record); no tag = the default tag.

    Raises:
        ValueError: unknown model, a model without pretrained weights, or an unknown tag (listing the known ones).
    """
    for sep in (":", "."):
        if tag is None and sep in name:
            name, tag = name.split(sep, 1)
    spec = get_spec(name)
    if not spec.weights:
        raise ValueError(f"{spec.name} has no pretrained weights registered.")
    tag = tag or next(iter(spec.weights))
    if tag not in spec.weights:
        raise ValueError(f"{spec.name}: unknown weights tag {tag!r}. Known tags: {', '.join(spec.weights)}.")
    return spec, tag, spec.weights[tag]


# --------------------------------------------------------------------------------------------
# Hashes: pinned in the record, or recorded here on first download
# --------------------------------------------------------------------------------------------


def _hash_file() -> Path:
    return _sources_dir() / _HASHES


def _read_hashes() -> dict[str, Any]:
    path = _hash_file()
    if not path.exists():
        return {}
    try:
        hashes = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WeightsFileError(f"Recorded hashes '{path}' are unreadable ({e}); delete the file to start over.") from None
    if not isinstance(hashes, dict) or not all(isinstance(v, dict) and isinstance(v.get("sha256"), str)
                                               for v in hashes.values()):
        raise WeightsFileError(f"Recorded hashes '{path}' are not kerazoo's (expected {{file: {{\"sha256\": ...}}}}); "
                               f"delete the file to start over.")
    return hashes


def _record_hash(key: str, digest: str, where: str) -> None:
    path = _hash_file()
    with file_lock(path):  # read, add, write: another process recording at once keeps its entry
        hashes = _read_hashes()
        hashes[key] = {"sha256": digest, "from": where,
                       "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        tmp = atomic_target(path)
        tmp.write_text(json.dumps(hashes, indent=1, sort_keys=True))
        replace_durably(tmp, path)


def recorded_sha256(key: str) -> str | None:
    """The sha256 recorded on first download for a source key (``name`` or ``archive!member``)."""
    entry = _read_hashes().get(key)
    return entry["sha256"] if entry else None


def _expected(src: SourceFile, key: str) -> tuple[str | None, str]:
    """(sha256, how it is known) for the file ``key`` of ``src``: pinned, recorded, or unknown."""
    if key == src.name and src.sha256:
        return src.sha256, "pinned in kerazoo"
    recorded = recorded_sha256(key)
    if recorded:
        return recorded, f"recorded on first download in '{_hash_file()}'"
    return None, "unknown"


def _verify(src: SourceFile, key: str, path: Path, where: str, unverified: dict) -> str:
    """Check ``path`` (the file ``key`` of ``src``) against its known hash.

    A file with no known hash goes into ``unverified`` (key -> ``(sha256, where)``): :func:`resolve`
    records it only once the files have converted, so a short download or a wrong file never
    becomes the hash later reads must match. Returns the file's sha256. Raises WeightsFileError
    (the caller deletes cached files).
    """
    digest = sha256sum(path)
    expected, how = _expected(src, key)
    if expected and digest != expected:
        raise WeightsFileError(
            f"'{path}' ({key}) has sha256 {digest}, expected {expected} ({how}). The file is corrupt, "
            f"incomplete or not the release's; get it again from {src.url or src.page}."
        )
    if not expected:
        unverified[key] = (digest, where)
    return digest


# --------------------------------------------------------------------------------------------
# Getting the files
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold ``<cache>/locks/<folder>__<name>.lock`` while one process fetches or converts ``path``; the others
    wait as long as it takes (``patient``: Windows' blocking lock gives up after ~10 s, too short for a
    download). The lock files stay (deleting one that another process has open would let two hold it), in a
    folder of their own, so the cache folders hold only the files."""
    with file_lock(path, lock_path=_w.cache_dir() / "locks" / f"{path.parent.name}__{path.name}.lock",
                   patient=True):
        yield


def _where_to_get(src: SourceFile) -> str:
    return " or ".join(x for x in (src.url, src.page) if x) or "its authors' page"


def _download(src: SourceFile, target: Path, unverified: dict, progress: bool = True) -> str:
    """Download ``src.url`` to ``target`` (via ``.part``); returns the verified sha256. ``progress=False``:
    without get_file's "Downloading data from" line and progress bar."""
    import keras

    if not src.url:
        raise WeightsFileError(
            f"'{src.name}' has no direct download URL; download it from {src.page or 'its authors'} and "
            f"place it in the offline folder (set ${OFFLINE_ENV}) under the name '{src.name}'."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # per process and thread: first uses at once do not write into one file
    part = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.part")
    try:
        was_interactive = keras.config.is_interactive_logging_enabled()
        if not progress:  # get_file prints its bar whenever Keras' interactive logging is on
            keras.config.disable_interactive_logging()
        try:
            got = keras.utils.get_file(fname=part.name, origin=src.url, cache_dir=str(target.parent),
                                       cache_subdir=".", force_download=True)
        except Exception as e:  # get_file raises Exception subclasses for HTTP, URL and short reads
            raise WeightsFileError(
                f"Could not download '{src.name}' from {src.url}: {type(e).__name__}: {e}. Partial data was "
                f"deleted. Retry, or download it by hand and place it in the offline folder (${OFFLINE_ENV})."
            ) from None
        finally:
            if was_interactive:
                keras.config.enable_interactive_logging()
        got = Path(got)
        if got.resolve() != part.resolve():  # get_file falls back to /tmp/.keras when the cache is read-only
            raise WeightsFileError(f"Cache folder '{target.parent}' is not writable; set KERAZOO_HOME to a writable folder.")
        with open(part, "rb") as f:
            head = f.read(512).lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html")):
            raise WeightsFileError(
                f"{src.url} returned a web page instead of '{src.name}' (hosts such as Google Drive ask for "
                f"a confirmation on large files). Download it by hand from {src.page or src.url} and place it "
                f"in the offline folder (${OFFLINE_ENV}) under the name '{src.name}'."
            )
        digest = _verify(src, src.name, part, src.url, unverified)
        replace_durably(part, target)
        return digest
    finally:
        if part.exists():
            part.unlink()


def _extract(src: SourceFile, archive: Path, in_cache: bool) -> Path:
    """The member of ``archive`` named by ``src`` (by base name), extracted once beside the archive.

    An earlier extraction is reused when it is newer than the archive and of the member's size (a
    copy cut or edited since is extracted again; zipfile checks the member's CRC as it extracts).
    """
    out = _sources_dir() / (_safe(src.name) + ".d") / src.provides
    try:
        with zipfile.ZipFile(archive) as z:
            found = [i for i in z.infolist() if not i.is_dir() and Path(i.filename).name == src.provides]
            if len(found) != 1:
                names = ", ".join(i.filename for i in z.infolist()[:20])
                raise WeightsFileError(
                    f"Archive '{archive}' has {len(found) or 'no'} member(s) named '{src.provides}' (expected one). "
                    f"Members: {names}."
                )
            if out.is_file():
                st = out.stat()
                if st.st_mtime >= archive.stat().st_mtime and st.st_size == found[0].file_size:
                    return out
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = atomic_target(out)
            try:
                with z.open(found[0]) as r, open(tmp, "wb") as w:
                    while block := r.read(1 << 20):
                        w.write(block)
                replace_durably(tmp, out)
            finally:
                if tmp.exists():
                    tmp.unlink()
    except (zipfile.BadZipFile, EOFError) as e:
        if in_cache:
            archive.unlink()
        raise WeightsFileError(
            f"'{archive}' is not a readable zip archive ({e}){' and was deleted from the cache' if in_cache else ''}; "
            f"get '{src.name}' again from {_where_to_get(src)}."
        ) from None
    return out


def _offline_places(src: SourceFile, offline: Path) -> list[tuple[Path, str]]:
    """(path, hash key) where ``src`` may sit in the offline folder: its member alone, or the file itself."""
    places = [(offline / src.provides, src.key)] if src.member else []
    return places + [(offline / src.name, src.name), (offline / Path(src.name).name, src.name)]


def _obtain(src: SourceFile, unverified: dict, progress: bool = True) -> tuple[Path, str]:
    """(path of the file ``src`` provides, sha256 of the file read) from the offline folder or the cache."""
    offline = offline_dir()
    if offline is not None:
        for path, key in _offline_places(src, offline):
            if path.is_file():
                digest = _verify(src, key, path, str(path), unverified)
                if key == src.name and src.member:
                    return _extract(src, path, in_cache=False), digest
                return path, digest
        also = f" (or its member '{src.provides}' on its own)" if src.member else ""
        raise WeightsFileError(
            f"Offline folder '{offline}' (${OFFLINE_ENV}) has no '{src.name}'{also}. Place the file there under "
            f"that name; download it from {_where_to_get(src)}."
        )
    cached = _sources_dir() / _safe(src.name)
    digest = _cached_digest(src, cached, unverified)
    if digest is None:
        # One process downloads; others resolving the same name at once wait, then find the file (each
        # fetched its own copy of a release of hundreds of MB). Under the lock no one else is writing a
        # '.part' of this file: any there was left by a process killed mid-download, and would stay forever.
        with _exclusive(cached):
            digest = _cached_digest(src, cached, unverified)
            if digest is None:
                for stale in cached.parent.glob(f"{cached.name}.*.part"):
                    stale.unlink(missing_ok=True)
                digest = _download(src, cached, unverified, progress)
    if src.member:
        return _extract(src, cached, in_cache=True), digest
    return cached, digest


def _cached_digest(src: SourceFile, cached: Path, unverified: dict) -> str | None:
    """The sha256 of the cached copy of ``src`` when it passes its check, else ``None`` (a bad copy is deleted)."""
    if not cached.is_file():
        return None
    try:
        return _verify(src, src.name, cached, str(cached), unverified)
    except WeightsFileError as e:
        cached.unlink(missing_ok=True)
        warnings.warn(f"{e} Deleted the cached copy; downloading it again.", stacklevel=4)
        return None


# --------------------------------------------------------------------------------------------
# Converting once
# --------------------------------------------------------------------------------------------


def _conversion_key(spec: ModelSpec, tag: str, record: WeightsRecord, digests: dict[str, str]) -> str:
    text = json.dumps({"model": spec.name, "tag": tag, "sources": digests, "builder": record.builder_kwargs,
                       "format": record.source_format, "conversion": CONVERSION_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _known_digests(record: WeightsRecord) -> dict[str, str] | None:
    """Source digests known without reading the files (pinned or recorded), or None if any is unknown."""
    out = {src.key: _known_digest(src) for src in record.sources}
    return None if None in out.values() else out


def _known_digest(src: SourceFile) -> str | None:
    """The pinned or recorded sha256 of ``src`` (of the archive, else of its member placed alone)."""
    return _expected(src, src.name)[0] or (_expected(src, src.key)[0] if src.member else None)


def _converted_ok(path: Path, warn: bool = True) -> bool:
    """True if the converted file exists and still has the sha256 written beside it at conversion.

    A bad file is not deleted: the new conversion replaces it atomically, so another process that
    is loading it (or has just written it) never finds it gone.
    """
    side = path.with_name(path.name + ".sha256")
    if not path.is_file():
        return False
    if side.is_file() and side.read_text().strip() == sha256sum(path):
        return True
    if warn:
        warnings.warn(f"Converted weights '{path}' are corrupt or incomplete; converting the release again.",
                      stacklevel=4)
    return False


def _convert(spec: ModelSpec, record: WeightsRecord, files: dict[str, Path], progress: bool):
    """Build ``spec`` with the record's arguments and fill it from the release files."""
    fmt = record.source_format
    model = spec.builder(**record.builder_kwargs)
    by_suffix = {Path(k).suffix.lower(): p for k, p in files.items()}
    if fmt == "caffe":
        from converters.caffe.port import FAMILY_MAPPINGS, port
        from converters.caffe.reader import load

        missing = [s for s in (".prototxt", ".caffemodel") if s not in by_suffix]
        if missing:
            raise WeightsFileError(f"{spec.name}: the release record lists no {' / '.join(missing)} file.")
        net = load(by_suffix[".prototxt"], by_suffix[".caffemodel"], progress=progress)
        port(net, model, mapping=FAMILY_MAPPINGS.get(spec.family))
    elif fmt == "torch7":
        from converters.torch7.hourglass import port_hourglass

        if ".t7" not in by_suffix:
            raise WeightsFileError(f"{spec.name}: the release record lists no .t7 file.")
        port_hourglass(by_suffix[".t7"], model)
    else:
        raise WeightsFileError(f"{spec.name}: don't know how to convert releases in format {fmt!r}.")
    return model


def resolve(name: str, tag: str | None = None, *, progress: bool = True) -> Path:
    """The converted zoo weights file of ``name`` (``"arch"``, ``"arch:tag"`` or ``"arch.tag"``).

    Fetches, verifies and converts on first use; later calls return the cached file at once. A cache
    that cannot be written (a read-only mount) serves the tags it already holds converted.

    Returns:
        Path of a zoo name-keyed weights file (load it with ``zoo.get(arch, weights=path)``).
    Raises:
        ValueError: unknown model or tag.
        WeightsFileError: a file that is missing offline (the message names the file to place and the
            URL), a failed or partial download, a hash mismatch (the cached file is deleted), an archive
            without the expected member, or a cache folder that cannot be written (naming it and
            ``$KERAZOO_HOME``).
        WeightsMismatchError: release files that do not fit the zoo builder (another architecture).
    """
    try:
        return _resolve(name, tag, progress)
    except WeightsFileError:
        raise
    except OSError as e:  # "[Errno 30] Read-only file system: '<cache>/locks'" said neither what nor what to do
        cache = _w.cache_dir()
        where = next((p for p in (e.filename, e.filename2) if isinstance(p, (str, bytes, os.PathLike))
                      and _is_under(p, cache)), None)
        if where is None:
            raise
        raise _unwritable_cache(e, cache, Path(os.fsdecode(where))) from None


def _is_under(path, folder: Path) -> bool:
    path, folder = os.path.abspath(os.fsdecode(path)), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _unwritable_cache(e: OSError, cache: Path, where: Path) -> WeightsFileError:
    """The error for ``e``, raised on ``where`` in the cache folder ``cache``."""
    blocker = None
    if e.errno in (errno.ENOTDIR, errno.EEXIST):  # a file where a folder should be: name the file
        blocker = next((p for p in (where, *where.parents) if p.exists() and not p.is_dir()), None)
    reason = f"'{blocker}' is a file, expected a folder" if blocker else f"{e.strerror or e}: '{where}'"
    return WeightsFileError(
        f"Weights cache folder '{cache}' cannot be written ({reason}). Set $KERAZOO_HOME to a writable folder "
        f"(converted weights are written there also when the original files come from the offline folder, "
        f"${OFFLINE_ENV}), or fill this cache where it is writable (kerazoo download NAME:TAG): a read-only "
        f"cache serves the tags it holds converted."
    )


def _resolve(name: str, tag: str | None, progress: bool) -> Path:
    spec, tag, record = split_name(name, tag)
    if not record.sources:  # weights already in the zoo's format: one file, sha256-pinned
        return _w.fetch(record, progress=progress)
    out_dir = _converted_dir()
    known = _known_digests(record)
    if known is not None:
        path = out_dir / f"{spec.name}.{tag}-{_conversion_key(spec, tag, record, known)}.h5"
        if _converted_ok(path):
            return path
    files, digests, unverified = {}, {}, {}
    for src in record.sources:
        files[src.provides], digests[src.key] = _obtain(src, unverified, progress)
    path = out_dir / f"{spec.name}.{tag}-{_conversion_key(spec, tag, record, digests)}.h5"
    if _converted_ok(path):
        return path
    with _exclusive(path):  # one conversion at a time; those waiting find it done (a big release is GBs of RAM each)
        if _converted_ok(path, warn=False):
            return path
        return _convert_and_save(spec, tag, record, files, unverified, path, progress)


def _convert_and_save(spec, tag, record, files, unverified, path, progress) -> Path:
    """Convert the release ``files`` and write them to ``path`` (its sha256 beside it); then record the
    hashes of ``unverified`` sources."""
    out_dir = path.parent
    if progress:
        print(f"kerazoo: converting {spec.name}:{tag} from {', '.join(files)} (once; cached in '{out_dir}')")
    try:
        model = _convert(spec, record, files, progress)
    except (ZooError, ValueError, NotImplementedError) as e:  # converter errors: say which release it was
        dropped = _forget_unverified(record, unverified)
        try:
            err = type(e)(f"{spec.name}:{tag}: the release files ({', '.join(map(str, files.values()))}) do not "
                          f"convert into zoo.get('{spec.name}', **{record.builder_kwargs}): {e}{dropped}")
        except Exception:  # an exception class with another constructor: keep the original
            raise e from None
        raise err from None
    out_dir.mkdir(parents=True, exist_ok=True)
    # The hash goes beside the file before the file takes its name: whoever sees the file sees its hash.
    staged = atomic_target(path)
    try:
        _w.save_weights(model, staged, record, model_name=spec.name)
        side = path.with_name(path.name + ".sha256")
        tmp = atomic_target(side)
        tmp.write_text(sha256sum(staged) + "\n")
        replace_durably(tmp, side)
        replace_durably(staged, path)
    finally:
        if staged.exists():
            staged.unlink()
    for key, (digest, where) in unverified.items():  # the files converted: now their hashes are worth keeping
        _record_hash(key, digest, where)
        print(f"kerazoo: sha256 of {key} recorded on first use: {digest} (kerazoo pins no hash for this "
              f"file yet; later reads must match it)")
    return path


def _forget_unverified(record: WeightsRecord, unverified: dict) -> str:
    """After a failed conversion: delete the cached downloads no hash vouched for, so the next call
    fetches them again (a short read without Content-Length is only found by the converter).
    Returns a sentence for the error message."""
    deleted = []
    for src in record.sources:
        cached = _sources_dir() / _safe(src.name)
        if src.name in unverified and cached.is_file():
            cached.unlink()
            deleted.append(str(cached))
            extracted = _sources_dir() / (_safe(src.name) + ".d")
            if extracted.is_dir():
                shutil.rmtree(extracted, ignore_errors=True)
    if deleted:
        return f" The downloaded {', '.join(deleted)} had no known sha256 and was deleted; the next call downloads it again."
    return " No sha256 was recorded for these files, so a corrected file is accepted on the next call." if unverified else ""


def status(name: str, tag: str | None = None) -> dict[str, Any]:
    """What :func:`resolve` would do now, without downloading: for ``kerazoo list --pretrained``.

    Returns:
        ``{"name", "tag", "converted": bool, "sources": [{"file", "state", "sha256", "url"}]}``;
        ``state`` is ``"offline"``, ``"missing offline"``, ``"cached"`` or ``"download"``; ``sha256`` is
        ``"pinned"``, ``"recorded <hash>"`` or ``"unknown (recorded on first download)"``.
    """
    spec, tag, record = split_name(name, tag)
    offline = offline_dir()
    rows = []
    for src in record.sources:
        if offline is not None:
            present = any(p.is_file() for p, _ in _offline_places(src, offline))
            state = "offline" if present else "missing offline"
        else:
            state = "cached" if (_sources_dir() / _safe(src.name)).is_file() else "download"
        digest = _known_digest(src)
        sha = "pinned" if src.sha256 else f"recorded {digest}" if digest else "unknown (recorded on first download)"
        rows.append({"file": src.key, "state": state, "sha256": sha, "url": src.url or src.page})
    known = _known_digests(record) if record.sources else None
    converted = bool(known) and (_converted_dir() / f"{spec.name}.{tag}-{_conversion_key(spec, tag, record, known)}.h5").is_file()
    if not record.sources:
        converted = bool(record.file_name) and (_w.cache_dir() / record.file_name).is_file()
    return {"name": spec.name, "tag": tag, "converted": converted, "sources": rows}
