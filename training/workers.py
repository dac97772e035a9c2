"""Persistent data-loading processes for the training datasets (``use_multiprocessing=True``).

Keras' ``PyDataset`` enqueuer creates a new ``multiprocessing.Pool`` at the start of every epoch
(and of every validation pass) and tears it down at the end. Under the spawn start method
(Windows, macOS, and what JAX needs on Linux) every new process imports numpy, OpenCV, Keras and
the backend again before it makes its first batch: 3.5 s per epoch with 2 workers on a 2-vCPU
machine (``benchmarks/data_pipeline.py --epochs``), time in which the accelerator waits.

:class:`BatchWorkers` starts the processes once, hands each one a pickled copy of the dataset
once, and then only sends ``(epoch, batch index)``: a batch is a pure function of
``(seed, epoch, idx)`` (see :mod:`training.data`), so the worker's copy only needs the epoch.
Keras then iterates the dataset in its main thread (the dataset reports ``workers=1,
use_multiprocessing=False``), and ``dataset[i]`` returns batch ``i`` from the processes while up
to ``max_queue_size`` later batches are already being made. When the dataset's settings change
(``feed``, ``num_outputs``, records ...) the processes are restarted with the new copy.

Thread workers (``use_multiprocessing=False``, ``workers > 1``) run the same way in a thread pool,
from a shallow snapshot of the dataset (nothing is pickled): Keras' thread enqueuer would serve the
batches left over from the pass ``model.fit`` peeks at first, shifting every epoch's batches.

A process that dies (out of memory, a crash in a native decoder) breaks the pool: the pending
batch raises :class:`~training.datasets.WorkerCrashedError` naming the dataset and the batch,
instead of the hang a ``multiprocessing.Pool`` gives. Exceptions raised while making a batch
propagate with their own type. A dataset that does not pickle is a ``TypeError`` naming the attribute,
and one whose class a spawned process cannot import (defined in a notebook) a ``RuntimeError`` saying so.

Batches come back through shared memory (:mod:`training.shm`): this process lends each request one
of ``max_queue_size + 2`` segments of one batch's size, the worker writes the batch's large arrays
into it, and this process copies them out and lends the segment again. Reused pages cost ~1 ms
per 14 MiB hourglass batch to fill instead of ~11 ms for a fresh segment (page faults) in the worker
and 5-7 ms more when this process first reads it.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import hashlib
import itertools
import multiprocessing
import os
import pickle
import sys
import weakref
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import resource_tracker

from training import _DATA_WORKER, _ignore_ctrl_c
from training.datasets.base import WorkerCrashedError
from training.shm import SlotBatch, SlotPool, pack_into_slot

__all__ = ["BatchWorkers"]

_DATASET = None  # in a worker process: its copy of the dataset
_INIT_ERROR = None  # in a worker process: why its copy could not be loaded (raised with every batch)


def _cpu_only() -> None:
    """Hide the accelerators from this data worker before anything touches them.

    Workers make numpy batches; a JAX GPU backend initialised here by accident would preallocate 75%
    of the card's memory per worker (and TensorFlow all of it). A spawned worker has imported JAX
    already when the parent's ``__main__`` (re-imported) does, so its config is set as well as the
    environment; backends are created lazily, at the first array.
    """
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    jax = sys.modules.get("jax")
    if jax is not None:
        try:
            jax.config.update("jax_platforms", "cpu")
        except Exception:  # a backend already exists (fork start method): nothing left to hide
            pass


_NUMBERS = itertools.count(1)


class _WorkerContext:
    """A ``multiprocessing`` context whose processes are named ``kerazoo-data-worker-<n>``.

    A spawned process gets its name before it re-imports ``__main__`` and unpickles anything
    (``multiprocessing.spawn.prepare``); by it :mod:`training` and :mod:`training.data` know they are in a
    data worker and do without Keras: 0.2 CPU-s to its first batch instead of 3.3 (TensorFlow) or 1.6 (JAX)
    on 2 shared cores. Nothing else is changed, in this process or in the worker's environment.
    """

    def __init__(self, context):
        self._context = context

    def __getattr__(self, name):
        return getattr(self._context, name)

    def Process(self, *args, **kwargs):  # noqa: N802 - multiprocessing's name
        process = self._context.Process(*args, **kwargs)
        process.name = f"{_DATA_WORKER}-{next(_NUMBERS)}"
        return process


def _exit_with_parent() -> None:
    """End this worker when its parent process ends without closing the pool (killed, out of memory, a batch
    scheduler's time limit): it waited on its task queue for ever, holding its copy of the dataset, since every
    worker holds that queue's write end too (no end of file). The parent's sentinel becomes ready when it dies."""
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch():
        wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="kerazoo-parent-watch", daemon=True).start()


def _init_worker(payload: bytes, name: str, method: str) -> None:
    global _DATASET, _INIT_ERROR
    _exit_with_parent()
    _ignore_ctrl_c()  # also here: a forked worker kept the parent's handler (training was imported before its name)
    _cpu_only()
    try:
        _DATASET = pickle.loads(payload)  # our own pickle of our own dataset, from the parent process
    except Exception as e:  # noqa: BLE001  (an initializer that raises breaks the pool: reported as a crash)
        _INIT_ERROR = RuntimeError(
            f"a data worker process could not load its copy of {name}: {type(e).__name__}: {e}. Worker processes "
            f"(start method {method!r}) import the dataset's class by its module: define "
            f"it in an importable .py file, not in a notebook, `python -c` or an `if __name__ == '__main__':` "
            f"block (or pass use_multiprocessing=False for threads).")
        return
    _DATASET.processes = 0  # make batches here, never dispatch again


def _make_batch(epoch: int, idx: int, slot, size: int):
    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    _DATASET.epoch = epoch
    return pack_into_slot(_DATASET[idx], slot, size)


def _thread_batch(snapshot, epoch: int, idx: int):
    """Batch ``idx`` of ``epoch`` from a shallow copy of ``snapshot`` (threads share it; each sets its own epoch)."""
    d = copy.copy(snapshot)
    d.epoch = epoch
    return SlotBatch(None, d[idx], 0)


def _pickle(obj, dataset) -> bytes:
    """``pickle.dumps(obj)``; a dataset that does not pickle is a TypeError naming the attribute."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001  (pickle raises TypeError, AttributeError, PicklingError ...)
        bad = []
        for key, value in dataset.__getstate__().items():
            try:
                pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001
                bad.append(key)
        where = f"attribute(s) {', '.join(map(repr, bad))}" if bad else "its class"
        raise TypeError(f"{type(dataset).__name__} with use_multiprocessing=True is copied into worker processes by "
                        f"pickle, but {where} cannot be pickled: {type(e).__name__}: {e}. Keep records, numbers and "
                        f"module-level functions/classes on the dataset, or pass use_multiprocessing=False "
                        f"(threads).") from None


def _fingerprint(dataset, records=True, threads=False) -> bytes:
    """Digest of everything a worker's copy depends on except the epoch (sent with every batch).

    ``records=False``: the records only by identity and count -- cheap enough for every batch; the
    whole list is compared at each new epoch. ``threads``: the attributes by identity (the threads'
    shallow snapshot shares their objects, and need not pickle), the records also by count.
    """
    state = dataset.__getstate__()
    state.pop("epoch", None)
    if threads:
        recs = state.get("records")
        return repr(sorted((k, id(v)) for k, v in state.items()) + [len(recs) if recs is not None else 0]).encode()
    if not records:
        recs = state.pop("records", None)
        state["records"] = (id(recs), len(recs) if recs is not None else 0)
    return hashlib.sha1(_pickle(state, dataset)).digest()


def _shutdown(executor) -> None:
    """Stop ``executor`` without waiting; worker processes are ended at once (their batches are dropped anyway).

    Left to finish, a worker still making a batch when the pool closed after Ctrl-C could stay blocked, and Python's
    exit then waited for it for ever (multiprocessing joins its children; seen under TensorFlow, 3 of ~17 Ctrl-Cs).
    A worker ended while it was writing a result leaves half a message in the result pipe, and the pool's manager
    thread, which Python's exit joins, waited for the rest for ever (the Ctrl-C test's child under JAX: once in CI,
    2 of 18 runs here under load). This process' own copy of the pipe's write end (it never writes) is closed too,
    so once the workers are gone the manager reads an end of file, takes the pool as broken and ends.
    """
    processes = list(dict(getattr(executor, "_processes", None) or {}).values())  # a process pool's (not threads')
    results = getattr(executor, "_result_queue", None)  # shutdown() forgets it
    executor.shutdown(wait=False, cancel_futures=True)
    if not processes:
        return
    for process in processes:
        if process.is_alive():
            process.terminate()
    if results is not None:
        results._writer.close()


class BatchWorkers:
    """``processes`` worker processes making batches of ``dataset``, kept across epochs.

    Args:
        dataset: a :class:`training.data.HeatmapDataset` / ``SegmentationDataset`` (picklable).
        processes: number of worker processes (>= 1).
        depth: batches made ahead of the one requested (the queue size).
        start_method: ``multiprocessing`` start method; default: the program's own
            (``multiprocessing.set_start_method``; fork on Linux before Python 3.14, spawn on
            Windows and macOS), as Keras' pool and PyTorch's DataLoader use. With JAX prefer
            ``set_start_method("spawn")`` under ``if __name__ == "__main__":`` (JAX is not fork-safe).
        threads: ``processes`` threads of this process instead (``use_multiprocessing=False``), each
            making its batch from a shallow snapshot of the dataset.
    """

    def __init__(self, dataset, processes: int, depth: int = 10, start_method: str | None = None, threads=False):
        self._dataset = weakref.ref(dataset)
        self.processes = int(processes)
        self.threads = bool(threads)
        self._snapshot = None
        self.depth = max(int(depth), 1)
        self.start_method = start_method
        self._executor = None
        self._finalizer = None
        self._key = self._settings = None
        self._epoch = None
        self._pending: dict[int, tuple[cf.Future, str | None]] = {}  # batch index -> (future, lent slot)
        self._slots = SlotPool(self.depth + 2)
        weakref.finalize(self, self._slots.close)  # also at interpreter exit
        self._cursor = 0
        self.starts = 0  # how many times processes were started (tests, benchmarks)

    # ------------------------------------------------------------------------------ lifecycle
    def _start(self, dataset, key) -> None:
        self.close()
        if self.threads:
            self._snapshot = copy.copy(dataset)  # the settings of now; records and skip counts shared
            self._snapshot.processes = self._snapshot.threads = 0
            self._executor = cf.ThreadPoolExecutor(max_workers=self.processes, thread_name_prefix="kerazoo-batches")
            self._finalizer = weakref.finalize(self, _shutdown, self._executor)
            self._key = key
            self.starts += 1
            return
        payload = _pickle(dataset, dataset)
        # one resource tracker for the whole process tree: forked workers would otherwise start their
        # own, which "cleans up" (unlinks) the shared-memory batches the parent already took over
        resource_tracker.ensure_running()
        context = multiprocessing.get_context(self.start_method)
        self._executor = cf.ProcessPoolExecutor(
            max_workers=self.processes, mp_context=_WorkerContext(context), initializer=_init_worker,
            initargs=(payload, type(dataset).__name__, context.get_start_method()))
        self._finalizer = weakref.finalize(self, _shutdown, self._executor)
        self._key = key
        self.starts += 1

    def close(self) -> None:
        """Stop the processes (pending batches are dropped); the next request starts new ones."""
        if self._finalizer is not None:
            self._finalizer()
        self._executor = self._finalizer = self._key = self._epoch = self._snapshot = None
        self._pending.clear()
        self._slots.close()

    @property
    def running(self) -> bool:
        return self._executor is not None

    # ------------------------------------------------------------------------------ batches
    def _new_epoch(self, dataset) -> None:
        for fut, slot in self._pending.values():
            if fut.cancel() or fut.done():
                self._slots.give_back(slot)
            else:  # still being written: lend the slot again once the worker is done with it
                fut.add_done_callback(lambda _, slot=slot: self._slots.give_back(slot))
        self._pending.clear()
        key = _fingerprint(dataset, threads=self.threads)
        if key != self._key or self._executor is None:
            self._start(dataset, key)
        self._epoch, self._cursor = dataset.epoch, 0

    def _submit(self, idx: int) -> None:
        if self.threads:
            self._pending[idx] = (self._executor.submit(_thread_batch, self._snapshot, self._epoch, idx), None)
            return
        slot, size = self._slots.lend()
        self._pending[idx] = (self._executor.submit(_make_batch, self._epoch, idx, slot, size), slot)

    def get(self, idx: int):
        """Batch ``idx`` of the dataset's current epoch; keeps ``depth`` later batches in the making."""
        dataset = self._dataset()
        if dataset is None:
            raise RuntimeError("BatchWorkers: its dataset no longer exists.")
        settings = _fingerprint(dataset, records=False, threads=self.threads)  # changed mid-epoch (feed ...)
        if self._epoch != dataset.epoch or self._executor is None or settings != self._settings:
            self._new_epoch(dataset)
            self._settings = settings
        n = len(dataset)
        if not -n <= idx < n:
            raise IndexError(f"batch index {idx} out of range for {n} batches.")
        idx %= n
        try:
            if idx not in self._pending:
                self._submit(idx)
            fut, slot = self._pending.pop(idx)
            # Keras asks in order 0, 1, 2 ... (fit(shuffle=False)); any order works, every index is asked once
            self._cursor = max(self._cursor, idx + 1)
            while len(self._pending) < self.depth and self._cursor < n:
                if self._cursor not in self._pending:
                    self._submit(self._cursor)
                self._cursor += 1
            try:
                answer = fut.result()
            except BaseException:
                if fut.done():
                    self._slots.give_back(slot)
                else:  # interrupted (Ctrl-C) while a worker still writes into the slot: lend it once it is done
                    fut.add_done_callback(lambda _, slot=slot: self._slots.give_back(slot))
                raise
            return self._slots.unpack(answer)
        except BrokenProcessPool:
            lost = sorted({idx, *self._pending})
            self.close()
            raise WorkerCrashedError(
                f"a data worker process of {type(dataset).__name__} died while batches {_ranges(lost)} of epoch "
                f"{dataset.epoch} were being made; they are lost. Likely causes: out of memory, a crash in native "
                f"image decoding, or os._exit in the dataset.") from None


def _ranges(values) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)
