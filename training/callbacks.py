"""Training callbacks: atomic best-model checkpoint, TensorBoard images, worker watchdog, skip report, NaN stop.

:func:`fit_callbacks` wires these together for :func:`training.fit` with ``BackupAndRestore`` (Keras',
mid-epoch resumes kept on schedule: :mod:`training.backup`, re-exported here), ``CSVLogger`` and
``TensorBoard``; each also works on its own with ``model.fit``. Batch-level hooks are ``async_safe`` where
they can be, so that on JAX Keras does not wait for every step's logs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from pathlib import Path

import keras
import numpy as np

from training.backup import BackupAndRestore, _backup_epoch, _clear_previous_run  # re-exported: BackupAndRestore
from training.data import EpochSync
from training.datasets.base import WorkerCrashedError
from zoo.files import replace_durably, short_name, write_errors_naming, write_json, write_text

__all__ = ["BestCheckpoint", "BackupAndRestore", "ImageLogger", "WorkerWatchdog", "SkipReport", "TimeBudget",
           "EpochBudget", "resolve_monitor", "monitor_mode", "atomic_save", "fit_callbacks"]


def atomic_save(model, path, metadata=None) -> Path:
    """``model.save(path)`` through a temporary ``.keras`` name in the same folder, then rename.

    ``metadata`` (a ``.keras`` only): what ``zoo.save_model`` puts into the archive before the
    rename (a run's input convention, heatmap offset, centre-map sigma, builder arguments: ``zoo.load_keras_model``
    and ``zoo.get`` read them back).
    """
    path = Path(path)
    if metadata is not None and not path.name.endswith(".weights.h5"):
        from zoo.saving import save_model

        return save_model(model, path, metadata=metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{short_name(path.stem)}.{os.getpid()}.tmp{path.suffix}")  # Keras wants the real suffix
    try:
        if path.name.endswith(".weights.h5"):
            tmp = path.with_name(f".{short_name(path.name[:-11])}.{os.getpid()}.tmp.weights.h5")
        with write_errors_naming(path, tmp):  # a full disk named nothing
            if path.name.endswith(".weights.h5"):
                model.save_weights(str(tmp))
            else:
                from zoo.saving import _make_portable

                model.save(str(tmp))
                _make_portable(tmp)  # a PyTorch run's optimizer named so that JAX and TensorFlow load it
            replace_durably(tmp, path)  # synced first: a power cut leaves the old file or the new one, not an empty one
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _write_json(path, data) -> None:
    write_json(path, data, indent=1, default=float)


def resolve_monitor(logs: dict, monitor: str) -> str | None:
    """The key of ``logs`` for ``monitor``: exact, else the one ending in ``_<metric>`` with the same prefix.

    Multi-output models log ``val_<output>_pck``; ``"val_pck"`` finds it (the last such key, i.e.
    the final stack).
    """
    if monitor in logs:
        return monitor
    prefix = "val_" if monitor.startswith("val_") else ""
    metric = monitor[len(prefix):]
    cands = [k for k in logs if k.startswith(prefix) and k.endswith("_" + metric)
             and (prefix or not k.startswith("val_"))]
    return cands[-1] if cands else None


# metric-name words of quantities that improve downwards (Keras' losses and error metrics); anything else: upwards
_MINIMISED = {"loss", "error", "mae", "mse", "rmse", "msle", "mape", "crossentropy", "hinge", "logcosh", "huber",
              "divergence", "distance", "nme", "epe"}


def monitor_mode(monitor: str) -> str:
    """``"min"`` for a loss or error (``"loss"`` in the name, or a ``_``-separated word of it in :data:`_MINIMISED`:
    ``val_loss``, ``val_stack2_heatmaps_loss``, ``val_mae``, ``mean_squared_error``), else ``"max"`` (``val_pck``,
    ``val_mean_iou``)."""
    name = monitor.lower()
    return "min" if "loss" in name or _MINIMISED & set(name.split("_")) else "max"


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever ``monitor`` improves, atomically; remembers the best across resumes.

    Writes ``path`` (``.keras`` or ``.weights.h5``) and ``<path>.json`` = ``{"epoch", "monitor",
    "value"}``. On ``on_train_begin`` the json (if any) restores the best value, so a resumed run
    only overwrites the checkpoint with a better one.

    Args:
        path: checkpoint file.
        monitor: logged quantity (``"val_pck"``, ``"val_mean_iou"``, ``"val_loss"``); multi-output
            names are resolved by :func:`resolve_monitor`.
        mode: ``"max"``, ``"min"`` or ``"auto"`` (:func:`monitor_mode`: min for losses and errors).
        enabled: False for non-chief workers (track nothing, write nothing).
        metadata: written into each ``.keras`` checkpoint (:func:`atomic_save`); :func:`training.fit` sets it to
            the run's once ``config.json`` is written.
    """

    def __init__(self, path, monitor="val_loss", mode="auto", enabled=True, metadata=None):
        super().__init__()
        self.path = Path(path)
        self.metadata = metadata
        self.monitor = monitor
        if mode == "auto":
            mode = monitor_mode(monitor)
        if mode not in ("min", "max"):
            raise ValueError(f"BestCheckpoint: mode must be 'min', 'max' or 'auto'. Received: {mode!r}")
        self.mode = mode
        self.enabled = enabled
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = None
        self.sidecar = self.path.with_name(self.path.name + ".json")

    def on_train_begin(self, logs=None):
        if self.sidecar.exists():
            info = json.loads(self.sidecar.read_text())
            # a best value of another quantity (the run resumed with another monitor) is no bar to this one's
            same = resolve_monitor({str(info.get("monitor")): None}, self.monitor) is not None
            if info.get("value") is not None and same:
                self.best, self.best_epoch = float(info["value"]), info.get("epoch")

    def _better(self, v):
        return v < self.best if self.mode == "min" else v > self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        key = resolve_monitor(logs, self.monitor)
        if key is None:  # a misspelt name (val_pkc), or val_* without validation data: the run went on to its end
            # with no best checkpoint and best_value None, after a printed line; stop after this first epoch
            raise ValueError(f"BestCheckpoint: monitor '{self.monitor}' is not logged (logged after epoch "
                             f"{epoch + 1}: {', '.join(sorted(logs))}); give monitor= one of them")
        value = float(logs[key])
        if not math.isfinite(value) or not self._better(value):
            return
        self.best, self.best_epoch = value, epoch
        if self.enabled:
            atomic_save(self.model, self.path, self.metadata)
            _write_json(self.sidecar, {"epoch": epoch, "monitor": key, "value": value})


