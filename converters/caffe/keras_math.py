"""Pointwise and reduction layers for Caffe operations that Keras lacks, in ``keras.ops`` only.

Split from :mod:`converters.caffe.keras_layers` (structural layers: grouped convolution, scale/bias,
reshape, slice, tile), whose conventions these follow: registered serializable under package
``"kerazoo_caffe"``, 4-D tensors NHWC, other ranks in Caffe's axis order, and 16-bit inputs computed
in float32 where Caffe's float arithmetic would otherwise overflow or round.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from converters.caffe.keras_layers import _from_caffe, _in_float32, _index_dtype, _register, _to_caffe

__all__ = [
    "BatchStatsNorm",
    "AbsVal",
    "CaffePower",
    "CaffeExp",
    "CaffeLog",
    "CaffeLRN",
    "CaffeReLU",
    "CaffeThreshold",
    "CaffeClip",
    "CaffeSwish",
    "CaffeReduction",
    "CaffeMVN",
    "CaffeArgMax",
]


@_register
class BatchStatsNorm(keras.layers.Layer):
    """Caffe ``BatchNorm`` with ``use_global_stats: false``: ``(x - mean) / sqrt(var + epsilon)`` with the
    batch's own per-channel mean and biased variance, over the batch and every non-channel axis
    (batch_norm_layer.cpp, ``var(X) = E((X - EX)^2)``). No weights: the stored statistics are not used.
    Computed in float32 for a float16/bfloat16 input (Caffe's float), then cast back.

    Args:
        axis: channel axis of the Keras tensor (``-1`` for NHWC images, ``1`` for ``(N, C, ...)`` blobs).
        epsilon: ``batch_norm_param.eps``, added to the variance.
    """

    def __init__(self, axis=-1, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.epsilon = int(axis), float(epsilon)

    def call(self, x):
        channel = self.axis % len(x.shape)
        axes = [a for a in range(len(x.shape)) if a != channel]
        dtype = x.dtype
        if keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16"):
            # As Keras' own normalization layers: float32 statistics. In float16 a deviation of 256 squares
            # to inf (65504 is the largest value), so the variance was inf and every output 0.
            x = ops.cast(x, "float32")
        centred = x - ops.mean(x, axis=axes, keepdims=True)
        var = ops.mean(centred * centred, axis=axes, keepdims=True)
        return ops.cast(centred / ops.sqrt(var + self.epsilon), dtype)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}


@_register
class AbsVal(keras.layers.Layer):
    """Caffe ``AbsVal``: ``|x|``."""

    def call(self, x):
        return ops.abs(x)


@_register
class CaffePower(keras.layers.Layer):
    """Caffe ``Power``: ``(shift + scale * x) ** power``, in float32 for a float16/bfloat16 input, then cast
    back: ``shift + scale * x`` may be past float16's 65504 where the result is not (``power < 1``)."""

    def __init__(self, power=1.0, scale=1.0, shift=0.0, **kwargs):
        super().__init__(**kwargs)
        self.power, self.scale, self.shift = float(power), float(scale), float(shift)

    def call(self, x):
        if (self.power, self.scale, self.shift) == (1.0, 1.0, 0.0):
            return x
        x, dtype = _in_float32(x)
        y = x * self.scale + self.shift if (self.scale, self.shift) != (1.0, 0.0) else x
        if self.power == 2.0:
            y = y * y
        elif self.power != 1.0:
            y = ops.power(y, self.power)
        return ops.cast(y, dtype)

    def get_config(self):
        return {**super().get_config(), "power": self.power, "scale": self.scale, "shift": self.shift}


@_register
class CaffeExp(keras.layers.Layer):
    """Caffe ``Exp``: ``base ** (shift + scale * x)``; ``base = -1`` means e. In float32 for a float16/bfloat16
    input, then cast back: a float16 exponent near 10 is off by up to 0.004, 0.3% of the result."""

    def __init__(self, base=-1.0, scale=1.0, shift=0.0, **kwargs):
        super().__init__(**kwargs)
        self.base, self.scale, self.shift = float(base), float(scale), float(shift)

    def call(self, x):
        import math

        log_base = 1.0 if self.base == -1.0 else math.log(self.base)
        x, dtype = _in_float32(x)
        return ops.cast(ops.exp((x * self.scale + self.shift) * log_base), dtype)

    def get_config(self):
        return {**super().get_config(), "base": self.base, "scale": self.scale, "shift": self.shift}


@_register
class CaffeLog(keras.layers.Layer):
    """Caffe ``Log``: ``log_base(shift + scale * x)``; ``base = -1`` means e. In float32 for a float16/bfloat16
    input, then cast back: in float16 ``1 + x`` drops ``x`` below 0.0005 (log 0), and ``scale * x`` may
    be past 65504 where its log is not."""

    def __init__(self, base=-1.0, scale=1.0, shift=0.0, **kwargs):
        super().__init__(**kwargs)
        self.base, self.scale, self.shift = float(base), float(scale), float(shift)

    def call(self, x):
        import math

        x, dtype = _in_float32(x)
        y = ops.log(x * self.scale + self.shift)
        return ops.cast(y if self.base == -1.0 else y / math.log(self.base), dtype)

    def get_config(self):
        return {**super().get_config(), "base": self.base, "scale": self.scale, "shift": self.shift}


@_register
class CaffeLRN(keras.layers.Layer):
    """Caffe ``LRN`` (``lrn_layer.cpp``) on NHWC input ``(B, H, W, C)``.

    ACROSS_CHANNELS: ``y = x * (k + alpha / n * sum_{n channels around c} x^2) ** -beta``, zero
    padded at the channel ends. WITHIN_CHANNEL: ``y = x * (1 + alpha / n^2 * sum_{n x n window}
    x^2) ** -beta`` with zero padding ``(n - 1) / 2`` (padding counts in Caffe's AVE divisor, so
    the divisor is always ``n^2``; ``k`` is not used). In float32 for a float16/bfloat16 input, then cast back.
    """

    def __init__(self, local_size=5, alpha=1.0, beta=0.75, k=1.0, region="across", **kwargs):
        super().__init__(**kwargs)
        if region not in ("across", "within"):
            raise ValueError(f"`region` must be 'across' or 'within'. Received: region={region!r}")
        if local_size % 2 == 0:
            raise ValueError(f"LRN needs an odd local_size. Received: local_size={local_size}")
        self.local_size, self.alpha, self.beta, self.k = int(local_size), float(alpha), float(beta), float(k)
        self.region = region

    def call(self, x):
        n, p = self.local_size, (self.local_size - 1) // 2
        dtype = x.dtype
        if keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16"):
            # Caffe sums the squares in float: in float16 an activation of 256 squares to inf (AlexNet's
            # conv1 outputs reach hundreds), so the scale was inf and the output 0.
            x = ops.cast(x, "float32")
        sq = x * x
        if self.region == "across":
            c = x.shape[-1]
            padded = ops.pad(sq, [[0, 0]] * (len(x.shape) - 1) + [[p, p]])
            s = padded[..., 0:c]
            for i in range(1, n):
                s = s + padded[..., i:i + c]
            scale = self.k + (self.alpha / n) * s
        else:
            padded = ops.pad(sq, [[0, 0], [p, p], [p, p], [0, 0]])
            s = ops.average_pool(padded, (n, n), (1, 1), padding="valid")  # sum / n^2
            scale = 1.0 + self.alpha * s
        return ops.cast(x * ops.power(scale, -self.beta), dtype)

    def get_config(self):
        return {**super().get_config(), "local_size": self.local_size, "alpha": self.alpha,
                "beta": self.beta, "k": self.k, "region": self.region}


@_register
class CaffeReLU(keras.layers.Layer):
    """Caffe ``ReLU`` with any ``negative_slope`` (relu_layer.cpp): ``max(x, 0) + negative_slope * min(x, 0)``.

    For negative slopes, which Keras' ``ReLU`` and ``LeakyReLU`` refuse.
    """

    def __init__(self, negative_slope=0.0, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope)

    def call(self, x):
        zero = ops.zeros((), x.dtype)
        return ops.maximum(x, zero) + ops.cast(self.negative_slope, x.dtype) * ops.minimum(x, zero)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


@_register
class CaffeThreshold(keras.layers.Layer):
    """Caffe ``Threshold``: ``1`` where ``x > threshold``, else ``0`` (NaN gives 0), in ``x``'s dtype."""

    def __init__(self, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.threshold = float(threshold)

    def call(self, x):
        return ops.cast(ops.greater(x, self.threshold), x.dtype)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@_register
class CaffeClip(keras.layers.Layer):
    """Caffe ``Clip`` (clip_layer.cpp): ``std::max(min, std::min(x, max))``.

    Written with the two comparisons of ``std::min``/``std::max`` so that NaN gives ``min`` as in
    Caffe (``min < NaN`` is false), and ``min > max`` gives ``min`` everywhere.
    """

    def __init__(self, min=0.0, max=0.0, **kwargs):  # noqa: A002 - Caffe's field names
        super().__init__(**kwargs)
        self.min, self.max = float(min), float(max)

    def call(self, x):
        upper = ops.where(ops.less(self.max, x), ops.cast(self.max, x.dtype), x)  # std::min(x, max)
        return ops.where(ops.less(self.min, upper), upper, ops.cast(self.min, x.dtype))  # std::max(min, .)

    def get_config(self):
        return {**super().get_config(), "min": self.min, "max": self.max}


@_register
class CaffeSwish(keras.layers.Layer):
    """Caffe ``Swish`` (swish_layer.cpp): ``x * sigmoid(beta * x)``."""

    def __init__(self, beta=1.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)

    def call(self, x):
        return x * ops.sigmoid(x * self.beta if self.beta != 1.0 else x)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@_register
class CaffeReduction(keras.layers.Layer):
    """Caffe ``Reduction`` (reduction_layer.cpp) over every Caffe axis from ``axis`` on.

    ``SUM``: sum x, ``ASUM``: sum |x|, ``SUMSQ``: sum x^2, ``MEAN``: sum x / count; times ``coeff``
    (in float32 for a float16/bfloat16 input, as Caffe's float, then cast back).
    The top keeps Caffe's axes ``[0, axis)`` in Caffe order (a 4-D input reduced from axis 2 gives
    ``(B, C)``, from axis 3 ``(B, C, H)``).

    Args:
        operation: ``"SUM"``, ``"ASUM"``, ``"SUMSQ"`` or ``"MEAN"``.
        axis: Caffe (NCHW) axis, >= 1 (the batch axis is not reduced).
        coeff: scale of the result.
    """

    def __init__(self, operation="SUM", axis=1, coeff=1.0, **kwargs):
        super().__init__(**kwargs)
        if operation not in ("SUM", "ASUM", "SUMSQ", "MEAN"):
            raise ValueError(f"`operation` must be SUM, ASUM, SUMSQ or MEAN. Received: operation={operation!r}")
        self.operation, self.axis, self.coeff = operation, int(axis), float(coeff)

    def call(self, x):
        xc = _to_caffe(x)
        if keras.backend.standardize_dtype(x.dtype) in ("float16", "bfloat16"):
            # Caffe sums in float before the coeff: a float16 sum of squares ends at 65504 (inf).
            xc = ops.cast(xc, "float32")
        axes = tuple(range(self.axis, len(xc.shape)))
        if self.operation == "ASUM":
            xc = ops.abs(xc)
        elif self.operation == "SUMSQ":
            xc = xc * xc
        y = ops.mean(xc, axis=axes) if self.operation == "MEAN" else ops.sum(xc, axis=axes)
        return ops.cast(y * self.coeff if self.coeff != 1.0 else y, x.dtype)

    def compute_output_shape(self, input_shape):
        s = list(input_shape)
        if len(s) == 4:
            s = [s[0], s[3], s[1], s[2]]
        return tuple(s[:self.axis])

    def get_config(self):
        return {**super().get_config(), "operation": self.operation, "axis": self.axis, "coeff": self.coeff}


@_register
class CaffeMVN(keras.layers.Layer):
    """Caffe ``MVN`` (mvn_layer.cpp): ``y = x - E[x]``, then with ``normalize_variance``
    ``y / (sqrt(E[y^2]) + eps)``: eps is added to the standard deviation, not to the variance.

    The statistics are per sample and channel over every later Caffe axis (H and W of an image), or per
    sample over all of them with ``across_channels``. The top is always 4-D, as Caffe's
    ``top->Reshape(num(), channels(), height(), width())``: a ``(N, C)`` bottom gives NHWC ``(N, 1, 1, C)``
    (Caffe ``(N, C, 1, 1)``), a ``(N, C, H)`` one ``(N, H, 1, C)``; without ``across_channels`` such a
    ``(N, C)`` blob has one value per statistic, so its output is 0.
    """

    def __init__(self, normalize_variance=True, across_channels=False, eps=1e-9, **kwargs):
        super().__init__(**kwargs)
        self.normalize_variance, self.across_channels = bool(normalize_variance), bool(across_channels)
        self.eps = float(eps)

    def call(self, x):
        if len(x.shape) < 4:  # Caffe order, to the legacy (N, C, H, W) with trailing 1s, then NHWC
            for _ in range(4 - len(x.shape)):
                x = ops.expand_dims(x, -1)
            x = _from_caffe(x)
        dtype = x.dtype
        if keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16"):
            # As Keras' own normalization layers: float32 statistics. eps = 1e-9 is 0 in float16, so a
            # constant channel (a dead ReLU) would be 0 / 0 = NaN where Caffe gives 0.
            x = ops.cast(x, "float32")
        axes = (1, 2, 3) if self.across_channels else (1, 2)  # NHWC: (H, W, C) or (H, W)
        centred = x - ops.mean(x, axis=axes, keepdims=True)
        if self.normalize_variance:
            var = ops.mean(centred * centred, axis=axes, keepdims=True)
            centred = centred / (ops.sqrt(var) + self.eps)
        return ops.cast(centred, dtype)

    def get_config(self):
        return {**super().get_config(), "normalize_variance": self.normalize_variance,
                "across_channels": self.across_channels, "eps": self.eps}


@_register
class CaffeArgMax(keras.layers.Layer):
    """Caffe ``ArgMax`` (argmax_layer.cpp): the ``top_k`` largest values' indices (as floats) or values.

    Order as Caffe's ``std::partial_sort`` with ``std::greater`` on ``(value, index)`` pairs: by value,
    descending, and equal values by index, descending (a tie goes to the last index, not the first).

    With ``axis`` (a Caffe axis >= 1): the top has the bottom's shape with ``top_k`` on that axis and
    holds indices, or values when ``out_max_val``. Without: each sample is flattened in Caffe's
    (C, H, W) order; the top is ``(N, 1, top_k)`` of indices, or ``(N, 2, top_k)`` of indices then
    values with ``out_max_val``, padded with 1s to the bottom's rank (at least 3): 4-D tops are NHWC
    ``(N, top_k, 1, 1 or 2)`` as every 4-D tensor here.

    NaN inputs: Caffe's comparison sort is undefined for them; so is this layer's result.

    dtype: a top holding indices is float32 when the input is float16 or bfloat16 (Caffe's float top
    holds every index exactly; bfloat16 only up to 256, float16 up to 2048), else the input's dtype.
    """

    def __init__(self, top_k=1, out_max_val=False, axis=None, **kwargs):
        super().__init__(**kwargs)
        self.top_k, self.out_max_val = int(top_k), bool(out_max_val)
        self.axis = None if axis is None else int(axis)

    def _top_k(self, v):
        """(indices, values) of the ``top_k`` largest entries of ``v`` along its last axis, Caffe's order."""
        dim = v.shape[-1]
        index = ops.arange(dim, dtype="int32")
        taken = ops.zeros_like(v, dtype="bool")
        neg_inf = ops.cast(float("-inf"), v.dtype)
        idx, vals = [], []
        for _ in range(self.top_k):
            left = ops.where(taken, neg_inf, v)
            m = ops.max(left, axis=-1, keepdims=True)
            hit = ops.logical_and(ops.equal(left, m), ops.logical_not(taken))
            i = ops.max(ops.where(hit, index, -1), axis=-1, keepdims=True)  # the last of equal values
            taken = ops.logical_or(taken, ops.equal(index, i))
            idx.append(i)
            vals.append(m)
        return ops.cast(ops.concatenate(idx, axis=-1), _index_dtype(v.dtype)), ops.concatenate(vals, axis=-1)

    def call(self, x):
        xc = _to_caffe(x)
        rank = len(xc.shape)
        if self.axis is not None:
            moved = ops.moveaxis(xc, self.axis, -1)
            idx, vals = self._top_k(moved)
            return _from_caffe(ops.moveaxis(vals if self.out_max_val else idx, -1, self.axis))
        flat = ops.reshape(xc, (-1, int(np.prod(xc.shape[1:]))))
        idx, vals = self._top_k(flat)
        parts = [idx, ops.cast(vals, idx.dtype)] if self.out_max_val else [idx]  # 16-bit values: exact
        y = ops.stack(parts, axis=1)  # (N, 1 or 2, top_k)
        y = ops.reshape(y, (-1, len(parts), self.top_k) + (1,) * (max(rank, 3) - 3))
        return _from_caffe(y)

    def compute_output_shape(self, input_shape):
        s = list(input_shape)
        rank = len(s)
        if rank == 4:
            s = [s[0], s[3], s[1], s[2]]
        if self.axis is not None:
            s[self.axis] = self.top_k
        else:
            s = [s[0], 2 if self.out_max_val else 1, self.top_k] + [1] * (max(rank, 3) - 3)
        if len(s) == 4:
            s = [s[0], s[2], s[3], s[1]]
        return tuple(s)

    def compute_output_spec(self, x):
        dtype = x.dtype if self.axis is not None and self.out_max_val else _index_dtype(x.dtype)
        return keras.KerasTensor(self.compute_output_shape(x.shape), dtype=dtype)

    def get_config(self):
        return {**super().get_config(), "top_k": self.top_k, "out_max_val": self.out_max_val, "axis": self.axis}
