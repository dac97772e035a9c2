"""``training.fit``: one call around ``model.compile`` / ``model.fit`` with the zoo's recipes.

What it adds to plain Keras:

- models by name (``zoo.get`` with ``input_shape``/``num_keypoints``/``classes`` filled in from
  the dataset), a ``.keras`` path, or a ``keras.Model``;
- the loss/metric pairing of the task (weighted heatmap MSE on every hourglass stack / CPM stage,
  summed, and PCK@0.2 on the last one; ignore-255 cross-entropy + mean IoU on the main output,
  PSPNet's aux head weighted 0.4);
- per-family optimiser presets (:mod:`training.optimizers`) and schedules (poly, step, cosine, warm-up);
- mixed precision (``"bf16"``, ``"fp16"`` with loss scaling);
- an output folder: ``config.json`` (the run's settings and input convention, read back when
  its ``.keras`` files are loaded to train, evaluate or ``kerazoo predict``; the ``.keras`` files hold them too,
  for ``zoo.load_keras_model`` and ``zoo.get``: ``training.models._saved_metadata``), ``best.keras`` (best
  validation metric, written atomically; its epoch and value in ``best.keras.json``), ``backup/``
  (``BackupAndRestore``: a killed run started again resumes; deleted when ``fit`` finishes),
  ``log.csv``, ``tensorboard/`` (with ``tensorboard=True``: scalars + heatmap/keypoint/mask
  images), ``final.keras``, ``summary.json``;
- distribution: ``tf.distribute`` Mirrored / MultiWorkerMirrored on TensorFlow (through
  :mod:`training.distribute`), ``keras.distribution.DataParallel`` on JAX.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from training.callbacks import (WorkerWatchdog, _write_json, atomic_save, earlier_log_rows, fit_callbacks,
                                monitor_mode, resolve_monitor)
from training.data import FEEDS, HeatmapDataset, SegmentationDataset
from training.matching import _named_config, _prepare_model, with_normalization
from training.models import _saved_metadata, build_model
from training.distribute import Placement, distribute_py_dataset, jax_distribution, setup_distribution
from training.losses import HeatmapMSE, SegmentationCrossEntropy, auxiliary_loss_weights
from training.interrupts import redeliver_ctrl_c
from training.keras_metrics import MeanIoUMetric, PCKMetric
from training.optimizers import PRESETS, Preset, make_optimizer, resolve_preset
from zoo.files import FolderInUse, check_folder, hold_folder

__all__ = ["fit", "FitResult", "Preset", "PRESETS", "build_model", "make_optimizer", "with_normalization"]


_PRECISION = {None: None, "fp32": None, "float32": None, "bf16": "mixed_bfloat16", "mixed_bfloat16": "mixed_bfloat16",
              "fp16": "mixed_float16", "mixed_float16": "mixed_float16"}


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model, its history and where things were written."""

    model: object
    history: dict
    out_dir: Path | None = None
    best_path: Path | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    monitor: str | None = None
    resumed_from: int | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


