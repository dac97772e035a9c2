"""Where a run happens, and the one module that imports TensorFlow (tf.distribute, TensorBoard images).

:func:`setup_distribution` turns :func:`training.fit`'s ``distribution`` argument into a
:class:`Placement`: a ``tf.distribute`` strategy on TensorFlow, ``keras.distribution.DataParallel``
on JAX, or nothing. Everything else in :mod:`training` is backend-agnostic ``keras`` code; the
TensorFlow seam here is only used on the TensorFlow backend (strategies) or when TensorFlow happens
to be installed (image summaries), and TensorFlow is imported inside those functions only.

Multi-worker training (``MultiWorkerMirroredStrategy``) reads the cluster from ``TF_CONFIG``::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}'

Each worker feeds its own shard of the records (``records[i::n]``, equal batch counts on every
worker so the collective steps line up). On JAX and PyTorch, ``distribution="auto"`` refuses a
``TF_CONFIG`` cluster of several workers (each process would otherwise train alone into the same folder), and on
PyTorch it warns when several CUDA devices are visible (it trains on one).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings

import keras
import numpy as np

__all__ = ["Placement", "setup_distribution", "jax_distribution", "tf_config", "worker_rank", "make_strategy",
           "distribute_py_dataset", "tensorboard_available", "write_image_summaries", "unavailable_message",
           "single_device_notice"]


_KINDS = ("auto", "none", "data_parallel", "mirrored", "multi_worker")


class Placement:
    """Where the run happens: a strategy scope (TF) or a keras.distribution (JAX), and who is chief."""

    def __init__(self, kind="none", strategy=None, index=0, count=1):
        self.kind, self.strategy, self.index, self.count = kind, strategy, index, count

    @property
    def is_chief(self):
        return self.index == 0

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def setup_distribution(distribution) -> Placement:
    """The :class:`Placement` of :func:`training.fit`'s ``distribution`` argument on the current backend.

    Raises:
        ValueError: ``distribution`` is not available on this backend.
    """
    backend = keras.backend.backend()
    kind = distribution or "none"
    if kind not in _KINDS:  # a typo was reported as "not available on this backend"
        raise ValueError(f"distribution must be one of {_KINDS}. Received: distribution={distribution!r}")
    if kind == "auto":
        if backend == "tensorflow":
            if tf_config():  # before any device query: collective ops must be set up first
                kind = "multi_worker"
            else:
                gpus = [d for d in keras.distribution.list_devices() if "gpu" in d.lower()]
                kind = "mirrored" if len(gpus) > 1 else "none"
        else:
            cfg = tf_config()
            if cfg is not None and worker_rank(cfg)[1] > 1:  # N processes would each train alone into one folder
                raise ValueError(f"TF_CONFIG describes a cluster of {worker_rank(cfg)[1]} workers, but multi-worker "
                                 f"training runs on the TensorFlow backend only (this is {backend}). Run with "
                                 f"KERAS_BACKEND=tensorflow, or unset TF_CONFIG (or pass distribution='none') to train "
                                 f"this process alone.")
            devices = keras.distribution.list_devices() if backend == "jax" else ()
            kind = "data_parallel" if len(devices) > 1 else "none"
            notice = single_device_notice(backend, _torch_gpu_count() if backend == "torch" else 0)
            if notice:
                warnings.warn(notice, stacklevel=3)
    if kind == "none":
        return Placement()
    if backend == "tensorflow" and kind in ("mirrored", "data_parallel", "multi_worker"):
        strategy, index, count = make_strategy("multi_worker" if kind == "multi_worker" else "mirrored")
        return Placement(kind if kind == "multi_worker" else "mirrored", strategy, index, count)
    if backend == "jax" and kind in ("data_parallel", "mirrored"):
        return Placement("data_parallel", keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
    raise ValueError(unavailable_message(distribution, backend))


def _torch_gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def single_device_notice(backend, gpus) -> str | None:
    """What ``distribution="auto"`` says on a backend without a distribution here (PyTorch) when ``gpus`` > 1 CUDA
    devices are visible: Keras' torch backend trains on the first one, and the others idled without a word."""
    if backend != "torch" or gpus <= 1:
        return None
    return (f"distribution='auto': {gpus} CUDA devices are visible, but training.fit trains on one of them (cuda:0) "
            f"on the torch backend (Keras has no data-parallel distribution for PyTorch). To use them all, run with "
            f"KERAS_BACKEND=jax ('data_parallel') or tensorflow ('mirrored'); CUDA_VISIBLE_DEVICES=0 silences this.")


