"""``zoo.get`` (build a registered model, optionally with weights) and ``zoo.preprocess``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from zoo import weights as _w
from zoo.architecture import (ARCHITECTURE_KWARGS, SHAPE_FREE_KWARGS, architecture_kwargs,  # noqa: F401 (public here)
                              keras_file_architecture, refuse_other_architecture, settings, shape_free_defaults,
                              weights_given_kwargs)
from zoo.errors import WeightsFileError, WeightsMismatchError
from zoo.gc_pause import without_cyclic_gc
from zoo.file_records import _SOURCE_FORMATS, _release_conventions, _with_architecture, _with_head_size
from zoo.load_causes import head_layers_missing_from_file, head_widths_differ, refuse_by_cause
from zoo.records import check_record_arg
from zoo.registry import ModelSpec, get_spec, list_models, parse_name
from zoo.weights import WeightsRecord

__all__ = ["get", "preprocess", "weights_record", "register_weights_loader", "load_keras_model", "build_info",
           "carry_metadata"]

# file suffix -> loader(spec, path, user_kwargs) -> (model, record); e.g. ".caffemodel" from converters.
_LOADERS: dict[str, Callable[..., Any]] = {}
_LAZY_LOADERS = {".caffemodel": "converters.caffe.zoo_loader", ".t7": "converters.torch7.zoo_loader"}


def register_weights_loader(suffix: str, loader: Callable[..., Any]) -> None:
    """Let ``zoo.get(name, weights="file<suffix>")`` hand such files to ``loader``.

    ``loader(spec, path, kwargs)`` returns ``(model, record)`` or ``(model, record, held)``; ``kwargs``
    are the user's builder arguments; ``record`` may be ``None``; ``held`` are the builder arguments the
    file itself gives (its architecture and head size, e.g. a ``.t7``'s ``stacks``), which the model was
    built with where ``kwargs`` has none: they go into the model's record and build arguments, so
    :func:`zoo.save_weights` stores them and the saved file rebuilds the same architecture.
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


def _python_scalars(value):
    """NumPy scalars (``classes=np.int64(5)``, a size from an array's shape) as Python's, also inside a tuple or
    list: the builders refused them as "must be a positive int", and a weights record keeps JSON values only."""
    if isinstance(value, np.generic) and isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (tuple, list)):
        return type(value)(_python_scalars(v) for v in value)
    return value


def _attach(model, spec: ModelSpec, record: WeightsRecord | None, kwargs: dict[str, Any]):
    """Remember what built ``model`` (in memory only), so :func:`zoo.save_weights` can store it.

    An ``input_tensor`` is not kept (a tensor of the caller's graph has no place in a weights
    record): the input shape it gave is kept as ``input_shape`` instead, so a rebuild from the record
    has the same size."""
    kwargs = dict(kwargs)
    tensor = kwargs.pop("input_tensor", None)
    if tensor is not None and kwargs.get("input_shape") is None:
        image = tensor[0] if isinstance(tensor, (list, tuple)) else tensor  # cpm: (image, center_map)
        kwargs["input_shape"] = tuple(image.shape[1:])
    model._zoo_name = spec.name
    model._zoo_record = record
    model._zoo_kwargs = kwargs
    return model


# in-memory attributes; _kerazoo_task, _kerazoo_background: a training run's task and whether its last heatmap is a
# background map (config.json), which predict reads
_MODEL_METADATA = ("_kerazoo_family", "_kerazoo_task", "_kerazoo_background", "_kerazoo_center_map_sigma", "_zoo_name",
                   "_zoo_record", "_zoo_kwargs", "_kerazoo_builder")


def _apply_saved_metadata(model, meta: dict[str, Any]):
    """Give ``model`` what a training run wrote into its ``.keras`` (:func:`zoo.weights.read_keras_metadata`): the
    record (input convention, heatmap offset, flip pairs), family, task, background map and CPM centre-map sigma
    (what ``training.inference.predict`` and ``training.evaluate`` read), and as ``_kerazoo_builder`` the registry
    name and builder arguments, for the metadata of a run that fine-tunes it. Returns ``model``."""
    if meta.get("record") is not None:
        model._zoo_record = meta["record"]
    for key in ("family", "task", "background", "center_map_sigma"):
        if meta.get(key) is not None:
            setattr(model, f"_kerazoo_{key}", meta[key])
    if meta.get("model_name"):
        model._kerazoo_builder = (meta["model_name"], dict(meta["builder_kwargs"]))
    return model