# -------------------------------------------------------------------------------------------- fit
def fit(model, train_data, val_data=None, *, epochs=10, out_dir=None, model_kwargs=None, preset=None,
        optimizer=None, learning_rate=None, schedule=None, warmup_epochs=None, weight_decay=None, aux_weight=0.4,
        precision=None, distribution="auto", monitor=None, checkpoint=True, backup=True, backup_every="epoch",
        csv_log=True, tensorboard=False, terminate_on_nan=True, callbacks=(), verbose="auto",
        jit_compile="auto", steps_per_execution=1, feed=None, command=None) -> FitResult:
    """Train a zoo model on a :class:`~training.data.HeatmapDataset` or ``SegmentationDataset``.

    Args:
        model: a zoo/:mod:`training.models` name (``"hourglass"``, ``"pspnet50"``, ``"tiny_fcn"``),
            a ``.keras`` path, or a ``keras.Model``.
        train_data: :class:`HeatmapDataset` (pose) or :class:`SegmentationDataset`; its
            ``num_outputs``/``heatmap_size``/``label_size`` are matched to the model's outputs.
        val_data: optional dataset of the same kind (no augmentation, no shuffle).
        epochs: total epochs (a resumed run finishes the remaining ones).
        out_dir: output folder (see module docstring); ``None`` writes nothing and does not resume.
        model_kwargs: builder arguments for a named model.
        preset: a :class:`Preset` or a :data:`PRESETS` key; default: the model family's.
        optimizer, learning_rate, schedule, warmup_epochs, weight_decay: override preset fields
            (``schedule`` in ``"constant" | "step" | "poly" | "cosine"``). ``"sgd"`` is Caffe's / PyTorch's
            (:class:`training.solvers.CoupledSGD`: ``weight_decay`` added to the gradient, through momentum,
            with a family preset's per-layer multipliers); ``"adam"``, ``"adamw"``, ``"rmsprop"`` are Keras'.
        aux_weight: loss weight of segmentation auxiliary outputs (PSPNet 0.4).
        precision: ``None``/``"fp32"``, ``"bf16"`` or ``"fp16"`` (loss-scaled).
        distribution: ``"auto"`` (TF_CONFIG -> multi-worker; several devices -> data parallel),
            ``"none"``, ``"data_parallel"``, ``"mirrored"``, ``"multi_worker"``.
        monitor: checkpoint metric; default ``val_pck`` / ``val_mean_iou`` (``pck``/``mean_iou``
            without validation data).
        checkpoint, backup, csv_log, tensorboard, terminate_on_nan: switch callbacks on/off
            (``terminate_on_nan``: a NaN/inf loss ends ``fit`` with ``FloatingPointError``).
        backup_every: ``"epoch"`` or a number of batches between backups.
        callbacks: extra Keras callbacks.
        verbose: Keras verbosity.
        jit_compile: passed to ``compile``.
        steps_per_execution: training steps per compiled call (``compile``): fewer host round
            trips for fast steps (ResNet-50 on a GPU); JAX unrolls them, so compile time grows
            with it. Callbacks see every ``steps_per_execution``-th batch.
        feed: ``None`` (the dataset's own ``feed``), ``"float32"`` or ``"uint8"`` (set on both
            datasets). With ``"uint8"`` the datasets send raw RGB pixels (4x fewer bytes per batch
            to the device) and the model gets the datasets' :class:`~training.data.Normalization`
            as its first layer (:func:`with_normalization`), so the saved ``best.keras`` /
            ``final.keras`` take raw 0-255 pixels, not ``zoo.preprocess`` output. A model that
            already starts with a ``Normalize`` layer always gets ``"uint8"``. Off by default: it
            changes what the saved model expects as input.
        command: settings of the command line that started the run (a JSON-able dict), written
            to ``out_dir/cli.json`` once the model is built, so a run that fails to start writes nothing.
    Returns:
        :class:`FitResult`.
    Raises:
        TypeError: ``train_data`` is not one of the two dataset classes.
        ValueError: model and dataset disagree (classes, keypoints), or bad settings.
    """
    t0 = time.time()
    task = _task_of(train_data, val_data)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1. Received: epochs={epochs!r}")
    if feed is not None and feed not in FEEDS:
        raise ValueError(f"feed must be None, 'float32' or 'uint8'. Received: feed={feed!r}")
    if precision not in _PRECISION:
        raise ValueError(f"precision must be None, 'fp32', 'bf16' or 'fp16'. Received: precision={precision!r}")
    policy = _PRECISION[precision]
    _check_steps_per_execution(steps_per_execution)
    # as the command line's --lr / --warmup-epochs / --weight-decay refuse them: a negative rate trained
    # uphill, NaN or inf emptied the weights, silently
    for arg, value, above in (("learning_rate", learning_rate, True), ("warmup_epochs", warmup_epochs, False),
                              ("weight_decay", weight_decay, False), ("aux_weight", aux_weight, False)):
        _check_rate(arg, value, above)
    if isinstance(preset, Preset):
        for arg, above in (("learning_rate", True), ("warmup_epochs", False), ("weight_decay", False)):
            _check_rate(f"preset.{arg}", getattr(preset, arg), above)
    resolve_preset(preset, None, {})  # an unknown preset name is refused before a model is built or loaded
    if out_dir is not None:  # mkdir said "[Errno 17] File exists" once the model was built and compiled
        check_folder(out_dir, "fit", "the run's checkpoints, logs and config go there")
    dist = setup_distribution(distribution)
    out = Path(out_dir) if out_dir is not None else None
    quiet = verbose == 0

    def log(msg):
        if not quiet and dist.is_chief:
            print(f"[training] {msg}", flush=True)

    with dist.scope(), jax_distribution(dist):
        model, family = _prepare_model(model, task, train_data, val_data, model_kwargs, policy, feed, dist, log)
        p = resolve_preset(preset, family, dict(optimizer=optimizer, learning_rate=learning_rate, schedule=schedule,
                                                 warmup_epochs=warmup_epochs, weight_decay=weight_decay),
                           model_name=_zoo_model_name(model))
        opt = _optimizer_for(p, model, task, train_data, epochs, dist, policy)
        default_monitor = _compile(model, task, train_data, opt, aux_weight, jit_compile, steps_per_execution)

    monitor = monitor or (f"val_{default_monitor}" if val_data is not None else default_monitor)
    cbs, resumed_from, best_cb = fit_callbacks(out, dist, train_data, val_data, monitor, checkpoint, backup,
                                               backup_every, csv_log, tensorboard, terminate_on_nan, log)
    cbs += list(callbacks)
    # locked while this fit writes to it: a second fit into the same folder deleted the first one's backup mid-run
    # ("No such file or directory: .../backup/...") or could mix their checkpoints and logs
    with _run_folder(out, dist.is_chief):
        saved = None  # the run's settings, also inside its .keras files (zoo.load_keras_model / zoo.get read them)
        if out is not None and dist.is_chief:
            config = {
                "task": task, "model": getattr(model, "name", str(model)), "family": family, "epochs": epochs,
                "preset": asdict(p), "precision": precision, "distribution": dist.kind, "monitor": monitor,
                "train_data": _named_config(train_data, model),
                "val_data": None if val_data is None else val_data.config(),
                "backend": keras.backend.backend()}
            files = {out / "config.json": config, **({out / "cli.json": command} if command is not None else {})}
            if resumed_from is None:
                for path, obj in files.items():
                    _write_json(path, obj)
            else:  # once the backup is restored: a backup of another model in out_dir is refused, and the run's files
                # stay as they were (they were rewritten with the new arguments first)
                cbs.append(_WriteOnStart(files))
            saved = _saved_metadata(model, config)
            if best_cb is not None:
                best_cb.metadata = saved
        log(f"{task} | {model.name} ({model.count_params():,} params) | {len(train_data.records)} samples, "
            f"{len(train_data)} batches/epoch | {p.optimizer} lr {p.learning_rate:g} {p.schedule} | "
            f"precision {precision or 'fp32'} | distribution {dist.kind}")

        hist = _run_fit(model, train_data, val_data, dist, epochs, cbs, verbose)
        history = {k: [float(v) for v in vals] for k, vals in (hist.history or {}).items()}
        if resumed_from and out is not None and csv_log:  # the epochs before the resume, from the run's log.csv: the
            # history (summary.json, best_epoch without a checkpoint) held only those trained after it
            own = out if dist.is_chief else out / f".worker{dist.index}"
            earlier = earlier_log_rows(own / "log.csv", resumed_from)
            pad = lambda e: (e + [float("nan")] * resumed_from)[:resumed_from]  # noqa: E731  (rows the log lacks: nan)
            history = {k: pad(earlier.get(k, [])) + v for k, v in history.items()}
        result = FitResult(model, history, out, monitor=monitor, resumed_from=resumed_from, seconds=time.time() - t0)
        _record_best(result, best_cb, history, monitor)
        if out is not None and dist.is_chief:
            atomic_save(model, out / "final.keras", saved)
            _write_json(out / "summary.json", {"monitor": monitor, "best_value": result.best_value,
                                               "best_epoch": result.best_epoch, "resumed_from": resumed_from,
                                               "seconds": result.seconds, "history": history})
    best_at = "" if result.best_epoch is None else f" (epoch {result.best_epoch + 1}/{epochs})"
    log(f"done in {result.seconds:.0f}s; best {monitor} = {result.best_value}{best_at}")
    return result


