"""Weights records (metadata that travels with weights) and the zoo's name-keyed weights file.

Keras 3 ``.weights.h5`` files address layers by class name and creation order, so they break as
soon as a builder changes. The zoo's own format keys every layer by ``layer.name``::

    /                         attrs: format="kerazoo-weights", format_version=1,
                                     model_name, record (JSON of a WeightsRecord)
    /layers/<layer name>/     attrs: names (JSON list of variable paths)
        0, 1, ...             datasets, in ``layer.weights`` order

Files are written to a temporary name in the same folder and renamed, so a crash never leaves a
half-written file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import re
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from zoo.errors import WeightsFileError, WeightsMismatchError

__all__ = [
    "WeightsRecord",
    "SourceFile",
    "LoadReport",
    "save_weights",
    "load_weights",
    "read_record",
    "is_zoo_weights_file",
    "fetch",
    "sha256sum",
    "cache_dir",
]

FORMAT = "kerazoo-weights"
FORMAT_VERSION = 1
SKIP_HINT = "Pass skip_mismatch=True to load the layers that fit."  # zoo.get says how instead


class _ReadOnlyDict(dict):
    """A ``dict`` (JSON, ``**`` and ``isinstance`` work) that refuses changes: a record's mappings are
    shared by the registry and every model built from it, so an edit would change them for all."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a WeightsRecord is read-only; make a changed copy with record.replace(builder_kwargs={...})")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):  # copy/deepcopy/pickle rebuild it whole instead of item by item
        return (type(self), (dict(self),))


def _sha256_hex(value, what: str) -> str | None:
    """``value`` as 64 lower-case hex digits (``sha256sum`` writes lower case; Windows' Get-FileHash and
    certutil upper case), or ``None``. Raises ValueError naming ``what`` for anything else."""
    if value is None:
        return None
    text = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError(f"{what} must be a SHA-256 digest (64 hex digits), got {value!r}")
    return text


@dataclass(frozen=True)
class SourceFile:
    """One file of an original release, as its authors published it.

    Attributes:
        name: the file's original name (a relative path where the release's names collide, e.g.
            ``voc-fcn8s/deploy.prototxt``); users without internet place it under this name in the
            offline folder (``$KERAZOO_OFFLINE_DIR``).
        url: the original download URL, or ``None`` when the authors only published a web page.
        sha256: pinned hash of the file, computed from the real file; ``None`` until someone has:
            the first download then records it locally (and says so).
        member: when ``name`` is a zip archive, the file to take from it (matched by base name);
            the member may also be placed in the offline folder on its own.
        page: the human download page (Google Drive folders, project pages).
    """

    name: str
    url: str | None = None
    sha256: str | None = None
    member: str | None = None
    page: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "sha256", _sha256_hex(self.sha256, f"sha256 of source file '{self.name}'"))

    @property
    def key(self) -> str:
        """Unique name of what this source provides: ``archive!member`` or ``name``."""
        return f"{self.name}!{self.member}" if self.member else self.name

    @property
    def provides(self) -> str:
        """Base name of the file the converter reads (the member, or the file itself)."""
        return Path(self.member or self.name).name


