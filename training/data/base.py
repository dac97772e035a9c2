"""What :class:`~training.data.HeatmapDataset` and :class:`~training.data.SegmentationDataset` share.

:class:`RecordDataset`: the ``PyDataset`` machinery over a list of sample records -- epoch order, the
per-sample RNG (the contract in :mod:`training.data`), persistent workers, error handling and skip
reporting; a subclass makes one sample (``_make_sample``) and stacks a batch (``_collate``).
:class:`EpochSync` keeps the datasets' epoch in step with ``model.fit``.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os

import numpy as np

from training import _IN_DATA_WORKER
from training.datasets.base import DatasetError
from training.normalization import check_feed as _feed
from training.shm import share_batch

log = logging.getLogger("training.data")


class _WorkerPyDataset:
    """``keras.utils.PyDataset``'s interface, for the base of :class:`RecordDataset` in a data worker process.

    A worker (:mod:`training.workers`) only unpickles its dataset (``__dict__`` restored, no ``__init__``) and
    makes batches; importing Keras there would load its backend for nothing (seconds of CPU per worker).
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    workers = property(lambda self: self._workers, lambda self, v: setattr(self, "_workers", v))
    use_multiprocessing = property(lambda self: self._use_multiprocessing,
                                   lambda self, v: setattr(self, "_use_multiprocessing", v))
    max_queue_size = property(lambda self: self._max_queue_size, lambda self, v: setattr(self, "_max_queue_size", v))

    @property
    def num_batches(self):
        return len(self)

    def __iter__(self):
        for index in range(self.num_batches):
            yield self[index]

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass


if _IN_DATA_WORKER:
    _PyDataset, _Callback = _WorkerPyDataset, object  # EpochSync is never used in a worker
else:
    import keras

    _PyDataset, _Callback = keras.utils.PyDataset, keras.callbacks.Callback


def check_size(value, name) -> tuple[int, int]:
    """``value`` as a ``(w, h)`` pair of positive ints; a ValueError naming ``name`` otherwise."""
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (w, h) pair of positive ints. Received: {name}={value!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"{name} must be a (w, h) pair of positive ints. Received: {name}={value!r}")
    return w, h


def check_names(names, count, who, arg, unit) -> tuple[str, ...] | None:
    """``names`` (one string per keypoint / class, ``count`` of them) as a tuple, or ``None``; a ValueError naming
    ``who``'s argument ``arg`` otherwise. A run keeps them (``config.json``, its ``.keras``), so ``predict`` and
    ``evaluate`` name its outputs."""
    if names is None:
        return None
    items = [names] if isinstance(names, str) else names
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if items is None or len(items) != count or not all(isinstance(n, str) and n for n in items):
        raise ValueError(f"{who}: {arg} must be {count} non-empty strings, one per {unit} in order, or None. "
                         f"Received: {arg}={names!r:.200}")
    return items


def check_model_input(model, ds, who) -> None:
    """Refuse a model whose first input fixes a height or width other than the dataset's ``input_size``.

    ``ds`` crops its images to ``input_size`` (w, h); a model built for another size failed deep inside Keras
    (fit: "Input 0 ... is incompatible", after the run folder was started) or the backend (evaluate on JAX: an
    ``Add`` that could not broadcast). ``who`` starts the message. Open axes (``None``) take any size.
    """
    inputs = getattr(model, "inputs", None)
    shape = tuple(inputs[0].shape) if inputs else ()
    if len(shape) != 4:
        return
    (w, h), (mh, mw) = ds.input_size, shape[1:3]
    if (mw is None or mw == w) and (mh is None or mh == h):
        return
    want = (w if mw is None else mw, h if mh is None else mh)
    raise ValueError(f"{who}: the model takes {'any' if mw is None else mw}x{'any' if mh is None else mh} "
                     f"(width x height) images (its input {inputs[0].name!r} has shape {shape}), but the "
                     f"{type(ds).__name__} crops to input_size={tuple(ds.input_size)} (w, h); make the dataset "
                     f"with input_size={want} (kerazoo train/evaluate: --input-size), or use a model built "
                     f"for {w}x{h}.")


