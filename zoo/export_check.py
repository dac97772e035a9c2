"""The check :func:`zoo.export.export` runs before it keeps an artifact: the exported SavedModel or LiteRT file
run back with TensorFlow on a seeded random input and each output compared with the Keras model's, within a
tolerance of that output's largest value (wider for a model computing in bfloat16/float16).

Holds the check input, running the artifact back (signature key order, LiteRT inputs by name), the comparison
and its tolerance, and the copy with all-zero weights varied for outputs the check input leaves blank. Apart from
:mod:`zoo.export` (arguments, the target, writing the artifact and its JSON), which imports it; it imports
nothing from there (:class:`~zoo.errors.ExportError` is in :mod:`zoo.errors` for that).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from zoo.errors import ExportError
from zoo.initializers import host_drawn_copy


_RTOL = 1e-4  # of the largest |output|: float32 graphs re-fused by TF/XNNPACK agree to ~1e-5 of it
# a model computing in a 16-bit float: 16 machine epsilons of it (bfloat16 12.5%, float16 1.6%). XLA's and
# TensorFlow's roundings set ResNet/PSPNet/hourglass/CPM outputs apart by up to 2.1% (bfloat16) and 0.19% (float16)
# of their largest value; a wrong input order, weight or layer is off by the order of the output itself
_RTOL_EPS = {"bfloat16": 16 * 2.0**-7, "float16": 16 * 2.0**-10}


def _check_input(specs, record, seed=0):
    """A seeded random batch in the structure of ``specs`` for the check: pixels in [0, 255] (uint8 inputs as
    integers), a one-channel input (CPM's centre map) in [0, 1]; a free axis takes the record's input size, else
    256 (every zoo model's stride divides it)."""
    rng = np.random.default_rng(seed)
    size = tuple(record.input_size) if record is not None and record.input_size else (256, 256)

    def sample(spec):
        shape = list(spec.shape)
        shape[0] = shape[0] or 1
        if len(shape) == 4:
            shape[1], shape[2] = shape[1] or size[0], shape[2] or size[1]
        shape = [d if d is not None else 1 for d in shape]
        dtype = keras.backend.standardize_dtype(spec.dtype)
        high = 1.0 if len(shape) == 4 and shape[-1] == 1 else 255.0
        if "int" in dtype:
            return rng.integers(0, int(high) + 1, shape).astype(dtype)
        return rng.uniform(0, high, shape).astype(dtype)

    return keras.tree.map_structure(sample, specs)


def _flat(outputs):
    return [np.asarray(keras.ops.convert_to_numpy(o), np.float64) for o in keras.tree.flatten(outputs)]


def _unsaved_gradients_notice(record) -> bool:
    """False for TensorFlow's "Importing a function ... with ops with unsaved custom gradients" warning: a
    jax2tf-lowered SavedModel has them, and our check serves it, never differentiates it."""
    return "with ops with unsaved custom gradients" not in record.getMessage()


def _run_saved_model(folder, feed):
    import logging

    import tensorflow as tf

    absl_log = logging.getLogger("absl")
    absl_log.addFilter(_unsaved_gradients_notice)
    try:
        loaded = tf.saved_model.load(str(folder))  # held: its variables die with it
    finally:
        absl_log.removeFilter(_unsaved_gradients_notice)
    return [np.asarray(o, np.float64) for o in tf.nest.flatten(loaded.serve(feed))]


def _signature_key_order(keys):
    """The signature's output keys in the order of ``keras.tree.flatten(model.output)``: ``output_0``,
    ``output_1``, ... by number (``output_10`` after ``output_9``) for a list, sorted names for a dict."""
    numbered = all(k.startswith("output_") and k[7:].isdigit() for k in keys)
    return sorted(keys, key=lambda k: int(k[7:])) if numbered else sorted(keys)


def _run_litert(file, specs, feed):
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():  # its deprecation notice (for ai_edge_litert, not a dependency here)
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_path=str(file))
    # the signature names each input as its keras.Input (two inputs of one shape are told apart by name only)
    runner = interpreter.get_signature_runner("serving_default")
    named = {s.name: x for s, x in zip(keras.tree.flatten(specs), keras.tree.flatten(feed))}
    expected = set(runner.get_input_details())
    if expected != set(named):
        raise ExportError(f"export: the LiteRT file's inputs are {sorted(expected)}, the model's {sorted(named)}")
    out = runner(**named)
    return [np.asarray(out[k], np.float64) for k in _signature_key_order(out)]


def _compare(ours, theirs, model_name):
    """``[(max |artifact - Keras|, max |Keras|)]`` per output. A NaN or inf where the other has another value is
    an infinite error (``max`` would drop a NaN: ``max(0.0, nan)`` is 0.0); the scale is over finite values."""
    if len(ours) != len(theirs):
        raise ExportError(f"export: the artifact gives {len(theirs)} outputs, {model_name} gives {len(ours)}")
    result = []
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a.shape != b.shape:
            raise ExportError(f"export: the artifact's output {i} has shape {b.shape}, {model_name}'s {a.shape}")
        with np.errstate(invalid="ignore"):
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            diff = np.nan_to_num(np.where(same, 0.0, np.abs(a - b)), nan=np.inf, posinf=np.inf)
        result.append((float(np.max(diff, initial=0.0)), float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0))))
    return result