@contextlib.contextmanager
def _run_folder(out, chief: bool):
    """The run folder made (by the chief) and locked against another process's fit while the block runs."""
    held = None
    if out is not None and chief:
        out.mkdir(parents=True, exist_ok=True)
        try:
            held = hold_folder(out)
        except FolderInUse:
            raise ValueError(f"fit: out_dir '{out}' is in use by another run (it holds the folder's lock); wait for "
                             f"it to end, or give another out_dir") from None
    try:
        yield
    finally:
        if held is not None:
            os.close(held)


class _WriteOnStart(keras.callbacks.Callback):
    """Writes ``{path: JSON object}`` when training begins, after the callbacks before it (the backup's restore)."""

    def __init__(self, files):
        super().__init__()
        self.files = files

    def on_train_begin(self, logs=None):
        for path, obj in self.files.items():
            _write_json(path, obj)


# ------------------------------------------------------------------------------------- fit steps
def _task_of(train_data, val_data) -> str:
    """``"pose"`` or ``"segmentation"`` from the dataset classes (``val_data`` must match ``train_data``)."""
    if isinstance(train_data, HeatmapDataset):
        task = "pose"
    elif isinstance(train_data, SegmentationDataset):
        task = "segmentation"
    else:
        raise TypeError(f"train_data must be a training.data.HeatmapDataset or SegmentationDataset. "
                        f"Received: {type(train_data).__name__}")
    if val_data is not None and type(val_data) is not type(train_data):
        raise TypeError(f"val_data must be a {type(train_data).__name__} like train_data. "
                        f"Received: {type(val_data).__name__}")
    return task


