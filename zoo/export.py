"""Deployment artifacts: a Keras model (a zoo model, a converted Caffe net, a training run's ``.keras``) as a
TensorFlow SavedModel or a LiteRT (TFLite) flatbuffer, checked against the Keras model before it is kept.

``keras.Model.export`` writes the artifact; this adds what a deployment needs around it: the artifact is
written beside its target and renamed into place only after it was loaded back by TensorFlow and its outputs
matched the Keras model's on a seeded random input (nothing half-written, nothing silently wrong), and the
weights record (mean, std, channel order, class and keypoint names, heatmap offset) goes with it as JSON, since
neither format carries preprocessing.

    >>> model = zoo.get("hourglass", weights="mpii")
    >>> zoo.export.export(model, "hourglass_mpii")                       # SavedModel folder
    >>> zoo.export.export(model, "hourglass.tflite", format="litert")   # batch 1, fixed size

Backends: a SavedModel is written on TensorFlow and on JAX (through ``jax2tf``; TensorFlow must be installed);
LiteRT on TensorFlow only. Keras writes neither from PyTorch here (it would need ``torch_xla``, and
``litert_torch`` for LiteRT): save the model as ``.keras`` there and export it under ``KERAS_BACKEND=tensorflow``;
the file loads on any backend.

This module checks the arguments and the target and writes the artifact and its JSON; the check that runs the
artifact back and compares it is :mod:`zoo.export_check`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from kerazoo.cli import blocked_by_file
from zoo.errors import ExportError
from zoo.export_check import _RTOL_EPS, _check, _check_input, _signature_key_order, _tolerance, _zero_weights_varied
from zoo.export_check import _compare  # noqa: F401  (re-exported: imported from here by tests/zoo/test_export.py)
from zoo.files import make_parents, remove_empty, replace_durably, replace_folder_durably, writable_folder_error

__all__ = ["export", "ExportResult", "ExportError", "FORMATS", "RECORD_FILE"]

# format name -> (Keras' name for it, what the artifact is)
FORMATS = {"saved_model": "tf_saved_model", "tf_saved_model": "tf_saved_model", "litert": "litert", "tflite": "litert"}
RECORD_FILE = "kerazoo.json"  # inside a SavedModel folder; a .tflite gets OUT.json beside it


@dataclass
class ExportResult:
    """What :func:`export` wrote.

    ``max_error``: max |artifact - Keras| over all outputs on the check input (``None`` with ``verify=False``);
    ``max_output``: max |Keras output| there over all outputs (the check holds each output to its own);
    ``input_shapes``: the artifact's inputs, ``None`` for a free (any-size) axis; ``record_path``: the JSON beside
    it (:func:`_artifact_record`: inputs, outputs, preprocessing, weights record); ``verified``: whether the check
    compared every output (``False`` with ``verify=False``, or where an output had no finite non-zero value on the
    check input even with the model's all-zero weights varied); ``verification``: what was checked, or why not
    (also the JSON's ``"verified"`` and ``"verification"``).
    """

    path: Path
    format: str
    input_shapes: list
    max_error: float | None
    max_output: float | None
    record_path: Path
    verified: bool = False
    verification: str = ""


def _jax2tf_kwargs(backend) -> dict:
    """On JAX: the SavedModel's StableHLO lowered for CPU and CUDA GPUs both. jax2tf lowers for the exporting
    machine's platform only, and an ``XlaCallModule`` refuses to run elsewhere: a model exported on a laptop did
    not serve on a GPU (nor one exported on a GPU on a CPU). Not where Keras itself falls back to graph
    serialization (JAX on a GPU that the installed TensorFlow cannot see)."""
    if backend != "jax":
        return {}
    import jax
    import tensorflow as tf

    if jax.default_backend() == "gpu" and not tf.config.list_physical_devices("GPU"):
        return {}
    return {"jax2tf_kwargs": {"native_serialization": True, "native_serialization_platforms": ("cpu", "cuda")}}


def _positive_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 1


def _model_batch(model):
    """The batch size fixed by ``model``'s inputs (``keras.Input(..., batch_size=N)``), ``None`` when free. Inputs
    that fix different batches are refused: no artifact could serve them."""
    fixed = {(x.name, x.shape[0]) for x in keras.tree.flatten(model.input) if x.shape and x.shape[0] is not None}
    if len({b for _, b in fixed}) > 1:
        raise ExportError(f"export: {model.name}'s inputs fix different batch sizes: "
                          f"{', '.join(f'{n!r} {b}' for n, b in sorted(fixed))}")
    return next(iter(fixed))[1] if fixed else None


def _signature(model, batch_size, input_shape, fmt):
    """``keras.InputSpec`` s in the structure of ``model.input`` (a CPM's is a dict), with the batch and any
    fixed size applied (``batch_size`` agrees with a batch the model's inputs fix, see :func:`export`)."""

    def spec(x):
        shape = list(x.shape)
        if len(shape) == 4 and input_shape is not None:
            for axis, size in zip((1, 2), input_shape):
                if shape[axis] is not None and shape[axis] != size:
                    raise ExportError(f"export: input_shape={tuple(input_shape)} contradicts {model.name}'s input "
                                      f"'{x.name}' of fixed size {tuple(shape[1:3])}")
                shape[axis] = size
        shape[0] = batch_size
        if fmt == "litert" and any(d is None for d in shape):
            free = "the batch" if shape[0] is None else "its height and width"
            raise ExportError(f"export: LiteRT needs fixed input sizes and {model.name}'s input '{x.name}' "
                              f"{tuple(x.shape[1:])} leaves {free} open; pass input_shape=(H, W) "
                              f"(kerazoo export --input-shape H W)")
        return keras.InputSpec(shape=tuple(shape), dtype=x.dtype, name=x.name)

    return keras.tree.map_structure(spec, model.input)




def _is_earlier_export(path: Path, fmt: str) -> bool:
    """Whether ``path`` holds what overwrite may replace: an artifact of ``fmt`` (a folder with
    ``saved_model.pb``, a file with the TFLite identifier ``TFL3`` at bytes 4-8), or nothing (an empty
    folder or file)."""
    if fmt == "tf_saved_model":
        return (path / "saved_model.pb").is_file() or not any(path.iterdir())
    with open(path, "rb") as f:
        head = f.read(8)
    return not head or head[4:8] == b"TFL3"




def _is_earlier_record(path: Path) -> bool:
    """Whether the file ``path`` is a LiteRT export's ``OUT.json`` (its ``"format"`` is ``"litert"``) or empty."""
    try:
        text = path.read_text()
        meta = json.loads(text) if text.strip() else {"format": "litert"}
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == "litert"


def _half_precision_policies(model) -> set:
    """Names of the 16-bit float dtype policies ``model``'s layers compute or keep weights in: mixed
    (``mixed_bfloat16``, ``mixed_float16``) or pure (``bfloat16``, ``float16``)."""
    return {l.dtype_policy.name for l in model._flatten_layers(include_self=False, recursive=True)
            if {l.dtype_policy.compute_dtype, l.dtype_policy.variable_dtype} & set(_RTOL_EPS)}


def _float32_copy(model):
    """``model`` with every layer, nested ones included, computing in float32, same weights and metadata."""
    from zoo.api import carry_metadata
    from zoo.initializers import host_drawn_copy, record_as_keras

    def clone(layer):  # drawn with NumPy (Keras' draws compile per weight shape on JAX), replaced below
        return host_drawn_copy(layer, dtype="float32")

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    record_as_keras(copy)
    copy.set_weights(model.get_weights())
    return carry_metadata(model, copy)


def _write(model, artifact: Path, fmt, specs, backend):
    """``model.export`` into ``artifact``; Keras' failure as an :class:`ExportError` (with a hint on JAX)."""
    try:
        model.export(str(artifact), format=fmt, verbose=False, input_signature=[specs],  # one argument
                     **_jax2tf_kwargs(backend))
    except Exception as e:
        from zoo.errors import one_line

        hint = ""
        if backend == "jax" and any(None in s.shape[1:] for s in keras.tree.flatten(specs)):
            # before Keras' reason, which can be long (symbolic sizes) and is cut short by one_line
            hint = (" (on JAX, free sizes go through jax2tf's shape polymorphism, which not every layer supports, "
                    "the Caffe pooling layers and the hourglass among them: pass input_shape=(H, W) (kerazoo "
                    "export --input-shape H W), or export under KERAS_BACKEND=tensorflow, which keeps them free)")
        raise ExportError(f"export: Keras could not write {model.name} as {fmt}{hint}: {one_line(e, 300)}") from e


def _output_names(model, indices) -> str:
    """``"output 0 ('score')"``, ``"outputs 0 ('a'), 2 ('c')"``: outputs by number and Keras layer name."""
    tensors = keras.tree.flatten(model.output)
    names = ", ".join(f"{i} ('{tensors[i]._keras_history[0].name}')" for i in indices)
    return f"output{'s' if len(indices) > 1 else ''} {names}"



def _check_varied(model, fmt, specs, feed, workdir: Path, backend, blank, say):
    """The check when outputs ``blank`` had no finite non-zero value on the check input (a fresh FCN's zero score
    layers), so it compared nothing there: a copy with the all-zero weights seeded random
    (:func:`zoo.export_check._zero_weights_varied`) is exported beside the artifact and checked the same way, which
    shows the graph was written right; the artifact keeps the real weights. Returns ``(verified, what was
    checked)``; an error there is an :class:`ExportError`. Here, not in :mod:`zoo.export_check`: it writes the
    copy (:func:`_write`)."""
    from zoo.errors import one_line

    what = f"{_output_names(model, blank)} had no finite non-zero value on the check input"
    try:
        copy, paths = _zero_weights_varied(model)
    except Exception as e:  # a model clone_model cannot copy (a subclassed one without get_config)
        return False, f"{what}, and {model.name} could not be copied to vary its all-zero weights ({one_line(e, 200)})"
    if copy is None:
        return False, f"{what}, and {model.name} has no all-zero weights to vary: the check compared nothing there"
    shown = ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
    say(f"{what}: checking again with its all-zero weights ({shown}) seeded random, in a copy exported for the "
        f"check (the artifact keeps the real weights) ...", flush=True)
    varied = workdir / ("varied.tflite" if fmt == "litert" else "varied")
    _write(copy, varied, fmt, specs, backend)
    try:
        error, scale, still = _check(copy, varied, fmt, specs, feed,
                                     f" (a copy with its all-zero weights {shown} seeded random)")
    finally:  # its space back at once (a 134M-parameter FCN-8s: 0.5 GB)
        if varied.is_dir():
            shutil.rmtree(varied, ignore_errors=True)
        else:
            varied.unlink(missing_ok=True)
    say(f"checked the copy: max |artifact - Keras| = {error:.3g} (largest output {scale:.3g})", flush=True)
    if still:
        return False, (f"{_output_names(model, still)} had no finite non-zero value on the check input, also with "
                       f"{model.name}'s all-zero weights ({shown}) seeded random: the check compared nothing there")
    return True, (f"{what} (all-zero weights {shown}): checked on a copy with those weights seeded random, exported "
                  f"the same way; each output within {_tolerance(copy):g} of its largest |value| on a seeded random "
                  f"input")


def _artifact_record(model, fmt, specs, record) -> dict:
    """What a deployment needs beside the artifact (neither format carries it): the signature's inputs and
    outputs (key, Keras name, shape with ``None`` for a free axis, dtype), how to prepare the image and the
    weights record. A ``uint8`` image input takes raw RGB pixels: it normalises them itself (training's
    ``feed="uint8"``), so the record's ``scale``/``mean``/``std`` must not be applied again."""
    flat_specs = keras.tree.flatten(specs)
    try:  # the output sizes at the exported input sizes (input_shape= fixes them)
        outs = keras.tree.flatten(model.compute_output_spec(
            keras.tree.map_structure(lambda s: keras.KerasTensor(s.shape, dtype=s.dtype), specs)))
        shapes = [list(o.shape) for o in outs]
    except Exception:  # a layer without symbolic shape inference: the model's own
        shapes = [[flat_specs[0].shape[0]] + list(t.shape[1:]) for t in keras.tree.flatten(model.output)]
    tensors = keras.tree.flatten(model.output)
    keys = _signature_key_order(list(model.output)) if isinstance(model.output, dict) else \
        [f"output_{i}" for i in range(len(tensors))]
    image = flat_specs[0]
    raw = "int" in keras.backend.standardize_dtype(image.dtype)
    meta = {
        "model": model.name,
        "format": fmt,
        "inputs": {s.name: {"shape": list(s.shape), "dtype": keras.backend.standardize_dtype(s.dtype)}
                   for s in flat_specs},
        "outputs": {k: {"name": t._keras_history[0].name, "shape": shape,
                        "dtype": keras.backend.standardize_dtype(t.dtype)}
                    for k, t, shape in zip(keys, tensors, shapes)},
        "preprocessing": (f"none: '{image.name}' takes RGB pixels 0-255 as {image.dtype} and normalises them "
                          f"itself (do not apply the record's scale, mean, std)") if raw else
                         ("the record's: RGB 0-255 in channel_order, x * scale - mean, / std, as float32"
                          if record is not None else "unknown: no weights record (random or unrecorded weights)"),
    }
    for attr in ("task", "background", "center_map_sigma"):  # a training run's (zoo.api._MODEL_METADATA)
        if getattr(model, f"_kerazoo_{attr}", None) is not None:
            meta[attr] = getattr(model, f"_kerazoo_{attr}")
    if len(flat_specs) == 2 and flat_specs[1].shape[-1] == 1 and "center_map_sigma" not in meta:
        meta["center_map_sigma"] = 21.0  # CPM's centre map: a Gaussian of this sigma (input px) at the person
    meta["record"] = json.loads(record.to_json()) if record is not None else None
    return meta


def check_target(path, format="saved_model", overwrite=False) -> None:
    """Refuse, before a model is built or loaded, an ``export`` ``path`` it would refuse (the command line's check)."""
    fmt = FORMATS.get(str(format).lower())
    if fmt is not None:
        _prepare_target(Path(path), overwrite, fmt)


def _prepare_target(path: Path, overwrite: bool, fmt: str):
    blocker = blocked_by_file(path)
    if blocker is not None:  # the error named the temporary folder made beside it ('afile/.sm.xxxx.tmp')
        raise ExportError(f"export: cannot write '{path}': '{blocker}' is a file, expected a folder")
    # a symbolic link OUT (dangling too) is replaced by the artifact itself; what it points to is left as it is
    if (path.exists() or path.is_symlink()) and not overwrite:
        link = f" (a symbolic link to '{os.readlink(path)}')" if path.is_symlink() else ""
        raise ExportError(f"export: '{path}'{link} exists; pass overwrite=True (kerazoo export --overwrite) to "
                          f"replace it")
    if fmt == "litert" and path.is_dir():
        raise ExportError(f"export: '{path}' is a folder; a LiteRT model is one file (e.g. model.tflite)")
    if fmt == "tf_saved_model" and path.is_file():
        raise ExportError(f"export: '{path}' is a file; a SavedModel is a folder")
    record_path = Path(f"{path}.json")  # a LiteRT model's record, beside it
    if fmt == "litert" and record_path.is_dir():
        raise ExportError(f"export: '{path}.json' is a folder; the weights record of '{path}' is written there")
    if fmt == "litert" and record_path.exists() and not _is_earlier_record(record_path):
        # it was replaced by the record without a word, overwrite or not (a user's notes beside their model)
        raise ExportError(f"export: '{path}.json' exists and is not an earlier LiteRT export's record, which is "
                          f"written there; overwrite replaces only an earlier export. Remove it yourself or choose "
                          f"another OUT")
    if path.exists() and not _is_earlier_export(path, fmt):
        # overwrite replaces an earlier export, never a folder of other files nor a .keras given as OUT by mistake
        what = "a folder that is not a SavedModel (no saved_model.pb)" if fmt == "tf_saved_model" else \
            "a file that is not a LiteRT model (no TFL3 identifier)"
        raise ExportError(f"export: '{path}' is {what}; overwrite replaces only an earlier export. Remove it "
                          f"yourself or choose another OUT")


def export(model, path, *, format="saved_model", input_shape=None, batch_size=None, verify=True, overwrite=False,
           record=None, verbose=True) -> ExportResult:
    """Writes ``model`` as a deployment artifact and checks it against the model.

    Args:
        model: a Keras model (a zoo model, ``converters.caffe.to_keras``'s result, a loaded ``.keras``).
        path: a folder for ``"saved_model"`` (load with ``tf.saved_model.load(path).serve(x)``), a file for
            ``"litert"`` (``.tflite``).
        format: ``"saved_model"`` (alias ``"tf_saved_model"``) or ``"litert"`` (alias ``"tflite"``).
        input_shape: ``(H, W)`` fixing the image size of a model built for any size (LiteRT needs one; a
            SavedModel keeps free axes free without it). Must agree with a model's fixed size.
        batch_size: fixed batch of the artifact. Default: the batch the model's inputs fix
            (``keras.Input(..., batch_size=N)``; another ``batch_size`` is refused), else free for a SavedModel and
            1 for LiteRT (a PSPNet written with a free batch failed to load: TFLite could not size some of its
            tensors). The JSON's ``"batch"`` gives the size and where it came from.
        verify: load the artifact back with TensorFlow and compare its outputs with the model's on a seeded
            random input (pixels uniform in [0, 255]); an error above ``1e-4`` of an output's largest value (each
            output its own; ``16 eps`` of bfloat16/float16, 0.125/0.0156, for a model computing in one), or a
            NaN/inf the other side lacks, is an ``ExportError`` and nothing is written. An output with no finite
            non-zero value there (a fresh FCN's: its score layers start at zero) compares nothing: a copy with the
            model's all-zero weights seeded random is exported beside it and checked instead (the artifact keeps
            the real weights); where that cannot help, the artifact is written with ``"verified": false`` and the
            reason in the JSON (and :class:`ExportResult`). A model under a 16-bit dtype policy, mixed or pure
            (``bfloat16``, ``float16``), is written to LiteRT as a float32 copy (same weights; LiteRT has no
            bfloat16 kernels) and checked against that copy.
        overwrite: replace an existing ``path`` (atomically: the old artifact until the new one is complete); only
            an earlier export (a SavedModel folder, a ``.tflite`` file) or an empty folder/file is replaced.
        record: the :class:`zoo.WeightsRecord` written beside the artifact; default ``zoo.weights_record(model)``.
            The JSON (``OUT/kerazoo.json``, LiteRT ``OUT.json``) is written also without one: it names the
            signature's inputs and outputs (key, Keras name, shape, dtype) and how to prepare the image.
        verbose: print what is done.

    Returns:
        :class:`ExportResult`. Raises :class:`ExportError` (a ``ValueError``) naming what is wrong.
    """
    from zoo.api import weights_record

    if not isinstance(model, keras.Model):
        raise ExportError(f"export: expected a keras.Model, got {type(model).__name__} {model!r:.80}")
    fmt = FORMATS.get(str(format).lower())
    if fmt is None:
        raise ExportError(f"export: format must be one of {sorted(set(FORMATS))}. Received: format={format!r}")
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax") or (fmt == "litert" and backend != "tensorflow"):
        need = "TensorFlow backend" if fmt == "litert" else "TensorFlow or JAX backend"
        raise ExportError(f"export: {fmt} export needs the {need}; this is {backend}. Save the model as .keras and "
                          f"export it under KERAS_BACKEND=tensorflow (a .keras file loads on any backend)")
    try:
        import tensorflow  # noqa: F401  (writes and reads both formats, also under JAX)
    except ImportError:
        raise ExportError("export: writing a SavedModel or LiteRT file needs TensorFlow: pip install tensorflow-cpu") from None
    if input_shape is not None:
        # ints only: int() truncated 6.5 to 6, and True counted as 1
        if (isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__") or len(input_shape) != 2
                or not all(_positive_int(v) for v in input_shape)):
            raise ExportError(f"export: input_shape must be (H, W) of positive ints. Received: {input_shape!r}")
        input_shape = tuple(int(v) for v in input_shape)
    if batch_size is not None:
        if not _positive_int(batch_size):  # 2.0 passed, then Keras could not make a shape of it
            raise ExportError(f"export: batch_size must be a positive int or None. Received: {batch_size!r}")
        batch_size = int(batch_size)
    # a batch the model's inputs fix is the artifact's: it was exported with a free one, which the model's graph
    # (a Reshape to it, say) need not serve
    fixed_batch = _model_batch(model)
    if fixed_batch is not None and batch_size not in (None, fixed_batch):
        raise ExportError(f"export: batch_size={batch_size} contradicts {model.name}'s inputs, which fix batch "
                          f"{fixed_batch}; leave batch_size out (kerazoo export without --batch-size) to export with it")
    batch = {"size": batch_size, "from": "batch_size (kerazoo export --batch-size)"} if batch_size is not None else \
        {"size": fixed_batch, "from": "the model's inputs"} if fixed_batch is not None else \
        {"size": 1, "from": "LiteRT's default (a free batch failed to load)"} if fmt == "litert" else \
        {"size": None, "from": "free: any batch"}
    batch_size = batch["size"]
    path = Path(path)
    _prepare_target(path, overwrite, fmt)
    mixed = _half_precision_policies(model) if fmt == "litert" else set()
    if mixed:
        # LiteRT has no builtin bfloat16 (nor float16-compute) kernels: Keras' converter falls back to TensorFlow
        # ops (FlexConv2D) that LiteRT runtimes cannot run, under a mixed policy and a pure one (bfloat16 weights
        # too) alike. The float32 copy is checked in its place.
        model = _float32_copy(model)
    record = weights_record(model) if record is None else record
    specs = _signature(model, batch_size, input_shape, fmt)
    say = print if verbose else (lambda *a, **k: None)

    flat_specs = keras.tree.flatten(specs)
    if mixed:
        say(f"{model.name} computes in {', '.join(sorted(mixed))}; LiteRT runs float32: exporting a float32 copy "
            f"(same weights)", flush=True)
    say(f"exporting {model.name} as {fmt} (inputs {[s.shape for s in flat_specs]}) ...", flush=True)
    try:
        made = make_parents(path.parent)
    except OSError as e:
        raise writable_folder_error(path, e) from None
    try:
        workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:  # named the temporary folder
        remove_empty(made)
        raise writable_folder_error(path, e) from None
    except BaseException:
        remove_empty(made)
        raise
    artifact = workdir / ("artifact.tflite" if fmt == "litert" else "artifact")
    done = False
    try:
        _write(model, artifact, fmt, specs, backend)
        error = scale = None
        verified, verification = False, "not checked (verify=False, kerazoo export --no-verify)"
        if verify:
            feed = _check_input(specs, record)
            error, scale, blank = _check(model, artifact, fmt, specs, feed)
            say(f"checked: max |artifact - Keras| = {error:.3g} (largest output {scale:.3g})", flush=True)
            verified, verification = True, (f"each output within {_tolerance(model):g} of its largest |value| on a "
                                            f"seeded random input")
            if blank:
                verified, verification = _check_varied(model, fmt, specs, feed, workdir, backend, blank, say)
            if not verified:
                say(f"warning: not verified: {verification}", flush=True)
        meta = _artifact_record(model, fmt, specs, record)
        meta.update(batch=batch, verified=verified, verification=verification)
        if fmt == "litert":  # OUT.json is written (beside, synced) before the renames, so both land together
            record_path = Path(f"{path}.json")
            staged = workdir / "record.json"
            staged.write_text(json.dumps(meta, indent=2) + "\n")
            replace_durably(artifact, path)
            replace_durably(staged, record_path)
        else:
            (artifact / RECORD_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            replace_folder_durably(artifact, path)
            record_path = path / RECORD_FILE
        done = True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not done:
            remove_empty(made)
    say(f"wrote {path}" + (f" and {record_path}" if fmt == "litert" else ""))
    return ExportResult(path=path, format=fmt, input_shapes=[list(s.shape) for s in flat_specs], max_error=error,
                        max_output=scale, record_path=record_path, verified=verified, verification=verification)
