"""Release source files: found offline or in the cache, else downloaded; sha256-checked; archives extracted.

:func:`obtain` gives the local path of one :class:`~zoo.records.SourceFile` of a weights record, for
:mod:`zoo.pretrained` to convert. Where a file comes from, in order: the offline folder
(``$KERAZOO_OFFLINE_DIR``, files under their original names), the cache (``<cache>/sources``), else a download
(``keras.utils.get_file``, progress bar) to a per-thread ``.part`` name that is checked, then renamed. A pinned
sha256 must match; an unpinned file's sha256 is recorded on first download (``<cache>/sources/sha256.json``)
and must match from then on. A SHA-1 published by an independent party (``SourceFile.sha1``: of the file the
source provides, an archive's member checked once extracted) must match on every read, the first included.
Processes fetching the same file take turns (:func:`exclusive`).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import threading
import warnings
import zipfile
from pathlib import Path
from typing import Any

from zoo import weights as _w
from zoo.errors import WeightsFileError
from zoo.files import atomic_target, file_lock, replace_durably
from zoo.records import SourceFile

__all__ = ["OFFLINE_ENV", "obtain", "offline_dir", "recorded_sha256", "exclusive", "cache_name"]

#: Environment variable naming the folder where users without internet place the original files.
OFFLINE_ENV = "KERAZOO_OFFLINE_DIR"
_HASHES = "sha256.json"


def offline_dir() -> Path | None:
    """The offline folder (``$KERAZOO_OFFLINE_DIR``), or ``None`` when downloads are allowed."""
    value = os.environ.get(OFFLINE_ENV)
    return Path(value).expanduser() if value else None


def sources_dir() -> Path:
    return _w.cache_dir() / "sources"


def cache_name(name: str) -> str:
    """A flat cache file name for a release path (``voc-fcn8s/deploy.prototxt`` -> ``voc-fcn8s__deploy.prototxt``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("/", "__"))


# --------------------------------------------------------------------------------------------
# Hashes: pinned in the record, or recorded here on first download
# --------------------------------------------------------------------------------------------


def _hash_file() -> Path:
    return sources_dir() / _HASHES


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