@dataclass(frozen=True)
class WeightsRecord:
    """Everything a user needs to use a set of weights correctly (torchvision ``Weights.meta`` style).

    Pixel convention for :func:`zoo.preprocess`: images arrive RGB, values in [0, 255]; the model
    receives ``(reorder(pixels) * scale - mean) / std``, channels in ``channel_order``.
    """

    # --- source -----------------------------------------------------------------------------
    url: str | None = None  # where the file is downloaded from
    file_name: str | None = None  # cache file name, unique per (arch, tag)
    sha256: str | None = None  # of the downloaded file; downloads are refused without a match
    source_format: str = "kerazoo"  # "kerazoo" (name-keyed h5), "keras", "caffe" or "torch7"
    sources: tuple[SourceFile, ...] = ()  # original release files, converted once (zoo.pretrained)
    source_page: str | None = None  # where the authors describe the release
    license: str | None = None
    paper: str | None = None  # paper title or URL
    description: str = ""
    # --- input ------------------------------------------------------------------------------
    input_size: tuple[int, int] | None = None  # (H, W) the weights were trained/tested at
    channel_order: str = "RGB"  # "RGB" or "BGR"
    scale: float = 1.0  # multiplies [0, 255] pixels before the mean is subtracted
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)  # in channel_order, after scale
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    # --- head -------------------------------------------------------------------------------
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    num_keypoints: int | None = None
    keypoint_names: tuple[str, ...] | None = None
    flip_pairs: tuple[tuple[int, int], ...] | None = None
    output_stride: int | None = None
    # input px where heatmap pixel 0's centre lies: pixel g is at g * output_stride + heatmap_offset
    # (OpenCV pixel centres). 0.0 = training.targets' convention; a release trained otherwise sets it.
    heatmap_offset: float = 0.0
    # --- how to build the matching model -----------------------------------------------------
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    # --- documentation only -------------------------------------------------------------------
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. {"MPII val PCKh@0.5": 88.8}

    def __post_init__(self):
        # Records are shared (the registry's, every model built from a tag): nothing in one can be edited.
        for key in ("builder_kwargs", "metrics"):
            value = getattr(self, key)
            if not isinstance(value, dict):
                raise TypeError(f"WeightsRecord.{key} must be a dict, got {type(value).__name__}")
            object.__setattr__(self, key, _ReadOnlyDict(value))
        for key in ("input_size", "mean", "std", "class_names", "keypoint_names", "sources"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, tuple(getattr(self, key)))
        if self.flip_pairs is not None:
            object.__setattr__(self, "flip_pairs", tuple(tuple(p) for p in self.flip_pairs))
        object.__setattr__(self, "sha256", _sha256_hex(self.sha256, "WeightsRecord.sha256"))
        off = self.heatmap_offset
        ok = isinstance(off, (int, float, np.integer, np.floating)) and not isinstance(off, (bool, np.bool_))
        if not (ok and np.isfinite(off)):
            raise ValueError(f"WeightsRecord.heatmap_offset must be a finite number (input px where heatmap pixel 0's "
                             f"centre lies; 0.0 = training's convention), got {off!r}")
        object.__setattr__(self, "heatmap_offset", float(off))

    def to_dict(self) -> dict[str, Any]:
        """A plain, independent copy (JSON types), safe to edit."""
        d = dataclasses.asdict(self)
        for key in ("builder_kwargs", "metrics"):
            d[key] = dict(d[key])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WeightsRecord":
        """Raises TypeError/ValueError for a structure that is not a record (an edited or foreign file)."""
        if not isinstance(d, dict):
            raise TypeError(f"a record is a JSON object, found {type(d).__name__}")
        for key in ("builder_kwargs", "metrics"):
            if not isinstance(d.get(key, {}), dict):
                raise TypeError(f"'{key}' must be a JSON object, found {type(d[key]).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}  # sequences become tuples in __post_init__
        if kw.get("sources"):
            kw["sources"] = tuple(s if isinstance(s, SourceFile) else SourceFile(**s) for s in kw["sources"])
        return cls(**kw)

    def replace(self, **changes) -> "WeightsRecord":
        return dataclasses.replace(self, **changes)


@dataclass
class LoadReport:
    """What :func:`load_weights` did, layer by layer (names)."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # asked to skip (e.g. the head)
    missing_in_file: list[str] = field(default_factory=list)  # model layers with weights, not in file
    unexpected_in_file: list[str] = field(default_factory=list)  # file layers not in the model
    mismatched: list[str] = field(default_factory=list)  # "name: file shapes vs model shapes"

    @property
    def ok(self) -> bool:
        return not (self.missing_in_file or self.unexpected_in_file or self.mismatched)

    def problems(self) -> str:
        lines = []
        for title, items in (
            ("layers of the model missing from the file", self.missing_in_file),
            ("layers in the file the model does not have", self.unexpected_in_file),
            ("layers whose weight shapes differ (file vs model)", self.mismatched),
        ):
            if items:
                lines.append(f"{len(items)} {title}:")
                lines.extend(f"  - {x}" for x in items)
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Name-keyed HDF5 format
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path, *, lock_path: Path | None = None, patient: bool = False):
    """Hold an exclusive lock on ``<path>.lock`` (between processes and threads) while the block runs.

    For read-modify-write of small shared files (the recorded hashes), which two first uses of
    the cache at once would otherwise interleave, losing one writer's entry.

    Args:
        lock_path: the lock file to use instead of ``<path>.lock``.
        patient: wait as long as it takes also on Windows, where ``msvcrt``'s blocking lock gives up
            after ~10 s (too short for a download); POSIX ``flock`` always waits.
    """
    lock = Path(lock_path) if lock_path is not None else Path(str(path) + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as f:
        if os.name == "nt":
            import msvcrt
            import time

            f.seek(0)
            while True:
                try:  # LK_LOCK retries for ~10 s, then raises OSError
                    msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK if patient else msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    if not patient:
                        raise
                    time.sleep(0.5)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if os.name == "nt":
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def atomic_target(path: Path) -> Path:
    """A new empty temporary file beside ``path`` (same folder, so ``os.replace`` is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets the usual permissions
    return Path(tmp)


def replace_durably(tmp, path) -> None:
    """``os.replace(tmp, path)`` once ``tmp``'s bytes are on the disk, then the folder's new entry (POSIX).

    A rename can reach the disk before the data it points to: after a power cut, ``path`` could be an empty
    or partly written file. With the data synced first it is the old file or the whole new one. Costs one
    ``fsync`` of the file (its data is written now rather than a few seconds later) and one of the folder.
    """
    # Windows' fsync (_commit) needs a handle open for writing; POSIX syncs through any descriptor
    fd = os.open(tmp, (os.O_RDWR | getattr(os, "O_BINARY", 0)) if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if os.name == "nt":  # no folder handles to sync; NTFS journals the rename
        return
    try:
        fd = os.open(Path(path).absolute().parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system that cannot sync a folder (EINVAL): the file's own data is already safe
        pass
    finally:
        os.close(fd)


def save_weights(model, path, record: WeightsRecord | None = None, *, model_name: str | None = None):
    """Write ``model``'s weights to ``path`` in the zoo's name-keyed HDF5 format.

    Args:
        model: a built ``keras.Model``.
        path: destination file (``.h5``); written atomically.
        record: metadata to store with the weights. Defaults to the record attached to the model
            by :func:`zoo.get`, if any, else a new one (input convention pixels / 255, as
            ``training`` and ``kerazoo predict`` assume for a model without a record). The builder
            arguments ``zoo.get`` built the model with go into it (unless a given record has its
            own), so ``zoo.get(name, weights=path)`` rebuilds the same architecture.
        model_name: registry name stored in the file. Defaults to the one attached by ``zoo.get``.
    A model :func:`zoo.get` built on an ``input_tensor`` is saved without the caller's layers in front of
    the tensor (a warning names those with weights), so the file loads into the builder's model alone.
    Returns:
        The path written, as a ``pathlib.Path``.
    """
    import h5py

    from zoo.api import build_info  # zoo.api imports this module

    path = Path(path)
    zoo_name, kwargs = build_info(model)
    given = record is not None
    record = record or getattr(model, "_zoo_record", None)
    if record is None:
        record = WeightsRecord(scale=1 / 255.0) if zoo_name else WeightsRecord()
    if kwargs and not (given and record.builder_kwargs):
        record = _with_builder_kwargs(record, kwargs, zoo_name)
    model_name = model_name or zoo_name or model.name
    named = _layers_with_weights(model)  # refuses duplicate names before any file is made
    # The caller's layers in front of an input_tensor are not the zoo architecture the record rebuilds:
    # zoo.get(name, weights=path) without that tensor would refuse them as layers the model lacks.
    upstream = [n for n in getattr(model, "_zoo_upstream_layers", ()) if n in named]
    if upstream:
        named = {n: l for n, l in named.items() if n not in upstream}
        warnings.warn(f"save_weights: '{path}' holds the weights of '{model_name}' only, not those of the layers in "
                      f"front of its input_tensor ({', '.join(upstream)}); save the whole model with model.save(...) "
                      f"to keep them.", stacklevel=2)
    tmp = atomic_target(path)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["model_name"] = model_name
            f.attrs["record"] = record.to_json()
            layers = f.create_group("layers")
            for layer in named.values():
                g = layers.create_group(layer.name)
                g.attrs["names"] = json.dumps([w.path for w in layer.weights])
                for i, w in enumerate(layer.weights):
                    g.create_dataset(str(i), data=np.asarray(w.numpy()))
        replace_durably(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _with_builder_kwargs(record: WeightsRecord, kwargs: dict[str, Any], model_name: str) -> WeightsRecord:
    """``record`` with the builder arguments (JSON-able ones; a warning names the others) and head size."""
    keep = {}
    for k, v in kwargs.items():
        try:
            json.dumps(v)
            keep[k] = v
        except (TypeError, ValueError):
            warnings.warn(f"save_weights: builder argument {k}={v!r} of '{model_name}' cannot be stored in the "
                          f"weights record (not JSON); pass it again to zoo.get when loading.", stacklevel=3)
    changes: dict[str, Any] = {"builder_kwargs": {**record.builder_kwargs, **keep}}
    if "classes" in keep and record.num_classes is None:
        changes["num_classes"] = keep["classes"]
    if "num_keypoints" in keep and record.num_keypoints is None:
        changes["num_keypoints"] = keep["num_keypoints"]
    return record.replace(**changes)


def _layers_with_weights(model) -> dict[str, Any]:
    """name -> leaf layer with weights, nested models included.

    Raises:
        ValueError: two such layers share a name (two copies of one backbone nested in a model): the
            file keys weights by name, so one of them would be left at its initial values.
    """
    out, seen, twice = {}, set(), []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.weights and not getattr(layer, "layers", None) and id(layer) not in seen:
            seen.add(id(layer))
            if layer.name in out:
                twice.append(layer.name)
            out[layer.name] = layer
    if twice:
        raise ValueError(
            f"Model '{model.name}' has more than one layer named {', '.join(map(repr, sorted(set(twice))))} (in "
            f"nested models); zoo weights files key weights by layer name. Give the layers unique names, or save "
            f"and load each nested model on its own."
        )
    return out


def is_zoo_weights_file(path) -> bool:
    """True when ``path`` is an HDF5 file written by :func:`save_weights`."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


def _open_zoo_file(path):
    import h5py

    path = Path(path)
    if not path.exists():
        raise WeightsFileError(f"Weights file not found: '{path}'.")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsFileError(
            f"Weights file '{path}' is not a readable HDF5 file (truncated or corrupt?): {e}"
        ) from None
    if f.attrs.get("format") != FORMAT or "layers" not in f:
        f.close()
        raise WeightsFileError(
            f"'{path}' is an HDF5 file but not a kerazoo weights file (attribute format="
            f"'{FORMAT}' and group /layers expected). Keras files load with a .keras or "
            f".weights.h5 name."
        )
    return f


def read_record(path) -> tuple[str, WeightsRecord]:
    """``(model_name, WeightsRecord)`` stored in a zoo weights file."""
    with _open_zoo_file(path) as f:
        try:
            record = WeightsRecord.from_dict(json.loads(f.attrs.get("record", "{}")))
        except (ValueError, TypeError) as e:
            raise WeightsFileError(f"Weights file '{path}': metadata record is corrupt: {e}") from None
        return str(f.attrs.get("model_name", "")), record


def load_weights(model, path, *, skip_mismatch: bool = False, skip_layers: Iterable[str] = (),
                 file_only_ok=None, model_only_ok=None) -> LoadReport:
    """Load a zoo weights file into ``model``, matching layers by name.

    Args:
        model: the ``keras.Model`` to fill.
        path: a file written by :func:`save_weights`.
        skip_mismatch: if False (default) any missing, unexpected or mismatched layer raises and
            nothing is changed; if True those layers are left as they are and a warning lists them.
        skip_layers: layer names not to load (e.g. a head of a different size).
        file_only_ok: ``name -> bool``: file layers the model may lack (a classifier the model was
            built without); they are left out quietly.
        model_only_ok: ``name -> bool``: model layers the file may lack (a training-only head); they
            keep their values, and a warning names them.
    Returns:
        A :class:`LoadReport`.
    Raises:
        WeightsFileError: the file is missing, unreadable or not a zoo weights file.
        WeightsMismatchError: strict loading found problems; the message lists every layer.
    """
    skip = set(skip_layers)
    report, kept = LoadReport(), []
    assignments = []
    with _open_zoo_file(path) as f:
        stored = f["layers"]
        model_layers = _layers_with_weights(model)
        for name, layer in model_layers.items():
            if name in skip:
                report.skipped.append(name)
                continue
            if name not in stored:
                if model_only_ok is not None and model_only_ok(name):
                    report.skipped.append(name)
                    kept.append(name)
                    continue
                report.missing_in_file.append(f"{name} {[tuple(w.shape) for w in layer.weights]}")
                continue
            g = stored[name]
            try:
                arrays = [np.asarray(g[str(i)][()]) for i in range(len(g.keys()))]
            except (KeyError, OSError, AttributeError, TypeError) as e:  # AttributeError: a dataset, not a group
                raise WeightsFileError(f"Weights file '{path}': layer '{name}' is corrupt: {e}") from None
            odd = [a.dtype for a in arrays if a.dtype.kind not in "fiu"]  # complex would lose its imaginary part
            if odd:
                raise WeightsFileError(f"Weights file '{path}': layer '{name}' holds {odd[0]} arrays; expected "
                                       f"real numbers.")
            want = [tuple(w.shape) for w in layer.weights]
            have = [tuple(a.shape) for a in arrays]
            if want != have:
                report.mismatched.append(f"{name}: file {have} vs model {want}")
                continue
            assignments.append((layer, arrays))
            report.loaded.append(name)
        report.unexpected_in_file = sorted(n for n in stored if n not in model_layers and n not in skip
                                           and not (file_only_ok is not None and file_only_ok(n)))
    if not report.ok:
        msg = f"Weights file '{path}' does not fit model '{model.name}':\n{report.problems()}"
        if not skip_mismatch:
            raise WeightsMismatchError(msg + "\n" + SKIP_HINT)
        warnings.warn(msg, stacklevel=2)
    for layer, arrays in assignments:
        for var, value in zip(layer.weights, arrays):
            var.assign(value.astype(var.dtype) if hasattr(value, "astype") else value)
    if kept:
        warnings.warn(f"'{path}' has no weights for {', '.join(kept)} (not part of the release); they keep "
                      f"their initial values.", stacklevel=3)
    return report


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where downloaded and converted weights live.

    ``$KERAZOO_HOME`` if set, else ``$KERAS_HOME/kerazoo``, else ``~/.keras/kerazoo`` (Keras' own
    cache root, so one variable moves every Keras download).
    """
    if os.environ.get("KERAZOO_HOME"):
        return Path(os.environ["KERAZOO_HOME"])
    keras_home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(keras_home) / "kerazoo"


def sha256sum(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def fetch(record: WeightsRecord, *, progress: bool = True, force: bool = False, timeout: float = 60.0) -> Path:
    """Download ``record.url`` into the cache (once) and verify its sha256.

    The download goes to a temporary file beside the target and takes the target's name only once
    its sha256 matches, so the cache never holds a partial or wrong file (processes fetching at once
    each write their own temporary file; the rename is atomic).

    Args:
        record: a record with ``url``, ``sha256`` and ``file_name`` (a plain name in :func:`cache_dir`).
        progress: show a progress bar.
        force: download again even when the cached file checks out.
        timeout: seconds to wait for the server at connection and for each read before giving up.
    Raises:
        WeightsFileError: no URL or no sha256 in the record, a ``file_name`` that is not a plain
            file name, a failed, cut or stalled download, or a hash mismatch (the bad file is removed;
            a cached file with a bad hash is downloaded again).
    """
    if not record.url or not record.file_name:
        raise WeightsFileError("This weights record has no download URL; pass a local file path instead.")
    if not record.sha256:
        raise WeightsFileError(f"Refusing to download '{record.url}': the record carries no sha256 to verify it.")
    if record.file_name in (".", "..") or Path(record.file_name).name != record.file_name or "\\" in record.file_name:
        raise WeightsFileError(f"Weights record file_name {record.file_name!r} must be a plain file name (the file it "
                               f"names is written in the cache folder '{cache_dir()}').")
    target = cache_dir() / record.file_name
    if target.exists() and not force:
        if sha256sum(target) == record.sha256:
            return target
        warnings.warn(f"Cached weights '{target}' fail their sha256 check; downloading again.")
    tmp = atomic_target(target)
    try:
        try:
            with urllib.request.urlopen(record.url, timeout=timeout) as r, open(tmp, "wb") as out:
                total = int(r.headers.get("Content-Length") or 0) or None
                bar = _progress(total, f"Downloading {record.file_name}", progress)
                while block := r.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
                bar.close()
        # URLError/HTTPError/timeouts are OSErrors; a cut chunked reply is http.client.IncompleteRead;
        # a URL without a scheme is a ValueError
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise WeightsFileError(
                f"Could not download '{record.url}' to '{target}': {type(e).__name__}: {e}. Partial data was "
                f"deleted. Retry, or download it by hand and pass the path."
            ) from None
        digest = sha256sum(tmp)
        if digest != record.sha256:
            raise WeightsFileError(
                f"Download of '{record.url}' has sha256 {digest}, expected {record.sha256}; file discarded."
            )
        replace_durably(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled)
