"""Semantic segmentation batches: :class:`SegmentationDataset` (image and mask warped by one matrix)."""

from __future__ import annotations

import warnings
from dataclasses import asdict

import numpy as np

from training.data.base import RecordDataset, check_names, check_size
from training.datasets.base import DatasetError, ImageReadError, read_image, read_mask
from training.normalization import Normalization
from training.targets import encode_mask
from training.affine import letterbox_matrix
from training.transforms import Augmentation, affine_matrix, grid_matrix, warp_image, warp_mask


class SegmentationDataset(RecordDataset):
    """Semantic segmentation batches: scale/rotate/flip/crop image and mask with one matrix.

    ``dataset[i]`` returns ``(x, y)``: images ``(B, H, W, 3)`` float32 (uint8 with ``feed="uint8"``)
    and labels ``(B, h, w)`` int32 in ``[0, C)`` or ``ignore_label`` (a tuple of ``num_outputs``
    references for models with an auxiliary head). Without augmentation the whole image is fitted into the input
    (letterboxed with the mean pixel, 0 once normalised, as the augmented crops; padding labelled ``ignore_label``);
    with it the image is scaled by a random
    factor around that fit, rotated, mirrored and randomly cropped (PSPNet recipe: semseg's ``RandScale``,
    ``RandRotate``, ``RandomGaussianBlur``, ``RandomHorizontalFlip``, ``Crop('rand')``, in one warp). The
    augmented image is padded with the mean pixel (the one the normalisation maps to 0, as semseg pads with
    its mean) and the labels with ``ignore_label``; on an axis where the scaled image is smaller than the crop
    it is centred (semseg pads both sides equally), else the crop lies at a uniform random position inside it.
    Unlike semseg, the zoom is relative to the fit of the whole image into the input, not to the image's own
    pixels (the same on VOC at 473-500 px crops, not on 2048 px Cityscapes frames: there use a smaller
    ``scale_range``), and rotation turns the crop about its centre rather than the whole image.

    Args:
        records: :class:`~training.datasets.SegRecord` list.
        batch_size: samples per batch.
        input_size: ``(w, h)`` of the network input (crop size).
        num_classes: C; mask values outside ``[0, C)`` become ``ignore_label``.
        ignore_label: label of pixels excluded from loss and metrics.
        label_size: ``(w, h)`` of the labels when the model's output is smaller than its input
            (sampled at matching pixel centres, corner-aligned); ``None`` = ``input_size``.
        class_names: the C classes' names in order, kept by a run for ``predict``/``evaluate`` of its ``.keras``
            (the training command passes the dataset's); ``None``: "class 0", "class 1", ...
        num_outputs, augment, normalization, feed, seed, shuffle, drop_remainder, on_error, skip_log,
            **kwargs: as in :class:`~training.data.HeatmapDataset`.
    """

    _RECORD_FIELDS = ("image", "mask")

    def __init__(self, records, *, batch_size=8, input_size=(512, 512), num_classes=21, ignore_label=255,
                 label_size=None, num_outputs=1, augment=None, normalization=None, feed="float32", seed=0, shuffle=True,
                 drop_remainder=False, on_error="raise", skip_log=None, class_names=None, **kwargs):
        self.input_size = check_size(input_size, "input_size")
        self.label_size = self.input_size if label_size is None else check_size(label_size, "label_size")
        if int(num_classes) < 1:
            raise ValueError(f"SegmentationDataset: num_classes must be >= 1. Received: {num_classes!r}")
        self.num_classes = int(num_classes)
        if (isinstance(ignore_label, bool) or not isinstance(ignore_label, (int, np.integer))
                or 0 <= ignore_label < self.num_classes):  # a class's pixels would be left out of loss and metrics
            raise ValueError(f"SegmentationDataset: ignore_label must be an integer outside the classes [0, "
                             f"{self.num_classes}) (the label of pixels excluded from loss and metrics; VOC's "
                             f"masks use 255). Received: ignore_label={ignore_label!r}")
        self.ignore_label = int(ignore_label)
        if int(num_outputs) < 1:
            raise ValueError(f"SegmentationDataset: num_outputs must be >= 1. Received: {num_outputs!r}")
        self.num_outputs = int(num_outputs)
        self.augment = Augmentation.coerce(augment, "segmentation")
        self.normalization = normalization or Normalization()
        self.class_names = check_names(class_names, self.num_classes, "SegmentationDataset", "class_names", "class")
        self._mask_values_said = [False]  # one list for every copy (thread workers batch from copies): said once
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
        if params is None:  # the whole image, at a whole-pixel offset when it is copied
            return letterbox_matrix(image_shape, side, self.input_size)
        side = side / params["zoom"]
        # random crop position: the crop stays inside the image, or the image inside the crop
        span = np.array([side, side * h / w])
        lo = span / 2.0 - 0.5
        hi = np.array([w_img, h_img]) - 0.5 - span / 2.0
        # semseg pads a smaller image evenly on both sides, so it sits in the crop's middle
        center = np.array([rng.uniform(a, b) if a <= b else (a + b) / 2.0 for a, b in zip(lo, hi)])
        return affine_matrix(center, side, self.input_size, rotation=params["rotation"], flip=params["flip"])

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

    def _read_pair(self, record) -> tuple[np.ndarray, np.ndarray]:
        """A record's image (H, W, 3) uint8 RGB and mask (H, W) at their own size, checked to match."""
        image = read_image(record.image)
        mask = self.read_labels(record)
        if mask.shape[:2] != image.shape[:2]:
            raise ImageReadError(f"mask '{record.mask}' is {mask.shape[1]}x{mask.shape[0]} but image '{record.image}' "
                                 f"is {image.shape[1]}x{image.shape[0]}; expected the same size.")
        self._check_mask_values(record, mask)
        return image, mask

    def _check_mask_values(self, record, mask) -> None:
        """Warn (once per dataset and its copies, in each process) about mask values that are neither a class nor
        ``ignore_label``: they are ignored like it, and a mask saved for display (0/100/200) trained on background
        alone, without a word, and scored a mean IoU of 1 for a model predicting nothing else."""
        said = self._mask_values_said
        if said[0] or not mask.size:
            return
        c = self.num_classes
        if mask.max() < c and mask.min() >= 0:  # the common case, two reductions
            return
        values = np.unique(mask[((mask < 0) | (mask >= c)) & (mask != self.ignore_label)])
        if not values.size:
            return
        said[0] = True
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if values.size > 8 else "")
        warnings.warn(f"SegmentationDataset: mask '{record.mask}' has values {shown}, neither classes [0, {c}) nor "
                      f"ignore_label={self.ignore_label}: they are ignored in the loss and the metrics, as "
                      f"ignore_label is. If they are classes (a mask saved for display as 0/100/200, say), map them "
                      f"to 0..{c - 1} with SegRecord(label_map=...) or raise num_classes. (Said once.)", stacklevel=2)

    def originals(self):
        """Yields ``(index, image, labels)`` for every record in order, at the image's own size: ``(H, W, 3)`` uint8
        RGB and ``(H, W)`` int labels encoded as training's (``[0, C)`` or ``ignore_label``). What evaluation
        scores on, unwarped. A record that cannot be read raises (``on_error="raise"``) or yields
        ``(index, None, None)`` (``"skip"``, reported as the batches' skips are)."""
        for i, rec in enumerate(self.records):
            try:
                image, mask = self._read_pair(rec)
            except DatasetError as e:
                if self.on_error == "raise":
                    raise type(e)(f"{self._describe(i)}: {e}") from None
                self._report_skip(i, e)
                yield i, None, None
                continue
            yield i, image, encode_mask(mask, self.num_classes, self.ignore_label)

    def _make_sample(self, record, rng):
        image, mask = self._read_pair(record)
        params = self.augment.sample(rng) if self.augment else None
        mat = self.matrix(image.shape, params, rng)
        crop = warp_image(image, mat, self.input_size, self.pad_pixel())  # letterbox and crop alike (0 once normalised)
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
                "shuffle": self.shuffle, "drop_remainder": self.drop_remainder, "on_error": self.on_error,
                "class_names": None if self.class_names is None else list(self.class_names)}
