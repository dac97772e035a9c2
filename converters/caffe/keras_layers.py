"""Keras layers for Caffe operations that Keras lacks, in ``keras.ops`` only: the structural ones (grouped
convolution, scale/bias, reshape, slice, tile) and the helpers; pointwise and reduction layers are in
:mod:`converters.caffe.keras_math`.

Registered serializable under package ``"kerazoo_caffe"``, so converted models load with
``keras.models.load_model(path, safe_mode=True)`` once :mod:`converters.caffe` is imported.

Layout: 4-D tensors are NHWC ``(B, H, W, C)``; tensors of any other rank keep Caffe's axis order.
Caffe axes are numbered NCHW; :func:`keras_axis` maps them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = [
    "keras_axis",
    "GroupedConv2D",
    "CaffeScale",
    "ScaleByBlob",
    "EltwiseSum",
    "CaffeReshape",
    "CaffeSlice",
    "CaffeBias",
    "BiasByBlob",
    "CaffeTile",
]

_register = keras.saving.register_keras_serializable(package="kerazoo_caffe")
_NCHW_TO_NHWC = (0, 3, 1, 2)  # index: Caffe axis, value: NHWC axis


def keras_axis(axis, rank):
    """Caffe axis (negative allowed) of a rank-``rank`` blob -> axis of the Keras tensor."""
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ValueError(f"axis {axis} is out of range for a {rank}-D blob")
    return _NCHW_TO_NHWC[a] if rank == 4 else a


def _to_caffe(x):
    return ops.transpose(x, (0, 3, 1, 2)) if len(x.shape) == 4 else x


def _from_caffe(x):
    return ops.transpose(x, (0, 2, 3, 1)) if len(x.shape) == 4 else x


def _index_dtype(dtype):
    """dtype of indices as Caffe's float tops: float32 for a 16-bit float ``dtype``, else ``dtype``."""
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _in_float32(x):
    """``(x, dtype)``: a float16/bfloat16 ``x`` in float32 (Caffe computes in float) and the dtype to cast
    the result back to; any other ``x`` unchanged."""
    dtype = x.dtype
    if keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16"):
        return ops.cast(x, "float32"), dtype
    return x, dtype


def _blob_like(x, s, axis):
    """Second bottom ``s`` (Caffe shape ``x.shape[axis : axis + s.ndim]``) broadcast against ``x`` in Keras layout."""
    rank, s_rank = len(x.shape), len(s.shape)
    s = _to_caffe(s) if s_rank == 4 else s
    caffe = [1] * axis + [-1 if (axis == 0 and i == 0) else d for i, d in enumerate(ops.shape(s))]
    caffe += [1] * (rank - len(caffe))
    s = ops.reshape(s, caffe)
    if rank == 4:
        s = ops.transpose(s, (0, 2, 3, 1))
    return ops.cast(s, x.dtype)


