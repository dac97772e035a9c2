"""The zoo's name-keyed weights file (save, load, read its record) and downloads of such files into the cache.

Keras 3 ``.weights.h5`` files address layers by class name and creation order, so they break as
soon as a builder changes. The zoo's own format keys every layer by ``layer.name``::

    /                         attrs: format="kerazoo-weights", format_version=1,
                                     model_name, record (JSON of a WeightsRecord)
    /layers/<layer name>/     attrs: names (JSON list of variable paths)
        0, 1, ...             datasets, in ``layer.weights`` order

Files are written to a temporary name in the same folder and renamed (:mod:`zoo.files`), so a crash
never leaves a half-written file behind. The records themselves are :mod:`zoo.records`'.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from zoo.errors import WeightsFileError, WeightsMismatchError
from zoo.files import atomic_target, check_file_target, replace_durably, sha256sum, write_errors_naming
from zoo.records import SourceFile, WeightsRecord  # noqa: F401  (public here too: zoo.weights.WeightsRecord)

__all__ = [
    "WeightsRecord",
    "SourceFile",
    "LoadReport",
    "save_weights",
    "load_weights",
    "read_record",
    "is_zoo_weights_file",
    "write_keras_metadata",
    "read_keras_metadata",
    "fetch",
    "sha256sum",
    "cache_dir",
]

FORMAT = "kerazoo-weights"
FORMAT_VERSION = 1
SKIP_HINT = "Pass skip_mismatch=True to load the layers that fit."  # zoo.get says how instead


# --------------------------------------------------------------------------------------------
# Name-keyed HDF5 format
# --------------------------------------------------------------------------------------------


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


def save_weights(model, path, record: WeightsRecord | None = None, *, model_name: str | None = None):
    """Write ``model``'s weights to ``path`` in the zoo's name-keyed HDF5 format.

    Args:
        model: a built ``keras.Model``.
        path: destination file (``.h5``); written atomically (an existing file is replaced once the new one is
            whole).
        record: metadata to store with the weights. Defaults to the record attached to the model
            by :func:`zoo.get`, if any, else a new one (input convention pixels / 255, as
            ``training`` and ``kerazoo predict`` assume for a model without a record). The builder
            arguments ``zoo.get`` built the model with go into it (unless a given record has its
            own), so ``zoo.get(name, weights=path)`` rebuilds the same architecture.
        model_name: registry name stored in the file. Defaults to the one attached by ``zoo.get``.
    A model :func:`zoo.get` built on an ``input_tensor`` is saved without the caller's layers in front of
    the tensor (a warning names those with weights), so the file loads into the builder's model alone.
    Each BatchNormalization's epsilon is stored with its weights (a ported Caffe layer's may not be the builder's,
    e.g. PSPNet's earlier ``var_eps``, 1e-10), and :func:`load_weights` sets it again.
    Returns:
        The path written, as a ``pathlib.Path``.
    """
    import h5py

    from zoo.api import build_info  # zoo.api imports this module

    path = Path(path)
    if path.is_dir():  # os.replace failed with a bare IsADirectoryError after the whole file was written
        raise ValueError(f"save_weights: '{path}' is a folder; give the file to write, e.g. '{path / 'model.h5'}'.")
    check_file_target(path, "save_weights")  # a file where a folder above it should be: "[Errno 17] File exists"
    if path.name.lower().endswith(".keras"):  # an HDF5 file under that name fails later as "not a zip archive"
        raise ValueError(f"save_weights: '{path}' ends in .keras, the name of a whole Keras model (a zip archive); "
                         f"this writes the zoo's HDF5 weights file: name it .h5, or save the whole model with "
                         f"zoo.save_model(model, '{path}').")
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
        with write_errors_naming(path, tmp):  # a full disk names the file asked for, not the temporary one
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
                        if _is_batchnorm(layer):  # a port may have set Caffe's epsilon (PSPNet 1e-10)
                            g.attrs["epsilon"] = float(layer.epsilon)
                        for i, w in enumerate(layer.weights):
                            g.create_dataset(str(i), data=np.asarray(w.numpy()))
            except RuntimeError as e:  # HDF5's words for a full disk: "unable to extend file properly, errno = 27"
                import re

                code = next(map(int, re.findall(r"errno = (\d+)", str(e))), None)
                raise OSError(code, os.strerror(code) if code else f"writing failed ({e})") from None
            replace_durably(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _is_batchnorm(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


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
    if path.is_dir():
        raise WeightsFileError(f"Weights path '{path}' is a directory, expected a zoo weights file (.h5).")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        import zipfile

        if zipfile.is_zipfile(path):  # a whole model (a training run's best.keras) was read as "truncated or corrupt?"
            raise WeightsFileError(
                f"'{path}' is a .keras archive (a whole Keras model), not a kerazoo weights file: load it with "
                f"zoo.get(NAME, weights='{path}') or zoo.load_keras_model('{path}')."
            ) from None
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
            points = None
            if have == want[:-2] and hasattr(layer, "old_file_weights"):
                # a WinogradConv2D saved before its B^T and A^T were weights (kernel and bias): the kernel tells them
                try:
                    arrays, points = layer.old_file_weights(arrays)
                except ValueError as e:
                    report.mismatched.append(f"{name}: {e}")
                    continue
                have = [tuple(np.shape(a)) for a in arrays]
            if want != have:
                report.mismatched.append(f"{name}: file {have} vs model {want}")
                continue
            epsilon = g.attrs.get("epsilon") if _is_batchnorm(layer) else None  # files since 2026-12-07 hold it
            if epsilon is not None:
                try:
                    epsilon = float(epsilon)
                except (TypeError, ValueError):
                    epsilon = float("nan")
                if not (np.isfinite(epsilon) and epsilon > 0):
                    raise WeightsFileError(f"Weights file '{path}': layer '{name}' has epsilon "
                                           f"{g.attrs.get('epsilon')!r}; expected a finite number > 0.")
            assignments.append((layer, arrays, points, epsilon))
            report.loaded.append(name)
        report.unexpected_in_file = sorted(n for n in stored if n not in model_layers and n not in skip
                                           and not (file_only_ok is not None and file_only_ok(n)))
    if not report.ok:
        msg = f"Weights file '{path}' does not fit model '{model.name}':\n{report.problems()}"
        if not skip_mismatch:
            raise WeightsMismatchError(msg + "\n" + SKIP_HINT)
        warnings.warn(msg, stacklevel=2)
    recompile = False
    for layer, arrays, points, epsilon in assignments:
        for var, value in zip(layer.weights, arrays):
            var.assign(value.astype(var.dtype) if hasattr(value, "astype") else value)
        if points is not None:
            layer.points = points
        if epsilon is not None and epsilon != layer.epsilon:
            layer.epsilon, recompile = epsilon, True
    if recompile:
        for attr in ("predict_function", "test_function", "train_function"):
            if getattr(model, attr, None) is not None:
                setattr(model, attr, None)  # traced with the builder's epsilon
    if kept:
        warnings.warn(f"'{path}' has no weights for {', '.join(kept)} (not part of the release); they keep "
                      f"their initial values.", stacklevel=3)
    return report


# --------------------------------------------------------------------------------------------
# A whole model's metadata inside its .keras archive
# --------------------------------------------------------------------------------------------

# An entry of the .keras zip beside Keras' own config.json and model.weights.h5 (Keras reads only its own entries),
# so the file itself says what a training run fed its model: a copy away from the run's folder says it too.
KERAS_METADATA = "kerazoo.json"
KERAS_METADATA_FORMAT = "kerazoo-model"


def write_keras_metadata(path, metadata: dict[str, Any]) -> None:
    """Add ``metadata`` to the ``.keras`` archive ``path`` as :data:`KERAS_METADATA`, for :func:`read_keras_metadata`.

    For a file ``model.save`` has just written under a temporary name (``training.callbacks.atomic_save``): the
    entry is appended in place. ``metadata``: ``model_name`` and ``builder_kwargs`` (what :func:`zoo.get` rebuilds),
    ``record`` (a :class:`WeightsRecord` or its dict: input convention, heatmap offset, flip pairs), ``family``,
    ``task``, ``background``, ``center_map_sigma`` (input px); any may be ``None``.

    Raises:
        ValueError: ``path`` is not a zip archive, or already holds the entry.
    """
    import zipfile

    record = metadata.get("record")
    body = {**metadata, "record": record.to_dict() if isinstance(record, WeightsRecord) else record}
    text = json.dumps({"format": KERAS_METADATA_FORMAT, "format_version": FORMAT_VERSION, **body}, sort_keys=True)
    if not zipfile.is_zipfile(path):  # append mode would add an archive to the end of any other file
        raise ValueError(f"'{path}' is not a .keras archive (a zip); {KERAS_METADATA} goes into a whole model's "
                         f".keras file")
    with zipfile.ZipFile(path, "a") as z:
        if KERAS_METADATA in z.namelist():  # a second entry of one name: readers would take either
            raise ValueError(f"'{path}' already holds {KERAS_METADATA}")
        z.writestr(KERAS_METADATA, text)


def read_keras_metadata(path) -> dict[str, Any]:
    """The metadata :func:`write_keras_metadata` put into the ``.keras`` archive ``path``; ``{}`` without it.

    Returns:
        ``{"model_name": str | None, "builder_kwargs": dict, "record": WeightsRecord | None, "family": str | None,
        "task": "pose" | "segmentation" | None, "background": bool | None, "center_map_sigma": float | None}``.
    Raises:
        WeightsFileError: an unreadable archive, or an entry that is not such metadata (names the field).
    """
    import zipfile

    where = f"'{path}' ({KERAS_METADATA})"
    try:
        with zipfile.ZipFile(path) as z:
            if KERAS_METADATA not in z.namelist():
                return {}
            meta = json.loads(z.read(KERAS_METADATA))
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise WeightsFileError(f"'{path}' is not a readable .keras archive: {e}") from None
    except ValueError as e:  # not JSON (UnicodeDecodeError is one)
        raise WeightsFileError(f"{where}: not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != KERAS_METADATA_FORMAT:
        raise WeightsFileError(f"{where}: not kerazoo model metadata (format='{KERAS_METADATA_FORMAT}' expected)")

    def field(key, ok, expected):
        value = meta.get(key)
        if value is not None and not ok(value):
            raise WeightsFileError(f"{where}: {key} must be {expected} or null, found {value!r}")
        return value

    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0  # noqa: E731
    out = {"model_name": field("model_name", lambda v: isinstance(v, str) and v, "a non-empty string"),
           "builder_kwargs": field("builder_kwargs", lambda v: isinstance(v, dict), "an object") or {},
           "family": field("family", lambda v: isinstance(v, str) and v, "a non-empty string"),
           "task": field("task", lambda v: v in ("pose", "segmentation"), "'pose' or 'segmentation'"),
           "background": field("background", lambda v: isinstance(v, bool), "true or false"),
           "center_map_sigma": field("center_map_sigma", number, "a number > 0 (input px)")}
    if out["center_map_sigma"] is not None:
        out["center_map_sigma"] = float(out["center_map_sigma"])
    try:
        out["record"] = None if meta.get("record") is None else WeightsRecord.from_dict(meta["record"])
    except (ValueError, TypeError) as e:
        raise WeightsFileError(f"{where}: record is not a weights record: {e}") from None
    return out


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
