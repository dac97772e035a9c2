"""Pretrained weights by tag: the original release files fetched, verified, converted once, cached.

``zoo.get("cpm", weights="mpii")`` goes through :func:`resolve`:

1. (:mod:`zoo.sources`) Each :class:`~zoo.records.SourceFile` of the tag's record is found in the offline folder
   (``$KERAZOO_OFFLINE_DIR``, files under their original names) or in the cache
   (``<cache>/sources``), or downloaded there with ``keras.utils.get_file`` (progress bar) to a
   ``.part`` name, checked, then renamed. Archives (``.zip``) give the member the record names.
   Processes resolving the same name at once take turns (``<cache>/locks``): one downloads and
   converts, the others then use its files.
2. Hashes: a pinned sha256 must match. A tag whose hash nobody has computed from the real file yet
   records it on first download (``<cache>/sources/sha256.json``), prints it, and ``zoo.info`` says
   so; later reads must match the recorded value. A file with a SHA-1 published by an independent
   party (``SourceFile.sha1``) must match it on every read, the first download included; its sha256
   is then recorded as checked. A cached file that fails its check is deleted and fetched again; a
   fresh download that fails is deleted and raises.
3. The files are converted once (Caffe prototxt + caffemodel through ``converters.caffe.port``, or
   a Torch7 ``.t7`` through ``converters.torch7``) into the zoo's name-keyed weights file
   ``<cache>/converted/<arch>.<tag>-<key>.h5``, where ``key`` hashes the sources' sha256, the
   builder arguments and :data:`CONVERSION_VERSION`. Later calls load it without converting; a
   converted file whose own sha256 (kept beside it) no longer matches is converted again.

``<cache>`` is :func:`zoo.weights.cache_dir` (``$KERAZOO_HOME``, else ``$KERAS_HOME/kerazoo``, else
``~/.keras/kerazoo``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from zoo import weights as _w
from zoo.errors import WeightsFileError, ZooError
from zoo.files import atomic_target, replace_durably, sha256sum
from zoo.registry import ModelSpec, get_spec
from zoo.records import SourceFile, WeightsRecord
from zoo.sources import (OFFLINE_ENV, cache_name, exclusive, expected_sha256, obtain, offline_dir, offline_places,
                         record_hash, recorded_sha256, sources_dir)

__all__ = ["CONVERSION_VERSION", "OFFLINE_ENV", "resolve", "status", "split_name", "offline_dir", "recorded_sha256"]

#: Bump when a conversion would produce different weights from the same files: the cached
#: converted files are keyed by it, so users get fresh conversions automatically.
CONVERSION_VERSION = 1


def _converted_dir() -> Path:
    return _w.cache_dir() / "converted"


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
    return expected_sha256(src, src.name)[0] or (expected_sha256(src, src.key)[0] if src.member else None)


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
    from zoo.gc_pause import without_cyclic_gc

    with without_cyclic_gc():  # as zoo.get builds
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
        files[src.provides], digests[src.key] = obtain(src, unverified, progress)
    path = out_dir / f"{spec.name}.{tag}-{_conversion_key(spec, tag, record, digests)}.h5"
    if _converted_ok(path):
        return path
    with exclusive(path):  # one conversion at a time; those waiting find it done (a big release is GBs of RAM each)
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
        said = str(e) if not dropped or str(e).endswith(".") else f"{e}."  # "... only 716236 left No sha256 was"
        try:
            err = type(e)(f"{spec.name}:{tag}: the release files ({', '.join(map(str, files.values()))}) do not "
                          f"convert into zoo.get('{spec.name}', **{record.builder_kwargs}): {said}{dropped}")
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
    for key, (digest, where, checked) in unverified.items():  # the files converted: their hashes are worth keeping
        record_hash(key, digest, where, checked)
        how = checked or "kerazoo pins no hash for this file yet"
        print(f"kerazoo: sha256 of {key} recorded on first use: {digest} ({how}; later reads must match it)")
    return path


def _forget_unverified(record: WeightsRecord, unverified: dict) -> str:
    """After a failed conversion: delete the cached downloads no hash vouched for, so the next call
    fetches them again (a short read without Content-Length is only found by the converter); one that
    matched its published SHA-1 is the release's and stays. Returns a sentence for the error message."""
    deleted = []
    for src in record.sources:
        cached = sources_dir() / cache_name(src.name)
        if src.name in unverified and not unverified[src.name][2] and cached.is_file():
            cached.unlink()
            deleted.append(str(cached))
            extracted = sources_dir() / (cache_name(src.name) + ".d")
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
        ``"pinned"``, ``"recorded <hash>"`` or ``"unknown (recorded on first download)"``, after
        ``"sha1 published (<who>); sha256 "`` for a file with a published SHA-1 (checked on first download).
    """
    spec, tag, record = split_name(name, tag)
    offline = offline_dir()
    rows = []
    for src in record.sources:
        if offline is not None:
            present = any(p.is_file() for p, _ in offline_places(src, offline))
            state = "offline" if present else "missing offline"
        else:
            state = "cached" if (sources_dir() / cache_name(src.name)).is_file() else "download"
        digest = _known_digest(src)
        sha = "pinned" if src.sha256 else f"recorded {digest}" if digest else "unknown (recorded on first download)"
        if src.sha1:
            sha = f"sha1 published ({src.sha1_from}); sha256 {sha}"
        rows.append({"file": src.key, "state": state, "sha256": sha, "url": src.url or src.page})
    known = _known_digests(record) if record.sources else None
    converted = bool(known) and (_converted_dir() / f"{spec.name}.{tag}-{_conversion_key(spec, tag, record, known)}.h5").is_file()
    if not record.sources:
        converted = bool(record.file_name) and (_w.cache_dir() / record.file_name).is_file()
    return {"name": spec.name, "tag": tag, "converted": converted, "sources": rows}