def carry_metadata(source, target):
    """Give ``target`` (a clone of ``source``) what :func:`get` and ``training`` remembered about
    ``source``: its registry name, builder arguments, weights record (the input convention
    :func:`preprocess` applies), training family and a training run's task (what ``predict`` draws: a
    coarse segmentation output is a mask, not heatmaps). Returns ``target``."""
    for attr in _MODEL_METADATA:
        if hasattr(source, attr):
            setattr(target, attr, getattr(source, attr))
    return target


def build_info(model) -> tuple[str | None, dict[str, Any]]:
    """``(registry name, builder arguments)`` that :func:`get` built ``model`` with (or, for a ``.keras`` that
    :func:`load_keras_model` read, those its metadata names); ``(None, {})`` for other models. The arguments are the
    explicit ones plus the head size (``classes`` / ``num_keypoints``), so a record holding them says how large the
    head is, and the architecture arguments no weight shape shows (a ResNet's ``stride_in_3x3``), so a record says
    where the stride is."""
    name = getattr(model, "_zoo_name", None)
    kwargs = dict(getattr(model, "_zoo_kwargs", None) or {})
    if name is None:  # a .keras that zoo.load_keras_model read: the builder its metadata names (it was lost to
        # save_weights, whose file then rebuilt the default architecture and refused the weights)
        name, kwargs = getattr(model, "_kerazoo_builder", None) or (None, {})
        kwargs = dict(kwargs)
    if name is None:
        return None, {}
    try:
        spec = get_spec(name)
    except ValueError:
        return name, kwargs
    if spec.head_kwarg and spec.head_kwarg not in kwargs and spec.head_kwarg in spec.defaults:
        kwargs[spec.head_kwarg] = spec.defaults[spec.head_kwarg]
    return name, {**shape_free_defaults(spec), **kwargs}


def _build(spec: ModelSpec, kwargs: dict):
    """``spec``'s builder called with ``kwargs``, the cyclic garbage collector paused (15-30% of a large model's build:
    :mod:`zoo.gc_pause`)."""
    with without_cyclic_gc():
        return spec.builder(**kwargs)