def record_hash(key: str, digest: str, where: str, checked: str = "") -> None:
    """Record ``digest`` as the sha256 of ``key`` (downloaded from ``where``); ``checked``: what vouched for
    the file at its first use (a published SHA-1), kept in the entry."""
    path = _hash_file()
    with file_lock(path):  # read, add, write: another process recording at once keeps its entry
        hashes = _read_hashes()
        hashes[key] = {"sha256": digest, "from": where,
                       "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        if checked:
            hashes[key]["checked"] = checked
        tmp = atomic_target(path)
        tmp.write_text(json.dumps(hashes, indent=1, sort_keys=True))
        replace_durably(tmp, path)


def recorded_sha256(key: str) -> str | None:
    """The sha256 recorded on first download for a source key (``name`` or ``archive!member``)."""
    entry = _read_hashes().get(key)
    return entry["sha256"] if entry else None


def expected_sha256(src: SourceFile, key: str) -> tuple[str | None, str]:
    """(sha256, how it is known) for the file ``key`` of ``src``: pinned, recorded, or unknown."""
    if key == src.name and src.sha256:
        return src.sha256, "pinned in kerazoo"
    recorded = recorded_sha256(key)
    if recorded:
        return recorded, f"recorded on first download in '{_hash_file()}'"
    return None, "unknown"


def _digests(path: Path, *algorithms: str) -> list[str]:
    """Hex digests of a file by each of ``algorithms`` (hashlib names), in one read (release files run to
    hundreds of MB)."""
    hashes = [hashlib.new(a) for a in algorithms]
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            for h in hashes:
                h.update(block)
    return [h.hexdigest() for h in hashes]


def _sha1_mismatch(src: SourceFile, what: str, digest: str, done: str = "") -> WeightsFileError:
    """The error for ``what`` (the file, named) having SHA-1 ``digest`` instead of ``src``'s published one."""
    return WeightsFileError(
        f"{what} has SHA-1 {digest}, expected {src.sha1} (published by {src.sha1_from}). The file is corrupt, "
        f"incomplete or not the release's{done}; get it again from {_where_to_get(src)}."
    )


def _checked(src: SourceFile) -> str:
    """How a file vouched for by its published SHA-1 was checked, for the first-use notice and record."""
    member = f"its member {src.member} " if src.member else ""
    return f"{member}checked against the SHA-1 published by {src.sha1_from}"


def _verify(src: SourceFile, key: str, path: Path, where: str, unverified: dict) -> str:
    """Check ``path`` (the file ``key`` of ``src``) against its known sha256 and, when ``key`` is the file
    ``src`` provides, its published SHA-1 (both from one read).

    A file with no known sha256 goes into ``unverified`` (key -> ``(sha256, where, checked)``; ``checked``
    says how a published SHA-1 vouched for it, else ``""``): :func:`resolve` records it only once the files
    have converted, so a short download or a wrong file never becomes the hash later reads must match.
    Returns the file's sha256. Raises WeightsFileError (the caller deletes cached files).
    """
    published = src.sha1 is not None and key == src.key  # an archive's SHA-1 is its member's: checked on extraction
    digest, *sha1 = _digests(path, "sha256", *(["sha1"] if published else []))
    expected, how = expected_sha256(src, key)
    if expected and digest != expected:
        raise WeightsFileError(
            f"'{path}' ({key}) has sha256 {digest}, expected {expected} ({how}). The file is corrupt, "
            f"incomplete or not the release's; get it again from {src.url or src.page}."
        )
    if published and sha1[0] != src.sha1:
        raise _sha1_mismatch(src, f"'{path}' ({key})", sha1[0])
    if not expected:
        unverified[key] = (digest, where, _checked(src) if published else "")
    return digest


# --------------------------------------------------------------------------------------------
# Getting the files
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def exclusive(path: Path):
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


def _extract(src: SourceFile, archive: Path, in_cache: bool, unverified: dict) -> Path:
    """The member of ``archive`` named by ``src`` (by base name), extracted once beside the archive.

    An earlier extraction is reused when it is newer than the archive, of the member's size and, with a
    published SHA-1, matches it (a copy cut or edited since is extracted again; zipfile checks the
    member's CRC as it extracts). A fresh extraction is SHA-1-checked as it is written; a mismatch
    deletes the archive from the cache (an offline archive is left alone) and raises WeightsFileError.
    The archive's unverified entry then says its member was checked.
    """
    out = sources_dir() / (cache_name(src.name) + ".d") / src.provides
    mismatch = None  # (member's name in the archive, its SHA-1) when not the published one
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
                if (st.st_mtime >= archive.stat().st_mtime and st.st_size == found[0].file_size
                        and (src.sha1 is None or _digests(out, "sha1") == [src.sha1])):
                    return _member_checked(src, out, unverified)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = atomic_target(out)
            sha1 = hashlib.sha1() if src.sha1 else None
            try:
                with z.open(found[0]) as r, open(tmp, "wb") as w:
                    while block := r.read(1 << 20):
                        w.write(block)
                        if sha1 is not None:
                            sha1.update(block)
                if sha1 is not None and sha1.hexdigest() != src.sha1:
                    mismatch = (found[0].filename, sha1.hexdigest())
                else:
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
    if mismatch:  # the archive is closed now (Windows deletes no open file)
        out.unlink(missing_ok=True)
        if in_cache:
            archive.unlink()
        raise _sha1_mismatch(src, f"Member '{mismatch[0]}' of '{archive}' ({src.key})", mismatch[1],
                             " (the archive was deleted from the cache)" if in_cache else "")
    return _member_checked(src, out, unverified)


def _member_checked(src: SourceFile, out: Path, unverified: dict) -> Path:
    """``out``, once its archive's first-use entry (if any) says the member matched its published SHA-1."""
    if src.sha1 is not None and src.name in unverified:
        digest, where, _ = unverified[src.name]
        unverified[src.name] = (digest, where, _checked(src))
    return out


def offline_places(src: SourceFile, offline: Path) -> list[tuple[Path, str]]:
    """(path, hash key) where ``src`` may sit in the offline folder: its member alone, or the file itself."""
    places = [(offline / src.provides, src.key)] if src.member else []
    return places + [(offline / src.name, src.name), (offline / Path(src.name).name, src.name)]


def obtain(src: SourceFile, unverified: dict, progress: bool = True) -> tuple[Path, str]:
    """(path of the file ``src`` provides, sha256 of the file read) from the offline folder or the cache."""
    offline = offline_dir()
    if offline is not None:
        for path, key in offline_places(src, offline):
            if path.is_file():
                digest = _verify(src, key, path, str(path), unverified)
                if key == src.name and src.member:
                    return _extract(src, path, False, unverified), digest
                return path, digest
        also = f" (or its member '{src.provides}' on its own)" if src.member else ""
        raise WeightsFileError(
            f"Offline folder '{offline}' (${OFFLINE_ENV}) has no '{src.name}'{also}. Place the file there under "
            f"that name; download it from {_where_to_get(src)}."
        )
    cached = sources_dir() / cache_name(src.name)
    digest = _cached_digest(src, cached, unverified)
    if digest is None:
        # One process downloads; others resolving the same name at once wait, then find the file (each
        # fetched its own copy of a release of hundreds of MB). Under the lock no one else is writing a
        # '.part' of this file: any there was left by a process killed mid-download, and would stay forever.
        with exclusive(cached):
            digest = _cached_digest(src, cached, unverified)
            if digest is None:
                for stale in cached.parent.glob(f"{cached.name}.*.part"):
                    stale.unlink(missing_ok=True)
                digest = _download(src, cached, unverified, progress)
    if src.member:
        return _extract(src, cached, True, unverified), digest
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
