"""``zoo.get`` (build a registered model, optionally with weights) and ``zoo.preprocess``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from zoo import weights as _w
from zoo.errors import WeightsFileError, WeightsMismatchError
from zoo.registry import ModelSpec, get_spec
from zoo.weights import WeightsRecord

__all__ = ["get", "preprocess", "weights_record", "register_weights_loader"]

# file suffix -> loader(spec, path, user_kwargs) -> (model, record); e.g. ".caffemodel" from converters.
_LOADERS: dict[str, Callable[..., Any]] = {}
_LAZY_LOADERS = {".caffemodel": "converters.caffe.zoo_loader", ".t7": "converters.torch7.zoo_loader"}


def register_weights_loader(suffix: str, loader: Callable[..., Any]) -> None:
    """Let ``zoo.get(name, weights="file<suffix>")`` hand such files to ``loader``.

    ``loader(spec, path, kwargs)`` returns ``(model, record)``; ``kwargs`` are the user's builder
    arguments.
    """
    _LOADERS[suffix.lower()] = loader


def _check_kwargs(spec: ModelSpec, kwargs: dict[str, Any]) -> None:
    allowed = [k for k in spec.defaults if k != "weights"]
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise TypeError(
            f"{spec.name}() got unexpected argument(s) {', '.join(map(repr, unknown))}. "
            f"Allowed arguments: {', '.join(allowed)}."
        )


def _attach(model, spec: ModelSpec, record: WeightsRecord | None):
    model._zoo_name = spec.name
    model._zoo_record = record
    return model


def get(name: str, weights: str | Path | None = None, **kwargs):
    """Build the registered model ``name``, optionally loading weights.

    Args:
        name: a registered name (see :func:`zoo.list_models`), or ``"arch.tag"`` to pick weights.
        weights: ``None`` (random init); a registered tag (``"mpii"``: the original release, fetched,
            sha256-checked and converted once, see :mod:`zoo.pretrained`); a path to a ``.keras``
            file, a Keras ``.weights.h5`` file, a zoo name-keyed weights file (:func:`zoo.save_weights`),
            or a Caffe ``.caffemodel`` (ported by ``converters.caffe``).
        **kwargs: builder arguments (``input_shape``, ``classes``, ``num_keypoints``, ...). With
            weights, missing arguments come from the weights record; asking for another number of
            classes/keypoints than the weights have loads everything but the head, with a warning.
    Returns:
        A ``keras.Model``; ``zoo.weights_record(model)`` gives the metadata of its weights.
    Raises:
        ValueError: unknown model name (with close matches) or unknown weights tag.
        TypeError: unknown builder argument (names it and the allowed ones).
        WeightsFileError: missing, unreadable or corrupt weights file (names the path).
        WeightsMismatchError: weights that do not fit the model (lists every layer).
    """
    spec = get_spec(name)
    if "." in name and weights is None:
        weights = name.split(".", 1)[1]
    _check_kwargs(spec, kwargs)
    if weights is None:
        return _attach(spec.builder(**kwargs), spec, None)

    if isinstance(weights, str) and weights in spec.weights:
        from zoo import pretrained  # fetch + verify + convert once (cached)

        path = pretrained.resolve(spec.name, weights)
        return _load_zoo_file(spec, path, kwargs, spec.weights[weights])

    path = Path(weights)
    looks_like_path = path.suffix or "/" in str(weights) or "\\" in str(weights)
    if not path.exists():
        if looks_like_path:
            raise WeightsFileError(f"{spec.name}: weights file not found: '{path}'.")
        known = ", ".join(spec.weights) or "none registered yet"
        raise ValueError(
            f"{spec.name}: unknown weights tag {weights!r}. Known tags: {known}. "
            f"Pass None, a tag, or a path to a weights file."
        )
    if path.is_dir():
        raise WeightsFileError(f"{spec.name}: weights path '{path}' is a directory, expected a file.")
    if path.name.endswith(".weights.h5") or path.suffix == ".keras":
        model = spec.builder(**kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.load_weights(str(path))
            except Exception as e:  # Keras raises ValueError/OSError/KeyError variants
                raise WeightsMismatchError(f"{spec.name}: could not load Keras weights from '{path}': {e}") from None
        # Keras warns, and goes on, when parts of the file do not match: a partly loaded model is an error here
        partial = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)]
        if partial:
            raise WeightsMismatchError(f"{spec.name}: '{path}' does not match this model; Keras left some "
                                       f"weights unloaded: {partial[0]}")
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return _attach(model, spec, None)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return _load_zoo_file(spec, path, kwargs, None)
    return _load_by_suffix(spec, path, kwargs, None)


def _load_by_suffix(spec, path, kwargs, record):
    suffix = path.suffix.lower()
    if suffix not in _LOADERS and suffix in _LAZY_LOADERS:
        import importlib

        importlib.import_module(_LAZY_LOADERS[suffix])
    if suffix not in _LOADERS:
        raise WeightsFileError(
            f"{spec.name}: don't know how to read weights file '{path}' (suffix {suffix!r}). "
            f"Supported: .keras, .weights.h5, zoo .h5, {', '.join(sorted(set(_LOADERS) | set(_LAZY_LOADERS)))}."
        )
    model, rec = _LOADERS[suffix](spec, path, kwargs)
    return _attach(model, spec, record or rec)


def _load_zoo_file(spec: ModelSpec, path, kwargs, record):
    stored_name, stored = _w.read_record(path)
    record = record or stored
    build_kwargs = {k: v for k, v in stored.builder_kwargs.items() if k in spec.defaults}
    head = spec.head_kwarg
    head_changed = (
        head is not None and head in kwargs and head in build_kwargs and kwargs[head] != build_kwargs[head]
    )
    build_kwargs.update(kwargs)
    model = spec.builder(**build_kwargs)
    skip = ()
    if head_changed:
        skip = [l.name for l in model.layers if spec.is_head_layer(l.name)]
        warnings.warn(
            f"{spec.name}: weights '{path}' have {head}={stored.builder_kwargs[head]} but "
            f"{head}={kwargs[head]} was asked for; loading everything but the head layers "
            f"({', '.join(skip)}), which keep their initial values.",
            stacklevel=3,
        )
        record = record.replace(
            builder_kwargs={**record.builder_kwargs, head: kwargs[head]},
            class_names=None, keypoint_names=None, flip_pairs=None,
            num_classes=kwargs[head] if head == "classes" else record.num_classes,
            num_keypoints=kwargs[head] if head == "num_keypoints" else record.num_keypoints,
        )
    _w.load_weights(model, path, skip_layers=skip)
    return _attach(model, spec, record)


def weights_record(model) -> WeightsRecord | None:
    """The :class:`WeightsRecord` attached by :func:`get` (``None`` for random weights)."""
    return getattr(model, "_zoo_record", None)


def preprocess(model_or_name, images, *, record: WeightsRecord | None = None) -> np.ndarray:
    """Apply the weights' input convention to RGB images with values in [0, 255].

    Args:
        model_or_name: a model returned by :func:`get`, a registered ``"arch.tag"``/``"arch"``
            name (the default tag is used), or ``None`` when ``record`` is given.
        images: array ``(B, H, W, 3)`` or ``(H, W, 3)``, RGB, 0-255 (uint8 or float).
        record: use this record instead of looking one up.
    Returns:
        float32 array of the same shape: ``(reorder(images) * scale - mean) / std``.
    """
    if record is None:
        if isinstance(model_or_name, str):
            spec = get_spec(model_or_name)
            tag = model_or_name.split(".", 1)[1] if "." in model_or_name else next(iter(spec.weights), None)
            if tag is None:
                raise ValueError(f"{spec.name} has no registered weights, so no preprocessing convention.")
            record = spec.weights[tag]
        else:
            record = weights_record(model_or_name)
            if record is None:
                raise ValueError(
                    "This model carries no weights record (built with weights=None); pass record=..."
                )
    x = np.asarray(images, dtype=np.float32)
    if x.shape[-1] != 3:
        raise ValueError(f"preprocess expects RGB images with 3 channels last. Received shape {x.shape}.")
    if record.channel_order.upper() == "BGR":
        x = x[..., ::-1]
    x = x * np.float32(record.scale)
    x = (x - np.asarray(record.mean, np.float32)) / np.asarray(record.std, np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)