def model_output_size(model, which, input_size) -> tuple[int, int]:
    """``(w, h)`` of the model's output ``which`` (pose: -1, its last stage; segmentation: 0, its main head) for
    ``input_size`` ``(w, h)`` images: the static shape, else Keras' shape inference at that size (an any-size model).

    Raises:
        ValueError: an any-size model that cannot take ``input_size`` (e.g. an hourglass off a multiple of 64),
            with the layer's own words; found before a batch runs into Keras' raw shape error. An output that is
            no (B, h, w, C) map (a classifier's).
    """
    shape = tuple(model.outputs[which].shape)
    if len(shape) != 4:  # a classifier's (B, classes): shape[2] below was an IndexError
        raise ValueError(f"the model's {'last' if which == -1 else 'first'} output has shape {shape}, not the "
                         f"(B, h, w, C) maps of a pose or segmentation model (a classifier?)")
    if None not in shape[1:3]:
        return int(shape[2]), int(shape[1])
    import keras

    w, h = input_size
    specs = [keras.KerasTensor((1, h, w) + tuple(t.shape[3:]), dtype=t.dtype) for t in model.inputs]
    try:
        outs = model.compute_output_spec(specs if len(specs) > 1 else specs[0])
    except Exception as e:  # noqa: BLE001  (whatever a layer raises for a size it cannot take)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"the model does not take {w}x{h} (w x h) inputs ({first}); a size it takes is a multiple "
                         f"of its total stride (64 for an hourglass)") from None
    out = (outs if isinstance(outs, (list, tuple)) else [outs])[which].shape
    return int(out[2]), int(out[1])


def model_center_map_sigma(model) -> float:
    """The centre-map sigma (input px) a CPM-style (image, centre map) model is fed: the one its training run used
    (its ``config.json`` / ``.keras`` metadata), else 21, the releases' and the training command's."""
    return float(getattr(model, "_kerazoo_center_map_sigma", None) or 21.0)


def check_model_task(model, task, who) -> None:
    """Refuse a model made for another task than ``task`` (``"pose"`` / ``"segmentation"``, the dataset's).

    What the model is for comes from the zoo's registry (the name :func:`zoo.get` built it as, or a training run's
    builder entry), else a training run's ``.keras`` metadata (its ``task``); a model neither says anything about is
    left to the output-shape checks. A zoo hourglass with as many heatmaps as the masks have classes trained and
    scored on them without a word (its heatmaps taken for class scores), an FCN scored on keypoints likewise.
    """
    name = getattr(model, "_zoo_name", None) or (getattr(model, "_kerazoo_builder", None) or (None,))[0]
    made_for = None
    if name:
        import zoo

        try:
            made_for = zoo.get_spec(name).task or None
        except ValueError:  # a training.models name (tiny_fcn) or a model renamed by hand: not in the registry
            pass
    made_for = made_for or getattr(model, "_kerazoo_task", None)
    if made_for and made_for != task:
        what = f"'{name}'" if name else f"'{getattr(model, 'name', model)}' (a training run's model)"
        raise ValueError(f"{who}: {what} is a {made_for} model; the dataset is for {task}. Pick a {task} model "
                         f"(zoo.get_spec(name).task says what each one is for).")


