"""Several predictions, one model call: batching for :func:`training.inference.predict` and its callers.

A prediction is written as a generator of *steps* (:func:`training.inference.predict_steps`): it yields the model
inputs it needs (a list of arrays, one per model input, rows first), is sent the model's output for them (an array,
or a list of arrays for a model with several outputs) and returns its result. :func:`gather` runs several such
generators in lockstep, as one whose inputs are theirs concatenated; :func:`drive` runs one on a model, in calls of
at most ``batch_size`` rows. So a video's frames or an image's people go through the model together (a GPU runs a
batch of 8 crops in about the time of one) while each keeps its own crop, decoding and error messages.

Calls are padded up to a power of two rows (repeating the last row; the extra outputs are dropped): JAX and
TensorFlow compile a model's call once per input shape, so a video's last, shorter batch or a frame with one more
person costs no new compilation of a large model.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gather", "drive", "model_call", "default_batch_size", "check_batch_size", "numbered", "reworded", "caught"]


def default_batch_size() -> int:
    """Crops per model call when none is given: 8 where Keras computes on an accelerator (a GPU runs 8 crops in
    about the time of one), 1 on a CPU, where batching a compute-bound model does not pay (a 2-stack 256 px hourglass
    on 2 cores, per image at 8 against 1: 0.87x the speed on JAX, 1.05x on TensorFlow; a 64 px one 1.7x;
    ``benchmarks/predict_batch.py``)."""
    import keras

    try:
        devices = keras.distribution.list_devices()
    except Exception:  # noqa: BLE001 - PyTorch: Keras has no distribution library for it
        import torch

        devices = ["gpu:0"] if torch.cuda.is_available() else ["cpu:0"]
    return 8 if any(not str(d).lower().startswith("cpu") for d in devices) else 1


def check_batch_size(batch_size, who):
    """``batch_size`` as an int >= 1 (``None``: :func:`training.batching.default_batch_size`), or a ValueError
    naming ``who``."""
    if batch_size is None:
        return default_batch_size()
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{who}: batch_size must be an integer >= 1 (images per model call) or None. "
                         f"Received: batch_size={batch_size!r}")
    return int(batch_size)


def reworded(steps, reword):
    """``steps`` whose ValueError is raised again as ``reword(message)`` says (``None``: as it is), e.g. naming the
    image or box it was about."""
    try:
        return (yield from steps)
    except ValueError as e:
        message = reword(str(e))
        if message is None:
            raise
        raise ValueError(message) from e


def numbered(steps, number, count):
    """``steps`` whose ValueError says which of ``count`` images it was about (when there are several)."""
    return reworded(steps, lambda message: f"image {number} of {count}: {message}" if count > 1 else None)


def caught(steps):
    """``steps`` whose error (an ``Exception``) is returned as its result instead of raised: the other images of a
    batch go on (a folder's image the model does not take is skipped, not the end of the run)."""
    try:
        return (yield from steps)
    except Exception as e:  # noqa: BLE001 - the caller sorts them: skipped, or raised after all
        return e


def _key(feeds):
    """What must match for two steps' inputs to be concatenated: each input's shape after the rows, and dtype."""
    return tuple((a.shape[1:], a.dtype.str) for a in feeds)


def _rows(out, start, stop):
    """Rows ``start:stop`` of a model output (an array, or a list/tuple of them)."""
    if isinstance(out, (list, tuple)):
        return type(out)(o[start:stop] for o in out)
    return out[start:stop]


def _concat(outs):
    """The row blocks ``outs`` of one output structure, concatenated."""
    if isinstance(outs[0], (list, tuple)):
        return type(outs[0])(np.concatenate([o[k] for o in outs]) for k in range(len(outs[0])))
    return np.concatenate(outs)


def gather(steps):
    """One step generator out of several: each yield is the inputs of all steps waiting with inputs of one shape,
    concatenated; the output is split back by rows. Returns the steps' results, in order.

    An error thrown in (the model refused the batch) is thrown into each of that batch's steps: the first one's own
    error (a message naming its image) is raised, and where every step handled it (:func:`caught`) the others go on.
    """
    steps = list(steps)
    results = [None] * len(steps)
    waiting = []  # (index, feeds, their _key)

    def advance(i, value=None, error=None):
        try:
            feeds = steps[i].throw(error) if error is not None else steps[i].send(value)
        except StopIteration as stop:
            results[i] = stop.value
        else:
            feeds = [np.asarray(f) for f in feeds]
            waiting.append((i, feeds, _key(feeds)))

    for i in range(len(steps)):
        advance(i)
    while waiting:
        key = waiting[0][2]
        group = [(i, feeds) for i, feeds, k in waiting if k == key]
        waiting[:] = [w for w in waiting if w[2] != key]
        try:
            out = yield [np.concatenate([feeds[k] for _, feeds in group]) for k in range(len(key))]
        except Exception as e:  # noqa: BLE001 - each step turns it into its own message, or handles it
            for i, _ in group:
                advance(i, error=e)
            continue
        start = 0
        for i, feeds in group:
            n = len(feeds[0])
            advance(i, value=_rows(out, start, start + n))
            start += n
    return results


def model_call(model, feeds, batch_size=None):
    """``model.predict_on_batch`` on ``feeds`` (a list of arrays, one per model input), in calls of at most
    ``batch_size`` rows, each padded up to a power of two rows (at most ``batch_size``); the outputs concatenated.

    ``predict_on_batch``, not ``predict``: Keras' ``predict`` on JAX leaves the weights emptied when a batch fails
    (and the model broken for the next call), and adds ~70 ms per call.
    """
    n = len(feeds[0])
    size = n if batch_size is None else max(1, int(batch_size))
    outs = []
    for start in range(0, n, size):
        chunk = [f[start:start + size] for f in feeds]
        rows = len(chunk[0])
        padded = min(1 << (rows - 1).bit_length(), size)  # 1, 2, 4, 8, ... then batch_size
        if padded > rows:  # the last row again: a valid input whose outputs are dropped
            chunk = [np.concatenate([c, np.repeat(c[-1:], padded - rows, axis=0)]) for c in chunk]
        out = model.predict_on_batch(chunk if len(chunk) > 1 else chunk[0])
        if isinstance(out, dict):  # a model with named outputs: in the model's order
            out = [out[k] for k in model.output_names]
        out = [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)
        outs.append(_rows(out, 0, rows))
    return outs[0] if len(outs) == 1 else _concat(outs)


def drive(model, steps, batch_size=None):
    """Run a step generator (one prediction, or several :func:`gather`-ed) on ``model``; its result.

    An error of the model's call is thrown into the generator, where the step that asked for it names its input.
    """
    try:
        feeds = next(steps)
    except StopIteration as stop:
        return stop.value
    while True:
        try:
            out = model_call(model, feeds, batch_size)
        except Exception as e:  # noqa: BLE001 - the step's message (or the error itself) comes back out
            error, out = e, None
        else:
            error = None
        try:
            feeds = steps.throw(error) if error is not None else steps.send(out)
        except StopIteration as stop:
            return stop.value
