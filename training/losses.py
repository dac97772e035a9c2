"""Losses for heatmap regression and semantic segmentation (``keras.ops`` only, any backend).

Note:
    B = batch, (h, w) = heatmap size, K = keypoints, (H, W) = label map size, C = classes.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["HeatmapMSE", "SegmentationCrossEntropy", "auxiliary_loss_weights"]

_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean")


def _float32_if_half(dtype):
    """``dtype``, or float32 for a half-precision one: the losses sum over every pixel, and 65,536 of them
    overflow float16's range (max 65,504) while a bfloat16 sum that long loses all precision."""
    if dtype is None:
        return None
    return "float32" if keras.dtype_policies.get(dtype).compute_dtype in ("float16", "bfloat16") else dtype


def _check_same_static_shape(y_true, y_pred, loss_name):
    st, sp = tuple(y_true.shape), tuple(y_pred.shape)
    if len(st) != len(sp) or any(a is not None and b is not None and a != b for a, b in zip(st, sp)):
        raise ValueError(f"{loss_name}: y_true shape {st} does not match y_pred shape {sp}")


@keras.saving.register_keras_serializable(package="kerazoo_training")
class HeatmapMSE(keras.losses.Loss):
    """Per-joint weighted heatmap MSE, element-wise: ``mean_{b,y,x,k}(factor * w_bk * (pred - gt)^2)``.

    Unlike ``keras.losses.MeanSquaredError`` (which averages over the last axis, i.e. over joints,
    *before* any sample weight), the squared error is kept per element so a per-joint weight applies
    to its own channel. With the default ``"sum_over_batch_size"`` reduction the weighted sum is
    divided by ``B*h*w*K`` (HRNet ``JointsMSELoss`` with ``factor=0.5`` for 0/1 joint weights, which
    HRNet multiplies into both maps, w^2 for a fractional one; MMPose's ``KeypointMSELoss`` weighs the
    loss by w, as here; weight-0 joints still count in the denominator, as there). With ``"mean_with_sample_weight"`` it is divided by the sum of the
    weights over every element, ``h*w*sum_{b,k} w_bk``: the mean over annotated joints only (0 if none).

    Pass the weights as ``sample_weight`` (e.g. the third element of a ``PyDataset`` batch):
    ``(B, 1, 1, K)`` as in the contract; ``(B, K)`` and per-sample ``(B,)`` are reshaped to broadcast
    correctly (Keras would otherwise align ``(B,)`` with the K axis). For a multi-output model (one
    heatmap per stack) a ``PyDataset`` batch ``(x, (y,) * n, w)`` applies ``w`` to every output, but
    numpy arrays passed to ``fit``/``evaluate`` need one weight array per output: ``sample_weight=(w,) * n``.

    Args:
        factor: multiplies the squared error; 0.5 reproduces HRNet/MMPose. Defaults to 1.0.
        reduction: Keras reduction. Defaults to ``"sum_over_batch_size"``.
        name: loss name. Defaults to ``"heatmap_mse"``.
        dtype: computation dtype; a half-precision one (float16, bfloat16, mixed policies) computes in
            float32. Defaults to Keras' float policy.

    Call args:
        y_true: (B, h, w, K) target heatmaps.
        y_pred: (B, h, w, K) predicted heatmaps.
        sample_weight: (B, 1, 1, K), (B, K) or (B,) joint / sample weights.
    """

    def __init__(self, factor=1.0, reduction="sum_over_batch_size", name="heatmap_mse", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=_float32_if_half(dtype))
        self.factor = float(factor)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            sw = ops.convert_to_tensor(sample_weight)
            try:
                rank = len(sw.shape)
            except (TypeError, ValueError):  # TensorFlow retraced with a relaxed, unknown rank
                rank = None
            if rank is None:  # (B,), (B, K) and (B, 1, 1, K) all become (B, 1, 1, K or 1)
                sw = ops.reshape(sw, (ops.shape(y_pred)[0], 1, 1, -1))
            elif rank == 1:
                sw = ops.reshape(sw, (-1, 1, 1, 1))
            elif rank == 2:
                sw = ops.expand_dims(ops.expand_dims(sw, 1), 1)
            elif rank != 4:
                raise ValueError(f"HeatmapMSE: sample_weight must have shape (B, 1, 1, K), (B, K) or (B,). "
                                 f"Received shape {tuple(sw.shape)}")
            if self.reduction == "mean_with_sample_weight":  # Keras divides by sum(sample_weight) as given
                sw = ops.broadcast_to(sw, ops.shape(y_pred))
            sample_weight = sw
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, y_pred.dtype)
        _check_same_static_shape(y_true, y_pred, "HeatmapMSE")
        return ops.square(y_pred - y_true) * ops.cast(self.factor, y_pred.dtype)

    def get_config(self):
        config = super().get_config()
        config["factor"] = self.factor
        return config


