"""Top-down pose batches: :class:`HeatmapDataset` (crop about the person, augment, encode heatmaps)."""

from __future__ import annotations

import warnings
from dataclasses import asdict

import numpy as np

from training.data.base import RecordDataset, check_names, check_size
from training.datasets.base import read_image
from training.normalization import Normalization
from training.targets import HeatmapCodec, cpm_center_map
from training.transforms import (Augmentation, affine_matrix, check_flip_pairs, swap_pairs, transform_points,
                                 warp_image)


class HeatmapDataset(RecordDataset):
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
        sigma: Gaussian sigma in heatmap pixels. ``None`` (default): 2.0 (MPII at 64x64), which
            :func:`training.fit` replaces with the model's weights' (``zoo.weights_record(model).heatmap_sigma``:
            hourglass:mpii 1.75, the CPM releases 0.875), so a release is fine-tuned on the peaks it learnt.
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
            3.5, hourglass:mpii 1.5) when left at 0.0, so a release is fine-tuned in its own convention; another
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
        keypoint_names: the K joints' names in order (``training.datasets`` readers' ``DatasetInfo`` has them;
            the training command passes them). A run keeps them, so ``predict``/``evaluate`` of its ``.keras``
            name its keypoints (and draw the dataset's skeleton) instead of "joint 0", "joint 1", ...
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

    _RECORD_FIELDS = ("image", "keypoints", "visible", "center", "scale")

    def __init__(self, records, *, batch_size=16, input_size=(256, 256), heatmap_size=(64, 64), sigma=None,
                 num_outputs=1, augment=None, flip_pairs=None, background=False, center_map_sigma=None,
                 heatmap_offset=0.0, normalization=None, feed="float32", seed=0, shuffle=True, drop_remainder=False,
                 on_error="raise", skip_log=None, keypoint_names=None, **kwargs):
        self.input_size = check_size(input_size, "input_size")
        self.heatmap_size = check_size(heatmap_size, "heatmap_size")
        self.sigma_given = sigma is not None  # fit() gives a release's sigma only where none was asked for
        try:  # validate geometry, sigma and offset now
            codec = HeatmapCodec(self.input_size, self.heatmap_size, 2.0 if sigma is None else sigma,
                                 offset=heatmap_offset)
        except ValueError as e:
            raise ValueError(f"HeatmapDataset: {str(e).replace('`offset`', '`heatmap_offset`')}") from None
        self.sigma, self.heatmap_offset = codec.sigma, codec.offset
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
        self.keypoint_names = check_names(keypoint_names, self.num_keypoints, "HeatmapDataset", "keypoint_names",
                                          "keypoint")

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
        crop = warp_image(image, mat, self.input_size, self.pad_pixel())
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
                "on_error": self.on_error,
                "keypoint_names": None if self.keypoint_names is None else list(self.keypoint_names)}