class ImageLogger(keras.callbacks.Callback):
    """Each epoch, draw predictions on the first images of a dataset and log them to TensorBoard.

    Pose: image with predicted (and ground-truth, white) keypoints plus the heatmap grid of the
    first sample; segmentation: predicted and true masks over the image. Images go to TensorBoard
    via :mod:`training.distribute` when TensorFlow is installed, else to ``<logdir>/images/*.png``.

    Args:
        logdir: TensorBoard directory (an ``images`` run is created inside).
        dataset: a :class:`~training.data.HeatmapDataset` or ``SegmentationDataset``.
        max_images: how many samples of ``dataset[0]`` to draw.
        every: epochs between logs.
    """

    def __init__(self, logdir, dataset, max_images=4, every=1):
        super().__init__()
        self.logdir = Path(logdir)
        self.dataset = dataset
        self.max_images = int(max_images)
        self.every = max(int(every), 1)

    def _pictures(self):
        from training import visualize

        ds = self.dataset
        batch = ds[0]
        x = batch[0]
        out = self.model.predict_on_batch(x)
        images = x[0] if isinstance(x, tuple) else x
        n = min(self.max_images, len(images))
        rgb = _to_uint8(images[:n], ds.normalization)
        if hasattr(ds, "heatmap_size"):
            pred = np.asarray(out[-1] if isinstance(out, (list, tuple)) else out, np.float32)[:n]
            target = batch[1][-1] if isinstance(batch[1], tuple) else batch[1]
            kp, _ = ds.codec.decode(pred[..., :ds.num_keypoints])
            gt, _ = ds.codec.decode(np.asarray(target)[:n, ..., :ds.num_keypoints])
            vis = np.asarray(batch[2])[:n, 0, 0, :ds.num_keypoints] > 0
            skel = None if ds.flip_pairs else ()  # no skeleton for data without a body layout
            drawn = [visualize.draw_keypoints(visualize.draw_keypoints(im, g, v, skel, color=(255, 255, 255)), p, v,
                                              skel) for im, p, g, v in zip(rgb, kp, gt, vis)]
            grid = visualize.heatmap_grid(pred[0], rgb[0])
            return {"keypoints": np.stack(drawn), "heatmaps": grid[None]}
        pred = np.asarray(out[0] if isinstance(out, (list, tuple)) else out)[:n].argmax(-1)
        target = batch[1][0] if isinstance(batch[1], tuple) else batch[1]
        shown = [np.concatenate([visualize.mask_overlay(im, p), visualize.mask_overlay(im, t)], axis=1)
                 for im, p, t in zip(rgb, pred, np.asarray(target)[:n])]
        return {"masks_pred_vs_true": np.stack(shown)}

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every:
            return
        pictures = self._pictures()
        from training.distribute import write_image_summaries

        if not write_image_summaries(self.logdir / "images", epoch, pictures):
            from training.visualize import write_png

            for tag, batch in pictures.items():
                write_png(self.logdir / "images" / f"{tag}_epoch{epoch:03d}.png", np.concatenate(list(batch), 0))


