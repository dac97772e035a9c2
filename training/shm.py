"""Batches from worker processes through shared memory instead of the result pipe.

``keras.utils.PyDataset`` with ``use_multiprocessing=True`` returns every batch from the worker
through ``multiprocessing.Pool``'s pipe: pickled in the worker, copied through the kernel and
unpickled by the main process, which is the one process every batch must pass. For a 14 MB
hourglass batch this costs the main process ~1.3 ms per sample on a 2-core machine -- more
than making the sample. :func:`share_batch` marks the large arrays of a batch so that pickling
copies them once into a ``multiprocessing.shared_memory`` segment and sends only its name; the
main process copies the array out and unlinks the segment. In the worker the arrays stay
ordinary ``numpy`` arrays, so calling ``dataset[i]`` there directly behaves as before.

A segment whose batch is never unpickled (pool terminated mid-epoch) is removed by
``multiprocessing``'s resource tracker when the program exits. When ``/dev/shm`` has less than
four batches free (Docker's default is 64 MB) the batch goes through the pipe. Switch off with
``KERAZOO_WORKER_SHM=0``. Measured on 2 shared vCPUs (``benchmarks/data_pipeline.py``): 1-2
spawned workers deliver 5-30% more samples/s than through the pipe; creating a segment costs
about 1 ms per MB (fresh tmpfs pages), so the gain is in the main process, not the worker.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing import shared_memory

import numpy as np

__all__ = ["share_batch", "MIN_BYTES"]

#: Arrays smaller than this go through the pipe as usual (a segment costs a few syscalls).
MIN_BYTES = 1 << 20


def enabled() -> bool:
    """Off with the environment variable ``KERAZOO_WORKER_SHM=0`` (read in each worker), and off
    outside POSIX (Windows frees a segment when its creator closes it)."""
    return os.name == "posix" and os.environ.get("KERAZOO_WORKER_SHM", "1") != "0"


def _room(nbytes) -> bool:
    # Docker's default /dev/shm is 64 MB and a write past a full tmpfs is a SIGBUS, not an error:
    # keep 4 batches of headroom (other workers write at the same time), else use the pipe.
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return True  # no /dev/shm to check (macOS): SharedMemory raises a normal error if it fails
    return st.f_bavail * st.f_frsize >= 4 * nbytes


class _SharedOnPickle(np.ndarray):
    """An ndarray whose pickle is a shared-memory segment name instead of its bytes."""

    def __reduce_ex__(self, protocol):
        a = np.ascontiguousarray(self).view(np.ndarray)
        if not _room(a.nbytes):
            return a.__reduce_ex__(protocol)
        shm = shared_memory.SharedMemory(create=True, size=max(a.nbytes, 1))
        try:
            np.ndarray(a.shape, a.dtype, buffer=shm.buf)[...] = a
            name = shm.name
        finally:
            shm.close()  # the segment lives on until the receiver unlinks it
        return _from_shared, (name, a.shape, a.dtype.str)

    def __reduce__(self):
        return self.__reduce_ex__(2)


def _from_shared(name, shape, dtype):
    shm = shared_memory.SharedMemory(name=name)
    try:
        return np.array(np.ndarray(shape, dtype, buffer=shm.buf))
    finally:
        shm.close()
        shm.unlink()


def share_batch(batch):
    """In a worker process, mark the arrays of ``batch`` (nested tuples/lists/dicts) >= MIN_BYTES.

    Repeated references (one target array for every output) stay one array. In the main process
    (``workers=0`` or thread workers) the batch is returned unchanged.
    """
    if multiprocessing.parent_process() is None or not enabled():
        return batch
    memo = {}

    def mark(x):
        if isinstance(x, np.ndarray) and x.nbytes >= MIN_BYTES and type(x) is np.ndarray:
            if id(x) not in memo:
                memo[id(x)] = x.view(_SharedOnPickle)
            return memo[id(x)]
        return x

    return _map(batch, mark)


# ---------------------------------------------------------------------------------------------
# Reused segments ("slots") for the persistent workers of training.workers
#
# A fresh segment costs ~1 ms per MB to fill (the kernel allocates and zeroes every page on first
# touch): 11 ms of a 14 MiB hourglass batch in the worker and 5-7 ms more where the main process
# first reads it, against ~1 ms to copy into pages already mapped. The persistent workers'
# parent owns a few segments of one batch's size and lends one with each request; the worker
# writes the batch into it and answers with offsets, the parent copies the arrays out and lends
# the segment again. Every hand-over goes through the pool's pipes, so the two processes never
# touch a segment at the same time.
# ---------------------------------------------------------------------------------------------

_ATTACHED: dict[str, shared_memory.SharedMemory] = {}  # in a worker: slots mapped once, kept mapped


class InSlot:
    """Where one array of a batch lies in a slot."""

    __slots__ = ("offset", "shape", "dtype")

    def __init__(self, offset, shape, dtype):
        self.offset, self.shape, self.dtype = offset, shape, dtype

    def __reduce__(self):
        return InSlot, (self.offset, self.shape, self.dtype)


class SlotBatch:
    """A worker's answer: ``payload`` with ``InSlot`` for its large arrays when ``slot`` is set,
    else the batch itself; ``needed``: bytes a slot must have to hold this batch."""

    __slots__ = ("slot", "payload", "needed")

    def __init__(self, slot, payload, needed):
        self.slot, self.payload, self.needed = slot, payload, needed

    def __reduce__(self):
        return SlotBatch, (self.slot, self.payload, self.needed)


def _map(batch, fn):
    if isinstance(batch, tuple):
        return tuple(_map(v, fn) for v in batch)
    if isinstance(batch, list):
        return [_map(v, fn) for v in batch]
    if isinstance(batch, dict):
        return {k: _map(v, fn) for k, v in batch.items()}
    return fn(batch)


def _layout(batch):
    """``{id(array): (offset, array)}`` of the large arrays (64-byte aligned) and the bytes they need."""
    places, end = {}, 0

    def visit(x):
        nonlocal end
        if isinstance(x, np.ndarray) and x.nbytes >= MIN_BYTES and id(x) not in places:
            start = -(-end // 64) * 64
            places[id(x)] = (start, x)
            end = start + x.nbytes
        return x

    _map(batch, visit)
    return places, end


def pack_into_slot(batch, slot, size) -> SlotBatch:
    """In a worker: write ``batch``'s large arrays into the lent segment ``slot`` (``size`` bytes).

    When no slot is lent or the batch does not fit, the batch goes as before (a fresh segment
    per array, :func:`share_batch`), and ``needed`` tells the parent how large slots must be.
    """
    places, needed = _layout(batch)
    if slot is None or needed > size or not enabled():
        return SlotBatch(None, batch, needed)
    shm = _ATTACHED.get(slot)
    if shm is None:
        shm = _ATTACHED[slot] = shared_memory.SharedMemory(name=slot)
    for start, a in places.values():
        np.ndarray(a.shape, a.dtype, buffer=shm.buf, offset=start)[...] = a

    def describe(x):
        if isinstance(x, np.ndarray) and id(x) in places:
            return InSlot(places[id(x)][0], x.shape, np.dtype(x.dtype).str)
        return x.view(np.ndarray) if isinstance(x, _SharedOnPickle) else x  # small: through the pipe

    memo = {}  # one descriptor per array: repeated references stay one array in the parent
    return SlotBatch(slot, _map(batch, lambda x: memo.setdefault(id(x), describe(x))
                                if isinstance(x, np.ndarray) else x), needed)


class SlotPool:
    """In the parent: segments of one batch's size, lent to requests and copied out of on return."""

    def __init__(self, count: int):
        self.count = max(int(count), 1)
        self.size = 0
        self._segments: dict[str, shared_memory.SharedMemory] = {}
        self._free: list[str] = []
        self._lock = threading.Lock()  # give_back also runs in the pool's result thread

    def lend(self):
        """``(name, size)`` of a free slot, or ``(None, 0)`` before the batch size is known / when all are lent."""
        with self._lock:
            if not self._free and self.size and len(self._segments) < self.count and enabled() and _room(self.size):
                shm = shared_memory.SharedMemory(create=True, size=self.size)
                # touch every page now: tmpfs allocates on first write, and a worker writing past a
                # full /dev/shm dies of SIGBUS; _room() then also sees the slots already made
                np.ndarray((self.size,), np.uint8, buffer=shm.buf).fill(0)
                self._segments[shm.name] = shm
                self._free.append(shm.name)
            return (self._free.pop(), self.size) if self._free else (None, 0)

    def give_back(self, name) -> None:
        with self._lock:
            if name is None or name not in self._segments:
                return
            if self._segments[name].size < self.size:  # lent before the slots grew
                self._drop(name)
            else:
                self._free.append(name)

    def unpack(self, answer: SlotBatch):
        """The batch of a worker's answer, its arrays copied out of the slot, the slot free again."""
        if answer.needed > self.size:  # the first batch, or a larger one: new slots from now on
            with self._lock:
                self.size = -(-answer.needed // (1 << 20)) * (1 << 20)
                for name in self._free:
                    self._drop(name)
                self._free.clear()
        if answer.slot is None:
            return answer.payload
        buf = self._segments[answer.slot].buf
        memo = {}

        def copy(x):
            if isinstance(x, InSlot):
                if id(x) not in memo:
                    memo[id(x)] = np.array(np.ndarray(x.shape, np.dtype(x.dtype), buffer=buf, offset=x.offset))
                return memo[id(x)]
            return x

        try:
            return _map(answer.payload, copy)
        finally:
            self.give_back(answer.slot)

    def _drop(self, name) -> None:
        shm = self._segments.pop(name)
        shm.close()
        shm.unlink()

    def close(self) -> None:
        """Unlink every segment (a worker still writing keeps its mapping until it exits)."""
        with self._lock:
            for name in list(self._segments):
                self._drop(name)
            self._free.clear()