# What each backend accepts besides "auto"/"none" (setup_distribution above), for the refusal's advice.
_AVAILABLE = {"tensorflow": ("data_parallel", "mirrored", "multi_worker"), "jax": ("data_parallel", "mirrored")}


def unavailable_message(distribution, backend) -> str:
    """Why ``distribution`` is refused on ``backend``, naming what this backend takes and which backend has it.

    The message listed every backend's kinds alike before, so on PyTorch it offered the refused
    ``'data_parallel'`` itself.
    """
    here = ("auto", "none") + _AVAILABLE.get(backend, ())
    where = [f"KERAS_BACKEND={b} ({', '.join(repr(k) for k in kinds)})" for b, kinds in _AVAILABLE.items()
             if distribution in kinds]
    single = "" if _AVAILABLE.get(backend) else f" (training.fit runs on one device on the {backend} backend)"
    return (f"distribution={distribution!r} is not available on the {backend} backend; use "
            f"{', '.join(repr(k) for k in here[:-1])} or {here[-1]!r}{single}"
            + (f", or run with {' or '.join(where)}." if where else "."))


@contextlib.contextmanager
def jax_distribution(placement: Placement):
    """Set ``placement``'s ``keras.distribution`` for the block (JAX data parallel; otherwise nothing)."""
    if placement.kind != "data_parallel" or keras.backend.backend() != "jax":
        yield
        return
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(placement.strategy)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def tf_config() -> dict | None:
    """Parsed ``TF_CONFIG`` or ``None``.

    Raises:
        ValueError: ``TF_CONFIG`` is set but is not JSON with ``cluster`` and ``task``.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
        cfg["cluster"], cfg["task"]["index"]  # noqa: B018  (presence check)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"TF_CONFIG is not valid: expected JSON with 'cluster' and 'task': {e}. "
                         f"Received: {raw[:200]!r}") from None
    return cfg


def worker_rank(cfg: dict) -> tuple[int, int]:
    """``(index, count)`` of this process among a ``TF_CONFIG`` cluster's chief and workers.

    The chief (task type ``"chief"``, when the cluster has one) is index 0 and the workers follow it;
    without a chief, worker 0 is the chief (as ``MultiWorkerMirroredStrategy`` treats it).

    Raises:
        ValueError: a task type other than ``"chief"``/``"worker"``, or an index outside the cluster.
    """
    cluster, task = cfg["cluster"], cfg["task"]
    chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    kind, index = task.get("type", "worker"), int(task["index"])
    size = {"chief": chiefs, "worker": workers}.get(kind)
    if size is None or not 0 <= index < size:
        raise ValueError(f"TF_CONFIG: task {{'type': {kind!r}, 'index': {index}}} is not a chief or worker of the "
                         f"cluster ({chiefs} chief, {workers} workers); distribution='multi_worker' runs on those.")
    return (index if kind == "chief" else chiefs + index), max(chiefs + workers, 1)


def make_strategy(kind: str):
    """``"mirrored"`` -> ``tf.distribute.MirroredStrategy()`` (all local GPUs, else the CPU);
    ``"multi_worker"`` -> ``tf.distribute.MultiWorkerMirroredStrategy()`` (cluster from TF_CONFIG).

    The strategy is created once per process and reused (TensorFlow allows one multi-worker
    strategy per program, created before any other TensorFlow op: build models *after* it, e.g.
    pass :func:`training.fit` a model name or a ``.keras`` path, or call this first).

    Returns:
        ``(strategy, worker_index, num_workers)``.
    """
    if kind not in ("mirrored", "multi_worker"):
        raise ValueError(f"make_strategy: kind must be 'mirrored' or 'multi_worker'. Received: {kind!r}")
    if kind in _STRATEGIES:
        return _STRATEGIES[kind]
    import tensorflow as tf

    if kind == "mirrored":
        made = tf.distribute.MirroredStrategy(), 0, 1
    else:
        cfg = tf_config()
        if cfg is None:
            raise ValueError("distribution='multi_worker' needs TF_CONFIG (see training.distribute).")
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            raise RuntimeError(f"{e}: create the multi-worker strategy before any model or tensor exists "
                               f"(give training.fit a model name or .keras path, or call "
                               f"training.distribute.make_strategy('multi_worker') first).") from None
        _patch_keras_scalar_reduce()
        made = (strategy, *worker_rank(cfg))
    _STRATEGIES[kind] = made
    return made


_STRATEGIES: dict = {}


def _patch_keras_scalar_reduce() -> None:
    """Make Keras 3's TF trainer average scalar step logs over workers with ``axis=None``.

    Its ``reduce_per_replica(..., reduction="auto")`` calls ``strategy.reduce("MEAN", v, axis=0)``
    under a multi-worker strategy, which fails on the scalar loss/metric logs ("Invalid reduction
    dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388). Only that case changes.
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = getattr(tf_trainer.reduce_per_replica, "_kerazoo_original", tf_trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and tf_trainer._collective_all_reduce_multi_worker(strategy):
            def reduce(v):
                one = v.values[0] if tf_trainer._is_per_replica_instance(v) else v  # 1 local replica: a Tensor
                if isinstance(one, tf.Tensor) and one.shape.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)

            return tree.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica._kerazoo_original = original
    tf_trainer.reduce_per_replica = reduce_per_replica


