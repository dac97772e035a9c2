"""Keras metrics for ``fit``/``evaluate``: training-time PCK on heatmaps and mean IoU on logits (``keras.ops`` only).

They give the same numbers as :mod:`training.metrics`' NumPy functions applied to the whole set
(:func:`~training.metrics.pck` with :func:`~training.metrics.bbox_size`; :func:`~training.metrics.confusion_matrix`
and :func:`~training.metrics.miou_from_confusion`). Registered (package ``kerazoo_training``), so a
``.keras`` compiled with them loads in safe mode.

Note:
    B = batch, (h, w) = heatmap size, K = keypoints, C = classes.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from training.metrics import miou_from_confusion

__all__ = ["PCKMetric", "MeanIoUMetric"]


def _argmax_xy(heatmaps):
    """(B, h, w, K) -> (B, K, 2) float32 integer argmax (x, y), first maximum on ties."""
    shape = ops.shape(heatmaps)
    w, k = shape[2], shape[3]
    flat = ops.reshape(heatmaps, (shape[0], -1, k))
    idx = ops.cast(ops.argmax(flat, axis=1), "int32")
    return ops.cast(ops.stack([idx % w, idx // w], axis=-1), "float32")


@keras.saving.register_keras_serializable(package="kerazoo_training")
class PCKMetric(keras.metrics.Metric):
    """Training-time PCK@alpha on heatmaps: argmax of the prediction vs argmax of the target.

    The normaliser of each sample is the max side of the box around its counted target joints (in
    heatmap px; PCK is scale-free so the stride does not matter). Counted joints are those whose target
    heatmap has a positive maximum and, when ``sample_weight`` (B, 1, 1, K) / (B, K) / (B,) is given
    (use ``weighted_metrics``), a positive weight. Samples with fewer than two distinct
    joints (box side 0) are skipped; a joint whose predicted map has no positive value is a miss, and NaN
    pixels never win the argmax. Equals :func:`pck` (mean) with :func:`bbox_size` over the set, on
    keypoints from :func:`training.targets.decode_heatmaps` with ``refine=None`` whose ``(-1, -1)`` (no positive
    maximum) are set to NaN first, as :func:`training.evaluate` does (as points they could land within reach).

    Args:
        alpha: threshold as a fraction of the box side. Defaults to 0.2.
        num_keypoints: score only the first K channels (the joints); extra channels such as CPM's
            background map are neither joints nor part of the box. ``None``: every channel is a joint.
        name: metric name. Defaults to ``"pck"``.
        dtype: result dtype.
    """

    def __init__(self, alpha=0.2, num_keypoints=None, name="pck", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if not float(alpha) > 0:
            raise ValueError(f"`alpha` must be > 0. Received: alpha={alpha!r}")
        if num_keypoints is not None and (isinstance(num_keypoints, bool) or int(num_keypoints) != num_keypoints
                                          or num_keypoints < 1):
            raise ValueError(f"`num_keypoints` must be a positive int or None. Received: {num_keypoints!r}")
        self.alpha = float(alpha)
        self.num_keypoints = None if num_keypoints is None else int(num_keypoints)
        self.hits = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="hits")
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        if len(y_pred.shape) != 4 or len(y_true.shape) != 4:
            raise ValueError(f"PCKMetric expects (B, h, w, K) heatmaps. Received y_true {tuple(y_true.shape)}, "
                             f"y_pred {tuple(y_pred.shape)}")
        sw = None if sample_weight is None else ops.cast(sample_weight, "float32")
        if sw is not None:
            sw = ops.reshape(sw, (ops.shape(y_true)[0], -1)) if len(sw.shape) > 1 else ops.expand_dims(sw, -1)
        k = self.num_keypoints
        if k is not None and y_true.shape[-1] != k:  # e.g. CPM's K + 1 maps: the background is no joint
            y_true, y_pred = y_true[..., :k], y_pred[..., :k]
            sw = sw[:, :k] if sw is not None and sw.shape[-1] != 1 else sw
        # a NaN pixel never wins (as decode_heatmaps): it made the whole joint a miss, even where the
        # map's true maximum sat on the target
        y_pred = ops.where(ops.isnan(y_pred), float("-inf"), y_pred)
        shape = ops.shape(y_true)
        # a joint without a target peak has no position (its argmax would be (0, 0)), whatever its weight:
        # a (B,) per-sample weight must not count a sample's unannotated joints
        vis = ops.max(ops.reshape(y_true, (shape[0], -1, shape[3])), axis=1) > 0
        if sw is not None:
            vis = ops.logical_and(vis, ops.broadcast_to(sw, (shape[0], shape[3])) > 0)
        gt = _argmax_xy(y_true)
        pred = _argmax_xy(y_pred)
        vis3 = ops.expand_dims(vis, -1)
        hi = ops.max(ops.where(vis3, gt, -1e9), axis=1)
        lo = ops.min(ops.where(vis3, gt, 1e9), axis=1)
        side = ops.max(hi - lo, axis=-1)  # (B,); <= 0 or negative sentinel when < 2 joints counted
        ok = ops.logical_and(vis, ops.expand_dims(side > 0, -1))
        dist = ops.sqrt(ops.sum(ops.square(pred - gt), axis=-1))
        # a joint whose predicted map has no positive value is a miss (decode_heatmaps marks it -1)
        pred_max = ops.max(ops.reshape(y_pred, (shape[0], -1, shape[3])), axis=1)
        hit = ok & (dist <= self.alpha * ops.expand_dims(side, -1)) & (pred_max > 0)
        self.hits.assign_add(ops.sum(ops.cast(hit, "float32")))
        self.total.assign_add(ops.sum(ops.cast(ok, "float32")))

    def result(self):
        return ops.cast(ops.divide_no_nan(self.hits, self.total), self.dtype)

    def reset_state(self):
        self.hits.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "num_keypoints": self.num_keypoints}


@keras.saving.register_keras_serializable(package="kerazoo_training")
class MeanIoUMetric(keras.metrics.Metric):
    """Mean IoU from a confusion matrix accumulated over every batch (never a mean of per-image IoUs).

    Args:
        num_classes: C.
        ignore_label: ground-truth label skipped (as are labels outside [0, C)). Defaults to 255.
        name: metric name. Defaults to ``"mean_iou"``.
        dtype: result dtype.

    Update args:
        y_true: (B, H, W) or (B, H, W, 1) integer labels.
        y_pred: (B, H, W, C) scores/logits (argmax taken; NaN scores never win) or (B, H, W) labels; a
            predicted label outside [0, C) leaves its pixel out (a compiled step cannot raise, as
            :func:`confusion_matrix` does).
        sample_weight: optional (B,), (B, H), (B, H, W) or (B, H, W, 1); pixels with weight 0 are skipped.

    Counts are exact up to 2**62 pixels per cell: the int32 variable ``confusion`` holds each count
    modulo 2**31 and ``confusion_carry`` the number of 2**31 carried (int64 is not available on every
    backend: JAX runs in 32 bits). ``confusion_matrix()`` returns the (C, C) int64 counts,
    ``iou_per_class()`` the (C,) IoUs.
    """

    def __init__(self, num_classes, ignore_label=255, name="mean_iou", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.confusion = self.add_variable(shape=(self.num_classes, self.num_classes), initializer="zeros",
                                           dtype="int32", name="confusion")
        self.confusion_carry = self.add_variable(shape=(self.num_classes, self.num_classes), initializer="zeros",
                                                 dtype="int32", name="confusion_carry")

    def update_state(self, y_true, y_pred, sample_weight=None):
        c = self.num_classes
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        if len(y_true.shape) == 4:
            y_true = ops.squeeze(y_true, axis=-1)
        if len(y_pred.shape) == len(y_true.shape) + 1:
            # (B, H, W, 1) holds labels, (B, H, W, C) scores
            if y_pred.shape[-1] == 1:
                y_pred = ops.squeeze(y_pred, -1)
            else:  # a NaN score never wins (TensorFlow's argmax skips NaN, JAX/PyTorch/NumPy pick it)
                y_pred = ops.argmax(ops.where(ops.isnan(y_pred), float("-inf"), y_pred), axis=-1)
        if len(y_pred.shape) != len(y_true.shape):
            raise ValueError(f"MeanIoUMetric: y_pred {tuple(y_pred.shape)} must be (B, H, W, C) scores or "
                             f"labels shaped like y_true {tuple(y_true.shape)}")
        gt = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        pr = ops.reshape(ops.cast(y_pred, "int32"), (-1,))
        valid = (gt >= 0) & (gt < c) & (gt != self.ignore_label) & (pr >= 0) & (pr < c)
        if sample_weight is not None:
            sw = ops.cast(ops.convert_to_tensor(sample_weight), "float32")  # a bool mask too (TF's `> 0` refused it)
            if len(sw.shape) == len(y_true.shape) + 1 and sw.shape[-1] == 1:  # shaped like (B, H, W, 1) labels
                sw = ops.squeeze(sw, -1)
            while len(sw.shape) < len(y_true.shape):
                sw = ops.expand_dims(sw, -1)
            sw = ops.reshape(ops.broadcast_to(sw, ops.shape(y_true)), (-1,))
            valid = valid & (sw > 0)
        cell = ops.where(valid, gt * c + pr, ops.zeros_like(gt))
        counts = ops.reshape(ops.segment_sum(ops.cast(valid, "int32"), cell, num_segments=c * c), (c, c))
        # an epoch of large crops passes 2**31 background pixels: carry instead of wrapping negative,
        # computed so that no int32 intermediate overflows (counts + low >= 2**31 <=> counts > room)
        low = self.confusion
        room = (2**31 - 1) - low
        carry = counts > room
        self.confusion.assign(ops.where(carry, counts - room - 1, low + ops.minimum(counts, room)))
        self.confusion_carry.assign_add(ops.cast(carry, "int32"))

    def _iou(self):
        cm = ops.cast(self.confusion_carry, "float32") * float(2**31) + ops.cast(self.confusion, "float32")
        inter = ops.diagonal(cm)
        union = ops.sum(cm, axis=0) + ops.sum(cm, axis=1) - inter
        return inter, union

    def result(self):
        inter, union = self._iou()
        present = ops.cast(union > 0, "float32")
        return ops.cast(ops.divide_no_nan(ops.sum(ops.divide_no_nan(inter, union)), ops.sum(present)), self.dtype)

    def confusion_matrix(self) -> np.ndarray:
        """(C, C) int64 pixel counts accumulated so far (rows = ground truth, columns = prediction)."""
        carry = ops.convert_to_numpy(self.confusion_carry).astype(np.int64)
        return carry * 2**31 + ops.convert_to_numpy(self.confusion).astype(np.int64)

    def iou_per_class(self) -> np.ndarray:
        """(C,) float64 IoU per class (NaN where the class never occurs), as :func:`miou_from_confusion`."""
        return miou_from_confusion(self.confusion_matrix())[0]

    def reset_state(self):
        self.confusion.assign(ops.zeros((self.num_classes, self.num_classes), dtype="int32"))
        self.confusion_carry.assign(ops.zeros((self.num_classes, self.num_classes), dtype="int32"))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_label": self.ignore_label}
