"""The one module that imports TensorFlow: tf.distribute strategies and TensorBoard image summaries.

Everything else in :mod:`training` is backend-agnostic ``keras`` code; this seam is only used on
the TensorFlow backend (strategies) or when TensorFlow happens to be installed (image summaries).
On JAX, :func:`training.fit` uses ``keras.distribution.DataParallel`` instead.

Multi-worker training (``MultiWorkerMirroredStrategy``) reads the cluster from ``TF_CONFIG``::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}'

Each worker feeds its own shard of the records (``records[i::n]``, equal batch counts on every
worker so the collective steps line up).
"""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["tf_config", "make_strategy", "distribute_py_dataset", "tensorboard_available", "write_image_summaries"]


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


def make_strategy(kind: str):
    """``"mirrored"`` -> ``tf.distribute.MirroredStrategy()`` (all local GPUs, else the CPU);
    ``"multi_worker"`` -> ``tf.distribute.MultiWorkerMirroredStrategy()`` (cluster from TF_CONFIG).

    Returns:
        ``(strategy, worker_index, num_workers)``.
    """
    import tensorflow as tf

    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(), 0, 1
    if kind == "multi_worker":
        cfg = tf_config()
        if cfg is None:
            raise ValueError("distribution='multi_worker' needs TF_CONFIG (see training.distribute).")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        workers = cfg["cluster"].get("worker", [])
        return strategy, int(cfg["task"]["index"]), max(len(workers), 1)
    raise ValueError(f"make_strategy: kind must be 'mirrored' or 'multi_worker'. Received: {kind!r}")


def _structure_spec(tf, batch):
    def spec(a):
        a = np.asarray(a)
        return tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype))

    def walk(v):
        return tuple(walk(u) for u in v) if isinstance(v, (tuple, list)) else spec(v)

    return walk(batch)


def distribute_py_dataset(strategy, dataset):
    """A ``tf.distribute`` dataset that feeds worker ``i`` the batches of its record shard.

    ``dataset`` (a :class:`training.data.HeatmapDataset` / ``SegmentationDataset``) is copied per
    input pipeline with ``records[i::n]`` truncated to a common length; each epoch re-runs the
    generator, so ``dataset.epoch`` (kept by :class:`training.data.EpochSync`) still drives the
    order and augmentation. ``dataset.batch_size`` is the per-replica batch. Keras uses a
    ``DistributedDataset`` as is (no second sharding).
    """
    import copy

    import tensorflow as tf

    def make(ctx):
        n, i = ctx.num_input_pipelines, ctx.input_pipeline_id
        shard = copy.copy(dataset)
        per = len(dataset.records) // n
        shard.records = dataset.records[i::n][:per]
        shard._order_cache = None
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