def _structure_spec(tf, batch):
    def spec(a):
        a = np.asarray(a)
        return tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype))

    def walk(v):
        return tuple(walk(u) for u in v) if isinstance(v, (tuple, list)) else spec(v)

    return walk(batch)


def distribute_py_dataset(strategy, dataset, shards=None):
    """A ``tf.distribute`` dataset that feeds worker ``i`` the batches of its record shard.

    ``dataset`` (a :class:`training.data.HeatmapDataset` / ``SegmentationDataset``) is copied per
    input pipeline with ``records[i::n]`` truncated to a common length; each epoch re-runs the
    generator, so ``dataset.epoch`` (kept by :class:`training.data.EpochSync`) still drives the
    order and augmentation. ``dataset.batch_size`` is the per-replica batch. Keras uses a
    ``DistributedDataset`` as is (no second sharding).

    Args:
        shards: optional list that receives the copies. With ``use_multiprocessing=True`` each copy
            has worker processes of its own, which live until ``close_workers()`` is called on it
            (tf.data keeps the copies alive after training): :func:`training.fit` closes them.

    Raises:
        ValueError: a shard would hold no batch (fewer records than input pipelines, or than one full
            batch per pipeline with ``drop_remainder=True``); it was an IndexError
            ("batch index 0 out of range for 0 batches") that named neither the shards nor the counts.
    """
    import copy

    import tensorflow as tf

    def make(ctx):
        n, i = ctx.num_input_pipelines, ctx.input_pipeline_id
        shard = copy.copy(dataset)
        per = len(dataset.records) // n
        need = dataset.batch_size if dataset.drop_remainder else 1  # records per shard for one batch
        if per < need:
            full = f"one full batch of {dataset.batch_size} (drop_remainder=True)" if dataset.drop_remainder else \
                "one batch"
            raise ValueError(f"distribute_py_dataset: {len(dataset.records)} records of {type(dataset).__name__} split "
                             f"over {n} input pipelines (one per worker) leave {per} records per pipeline, fewer than "
                             f"{full}; give at least {n * need} records, or fewer workers")
        shard.records = dataset.records[i::n][:per]
        shard._order_cache = None
        if shards is not None:
            shards.append(shard)
        spec = _structure_spec(tf, shard[0])

        def gen():
            shard.set_epoch(dataset.epoch)
            for b in range(len(shard)):
                yield shard[b]

        ds = tf.data.Dataset.from_generator(gen, output_signature=spec)
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(opts).prefetch(2)

    return strategy.distribute_datasets_from_function(make)


def tensorboard_available() -> bool:
    """Whether ``tf.summary`` can write events (needs both tensorflow and tensorboard installed)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "tensorboard"))


def write_image_summaries(logdir, step: int, images: dict) -> bool:
    """Write ``{tag: (N, H, W, 3) uint8}`` images to a TensorBoard event file in ``logdir``.

    Returns:
        False when TensorFlow or TensorBoard is not installed (nothing written), else True.
    """
    if not tensorboard_available():
        return False
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for tag, batch in images.items():
            tf.summary.image(tag, np.asarray(batch, np.uint8), step=int(step), max_outputs=len(batch))
    writer.flush()
    writer.close()
    return True