def get(name: str, /, weights: str | Path | None = None, **kwargs):
    """Build the registered model ``name``, optionally loading weights.

    Args:
        name: a registered name (see :func:`zoo.list_models`), or ``"arch.tag"`` / ``"arch:tag"`` to
            pick registered weights (a tag, never a file name); an explicit ``weights`` wins over it.
            Positional only: a ``name=`` keyword is the builder's, the Keras model's name.
        weights: ``None`` (random init); a registered tag (``"mpii"``: the original release, fetched,
            sha256-checked and converted once, see :mod:`zoo.pretrained`); a path to a ``.keras``
            file, a Keras ``.weights.h5`` file, a zoo name-keyed weights file (:func:`zoo.save_weights`),
            a Caffe ``.caffemodel`` beside its deploy prototxt (ported by ``converters.caffe``) or a Torch7
            ``.t7`` Stacked Hourglass (``converters.torch7``).
        **kwargs: builder arguments (``input_shape``, ``classes``, ``num_keypoints``, ...). With
            weights, missing arguments come from the weights record, or from the file's architecture
            (a ``.t7``'s stacks/features/modules/keypoints; a ``.caffemodel``'s head size, a CPM's stages and
            a ResNet's stride_in_3x3, from its prototxt; a ``.keras``'s stride_in_3x3 and a PSPNet's input size,
            from its model config, and a ``training.fit`` run's ``.keras`` all of them, with its record and CPM
            centre-map sigma; a ``.weights.h5`` says none, so a ResNet-50/101/152 needs ``stride_in_3x3``); the
            model remembers them for :func:`zoo.save_weights`.
            Asking for another number of classes/keypoints than the weights have loads everything but the head,
            with a warning; an architecture argument (:data:`ARCHITECTURE_KWARGS`: ``stages``, ``stacks``,
            ``stride_in_3x3``, ...) other than the weights' is refused (a tag's before any download; a zoo
            ``.h5`` whose record lacks ``stride_in_3x3``, saved before records held it, has the builder's default
            when the record holds the head size, as zoo.save_weights wrote it, and is not checked otherwise).
            ``None`` for one of these or the head size is "not given": the weights' value is used.
            ``input_tensor`` (a Keras tensor, as in keras.applications) builds the model on it,
            whatever input size the weights record holds; the weights load into the zoo's layers
            by name, the caller's layers in front of the tensor are left as they are. The tensor is
            not remembered for :func:`zoo.save_weights`'s record: its shape is, as ``input_shape``.
    Returns:
        A ``keras.Model``; ``zoo.weights_record(model)`` gives the metadata of its weights.
    Raises:
        ValueError: unknown model name (with close matches) or unknown weights tag.
        TypeError: unknown builder argument (names it and the allowed ones).
        WeightsFileError: missing, unreadable or corrupt weights file (names the path).
        WeightsMismatchError: weights that do not fit the model (lists every layer), or an architecture
            argument that contradicts the weights (names it, both values and the file or tag).
    """
    spec = get_spec(name)
    tag = parse_name(name)[1]
    if tag is not None and weights is None:  # "arch.tag" names registered weights only, never a file
        _check_tag(spec, tag, name)
        weights = tag
    if weights is not None and not isinstance(weights, (str, Path)):
        raise TypeError(f"{spec.name}: weights must be None, a tag or a file path (str or Path), "
                        f"got {type(weights).__name__}: {weights!r}.")
    if isinstance(weights, str) and not weights.strip():
        raise ValueError(f"{spec.name}: weights={weights!r} is neither a tag nor a file; pass None for random weights.")
    _check_kwargs(spec, kwargs)
    kwargs = {k: _python_scalars(v) for k, v in kwargs.items()}
    if weights is None:
        return _attach(_build(spec, kwargs), spec, None, kwargs)
    # None for an argument the weights give (stages=None, num_keypoints=None): not given, so the file's value is
    # used. The builder takes no None there, and a caller forwarding an unset option (argparse's default) means this.
    kwargs = {k: v for k, v in kwargs.items() if not (v is None and k in weights_given_kwargs(spec))}

    if isinstance(weights, str) and weights in spec.weights:
        from zoo import pretrained  # fetch + verify + convert once (cached)

        release = spec.weights[weights]
        files = ", ".join(s.provides for s in release.sources if not s.provides.endswith(".prototxt"))
        # before any download: the tag's record says what the release holds; it is converted into
        # spec.builder(**record.builder_kwargs), so an argument the record leaves out is the builder's default
        held = {**shape_free_defaults(spec), **release.builder_kwargs}
        refuse_other_architecture(spec, held, kwargs,
                                  f"the release {spec.name}:{weights}" + (f" ({files})" if files else ""))
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
    if path.suffix.lower() in (".h5", ".hdf5") and _w.is_zoo_weights_file(path):  # whatever the name: x.weights.h5
        return _load_zoo_file(spec, path, kwargs, None)
    if path.name.endswith(".weights.h5") or path.suffix == ".keras":
        meta = {}
        if path.suffix == ".keras":
            _check_keras_archive(path)
            meta = _w.read_keras_metadata(path)  # a training run's: builder arguments, record, centre-map sigma
            kwargs = {**_saved_architecture(spec, path, meta, kwargs), **kwargs}
        # what no weight shape shows (a ResNet's stride placement): Keras would load it into either network
        kwargs = {**keras_file_architecture(spec, path, kwargs), **kwargs}
        model = _build(spec, kwargs)
        reheading = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                _load_keras_weights(model, path)
            except Exception as e:  # Keras raises ValueError/OSError/KeyError variants
                import h5py  # a file that is no HDF5 (cut short, a text file) is not another model's weights

                if path.suffix != ".keras" and not h5py.is_hdf5(path):
                    raise WeightsFileError(f"'{path}' is not a readable HDF5 file (truncated, or not a Keras "
                                           f".weights.h5).") from None
                head = spec.head_kwarg
                # the head size asked for is not the file's: fine-tuning on other keypoints / classes
                reheading = head in kwargs and path.suffix == ".keras" and head_widths_differ(spec, model, path)
                if not reheading:
                    refuse_by_cause(spec, path, meta.get("model_name"), model)
                    if head in kwargs and path.suffix != ".keras" and _only_head_failed(spec, e):
                        # another head size: Keras' words dumped a tensor's values
                        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
                        raise WeightsMismatchError(
                            f"{spec.name}: could not load '{path}' into a model built with {head}={kwargs[head]!r} "
                            f"({first}). A .weights.h5 holds no layer names to leave its head out by: to fine-tune "
                            f"it on another {head}, load it into the model it was saved from, write that with "
                            f"zoo.save_model(model, 'x.keras') or zoo.save_weights(model, 'x.h5'), and pass that "
                            f"file with {head}={kwargs[head]!r}.") from None
                    raise WeightsMismatchError(f"{spec.name}: could not load Keras weights from '{path}': "
                                               f"{e}") from None
        if reheading:  # outside the block above, which would swallow its warning
            held = (meta.get("builder_kwargs") or {}).get(head) if meta.get("model_name") == spec.name else None
            _rehead_from_keras(spec, model, path, head, kwargs[head], held)
            record = meta.get("record")
            meta = {**meta, "record": record and _with_head_size(record, head, kwargs[head])}
            return _apply_saved_metadata(_attach(model, spec, None, kwargs), meta)
        # Keras warns, and goes on, when parts of the file do not match: a partly loaded model is an error here
        partial = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)]
        if partial:
            raise WeightsMismatchError(f"{spec.name}: '{path}' does not match this model; Keras left some "
                                       f"weights unloaded: {partial[0]}")
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return _apply_saved_metadata(_attach(model, spec, None, kwargs), meta)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return _load_zoo_file(spec, path, kwargs, None)
    return _load_by_suffix(spec, path, kwargs, None)