def _to_uint8(images, norm) -> np.ndarray:
    """Undo a :class:`~training.data.Normalization` for display (uint8 batches are raw pixels already)."""
    if images.dtype == np.uint8:
        return images
    x = images * np.asarray(norm.std, np.float32) + np.asarray(norm.mean, np.float32)
    x = x / np.float32(norm.scale)
    if norm.channel_order == "BGR":
        x = x[..., ::-1]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class WorkerWatchdog(keras.callbacks.Callback):
    """Turn a dead data-loading worker process into an error instead of a hang.

    ``multiprocessing.Pool`` silently replaces a worker that dies (OOM kill, segfault in a native
    decoder, ``os._exit``), and the batch it was computing never arrives, so ``fit`` would wait
    forever. The watchdog gives each dataset a heartbeat folder where a worker process notes the
    batch it is making (``training.data`` datasets do this when ``heartbeat_dir`` is set); a note
    whose process no longer exists, or a pool process seen exiting abnormally, fails every pending
    batch of Keras' worker pools with :class:`WorkerCrashedError`, which ``fit`` then raises in the
    main process. Exceptions raised *inside* ``__getitem__`` propagate without it.

    Create it right before ``model.fit`` (its constructor equips the datasets, which are pickled
    into the workers when the pool starts, and starts watching: Keras may already wait on the
    pool before ``on_train_begin``); it stops at ``on_train_end``. :func:`training.fit` does this.

    Args:
        *datasets: the multiprocessing datasets to watch.
        interval: seconds between checks.
    """

    def __init__(self, *datasets, interval=0.2):
        super().__init__()
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread = None
        self._seen = {}
        self.crashed = None
        self._dirs = []
        for d in datasets:
            if d is not None and getattr(d, "use_multiprocessing", False) and hasattr(d, "heartbeat_dir"):
                if not d.heartbeat_dir or not os.path.isdir(d.heartbeat_dir):
                    d.heartbeat_dir = tempfile.mkdtemp(prefix="kerazoo-heartbeat-")
                    weakref.finalize(self, shutil.rmtree, d.heartbeat_dir, True)
                self._dirs.append(d.heartbeat_dir)
        self.start()

    @staticmethod
    def _pools():
        try:
            from keras.src.trainers.data_adapters import py_dataset_adapter as pda
        except ImportError:  # Keras moved its internals: nothing to watch
            return []
        return list(getattr(pda, "_DATA_POOLS", ()))

    @staticmethod
    def _alive(pid: int) -> bool:
        if os.name != "posix":
            return True  # no cheap liveness probe; the pool scan still applies
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"  # zombie = dead, not yet reaped
        except FileNotFoundError:
            return False
        except OSError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True

    def _fail(self, err) -> None:
        self.crashed = err
        for pool in self._pools():
            for job in list(getattr(pool, "_cache", {}).values()):
                try:
                    job._set(0, (False, err))  # wakes the AsyncResult.get() fit is blocked on
                except Exception:  # noqa: BLE001  (already completed or a different result type)
                    pass

    def check(self) -> None:
        """One scan of the heartbeats and of the pools' worker processes."""
        for d in self._dirs:
            for name in os.listdir(d) if os.path.isdir(d) else ():
                if name.isdigit() and not self._alive(int(name)):
                    try:
                        batch = Path(d, name).read_text().strip()
                        os.remove(os.path.join(d, name))
                    except OSError:
                        continue
                    self._fail(WorkerCrashedError(
                        f"data worker process {name} died while producing batch {batch}; the batch is lost. "
                        f"Likely causes: out of memory, a crash in native image decoding, or os._exit in the "
                        f"dataset."))
                    return
        pools = self._pools()
        for pool in pools:
            for proc in list(getattr(pool, "_pool", [])):
                self._seen.setdefault(id(proc), proc)
        for key, proc in list(self._seen.items()):
            code = proc.exitcode
            if code is None:
                continue
            del self._seen[key]
            if code in (0, -signal.SIGTERM):  # normal exit / pool shutdown
                continue
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            self._fail(WorkerCrashedError(
                f"data worker process {proc.pid} died ({how}) while producing a batch; the batch is lost. "
                f"Likely causes: out of memory, a crash in native image decoding, or os._exit in the dataset."))
            return

    def _loop(self):
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # noqa: BLE001  (the watchdog must never kill training itself)
                pass

    def start(self) -> None:
        """Start watching (the constructor and ``on_train_begin`` call this)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="kerazoo-worker-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def on_train_begin(self, logs=None):
        self.start()

    def on_train_end(self, logs=None):
        self.stop()


class SkipReport(keras.callbacks.Callback):
    """Print how many samples ``on_error="skip"`` datasets have skipped (per epoch and in total)."""

    def __init__(self, *datasets):
        super().__init__()
        self.datasets = [d for d in datasets if d is not None and getattr(d, "on_error", None) == "skip"]
        self.total = 0
        self._t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        n = sum(len(d.skipped()) for d in self.datasets)
        if n != self.total:
            print(f"epoch {epoch + 1}: {n - self.total} unreadable sample(s) skipped "
                  f"({n} in total; see the warnings / skip log)")
        self.total = n
        if logs is not None and self.datasets:
            logs["skipped_samples"] = float(n)


class StopOnNaN(keras.callbacks.Callback):
    """End training with ``FloatingPointError`` when the loss is NaN or infinite, without making the
    host wait for every step.

    Keras runs batch-end callbacks in a background thread only when every callback is marked
    ``async_safe`` (JAX, PyTorch). Its ``TerminateOnNaN`` is not, so with it the host waits for
    each step's loss before it feeds and dispatches the next step, and the accelerator idles
    meanwhile. This one only reads the loss and raises; Keras re-raises the error from ``fit`` a
    step or two after the bad one. It does not set ``stop_training`` from that thread: with
    validation data, Keras 3.15 on JAX then evaluated with buffers the next step had donated.
    """

    async_safe = True

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(f"loss is {float(loss)} at batch {batch}: training stopped "
                                     f"(terminate_on_nan). Try a lower learning rate or check the data.")


class TimeBudget(keras.callbacks.Callback):
    """Stop training once the wall clock reaches ``deadline`` (``time.time()`` seconds) minus ``reserve``.

    For demos and benchmarks that must finish within a budget: the epoch in progress ends at the
    next batch, so validation, checkpointing and evaluation still happen.
    """

    def __init__(self, deadline: float, reserve: float = 0.0):
        super().__init__()
        self.deadline, self.reserve = float(deadline), float(reserve)

    def on_train_batch_end(self, batch, logs=None):
        if time.time() > self.deadline - self.reserve:
            self.model.stop_training = True


class EpochBudget(keras.callbacks.Callback):
    """Stop training after the epoch whose successor would not end by ``deadline`` (``time.time()`` seconds) minus
    ``reserve``, judged by the length of the epoch just ended (validation included).

    Unlike :class:`TimeBudget` training always stops at an epoch's end, so a seeded run that trains the same number
    of epochs ends with the same weights (the demo's, stopped mid-epoch, differed from run to run: its video's
    jitter did), and the host never waits for a step's logs (no batch hook). It may overrun the deadline when an
    epoch takes longer than the one before it. ``clock``: the time source (tests).
    """

    async_safe = True

    def __init__(self, deadline: float, reserve: float = 0.0, clock=time.time):
        super().__init__()
        self.deadline, self.reserve, self.clock = float(deadline), float(reserve), clock
        self.stopped_epoch = None  # the epoch after which it stopped training, or None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        if now + (now - self._start) > self.deadline - self.reserve:
            self.model.stop_training = True
            self.stopped_epoch = epoch


def earlier_log_rows(path, epochs: int, keep_only: bool = False) -> dict[str, list[float]]:
    """The columns of ``log.csv`` (Keras' CSVLogger) for epochs ``0 .. epochs - 1``, as a history dict; with
    ``keep_only``, the file is also cut to those rows (a resumed run trains the later ones again)."""
    import csv

    path = Path(path)
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        fields = list(rows[0]) if rows else []
    kept = [r for r in rows if (r.get("epoch") or "").isdigit() and int(r["epoch"]) < epochs]
    if keep_only and len(kept) != len(rows):
        import io

        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fields)  # csv.excel's line ends, as Keras' CSVLogger writes
        writer.writeheader()
        writer.writerows(kept)
        write_text(path, buf.getvalue())  # synced and renamed; a failed write leaves the old log, no temporary file
    history = {}
    for key in fields:
        if key == "epoch":
            continue
        try:
            history[key] = [float(r[key]) for r in kept]
        except (TypeError, ValueError):
            pass
    return history


def fit_callbacks(out, dist, train, val, monitor, checkpoint, backup, backup_every, csv_log, tensorboard,
                  terminate_on_nan, log):
    """The callbacks :func:`training.fit` runs with (its arguments of the same names switch them on/off).

    Args:
        out: output folder or ``None`` (then only the epoch sync, watchdog and NaN stop).
        dist: the run's :class:`training.distribute.Placement`; non-chief workers write to
            ``out/.worker<i>`` and skip TensorBoard.
        train, val: the datasets (``val`` may be ``None``).
        log: ``log(message)`` for progress lines.
    Returns:
        ``(callbacks, resumed_from, best_checkpoint)``: ``resumed_from`` is the backup's last epoch
        (``None`` for a fresh run), ``best_checkpoint`` the :class:`BestCheckpoint` or ``None``.
    """
    cbs = [EpochSync(train, val)]
    if any(getattr(d, "use_multiprocessing", False) for d in (train, val) if d is not None):
        cbs.append(WorkerWatchdog(train, val))
    resumed_from, best_cb = None, None
    if terminate_on_nan:  # before the backup: a NaN step ends fit before a batch backup can save its weights
        cbs.append(StopOnNaN())
    if out is None:
        return cbs, None, None
    own = out if dist.is_chief else out / f".worker{dist.index}"
    own.mkdir(parents=True, exist_ok=True)
    if train.on_error == "skip" and train.skip_log is None:
        train.skip_log = str(own / "skipped.tsv")
    if backup:
        resumed_from = _backup_epoch(own / "backup", log)
        if resumed_from is not None:
            log(f"resuming from backup {own / 'backup'} at epoch {resumed_from + 1}")
        backup_cb = BackupAndRestore(str(own / "backup"), save_freq=backup_every, double_checkpoint=True)
        # saving every epoch, its batch hook only returns: it need not hold back async dispatch
        # (a batch-count backup saves from that hook, so it stays synchronous)
        backup_cb.async_safe = backup_every == "epoch"
    if resumed_from is None:
        _clear_previous_run(own, log)
    cbs.append(SkipReport(train, val))
    if csv_log:
        if resumed_from is not None:  # rows of epochs the backup does not hold are trained again
            earlier_log_rows(own / "log.csv", resumed_from, keep_only=True)
        cbs.append(keras.callbacks.CSVLogger(str(own / "log.csv"), append=resumed_from is not None))
    if checkpoint:
        best_cb = BestCheckpoint(own / "best.keras", monitor=monitor, enabled=dist.is_chief)
        cbs.append(best_cb)
    if backup:  # after the log and best.keras: an epoch is done once they are written (a Ctrl-C while best.keras
        # was written lost that epoch's best for good, the backup already counting the epoch as trained)
        cbs.append(backup_cb)
    if tensorboard and dist.is_chief:
        from training.distribute import tensorboard_available

        if tensorboard_available():
            cbs.append(keras.callbacks.TensorBoard(str(out / "tensorboard")))
        else:
            log("tensorboard is not installed: scalars are in log.csv, images go to tensorboard/images/*.png")
        cbs.append(ImageLogger(out / "tensorboard", val if val is not None else train))
    return cbs, resumed_from, best_cb