class RecordDataset(_PyDataset):
    """Shared machinery: ordering, per-sample RNG, error handling and skip reporting."""

    _RECORD_FIELDS = ("image",)  # what every record of the subclass has (PoseRecord, SegRecord...)

    def _record_list(self, records) -> list:
        """``records`` as a list, each with the subclass's ``_RECORD_FIELDS``; ValueError naming the first that
        is not (one record, or dicts, failed later with "object is not iterable" or an AttributeError)."""
        name = type(self).__name__
        if all(hasattr(records, f) for f in self._RECORD_FIELDS) or isinstance(records, (str, bytes, dict)):
            raise ValueError(f"{name}: records must be a list of sample records; received one "
                             f"{type(records).__name__}: pass [record].")
        try:
            records = list(records)
        except TypeError:
            raise ValueError(f"{name}: records must be a list of sample records. Received: "
                             f"{type(records).__name__}") from None
        if not records:
            raise ValueError(f"{name}: records is empty; expected at least one sample record.")
        for i, r in enumerate(records):
            missing = [f for f in self._RECORD_FIELDS if not hasattr(r, f)]
            if missing:
                raise ValueError(f"{name}: records[{i}] is a {type(r).__name__} without {', '.join(missing)}; expected "
                                 f"a record with {', '.join(self._RECORD_FIELDS)} (training.datasets.PoseRecord / "
                                 f"SegRecord).")
        return records

    def pad_pixel(self) -> tuple:
        """RGB 0-255 pixel that fills a crop outside the image: the one the normalisation maps to 0
        (:meth:`Normalization.zero_pixel`; black with the default, mean 0)."""
        return self.normalization.zero_pixel()

    def __init__(self, records, *, batch_size, seed, shuffle, drop_remainder, on_error, skip_log, feed="float32",
                 persistent_workers=True, **kwargs):
        # Worker processes (or threads) of our own that live across epochs (training.workers); Keras then
        # sees a main-thread dataset. persistent_workers=False leaves them to Keras' per-epoch pool, whose
        # enqueuer serves the batches left over from the pass model.fit peeks at first in the next epoch.
        self.processes = self.threads = 0
        workers = int(kwargs.get("workers", 1))
        if persistent_workers and kwargs.get("use_multiprocessing") and workers > 0:
            self.processes = workers
            kwargs.update(workers=1, use_multiprocessing=False)
        elif persistent_workers and not kwargs.get("use_multiprocessing") and workers > 1:
            self.threads = workers
            kwargs.update(workers=1)
        self._batch_workers = None
        self._workers_held = False  # see close_workers(hold=True)
        super().__init__(**kwargs)
        self.feed = _feed(feed, type(self).__name__)
        self.records = self._record_list(records)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            # int() took 2.5 as 2 and "8" as 8
            raise ValueError(f"{type(self).__name__}: batch_size must be an integer >= 1. "
                             f"Received: batch_size={batch_size!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"{type(self).__name__}: on_error must be 'raise' or 'skip'. Received: {on_error!r}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        if self.seed < 0:  # numpy's seed sequences refuse negatives, which would fail in every batch
            raise ValueError(f"seed must be an integer >= 0. Received: seed={seed!r}")
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        self.on_error = on_error
        self.skip_log = None if skip_log is None else os.fspath(skip_log)
        self.heartbeat_dir = None  # set by WorkerWatchdog: lets the main process notice dead workers
        self.epoch = 0
        self._skipped: dict[int, str] = {}
        self._order_cache: tuple[tuple, np.ndarray] | None = None
        if len(self) == 0:
            raise ValueError(f"{type(self).__name__}: {len(self.records)} records give no full batch of "
                             f"{self.batch_size} with drop_remainder=True.")

    # ------------------------------------------------------------------------------ PyDataset API
    def __len__(self) -> int:
        n = len(self.records)
        return n // self.batch_size if self.drop_remainder else math.ceil(n / self.batch_size)

    def on_epoch_end(self):
        """Advance to the next epoch: new sample order and new augmentation draws."""
        self.epoch += 1

    def set_epoch(self, epoch: int) -> None:
        """Jump to ``epoch`` (used after resuming from a backup)."""
        self.epoch = int(epoch)
        self._workers_held = False

    def on_epoch_begin(self):
        """Keras calls it as every pass (fit epoch, evaluate, predict) starts: workers may start again."""
        self._workers_held = False

    def order(self) -> np.ndarray:
        """Record indices in this epoch's order."""
        # keyed by everything the order depends on: records, shuffle or seed set after the first batch
        # (a stale order of the old length indexed past the records or left new ones out)
        key = (self.epoch, len(self.records), self.shuffle, self.seed)
        if self._order_cache is None or self._order_cache[0] != key:
            n = len(self.records)
            perm = (np.random.default_rng([self.seed, self.epoch, 0x5EED]).permutation(n) if self.shuffle
                    else np.arange(n))
            self._order_cache = (key, perm)
        return self._order_cache[1]

    def batch_indices(self, idx: int) -> np.ndarray:
        """Record indices that make up batch ``idx`` of the current epoch."""
        if not -len(self) <= idx < len(self):
            raise IndexError(f"batch index {idx} out of range for {len(self)} batches.")
        idx %= len(self)
        return self.order()[idx * self.batch_size:(idx + 1) * self.batch_size]

    def __getitem__(self, idx):
        if -len(self) <= idx < 0:  # Python's negative index: the same batch (and seeds) as idx + len
            idx += len(self)
        if (self.processes or self.threads) and not self._workers_held:  # by the persistent workers, some ahead
            if self._batch_workers is None:
                from training.workers import BatchWorkers

                self._batch_workers = BatchWorkers(self, self.processes or self.threads, depth=self.max_queue_size,
                                                   threads=not self.processes)
            return self._batch_workers.get(idx)
        ids = self.batch_indices(idx)
        beat = self._heartbeat(idx)
        try:
            samples = [self._sample_or_substitute(int(idx), pos, int(i)) for pos, i in enumerate(ids)]
        finally:  # a Python exception is reported by the pool itself; only a dead process leaves the note
            if beat and os.path.exists(beat):
                os.remove(beat)
        return share_batch(self._collate(samples))  # worker process: big arrays travel via shared memory

    def _heartbeat(self, idx):
        """In a worker process, mark "pid is making batch idx" (for :class:`~training.callbacks.WorkerWatchdog`)."""
        if not self.heartbeat_dir or multiprocessing.parent_process() is None:
            return None
        path = os.path.join(self.heartbeat_dir, str(os.getpid()))
        try:
            with open(path, "w") as f:
                f.write(str(int(idx)))
        except OSError:  # the watchdog is gone: keep working without it
            return None
        return path

    # ------------------------------------------------------------------------------ errors
    def _describe(self, i) -> str:
        rec = self.records[i]
        return f"sample {i} (id {rec.id!r}, image '{rec.image}')"

    def _sample_or_substitute(self, idx, pos, i):
        n = len(self.records)
        j, tries = i, 0
        while True:
            rng = np.random.default_rng([self.seed, self.epoch, idx, pos, tries])
            try:
                return self._make_sample(self.records[j], rng)
            except DatasetError as e:
                if self.on_error == "raise":
                    raise type(e)(f"{self._describe(j)}: {e}") from None
                self._report_skip(j, e)
                tries += 1
                if tries > min(n, 64):
                    raise DatasetError(f"{tries} samples in a row could not be read (last: {self._describe(j)}: {e}); "
                                       f"giving up on batch {idx}.") from None
                j = (i + tries * 7919) % n  # deterministic stand-in keeps the batch size fixed
            except Exception as e:  # not a data error: name the sample, keep the type when we can
                raise DatasetError(f"{self._describe(j)}: {type(e).__name__}: {e}") from e

    def _report_skip(self, i, err) -> None:
        if i in self._skipped:
            return
        self._skipped[i] = str(err)
        log.warning("skipping %s: %s", self._describe(i), err)
        if self.skip_log:
            with open(self.skip_log, "a", encoding="utf-8") as f:  # one short line per skip: atomic append
                f.write(f"{i}\t{self.records[i].id}\t{str(err).replace(chr(10), ' ')}\n")

    def skipped(self) -> dict[int, str]:
        """Samples skipped so far (``on_error="skip"``): index -> reason, from every process.

        Worker processes append to ``skip_log`` (when set); this process's own skips are kept in
        memory as well.
        """
        out = dict(self._skipped)
        if self.skip_log and os.path.exists(self.skip_log):
            with open(self.skip_log, encoding="utf-8") as f:
                for line in f:
                    parts = line.rstrip("\n").split("\t", 2)
                    if len(parts) == 3 and parts[0].isdigit():
                        out.setdefault(int(parts[0]), parts[2])
        return out

    def close_workers(self, hold: bool = False) -> None:
        """Stop the persistent worker processes (the next batch starts them again).

        Args:
            hold: until the next pass begins (Keras' ``on_epoch_begin``, :meth:`set_epoch`), batches are
                made in this process instead of by new workers. ``training.fit`` holds them when the fit
                raised: a data thread of the failed fit (TensorFlow's tf.data prefetch) can still ask for a
                batch afterwards, and would start processes that nothing closes.
        """
        if self._batch_workers is not None:
            self._batch_workers.close()
        self._workers_held = bool(hold)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_order_cache"] = None  # recomputed in the worker; keeps the pickle small
        state["_batch_workers"] = None  # processes stay with the process that started them
        state["_workers_held"] = False
        return state

    def config(self) -> dict:
        """The constructor arguments except ``records`` (JSON-friendly), for logs and the CLI."""
        raise NotImplementedError

    def _make_sample(self, record, rng):
        raise NotImplementedError

    def _collate(self, samples):
        raise NotImplementedError

    def _images(self, samples) -> np.ndarray:
        """``(B, H, W, 3)`` batch: float32 normalised (``feed="float32"``) or the raw uint8 pixels."""
        images = np.stack([s[0] for s in samples])
        return images if self.feed == "uint8" else self.normalization(images)


class EpochSync(_Callback):
    """Keeps datasets' ``epoch`` equal to the trainer's epoch (also after a resume).

    ``on_epoch_begin`` runs before Keras starts the epoch's worker pool, so workers see the new
    epoch's order and seeds.
    """

    def __init__(self, *datasets):
        super().__init__()
        self.datasets = [d for d in datasets if isinstance(d, RecordDataset)]

    def on_epoch_begin(self, epoch, logs=None):
        for d in self.datasets:
            d.set_epoch(epoch)

    def on_train_end(self, logs=None):
        for d in self.datasets:  # the persistent worker processes end with the training run
            d.close_workers()