def _only_head_failed(spec: ModelSpec, error: Exception) -> bool:
    """Whether Keras' load error names only head layers as the objects it could not load (its "List of objects
    that could not be loaded: [<Conv2D name=fc1000, ...>, ...]"), so the file differs from the model in its head."""
    import re

    names = re.findall(r"<\w+ name=([^,>\s]+)", str(error))
    return bool(names) and all(spec.is_head_layer(n) for n in names)


def _rehead_from_keras(spec: ModelSpec, model, path: Path, head: str, size, held=None):
    """``model`` (built with ``head=size``) given the weights of the ``.keras`` at ``path``, layer by layer name, all
    but its head layers, which keep their initial values (warned, as a zoo ``.h5`` of another head size is). Every
    other layer with weights must be in the file with the same shapes, else a WeightsMismatchError naming them."""
    source = {l.name: l for l in load_keras_model(path).layers}
    head_layers, unmatched = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        if spec.is_head_layer(layer.name):
            head_layers.append(layer.name)
            continue
        other = source.get(layer.name)
        if other is None or [tuple(w.shape) for w in other.weights] != [tuple(w.shape) for w in layer.weights]:
            unmatched.append(layer.name)
            continue
        layer.set_weights(other.get_weights())
    if unmatched:
        raise WeightsMismatchError(
            f"{spec.name}: '{path}' holds another architecture than {head}={size!r} with the other arguments asked "
            f"for: {len(unmatched)} layers outside the head are missing from it or have other shapes "
            f"({', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}).")
    had = f"{head}={held!r}" if held is not None else f"another {head}"
    warnings.warn(f"{spec.name}: weights '{path}' have {had} but {head}={size!r} was asked for; loading everything "
                  f"but the head layers ({', '.join(head_layers)}), which keep their initial values.",
                  stacklevel=3)  # the caller of zoo.get
    return model