def _tolerance(model) -> float:
    """The check's error allowance, a fraction of an output's largest value: :data:`_RTOL`, or more for a model
    that computes in bfloat16/float16 (a mixed or pure 16-bit dtype policy), which no two runtimes round alike."""
    computes = {l.dtype_policy.compute_dtype for l in model._flatten_layers(include_self=False, recursive=True)}
    return max([_RTOL] + [_RTOL_EPS[d] for d in computes if d in _RTOL_EPS])


def _check(model, artifact: Path, fmt, specs, feed, varied=""):
    """Runs ``artifact`` on ``feed`` with TensorFlow and compares each output with ``model.predict``'s; an output
    off by more than :func:`_tolerance` of its own largest |value| is an :class:`ExportError`. Returns ``(max error,
    max |output|, [outputs without a finite non-zero value]``: those the comparison could not check)."""
    ours = _flat(model.predict(feed, verbose=0))
    theirs = _run_litert(artifact, specs, feed) if fmt == "litert" else _run_saved_model(artifact, feed)
    errors = _compare(ours, theirs, model.name)
    # each output against its own scale: a small output (class probabilities beside heatmaps in the
    # thousands) could otherwise be wrong by far more than 1e-4 of itself
    rtol = _tolerance(model)
    for i, (e, s) in enumerate(errors):
        if not e <= rtol * max(s, 1e-12):
            name = keras.tree.flatten(model.output)[i]._keras_history[0].name
            raise ExportError(f"export: the {fmt} artifact differs from {model.name}{varied} by up to {e:.3g} in "
                              f"output {i} ('{name}', largest |value| {s:.3g}, allowed {rtol:g} of it) on a "
                              f"random input of shape {[x.shape for x in keras.tree.flatten(feed)]}; nothing was "
                              f"written")
    return max(e for e, _ in errors), max(s for _, s in errors), [i for i, (_, s) in enumerate(errors) if s == 0]


def _zero_weights_varied(model, seed=1):
    """``(copy, paths)``: a copy of ``model`` whose floating-point weights that are zero everywhere (FCN's score
    layers when fresh, as the original initialises them) hold seeded normal values N(0, 1 / fan_in) instead
    (fan_in: the product of all but the last axis, 1 for a vector), and those weights' paths; ``(None, [])``
    when no weight is all zero. The other weights are ``model``'s; ``model`` itself is left as it is."""
    rng = np.random.default_rng(seed)
    weights, paths = [], []
    for v, w in zip(model.weights, model.get_weights()):
        if "float" in keras.backend.standardize_dtype(v.dtype) and w.size and not np.any(np.asarray(w, np.float32)):
            fan_in = int(np.prod(w.shape[:-1])) if w.ndim > 1 else 1
            w = rng.normal(0.0, fan_in**-0.5, w.shape).astype(w.dtype)
            paths.append(v.path)
        weights.append(w)
    if not paths:
        return None, []
    # nested models too: never the caller's variables; drawn with NumPy, as the weights are replaced at once
    copy = keras.models.clone_model(model, clone_function=host_drawn_copy, recursive=True)
    copy.set_weights(weights)
    return copy, paths