@_register
class GroupedConv2D(keras.layers.Conv2D):
    """``Conv2D`` with ``groups > 1`` that runs on every backend.

    Keras' own grouped ``Conv2D`` fails on TensorFlow's CPU kernels; this layer computes the same
    result as a depthwise convolution (``groups == input channels``) or as one convolution per
    group, concatenated (Caffe's group-major channel order). Kernel ``(kh, kw, I/g, O)`` as Keras'.
    """

    def convolution_op(self, inputs, kernel):
        g = self.groups
        kw = dict(strides=tuple(self.strides), padding=self.padding, dilation_rate=tuple(self.dilation_rate))
        if g == 1:
            return ops.conv(inputs, kernel, **kw)
        kh, kwd, c_in_g, c_out = kernel.shape
        if c_in_g == 1:  # depthwise: output channel c*m + j comes from input channel c, as in Caffe
            return ops.depthwise_conv(inputs, ops.reshape(kernel, (kh, kwd, g, c_out // g)), **kw)
        xs = ops.split(inputs, g, axis=-1)
        ks = ops.split(kernel, g, axis=-1)
        return ops.concatenate([ops.conv(x, k, **kw) for x, k in zip(xs, ks)], axis=-1)


@_register
class CaffeScale(keras.layers.Layer):
    """Caffe ``Scale`` with one bottom: ``y = x * scale (+ bias)``, broadcast Caffe-style.

    The weights have the shape of Caffe's blob, ``bottom.shape[axis : axis + num_axes]``
    (``(C,)`` for the usual per-channel case), and broadcast over the other axes.

    Args:
        weight_shape: Caffe blob shape, e.g. ``(C,)``.
        axis: Caffe (NCHW) axis where the blob's first dimension lines up. Defaults to 1.
        rank: rank of the bottom blob (4 for images).
        bias_term: add a learned bias of the same shape.
    """

    def __init__(self, weight_shape, axis=1, rank=4, bias_term=False, **kwargs):
        super().__init__(**kwargs)
        self.weight_shape = tuple(int(d) for d in weight_shape)
        self.axis, self.rank, self.bias_term = int(axis), int(rank), bool(bias_term)
        caffe = [1] * self.axis + list(self.weight_shape)
        self._caffe_bshape = caffe + [1] * (self.rank - len(caffe))

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=self.weight_shape, initializer="ones")
        if self.bias_term:
            self.bias = self.add_weight(name="bias", shape=self.weight_shape, initializer="zeros")

    def _broadcast(self, w, dtype):
        # The blob is in Caffe's axis order: a (C, H, W) blob must be transposed, not only reshaped.
        return _from_caffe(ops.reshape(ops.cast(w, dtype), self._caffe_bshape))

    def call(self, x):
        y = x * self._broadcast(self.scale, x.dtype)
        if self.bias_term:
            y = y + self._broadcast(self.bias, x.dtype)
        return y

    def get_config(self):
        return {**super().get_config(), "weight_shape": self.weight_shape, "axis": self.axis,
                "rank": self.rank, "bias_term": self.bias_term}


@_register
class ScaleByBlob(keras.layers.Layer):
    """Caffe ``Scale`` with two bottoms: ``x * s`` where ``s`` has the shape ``x.shape[axis:axis+k]``.

    Called as ``layer([x, s])``; ``axis`` is Caffe's (NCHW), e.g. SE blocks use ``axis: 0`` with
    ``s`` of shape ``(B, C)``.
    """

    def __init__(self, axis=1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, inputs):
        x, s = inputs
        return x * _blob_like(x, s, self.axis)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


@_register
class EltwiseSum(keras.layers.Layer):
    """Caffe ``Eltwise`` SUM with per-bottom ``coeff``: ``y = sum_i coeff_i * x_i``."""

    def __init__(self, coeffs, **kwargs):
        super().__init__(**kwargs)
        self.coeffs = tuple(float(c) for c in coeffs)

    def call(self, inputs):
        y = inputs[0] * self.coeffs[0]
        for c, x in zip(self.coeffs[1:], inputs[1:]):
            y = y + x * c
        return y

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "coeffs": self.coeffs}


@_register
class CaffeReshape(keras.layers.Layer):
    """Caffe ``Reshape``/``Flatten`` in Caffe's memory order (4-D blobs are NCHW in Caffe).

    The input is brought to Caffe order, reshaped, and a 4-D result is brought back to NHWC.

    Args:
        dims: Caffe ``reshape_param.shape.dim`` (``0`` copies the input dimension, ``-1`` is inferred;
            a leading ``1`` on the batch axis, as deploy nets of batch 1 write it, keeps the batch).
        axis, num_axes: the input axes replaced by ``dims`` (Caffe semantics; ``num_axes=-1``: all).
    A ``Flatten`` of axes ``[a, e]`` is ``dims=(-1,), axis=a, num_axes=e - a + 1``.
    """

    def __init__(self, dims, axis=0, num_axes=-1, **kwargs):
        super().__init__(**kwargs)
        self.dims, self.axis, self.num_axes = tuple(int(d) for d in dims), int(axis), int(num_axes)

    def _target(self, shape):
        """Caffe target shape; ``shape`` mixes ints (static) and scalar tensors (dynamic)."""
        rank = len(shape)
        a = self.axis + rank + 1 if self.axis < 0 else self.axis
        end = rank if self.num_axes == -1 else a + self.num_axes
        dims = self.dims
        if a == 0 and dims and dims[0] == 1:
            # Deploy nets declare batch 1; with Keras' batches an explicit 1 there means "per sample".
            dims = (0,) + dims[1:]
        mid = [shape[a + i] if d == 0 else d for i, d in enumerate(dims)]
        if -1 in dims:
            # A copied dimension (0) is on both sides, so it cancels: the inferred one is static
            # whenever the other replaced dimensions are, even with a dynamic batch size.
            # (reshape_layer.cpp: the bottom's count over the explicit, prefix, suffix and copied dims.)
            copied = {a + i for i, d in enumerate(dims) if d == 0}
            others = [shape[j] for j in range(a, end) if j not in copied]
            outside = [shape[j] for j in copied if j >= end]
            if all(isinstance(d, int) for d in others + outside):
                rest = int(np.prod([d for d in dims if d > 0] + outside))
                mid = [int(np.prod(others)) // rest if d == -1 else m for d, m in zip(dims, mid)]
        target = list(shape[:a]) + mid + list(shape[end:])
        # A dynamic batch size becomes -1, so every other dimension stays static.
        if target and not isinstance(target[0], int) and not any(isinstance(d, int) and d == -1 for d in target):
            target[0] = -1
        return target

    def call(self, x):
        xc = _to_caffe(x)
        dyn = ops.shape(xc)
        shape = [d if isinstance(d, int) else dyn[i] for i, d in enumerate(xc.shape)]
        return _from_caffe(ops.reshape(xc, self._target(shape)))

    def get_config(self):
        return {**super().get_config(), "dims": self.dims, "axis": self.axis, "num_axes": self.num_axes}


@_register
class CaffeSlice(keras.layers.Layer):
    """Caffe ``Slice``: split along Keras ``axis`` at ``points`` (Caffe ``slice_point``).

    Returns one tensor per part; ``points=()`` with ``parts=n`` splits into ``n`` equal parts.
    """

    def __init__(self, axis=-1, points=(), parts=None, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.points = int(axis), tuple(int(p) for p in points)
        self.parts = int(parts) if parts is not None else len(self.points) + 1

    def _bounds(self, size):
        """``(start, end)`` per part; ``None`` ends where ``size`` is unknown (a dynamic spatial axis)."""
        if self.points:
            cuts = (0,) + self.points + (size,)
        elif size is None:
            return [(None, None)] * self.parts
        else:
            step = size // self.parts
            cuts = tuple(i * step for i in range(self.parts + 1))
        return list(zip(cuts[:-1], cuts[1:]))

    def call(self, x):
        axis = self.axis % len(x.shape)
        if not self.points and x.shape[axis] is None:  # equal parts of a size known only at run time
            return list(ops.split(x, self.parts, axis=axis))
        outs = []
        for a, b in self._bounds(x.shape[axis]):
            index = [slice(None)] * len(x.shape)
            index[axis] = slice(a, b)
            outs.append(x[tuple(index)])
        return outs

    def compute_output_shape(self, input_shape):
        axis = self.axis % len(input_shape)
        shapes = []
        for a, b in self._bounds(input_shape[axis]):
            s = list(input_shape)
            s[axis] = None if a is None or b is None else b - a
            shapes.append(tuple(s))
        return shapes

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "points": self.points, "parts": self.parts}


@_register
class CaffeBias(keras.layers.Layer):
    """Caffe ``Bias`` with one bottom (bias_layer.cpp): ``y = x + b``, broadcast Caffe-style.

    Args:
        weight_shape: Caffe blob shape ``bottom.shape[axis : axis + num_axes]``, e.g. ``(C,)``; ``()``
            for a scalar bias (``num_axes: 0``).
        axis: Caffe (NCHW) axis where the blob's first dimension lines up. Defaults to 1.
        rank: rank of the bottom blob (4 for images).
    """

    def __init__(self, weight_shape, axis=1, rank=4, **kwargs):
        super().__init__(**kwargs)
        self.weight_shape = tuple(int(d) for d in weight_shape)
        self.axis, self.rank = int(axis), int(rank)
        caffe = [1] * self.axis + list(self.weight_shape)
        self._caffe_bshape = caffe + [1] * (self.rank - len(caffe))

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=self.weight_shape, initializer="zeros")

    def call(self, x):
        return x + _from_caffe(ops.reshape(ops.cast(self.bias, x.dtype), self._caffe_bshape))

    def get_config(self):
        return {**super().get_config(), "weight_shape": self.weight_shape, "axis": self.axis, "rank": self.rank}


@_register
class BiasByBlob(ScaleByBlob):
    """Caffe ``Bias`` with two bottoms: ``x + b`` where ``b`` has the shape ``x.shape[axis:axis+k]``.

    Called as ``layer([x, b])``; ``axis`` is Caffe's (NCHW).
    """

    def call(self, inputs):
        x, b = inputs
        return x + _blob_like(x, b, self.axis)


@_register
class CaffeTile(keras.layers.Layer):
    """Caffe ``Tile`` (tile_layer.cpp): ``tiles`` copies of the blob one after another along one axis.

    Caffe copies the whole block from ``axis`` on, ``tiles`` times per outer index, which is
    concatenation along ``axis`` whatever the layout; ``axis`` here is the Keras axis.
    """

    def __init__(self, axis=-1, tiles=1, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.tiles = int(axis), int(tiles)

    def call(self, x):
        reps = [1] * len(x.shape)
        reps[self.axis % len(x.shape)] = self.tiles
        return ops.tile(x, reps)

    def compute_output_shape(self, input_shape):
        s = list(input_shape)
        a = self.axis % len(s)
        s[a] = None if s[a] is None else s[a] * self.tiles
        return tuple(s)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "tiles": self.tiles}