def _load_keras_weights(model, path: Path) -> None:
    """``model.load_weights(path)``; a ``.keras`` file's ``model.weights.h5`` is read from a copy extracted first.

    Keras reads it from inside the zip archive on the fly there, seeking back and inflating again (and CRC-checking)
    for each array: PSPNet-50's 188 MB took 3-4x as long as extracting it and reading the copy
    (``keras.saving.load_model`` reads it whole too). An archive without that entry, or no room for the copy, goes to
    Keras as it is.
    """
    import shutil
    import tempfile
    import zipfile

    if path.suffix != ".keras":
        model.load_weights(str(path))
        return
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "model.weights.h5"
        try:
            with archive.open("model.weights.h5") as src, open(copy, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (KeyError, OSError):  # no such entry (another weights format), or the temporary folder is full
            model.load_weights(str(path))
            return
        model.load_weights(str(copy))


def _saved_architecture(spec: ModelSpec, path, meta: dict[str, Any], asked: dict[str, Any]) -> dict[str, Any]:
    """The builder arguments a ``.keras`` file's metadata holds (``meta``: those of a model ``training.fit`` saved
    after ``zoo.get(spec.name, ...)`` built it; ``{}`` for another name), checked against ``asked``."""
    if meta.get("model_name") != spec.name:
        return {}
    held = {k: v for k, v in meta["builder_kwargs"].items() if k in spec.defaults and k != "weights"}
    refuse_other_architecture(spec, held, asked, f"'{path}' (its {_w.KERAS_METADATA})")
    if asked.get("input_tensor") is not None and "input_shape" not in asked:
        held.pop("input_shape", None)  # the tensor gives the size
    return held


def _check_tag(spec: ModelSpec, tag: str, name: str) -> None:
    if tag not in spec.weights:
        known = ", ".join(spec.weights) or "none registered yet"
        raise ValueError(f"{spec.name}: unknown weights tag {tag!r} (in {name!r}). Known tags: {known}.")


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
    model, rec, *rest = _LOADERS[suffix](spec, path, kwargs)
    held = dict(rest[0]) if rest else {}  # the file's architecture: unrecorded, a saved copy rebuilt the defaults
    record = record or rec or _release_conventions(spec, _SOURCE_FORMATS.get(suffix))
    head = spec.head_kwarg
    if record is not None and held:
        record = _with_architecture(record, head, held)
    if record is not None and head is not None and head in kwargs:
        # the head asked for: the file's size, or a fresh head (the loader warned); a .caffemodel / .t7 names no outputs
        record = _with_head_size(record, head, kwargs[head])
    return _attach(model, spec, record, {**held, **(record.builder_kwargs if record else {}), **kwargs})


def _load_zoo_file(spec: ModelSpec, path, kwargs, record):
    stored_name, stored = _w.read_record(path)
    record = record or stored
    build_kwargs = {k: v for k, v in stored.builder_kwargs.items() if k in spec.defaults and k != "weights"}
    head = spec.head_kwarg
    stored_size = {"classes": stored.num_classes, "num_keypoints": stored.num_keypoints}.get(head)
    if head in spec.defaults and head not in build_kwargs and stored_size is not None:
        build_kwargs[head] = stored_size  # a record made by hand may give the head size only as num_classes
    head_changed = (
        head is not None and head in kwargs and head in build_kwargs and kwargs[head] != build_kwargs[head]
    )
    stored_head = build_kwargs.get(head)
    other = stored_name != spec.name and stored_name in list_models()  # the likeliest cause, said first
    if not other:
        # zoo.save_weights records a zoo.get model's head size and every argument it was given: a record with the head
        # size but without a shape-free argument (saved before records held them) was saved at the builder's default
        held, source = build_kwargs, f"'{path}' (its weights record)"
        unheld = [k for k in shape_free_defaults(spec) if k not in build_kwargs]
        if unheld and spec.head_kwarg in stored.builder_kwargs:
            held = {**shape_free_defaults(spec), **build_kwargs}
            source = (f"'{path}' (its weights record, saved before records held {', '.join(unheld)}: the builder's "
                      f"default)")
        refuse_other_architecture(spec, held, kwargs, source)
    # architecture arguments the record leaves out: zoo.save_weights records only those zoo.get was given
    unrecorded = [k for k in architecture_kwargs(spec)
                  if k in kwargs and k not in build_kwargs and kwargs[k] != spec.defaults[k]]
    if kwargs.get("input_tensor") is not None and "input_shape" not in kwargs:
        build_kwargs.pop("input_shape", None)  # the tensor gives the size; the name-keyed weights fit any
    build_kwargs.update(kwargs)
    try:
        model = _build(spec, build_kwargs)
    except ValueError as e:  # e.g. another model's stored input_shape that this builder cannot take
        if other:
            raise WeightsMismatchError(f"{spec.name}: '{path}' holds weights of '{stored_name}'. {e}") from None
        raise
    skip = ()
    if head_changed:
        skip = [l.name for l in model.layers if spec.is_head_layer(l.name)]
        warnings.warn(
            f"{spec.name}: weights '{path}' have {head}={stored_head} but "
            f"{head}={kwargs[head]} was asked for; loading everything but the head layers "
            f"({', '.join(skip)}), which keep their initial values.",
            stacklevel=3,
        )
        record = _with_head_size(record, head, kwargs[head])
    skip = [*skip, *getattr(model, "_zoo_upstream_layers", ())]  # the caller's layers before an input_tensor
    file_only_ok, model_only_ok = spec.weights_fit(model)
    try:
        _w.load_weights(model, path, skip_layers=skip, file_only_ok=file_only_ok, model_only_ok=model_only_ok)
    except WeightsMismatchError as e:
        # zoo.get takes no skip_mismatch: say where it is
        msg = str(e).replace(_w.SKIP_HINT, f"zoo.load_weights(model, '{path}', skip_mismatch=True) loads the layers "
                                           f"that fit into a model you build.")
        if other:
            raise WeightsMismatchError(f"{spec.name}: '{path}' holds weights of '{stored_name}'. {msg}") from None
        refuse_by_cause(spec, path, None)
        head = [n for n in head_layers_missing_from_file(spec, model, path) if n not in skip]
        if head and "include_top" in spec.defaults:  # a backbone saved with include_top=False: no list, say so
            raise WeightsMismatchError(
                f"{spec.name}: '{path}' has no classifier head (no {', '.join(head)}): it was saved from a model built "
                f"with include_top=False. Pass include_top=False to load it without the head.") from None
        if unrecorded:  # the likeliest cause; a file saved at the builder's defaults records none of them
            raise WeightsMismatchError(
                f"{spec.name}: '{path}' does not fit {settings(kwargs, unrecorded)} (it has other layers or weight "
                f"shapes) and its weights record does not give {', '.join(unrecorded)}, so it was saved with the "
                f"builder's default {settings(spec.defaults, unrecorded)} or by hand: leave out "
                f"{', '.join(unrecorded)}, or give the value{'s' if len(unrecorded) > 1 else ''} it was built with."
            ) from None
        raise WeightsMismatchError(msg) from None
    return _attach(model, spec, record, build_kwargs)


def _check_keras_archive(path: Path) -> None:
    """Refuse a truncated or foreign ``.keras`` file up front: Keras reports it as "File not found"."""
    import zipfile

    try:  # the central directory is at the end: a truncated file fails here (no full read, no CRC pass)
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise WeightsFileError(
            f"'{path}' is not a readable .keras archive (truncated or not a zip file: {e})."
        ) from None
    if "config.json" not in names:
        raise WeightsFileError(f"'{path}' is not a readable .keras archive (no config.json in it).")


def load_keras_model(path):
    """Load a whole model saved as ``.keras`` (a training run's ``best.keras``, a converted Caffe net).

    The custom objects of the zoo, the Caffe converter and the training package are registered
    first, so ``safe_mode=True`` loading works; the model is not compiled. A training run's file carries its
    metadata (:func:`zoo.weights.read_keras_metadata`): the model gets the run's record (input convention,
    heatmap offset, flip pairs), task, background map and CPM centre-map sigma, which ``training.inference.predict``
    and ``training.evaluate`` use (``keras.saving.load_model`` gives the bare network without them).

    Raises:
        WeightsFileError: missing file, a directory, a truncated or foreign archive (names the path),
            a model Keras cannot rebuild (with Keras' reason), or metadata that is not a run's (names the field).
    """
    import importlib

    path = Path(path)
    if not path.exists():
        raise WeightsFileError(f"model file not found: '{path}'.")
    if path.is_dir():
        raise WeightsFileError(f"model path '{path}' is a directory, expected a .keras file.")
    _check_keras_archive(path)
    for module in ("converters.caffe", "training"):  # they register their layers/losses on import
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    meta = _w.read_keras_metadata(path)  # before the model: a bad entry is refused without loading it
    try:
        with without_cyclic_gc():
            model = _load_keras_archive(path)
    except Exception as e:  # Keras raises ValueError/TypeError/KeyError variants
        raise WeightsFileError(f"'{path}': Keras could not load the model: {type(e).__name__}: {e}") from None
    return _apply_saved_metadata(model, meta)


# What Keras writes into a .keras file of a model without assets, and the zoo's metadata entry
_PLAIN_ARCHIVE = {"metadata.json", "config.json", "model.weights.h5", "kerazoo.json"}


def _load_keras_archive(path: Path):
    """``keras.saving.load_model(path, compile=False, safe_mode=True)``, faster: for an archive of a config and one
    weights file (no assets), the model is re-created from its config with the random initialisers drawn on the host
    (:func:`zoo.initializers.with_host_initializers`; Keras' initialisers compile one XLA program per weight shape
    on JAX, only for the file's values to replace them), then the weights are read by Keras from a copy of the
    archive's weights file (:func:`_load_keras_weights`), refused as ``load_model`` refuses them where they do not
    match. Keras' initialisers are put back afterwards (:func:`zoo.initializers.record_as_keras`): the model saves
    with the config it was saved with. Anything else (assets, sharded weights, a config above 64 MiB) goes to
    Keras' loader as it is."""
    import json
    import zipfile

    import keras

    from zoo.initializers import record_as_keras, with_host_initializers

    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        plain = names <= _PLAIN_ARCHIVE and "model.weights.h5" in names and z.getinfo("config.json").file_size < 1 << 26
        config = json.loads(z.read("config.json")) if plain else None
    if not isinstance(config, dict):
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    config["compile_config"] = None  # as load_model(compile=False)
    model = keras.saving.deserialize_keras_object(with_host_initializers(config), safe_mode=True)
    _load_keras_weights(model, path)
    record_as_keras(model)
    return model


def weights_record(model) -> WeightsRecord | None:
    """The :class:`WeightsRecord` attached by :func:`get` (``None`` for random weights)."""
    return getattr(model, "_zoo_record", None)


def preprocess(model_or_name, images, *, record: WeightsRecord | None = None) -> np.ndarray:
    """Apply the weights' input convention to RGB images with values in [0, 255].

    Args:
        model_or_name: a model returned by :func:`get`, a registered ``"arch.tag"``/``"arch:tag"``/``"arch"``
            name (the default tag is used), or ``None`` when ``record`` is given.
        images: array ``(B, H, W, 3)`` or ``(H, W, 3)``, RGB, 0-255 (uint8 or float); uint16 (16-bit PNG/TIFF,
            65535 = white) is brought to 0-255 first, as ``training.inference.predict`` reads such images.
        record: use this record instead of looking one up.
    Returns:
        float32 array of the same shape: ``(reorder(images) * scale - mean) / std``.
    """
    check_record_arg(record, "preprocess")
    if record is None:
        if isinstance(model_or_name, str):
            spec = get_spec(model_or_name)
            tag = parse_name(model_or_name)[1] or next(iter(spec.weights), None)
            if tag is None:
                raise ValueError(f"{spec.name} has no registered weights, so no preprocessing convention.")
            _check_tag(spec, tag, model_or_name)  # was a bare KeyError
            record = spec.weights[tag]
        else:
            record = weights_record(model_or_name)
            if record is None:
                raise ValueError(
                    "This model carries no weights record (built with weights=None); pass record=..."
                )
    images = np.asarray(images)
    x = images.astype(np.float32)
    if images.dtype == np.uint16:  # taken as 0-255 it reached 257 times the record's range
        x *= np.float32(255 / 65535)
    if x.shape[-1] != 3:
        raise ValueError(f"preprocess expects RGB images with 3 channels last. Received shape {x.shape}.")
    if record.channel_order.upper() == "BGR":
        x = x[..., ::-1]
    x = x * np.float32(record.scale)
    x = (x - np.asarray(record.mean, np.float32)) / np.asarray(record.std, np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)
