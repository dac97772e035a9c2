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

    def walk(x):
        if isinstance(x, np.ndarray) and x.nbytes >= MIN_BYTES and type(x) is np.ndarray:
            if id(x) not in memo:
                memo[id(x)] = x.view(_SharedOnPickle)
            return memo[id(x)]
        if isinstance(x, tuple):
            return tuple(walk(v) for v in x)
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        return x

    return walk(batch)