def _zoo_model_name(model) -> str | None:
    """The registry name ``model`` was built as: :func:`zoo.get`'s, else a training run's ``.keras`` metadata's (a
    reloaded staged FCN-8s took the family's 1e-10 for its own 1e-14)."""
    return getattr(model, "_zoo_name", None) or (getattr(model, "_kerazoo_builder", None) or (None,))[0]


def _optimizer_for(p: Preset, model, task, train_data, epochs, dist: Placement, policy):
    """:func:`make_optimizer` for this run's steps per epoch and output shape (loss-scaled for fp16)."""
    steps = len(train_data)
    if dist.kind == "multi_worker":  # each worker runs over its shard of records
        per = len(train_data.records) // dist.count
        steps = max(per // train_data.batch_size if train_data.drop_remainder else -(-per // train_data.batch_size), 1)
    opt = make_optimizer(p, epochs=epochs, steps_per_epoch=steps,
                         output_shape=tuple(model.outputs[-1 if task == "pose" else 0].shape))
    if policy == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _check_rate(arg, value, above) -> None:
    """``value``, unless ``None``: a finite real number > 0 (``above``) or >= 0; ``arg`` names it in the error."""
    if value is None:
        return
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))
    if not (ok and np.isfinite(value) and (value > 0 if above else value >= 0)):
        raise ValueError(f"{arg} must be a finite number {'>' if above else '>='} 0. Received: {arg}={value!r}")


def _check_steps_per_execution(value) -> None:
    """Before any data worker starts: an integer >= 1, and 1 on PyTorch (Keras runs one step per call there)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"steps_per_execution must be an integer >= 1. Received: steps_per_execution={value!r}")
    if value > 1 and keras.backend.backend() == "torch":
        raise ValueError(f"steps_per_execution={value}: the PyTorch backend runs one training step per call; "
                         f"use steps_per_execution=1 (or KERAS_BACKEND=jax / tensorflow)")


def _compile(model, task, train_data, opt, aux_weight, jit_compile, steps_per_execution=1) -> str:
    """Compile ``model`` with the task's losses and metrics; returns the default monitored metric name."""
    n = len(model.outputs)
    if task == "pose":
        loss = [HeatmapMSE() for _ in range(n)]
        weights = [1.0] * n  # hg/CPM: every stack/stage's loss summed with weight 1
        wmetrics = [[] for _ in range(n - 1)] + [[PCKMetric(alpha=0.2, num_keypoints=train_data.num_keypoints)]]
        cmetrics = None
        default_monitor = "pck"
    else:
        ignore = train_data.ignore_label
        loss = [SegmentationCrossEntropy(ignore_label=ignore) for _ in range(n)]
        weights = auxiliary_loss_weights(n, aux_weight)
        cmetrics = [[MeanIoUMetric(train_data.num_classes, ignore_label=ignore)]] + [[] for _ in range(n - 1)]
        wmetrics = None
        default_monitor = "mean_iou"
    single = n == 1
    model.compile(optimizer=opt, loss=loss[0] if single else loss, loss_weights=None if single else weights,
                  metrics=cmetrics[0] if (cmetrics and single) else cmetrics,
                  weighted_metrics=wmetrics[0] if (wmetrics and single) else wmetrics, jit_compile=jit_compile,
                  steps_per_execution=int(steps_per_execution))
    return default_monitor


