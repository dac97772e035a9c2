"""Batches for ``model.fit``: :class:`HeatmapDataset` (top-down pose) and :class:`SegmentationDataset`.

Both are ``keras.utils.PyDataset`` subclasses built from plain sample records
(:mod:`training.datasets`). ``__getitem__`` returns a whole batch and ``len()`` counts batches.
They hold only records, numbers and small dataclasses -- no generators, lambdas, open files or
backend tensors -- so they pickle into worker processes (``workers=N, use_multiprocessing=True``,
fork or spawn); images are opened inside ``__getitem__``.

Randomness: sample ``pos`` of batch ``idx`` in epoch ``e`` draws from
``np.random.default_rng([seed, e, idx, pos])`` and the sample order of epoch ``e`` is a
permutation seeded by ``(seed, e)`` (recomputed in ``on_epoch_end``). A batch is therefore a pure
function of ``(seed, epoch, idx)``: workers never repeat each other's augmentation, and
``workers=0`` and ``workers=N`` runs give identical batches. Pass ``shuffle=False`` to
``model.fit`` (Keras would otherwise shuffle batch indices with an unseeded RNG);
:func:`training.fit` does this, and keeps ``epoch`` in step after a resume (:class:`EpochSync`).

Note:
    B = batch, K = keypoints, C = classes; ``input_size``/``heatmap_size`` are ``(w, h)``, arrays
    ``(B, H, W, ...)``. Keypoints are 0-based float pixels, (x, y).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import warnings
from dataclasses import asdict

import keras
import numpy as np

from training.datasets.base import DatasetError, ImageReadError, read_image, read_mask
from training.normalization import FEEDS, Normalization, check_feed as _feed, model_feed
from training.shm import share_batch
from training.targets import HeatmapCodec, cpm_center_map, encode_mask
from training.transforms import (Augmentation, affine_matrix, check_flip_pairs, grid_matrix, swap_pairs,
                                 transform_points, warp_image, warp_mask)

__all__ = ["Augmentation", "Normalization", "HeatmapDataset", "SegmentationDataset", "EpochSync", "FEEDS",
           "model_feed"]

log = logging.getLogger("training.data")


def _size(value, name) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (w, h) pair of positive ints. Received: {name}={value!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"{name} must be a (w, h) pair of positive ints. Received: {name}={value!r}")
    return w, h


class _RecordDataset(keras.utils.PyDataset):
    """Shared machinery: ordering, per-sample RNG, error handling and skip reporting."""

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
        self.records = list(records)
        if not self.records:
            raise ValueError(f"{type(self).__name__}: records is empty; expected at least one sample record.")
        if int(batch_size) < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be >= 1. Received: batch_size={batch_size!r}")
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


class HeatmapDataset(_RecordDataset):
    """Top-down pose batches: crop around each record's centre/scale, augment, encode heatmaps.

    ``dataset[i]`` returns ``(x, y, sample_weight)``:

    - ``x``: images ``(B, H, W, 3)`` float32 (see ``normalization``), or uint8 RGB pixels with
      ``feed="uint8"``; with ``center_map_sigma``
      a tuple ``(images, center_maps (B, H, W, 1))`` for CPM, each peaking where the record's
      ``center`` lands in the crop (the input's centre unless ``augment`` shifts it).
    - ``y``: heatmaps ``(B, h, w, K)`` float32 (Gaussian peak 1), or a tuple of ``num_outputs``
      references to the same array for intermediate supervision (one target per stack/stage).
    - ``sample_weight``: ``(B, 1, 1, K)`` float32 joint weights (0 for unannotated joints and
      joints whose Gaussian misses the map; never NaN), shared by all outputs.

    Args:
        records: :class:`~training.datasets.PoseRecord` list.
        batch_size: samples per batch.
        input_size: ``(w, h)`` network input.
        heatmap_size: ``(w, h)`` of the output heatmaps (same stride on both axes).
        sigma: Gaussian sigma in heatmap pixels.
        num_outputs: model outputs that each get the target.
        augment: ``None``/``False``, ``True`` (HRNet recipe), a dict of :class:`Augmentation`
            fields, or an :class:`Augmentation`.
        flip_pairs: left/right keypoint index pairs swapped on a flip, e.g. MPII's ``((0, 5), (1, 4), ...)``;
            ``()`` for data without left/right joints (one hand, the synthetic figure). ``None``
            (not given) is ``()`` with a warning when ``augment`` mirrors images: a mirrored left
            wrist would keep the label "left wrist".
        background: append CPM's background map ``max(0, 1 - max_k heatmap_k)`` (K + 1 channels).
        center_map_sigma: also return CPM's centre map (sigma in input pixels, e.g. 21).
        heatmap_offset: input px where heatmap pixel 0's centre lies (targets at
            ``(x_in - heatmap_offset) / stride``); 0.0 (default) is training's ``x_hm = x_in / stride``.
            :func:`training.fit` sets it to the model's ``zoo.weights_record(model).heatmap_offset`` (CPM
            3.5, hourglass 2.0) when left at 0.0, so a release is fine-tuned in its own convention; another
            value given here wins, and the fitted model's record then carries it for ``evaluate``/``predict``.
        normalization: :class:`Normalization` of the images.
        feed: ``"float32"``: images normalised on the host; ``"uint8"``: raw RGB pixels, 4x fewer
            bytes per batch to copy to the device, for a model that normalises its input itself
            (:meth:`Normalization.layer`; :func:`training.fit` adds it, see its ``feed``).
        seed: randomness seed (see module docstring).
        shuffle: new sample order every epoch.
        drop_remainder: drop the last partial batch (keeps shapes static under JAX).
        on_error: ``"raise"`` (default): a missing/corrupt image raises, naming file and sample
            index; ``"skip"``: warn, count (:meth:`skipped`) and use a stand-in sample.
        skip_log: file that every process appends skipped samples to.
        persistent_workers: with ``use_multiprocessing=True``, make batches in ``workers`` processes
            that live across epochs (:mod:`training.workers`; default) instead of Keras' pool, which
            starts new processes every epoch; with ``use_multiprocessing=False`` and ``workers > 1``,
            in ``workers`` threads of ours. They stop at the end of :func:`training.fit` or with
            :meth:`close_workers`.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` (``PyDataset``).

    Example:
        >>> from training.datasets.synthetic import synthetic_pose
        >>> ds = HeatmapDataset(synthetic_pose(64), batch_size=8, input_size=(128, 128),
        ...                     heatmap_size=(32, 32), num_outputs=2, augment=True, flip_pairs=())
        >>> x, (y1, y2), w = ds[0]   # (8, 128, 128, 3), 2 x (8, 32, 32, 16), (8, 1, 1, 16)
    """

    def __init__(self, records, *, batch_size=16, input_size=(256, 256), heatmap_size=(64, 64), sigma=2.0,
                 num_outputs=1, augment=None, flip_pairs=None, background=False, center_map_sigma=None,
                 heatmap_offset=0.0, normalization=None, feed="float32", seed=0, shuffle=True, drop_remainder=False,
                 on_error="raise", skip_log=None, **kwargs):
        self.input_size = _size(input_size, "input_size")
        self.heatmap_size = _size(heatmap_size, "heatmap_size")
        self.sigma = float(sigma)
        try:  # validate geometry and offset now
            self.heatmap_offset = HeatmapCodec(self.input_size, self.heatmap_size, self.sigma,
                                               offset=heatmap_offset).offset
        except ValueError as e:
            raise ValueError(f"HeatmapDataset: {str(e).replace('`offset`', '`heatmap_offset`')}") from None
        if int(num_outputs) < 1:
            raise ValueError(f"HeatmapDataset: num_outputs must be >= 1. Received: {num_outputs!r}")
        self.num_outputs = int(num_outputs)
        self.augment = Augmentation.coerce(augment, "pose")
        self.background = bool(background)
        self.center_map_sigma = None if center_map_sigma is None else float(center_map_sigma)
        self.normalization = normalization or Normalization()
        super().__init__(records, batch_size=batch_size, seed=seed, shuffle=shuffle, drop_remainder=drop_remainder,
                         on_error=on_error, skip_log=skip_log, feed=feed, **kwargs)
        ks = {r.num_keypoints for r in self.records}
        if len(ks) != 1:
            raise ValueError(f"HeatmapDataset: records have different keypoint counts {sorted(ks)}; expected one K.")
        self.num_keypoints = ks.pop()
        self.flip_pairs_given = flip_pairs is not None
        if not self.flip_pairs_given and self.augment and self.augment.flip_prob > 0 and self.num_keypoints > 1:
            warnings.warn(
                f"HeatmapDataset: augment mirrors images (flip_prob={self.augment.flip_prob}) but flip_pairs was "
                "not given, so mirrored left/right keypoints keep their labels. Pass flip_pairs=[(left, right), ...] "
                "(e.g. training.datasets.mpii.MPII_FLIP_PAIRS), or flip_pairs=() for data without left/right joints.",
                stacklevel=2)
        self.flip_pairs = tuple(tuple(p) for p in check_flip_pairs(flip_pairs or (), self.num_keypoints))

    @property
    def codec(self) -> HeatmapCodec:
        return HeatmapCodec(self.input_size, self.heatmap_size, self.sigma, offset=self.heatmap_offset)

    def matrix(self, record, params=None) -> np.ndarray:
        """Original-image -> input-crop (2, 3) matrix of ``record`` (no augmentation if ``params`` is None).

        The square of side ``record.scale`` about ``record.center`` fits the input: scaled by
        ``min(w, h) / record.scale`` (times the zoom), so a wide input keeps the person's head and feet.
        """
        p = params or {"zoom": 1.0, "rotation": 0.0, "flip": False, "shift": np.zeros(2)}
        w, h = self.input_size
        side = record.scale * w / min(w, h)  # affine_matrix maps `side` source px onto the width
        return affine_matrix(record.center, side / p["zoom"], self.input_size, rotation=p["rotation"],
                             translate=tuple(np.asarray(p["shift"]) * min(w, h)), flip=p["flip"])

    def _make_sample(self, record, rng):
        image = read_image(record.image)
        params = self.augment.sample(rng) if self.augment else None
        mat = self.matrix(record, params)
        crop = warp_image(image, mat, self.input_size)
        raw = record.keypoints
        kp = transform_points(np.where(np.isfinite(raw), raw, np.nan), mat)  # inf -> NaN: weight 0 downstream
        vis = record.visible.astype(np.float32)
        if params is not None:
            crop = self.augment.jitter(crop, rng)
            if params["flip"] and self.flip_pairs:
                kp = swap_pairs(kp, self.flip_pairs, axis=0)
                vis = swap_pairs(vis, self.flip_pairs, axis=0)
        heatmaps, weights = self.codec.encode(kp, vis)
        if self.background:
            bg = np.clip(1.0 - heatmaps.max(axis=-1, keepdims=True), 0.0, 1.0)
            heatmaps = np.concatenate([heatmaps, bg], axis=-1)
            weights = np.concatenate([weights, np.ones(1, np.float32)])
        # CPM's centre map marks the person: it follows a random shift (the crop centre does not)
        return crop, heatmaps, weights, transform_points(record.center, mat)

    def _collate(self, samples):
        images = self._images(samples)
        heatmaps = np.stack([s[1] for s in samples]).astype(np.float32, copy=False)
        weights = np.stack([s[2] for s in samples]).astype(np.float32, copy=False)[:, None, None, :]
        x = images
        if self.center_map_sigma is not None:
            x = (images, np.stack([cpm_center_map(self.input_size, s[3], self.center_map_sigma) for s in samples]))
        y = heatmaps if self.num_outputs == 1 else (heatmaps,) * self.num_outputs
        return x, y, weights

    def config(self) -> dict:
        return {"batch_size": self.batch_size, "input_size": list(self.input_size),
                "heatmap_size": list(self.heatmap_size), "sigma": self.sigma, "num_outputs": self.num_outputs,
                "augment": None if self.augment is None else asdict(self.augment),
                # None: not given (left/right joints unknown); []: the data has none, so mirroring swaps nothing
                "flip_pairs": [list(p) for p in self.flip_pairs] if self.flip_pairs_given else None,
                "background": self.background,
                "center_map_sigma": self.center_map_sigma, "heatmap_offset": self.heatmap_offset,
                "normalization": asdict(self.normalization),
                "feed": self.feed, "seed": self.seed, "shuffle": self.shuffle, "drop_remainder": self.drop_remainder,
                "on_error": self.on_error}


class SegmentationDataset(_RecordDataset):
    """Semantic segmentation batches: scale/rotate/flip/crop image and mask with one matrix.

    ``dataset[i]`` returns ``(x, y)``: images ``(B, H, W, 3)`` float32 (uint8 with ``feed="uint8"``)
    and labels ``(B, h, w)`` int32 in ``[0, C)`` or ``ignore_label`` (a tuple of ``num_outputs``
    references for models with an auxiliary head). Without augmentation the whole image is fitted into the input
    (letterboxed, padding labelled ``ignore_label``); with it the image is scaled by a random
    factor around that fit, rotated, mirrored and randomly cropped (PSPNet recipe).

    Args:
        records: :class:`~training.datasets.SegRecord` list.
        batch_size: samples per batch.
        input_size: ``(w, h)`` of the network input (crop size).
        num_classes: C; mask values outside ``[0, C)`` become ``ignore_label``.
        ignore_label: label of pixels excluded from loss and metrics.
        label_size: ``(w, h)`` of the labels when the model's output is smaller than its input
            (sampled at matching pixel centres, corner-aligned); ``None`` = ``input_size``.
        num_outputs, augment, normalization, feed, seed, shuffle, drop_remainder, on_error, skip_log,
            **kwargs: as in :class:`HeatmapDataset`.
    """

    def __init__(self, records, *, batch_size=8, input_size=(512, 512), num_classes=21, ignore_label=255,
                 label_size=None, num_outputs=1, augment=None, normalization=None, feed="float32", seed=0, shuffle=True,
                 drop_remainder=False, on_error="raise", skip_log=None, **kwargs):
        self.input_size = _size(input_size, "input_size")
        self.label_size = self.input_size if label_size is None else _size(label_size, "label_size")
        if int(num_classes) < 1:
            raise ValueError(f"SegmentationDataset: num_classes must be >= 1. Received: {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        if int(num_outputs) < 1:
            raise ValueError(f"SegmentationDataset: num_outputs must be >= 1. Received: {num_outputs!r}")
        self.num_outputs = int(num_outputs)
        self.augment = Augmentation.coerce(augment, "segmentation")
        self.normalization = normalization or Normalization()
        super().__init__(records, batch_size=batch_size, seed=seed, shuffle=shuffle, drop_remainder=drop_remainder,
                         on_error=on_error, skip_log=skip_log, feed=feed, **kwargs)

    def _describe(self, i) -> str:
        rec = self.records[i]
        return f"sample {i} (id {rec.id!r}, image '{rec.image}', mask '{rec.mask}')"

    def matrix(self, image_shape, params=None, rng=None) -> np.ndarray:
        """Original-image -> input (2, 3) matrix for an image of ``image_shape`` (H, W, ...)."""
        h_img, w_img = image_shape[:2]
        w, h = self.input_size
        side = max(w_img, h_img * w / h)  # the crop's width; zoom 1 fits the whole image into the input
        center = np.array([(w_img - 1) / 2.0, (h_img - 1) / 2.0])
        rot, flip = 0.0, False
        if params is not None:
            side = side / params["zoom"]
            rot, flip = params["rotation"], params["flip"]
            # random crop position: the crop stays inside the image, or the image inside the crop
            span = np.array([side, side * h / w])
            lo = span / 2.0 - 0.5
            hi = np.array([w_img, h_img]) - 0.5 - span / 2.0
            center = np.array([rng.uniform(min(a, b), max(a, b)) for a, b in zip(lo, hi)])
        return affine_matrix(center, side, self.input_size, rotation=rot, flip=flip)

    def label_matrix(self, image_shape) -> np.ndarray:
        """Original-image -> label-grid (2, 3) matrix of the unaugmented crop of an image of ``image_shape``."""
        return self._label_matrix(self.matrix(image_shape))

    def _label_matrix(self, mat) -> np.ndarray:
        return grid_matrix(mat, self.input_size, self.label_size)

    @staticmethod
    def read_labels(record) -> np.ndarray:
        """A record's mask at its own size, through its ``label_map`` (not yet warped or encoded)."""
        mask = read_mask(record.mask)
        return mask if record.label_map is None else record.label_map[mask]

    def _make_sample(self, record, rng):
        image = read_image(record.image)
        mask = self.read_labels(record)
        if mask.shape[:2] != image.shape[:2]:
            raise ImageReadError(f"mask '{record.mask}' is {mask.shape[1]}x{mask.shape[0]} but image '{record.image}' "
                                 f"is {image.shape[1]}x{image.shape[0]}; expected the same size.")
        params = self.augment.sample(rng) if self.augment else None
        mat = self.matrix(image.shape, params, rng)
        crop = warp_image(image, mat, self.input_size)
        if params is not None:
            crop = self.augment.jitter(crop, rng)
        labels = warp_mask(mask, self._label_matrix(mat), self.label_size, ignore_value=self.ignore_label)
        return crop, encode_mask(labels, self.num_classes, self.ignore_label)

    def _collate(self, samples):
        images = self._images(samples)
        labels = np.stack([s[1] for s in samples]).astype(np.int32, copy=False)
        return images, (labels if self.num_outputs == 1 else (labels,) * self.num_outputs)

    def config(self) -> dict:
        return {"batch_size": self.batch_size, "input_size": list(self.input_size),
                "label_size": list(self.label_size), "num_classes": self.num_classes,
                "ignore_label": self.ignore_label, "num_outputs": self.num_outputs,
                "augment": None if self.augment is None else asdict(self.augment),
                "normalization": asdict(self.normalization), "feed": self.feed, "seed": self.seed,
                "shuffle": self.shuffle, "drop_remainder": self.drop_remainder, "on_error": self.on_error}


class EpochSync(keras.callbacks.Callback):
    """Keeps datasets' ``epoch`` equal to the trainer's epoch (also after a resume).

    ``on_epoch_begin`` runs before Keras starts the epoch's worker pool, so workers see the new
    epoch's order and seeds.
    """

    def __init__(self, *datasets):
        super().__init__()
        self.datasets = [d for d in datasets if isinstance(d, _RecordDataset)]

    def on_epoch_begin(self, epoch, logs=None):
        for d in self.datasets:
            d.set_epoch(epoch)

    def on_train_end(self, logs=None):
        for d in self.datasets:  # the persistent worker processes end with the training run
            d.close_workers()