@keras.saving.register_keras_serializable(package="kerazoo_training")
class SegmentationCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy over classes, averaged over valid pixels only.

    Pixels whose label is ``ignore_label`` or outside ``[0, C)`` contribute nothing, and with a
    mean reduction the sum is divided by the number of *valid* pixels of the batch (PyTorch
    ``CrossEntropyLoss(ignore_index=255)``, Keras ``SparseCategoricalCrossentropy(ignore_class=255)``).
    ``"mean_with_sample_weight"`` divides by the sum of the valid pixels' weights (PyTorch's
    weighted mean). A batch with no valid pixel gives 0, not NaN.

    Args:
        ignore_label: label excluded from the loss. Defaults to 255.
        from_logits: y_pred holds logits (True) or probabilities (False). Defaults to True.
        reduction: Keras reduction. Defaults to ``"sum_over_batch_size"`` (mean over valid pixels).
        name: loss name. Defaults to ``"segmentation_cross_entropy"``.
        dtype: computation dtype; a half-precision one (float16, bfloat16, mixed policies) computes in
            float32. Defaults to Keras' float policy.

    Call args:
        y_true: (B, H, W) or (B, H, W, 1) integer labels.
        y_pred: (B, H, W, C) logits or probabilities at the label resolution.
        sample_weight: optional per-pixel (B, H, W) weights.
    """

    def __init__(self, ignore_label=255, from_logits=True, reduction="sum_over_batch_size",
                 name="segmentation_cross_entropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=_float32_if_half(dtype))
        self.ignore_label = int(ignore_label)
        self.from_logits = bool(from_logits)

    def _labels(self, y_true, y_pred):
        """(B, H, W) int32 labels and their bool validity mask."""
        labels = ops.convert_to_tensor(y_true)
        if len(labels.shape) == len(y_pred.shape):
            if labels.shape[-1] not in (1, None):
                raise ValueError(f"SegmentationCrossEntropy: y_true must be (B, H, W) or (B, H, W, 1) labels. "
                                 f"Received shape {tuple(labels.shape)}")
            labels = ops.squeeze(labels, axis=-1)
        _check_same_static_shape(labels, y_pred[..., 0], "SegmentationCrossEntropy (labels vs y_pred[..., 0])")
        labels = ops.cast(labels, "int32")
        return labels, (labels != self.ignore_label) & (labels >= 0) & (labels < y_pred.shape[-1])

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self.reduction == "mean_with_sample_weight":
            # Keras divides by sum(sample_weight): only the valid pixels' weights belong there
            _, valid = self._labels(y_true, ops.convert_to_tensor(y_pred))
            valid = ops.cast(valid, self.dtype)
            if sample_weight is None:
                sample_weight = valid
            else:
                sw = ops.cast(sample_weight, self.dtype)
                if len(sw.shape) == len(valid.shape) + 1:
                    sw = ops.squeeze(sw, axis=-1)
                sample_weight = sw * valid
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        labels, valid = self._labels(y_true, y_pred)
        safe = ops.where(valid, labels, ops.zeros_like(labels))
        # an ignored pixel's scores are replaced, not only its loss zeroed: an overflowed (inf) logit there made the
        # whole loss NaN (0 * nan), and its gradient too
        y_pred = ops.where(ops.expand_dims(valid, -1), y_pred, ops.ones_like(y_pred))
        if self.from_logits:
            log_p = ops.log_softmax(y_pred, axis=-1)
        else:
            eps = keras.config.epsilon()
            log_p = ops.log(ops.clip(y_pred, eps, 1.0))
        nll = -ops.squeeze(ops.take_along_axis(log_p, ops.expand_dims(safe, -1), axis=-1), axis=-1)
        valid_f = ops.cast(valid, nll.dtype)
        nll = nll * valid_f
        if self.reduction in _MEAN_REDUCTIONS:
            # the reduction divides by all pixels; rescale so it divides by the valid ones
            total = ops.cast(ops.size(valid_f), nll.dtype)
            nll = nll * (total / ops.maximum(ops.sum(valid_f), 1.0))
        return nll

    def get_config(self):
        config = super().get_config()
        config.update(ignore_label=self.ignore_label, from_logits=self.from_logits)
        return config


def auxiliary_loss_weights(n_outputs, aux_weight=0.4, *, main_index=0) -> list[float]:
    """``loss_weights`` for a multi-output model: 1.0 for the main output, ``aux_weight`` for the others.

    PSPNet: ``auxiliary_loss_weights(2)`` -> ``[1.0, 0.4]`` (main first, aux head second).
    Stacked hourglass / CPM intermediate supervision sums every stack with weight 1:
    ``auxiliary_loss_weights(n, aux_weight=1.0)`` (the final stack is the last output, ``main_index=-1``).

    Args:
        n_outputs: number of model outputs (>= 1).
        aux_weight: weight of each auxiliary output (>= 0). Defaults to 0.4.
        main_index: index of the main output; negative counts from the end. Defaults to 0.

    Returns:
        list of ``n_outputs`` floats.
    """
    if isinstance(n_outputs, bool) or int(n_outputs) != n_outputs or n_outputs < 1:
        raise ValueError(f"`n_outputs` must be an int >= 1. Received: n_outputs={n_outputs!r}")
    n = int(n_outputs)
    if not float(aux_weight) >= 0:
        raise ValueError(f"`aux_weight` must be >= 0. Received: aux_weight={aux_weight!r}")
    if not -n <= int(main_index) < n:
        raise ValueError(f"`main_index` must be in [-{n}, {n}). Received: main_index={main_index!r}")
    weights = [float(aux_weight)] * n
    weights[int(main_index)] = 1.0
    return weights