def _run_fit(model, train_data, val_data, dist: Placement, epochs, cbs, verbose):
    """``model.fit`` on the datasets (sharded per worker under multi-worker); returns its History."""
    x_train, x_val, shards = train_data, val_data, []  # shards: per-worker copies, each with its own processes
    if dist.kind == "multi_worker":
        x_train = distribute_py_dataset(dist.strategy, train_data, shards)
        x_val = None if val_data is None else distribute_py_dataset(dist.strategy, val_data, shards)
        # Keras 3.15 reduces the first *nested* PerReplica batch with strategy.reduce, which
        # MultiWorkerMirroredStrategy rejects; build the compile state from a local batch instead
        # (the shard's: train_data's own worker processes would start for this one batch)
        with dist.scope():
            model._symbolic_build(data_batch=(shards[0] if shards else train_data)[0])
        model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    watchdogs = [c for c in cbs if isinstance(c, WorkerWatchdog)]  # already watching (see its docs)
    failed = False
    try:
        with jax_distribution(dist):
            if dist.kind != "multi_worker":
                # Keras would build the compile state from a first batch peeked from a started pass and
                # abandon that pass; its enqueuer (thread workers, Keras' process pool) then serves the pass's
                # made batches first in epoch 0, and every epoch after is shifted by them (stale batches of the
                # epoch before, its last ones trained one epoch late). Built here, Keras peeks at nothing.
                # TensorFlow without a strategy would build inside the first trace of the train step instead,
                # and a tf.function that creates variables is traced twice: built here, once.
                with dist.scope():
                    model._symbolic_build(data_batch=train_data[0])
            # a Ctrl-C whose KeyboardInterrupt something swallowed is raised again while steps go on
            with redeliver_ctrl_c() as steps:
                return model.fit(x_train, validation_data=x_val, epochs=epochs,
                                 callbacks=cbs if steps is None else [*cbs, steps], shuffle=False, verbose=verbose)
    except BaseException as e:
        failed = True
        _release_data_iterators(model, e)
        raise
    finally:
        for w in watchdogs:
            w.stop()
        for ds in (train_data, val_data, *shards):  # also when fit raises: EpochSync closes them only at a normal end
            if ds is not None:  # after a failure, a late batch request of Keras' data thread starts no new ones
                ds.close_workers(hold=failed)


def _release_data_iterators(model, error: BaseException) -> None:
    """Free the data iterators of a ``model.fit`` that ``error`` ended, now rather than at the interpreter's exit.

    Keras keeps validation's iterator on the model until fit ends normally, and its trainer's finished frames hold
    the training one: reachable from the error's traceback (a callback's frame, say, and the Keras frames that called
    it), or in reference cycles that only the garbage collector frees. Left to the end of the program, TensorFlow's
    iterators were destroyed during Python's finalization, which then aborted ("terminate called without an active
    exception") or hung: 9 of 14 scripts that caught a Ctrl-C of a small fit and went on to their end, 0 of 16 with
    this. The variables of Keras' own finished frames are cleared (Keras hides them from its tracebacks anyway);
    the error's other frames, the user's code, keep theirs for a post-mortem debugger.
    """
    import gc
    import os

    import keras

    model.__dict__.pop("_eval_epoch_iterator", None)
    keras_dir = os.path.dirname(keras.__file__) + os.sep
    tb, seen = error.__traceback__, set()
    while tb is not None:
        frame = tb.tb_frame
        while frame is not None and id(frame) not in seen:  # the frame and its callers
            seen.add(id(frame))
            if frame.f_code.co_filename.startswith(keras_dir):
                try:
                    frame.clear()
                except RuntimeError:  # still running (fit called from a Keras frame): left alone
                    pass
            frame = frame.f_back
        tb = tb.tb_next
    gc.collect()


def _record_best(result: FitResult, best_cb, history, monitor) -> None:
    """Fill ``result``'s best value/epoch/path from the checkpoint callback, else from ``history``."""
    if best_cb is not None:
        result.best_value, result.best_epoch = (None if not np.isfinite(best_cb.best) else best_cb.best), \
            best_cb.best_epoch
        result.best_path = best_cb.path if best_cb.path.exists() else None
    else:  # no checkpoint callback: best of the monitored history
        key = resolve_monitor(history, monitor)
        if key is not None and history[key]:
            vals = np.asarray(history[key])
            i = int(np.nanargmin(vals) if monitor_mode(key) == "min" else np.nanargmax(vals))
            result.best_value, result.best_epoch = float(vals[i]), i
