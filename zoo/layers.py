"""Layers that reproduce Caffe's arithmetic exactly, written with ``keras.ops`` only.

All layers are channels-last (NHWC), registered serializable (package ``"zoo"``) so models that use
them load with ``keras.models.load_model(path, safe_mode=True)``, and accept unknown spatial sizes
(``None``) on TensorFlow: sizes are read from the live tensor.

Conventions: ``H, W`` are input heights/widths, ``k`` kernel, ``s`` stride, ``p`` padding, all in
pixels of the layer's input.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from zoo.errors import InputShapeError

__all__ = [
    "caffe_pool_output_size",
    "CaffePooling2D",
    "InterpAlignCorners",
    "CropToReference",
    "ChannelScale",
    "BilinearKernel",
    "Normalize",
    "interp_output_size",
]

_register = keras.saving.register_keras_serializable(package="zoo")


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f"`{name}` must be an int or a pair of ints. Received: {name}={v}")
    return v


def _is_static(*vals):
    return all(isinstance(v, (int, np.integer)) for v in vals)


def caffe_pool_output_size(size, kernel, stride, pad, ceil_mode=True, padded=None):
    """Caffe's pooling output size along one axis (``pooling_layer.cpp``).

    ``o = ceil((size + 2p - k) / s) + 1`` (floor with ``ceil_mode=False``); when the layer pads at
    all and the last window would start at or beyond ``size + p``, it is dropped. ``padded``: whether
    the layer pads on either axis (Caffe tests ``pad_h || pad_w`` for both axes, which matters with
    stride > kernel); default ``pad > 0``. Works on Python ints and on integer tensors.
    """
    num = size + 2 * pad - kernel
    o = (-((-num) // stride) if ceil_mode else num // stride) + 1
    if (pad > 0) if padded is None else padded:
        if _is_static(o, size):
            if (o - 1) * stride >= size + pad:
                o -= 1
        else:
            o = o - ops.cast((o - 1) * stride >= size + pad, o.dtype)
    return o


#: AVE windows of at least this many pixels are computed with window matrices (CaffePooling2D._large_window_average).
_LARGE_WINDOW = 64


def _window_matrix(size, out, kernel, stride, pad, dtype):
    """``(out, size)`` 0/1 matrix: row ``o`` marks the input pixels of Caffe window ``o`` (padding excluded)."""
    if _is_static(size, out):
        m = np.zeros((out, size), np.float32)
        for o in range(out):
            start = o * stride - pad
            m[o, max(start, 0):min(start + kernel, size)] = 1.0
        return ops.convert_to_tensor(m, dtype=dtype)
    i = ops.expand_dims(ops.arange(size), 0)
    start = ops.expand_dims(ops.arange(out) * stride - pad, 1)
    return ops.cast((i >= start) & (i < start + kernel), dtype)


def _maximum0(v):
    return max(v, 0) if _is_static(v) else ops.maximum(v, 0)


def _at_least1(v):
    return max(v, 1) if _is_static(v) else ops.maximum(v, 1)


@_register
class CaffePooling2D(keras.layers.Layer):
    """Caffe ``Pooling`` (MAX or AVE) with Caffe's rounding, window clipping and average divisor.

    - Output size from :func:`caffe_pool_output_size` (ceil by default: 112 -> 56 for 3x3/2).
    - MAX: padding never wins (windows are clipped to the image).
    - AVE: the sum over the window divided by the window's extent clipped to ``[-p, H + p)``:
      padding inside that range counts in the divisor, the ceil overhang beyond it does not.

    Args:
        mode: ``"max"`` or ``"ave"``.
        pool_size, strides, padding: ints or ``(h, w)`` pairs (Caffe ``kernel_size``, ``stride``, ``pad``).
        ceil_mode: Caffe ``round_mode: CEIL`` (True, default) or ``FLOOR``.
        global_pooling: pool the whole map (kernel = H x W, stride 1, pad 0); output 1x1.

    Input shape ``(B, H, W, C)``; output ``(B, Ho, Wo, C)``.
    """

    def __init__(self, mode="max", pool_size=2, strides=None, padding=0, ceil_mode=True,
                 global_pooling=False, **kwargs):
        super().__init__(**kwargs)
        mode = mode.lower()
        if mode not in ("max", "ave"):
            raise ValueError(f"`mode` must be 'max' or 'ave'. Received: mode={mode!r}")
        self.mode = mode
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = _pair(strides if strides is not None else pool_size, "strides")
        self.padding = _pair(padding, "padding")
        self.ceil_mode = bool(ceil_mode)
        self.global_pooling = bool(global_pooling)
        if not global_pooling and any(p >= k for p, k in zip(self.padding, self.pool_size)):
            raise ValueError(
                f"Caffe requires pad < kernel. Received: padding={self.padding}, pool_size={self.pool_size}"
            )

    def _geometry(self, h, w):
        if self.global_pooling:
            return (h, w), (1, 1), (0, 0)
        return self.pool_size, self.strides, self.padding

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        if self.global_pooling:
            return (b, 1, 1, c)
        (kh, kw), (sh, sw), (ph, pw) = self._geometry(h, w)
        padded = ph > 0 or pw > 0
        oh = None if h is None else caffe_pool_output_size(h, kh, sh, ph, self.ceil_mode, padded)
        ow = None if w is None else caffe_pool_output_size(w, kw, sw, pw, self.ceil_mode, padded)
        return (b, oh, ow, c)

    def call(self, x, training=None):
        dtype = keras.backend.standardize_dtype(x.dtype)
        if self.mode == "ave" and dtype in ("float16", "bfloat16"):
            # Sum in float32 as Caffe: a float16 window sum overflows (30x30 pixels of 73 > 65504) and
            # JAX's bfloat16 reduce_window keeps ~2 digits (30% off on a 30x30 window).
            return ops.cast(self.call(ops.cast(x, "float32"), training), dtype)
        shape = ops.shape(x)
        h, w = shape[1], shape[2]
        if self.global_pooling:
            fn = ops.max if self.mode == "max" else ops.mean
            return fn(x, axis=(1, 2), keepdims=True)
        (kh, kw), (sh, sw), (ph, pw) = self._geometry(h, w)
        padded = ph > 0 or pw > 0
        oh = caffe_pool_output_size(h, kh, sh, ph, self.ceil_mode, padded)
        ow = caffe_pool_output_size(w, kw, sw, pw, self.ceil_mode, padded)
        if _is_static(oh, ow) and (oh < 1 or ow < 1):
            raise InputShapeError(
                f"{self.name}: a {h}x{w} feature map (height x width) is smaller than one {kh}x{kw} pooling window "
                f"(stride {sh}x{sw}, pad {ph}x{pw}): Caffe's output would be {oh}x{ow}; the model needs a larger "
                f"input image.")
        if training and self.mode == "ave" and kh * kw >= _LARGE_WINDOW:
            return self._large_window_average(x, h, w, oh, ow, kh, kw, sh, sw, ph, pw)
        # Pad so that every Caffe window fits, and at least one does: TensorFlow's MaxPool kills the process
        # (SIGFPE) on a map smaller than its window, which a relaxed trace (sizes unknown) can feed it; the
        # output is then empty. Slice off windows Keras' floor adds beyond Caffe's.
        eh = _maximum0((_at_least1(oh) - 1) * sh + kh - (h + 2 * ph))
        ew = _maximum0((_at_least1(ow) - 1) * sw + kw - (w + 2 * pw))
        # MAX: Caffe starts from -FLT_MAX, which is what a window past the image (stride > kernel) gives
        fill = 0.0 if self.mode == "ave" else -3.4028234663852886e38 if dtype in ("float32", "float64") else -np.inf
        if not (_is_static(eh, ew) and ph == pw == eh == ew == 0):
            x = ops.pad(x, [[0, 0], [ph, ph + eh], [pw, pw + ew], [0, 0]], constant_values=fill)
        if self.mode == "max":
            y = ops.max_pool(x, (kh, kw), (sh, sw), padding="valid")
        else:
            y = ops.average_pool(x, (kh, kw), (sh, sw), padding="valid") * float(kh * kw)
        y = y[:, :_maximum0(oh), :_maximum0(ow), :]
        if self.mode == "ave":
            y = y / self._divisor(h, w, oh, ow, kh, kw, sh, sw, ph, pw, y.dtype)
        return y

    def _large_window_average(self, x, h, w, oh, ow, kh, kw, sh, sw, ph, pw):
        """Training AVE pooling for windows >= 64 pixels: a reshape and a sum where the windows tile the
        map (PSPNet's pyramid), else ``S_h . x . S_w^T`` with 0/1 window matrices.

        ``reduce_window``'s gradient sums a whole window for every input pixel, quadratic in the
        window: PSPNet's pyramid (60/30/20/10 on a 60x60 map) spent 17 s in the 30x30 pool's
        gradient for a batch of 8 on 2 CPU cores, 20 ms this way. Inference keeps
        ``reduce_window``, whose values do not depend on how the backend lowers a matrix product
        (a saved and reloaded model gives bit-identical outputs); the two agree to float rounding.
        ``x`` is never 16-bit here (``call`` upcasts), so the sums keep float32 precision.
        """
        c = x.shape[-1]
        if (kh, kw) == (sh, sw) and ph == pw == 0 and c is not None and _is_static(h, w) \
                and (oh * kh, ow * kw) == (h, w):  # windows tile the map: a reshape and a sum, no transposes
            return ops.sum(ops.reshape(x, (-1, oh, kh, ow, kw, c)), axis=(2, 4)) / float(kh * kw)
        s_h = _window_matrix(h, oh, kh, sh, ph, x.dtype)
        s_w = _window_matrix(w, ow, kw, sw, pw, x.dtype)
        y = ops.einsum("ph,bhqc->bpqc", s_h, ops.einsum("qw,bhwc->bhqc", s_w, x))
        return y / self._divisor(h, w, oh, ow, kh, kw, sh, sw, ph, pw, y.dtype)

    @staticmethod
    def _divisor(h, w, oh, ow, kh, kw, sh, sw, ph, pw, dtype):
        def axis(size, o, k, s, p):
            if _is_static(size, o):
                start = np.arange(o) * s - p
                return np.minimum(start + k, size + p) - start
            start = ops.arange(o) * s - p
            return ops.minimum(start + k, size + p) - start

        dh, dw = axis(h, oh, kh, sh, ph), axis(w, ow, kw, sw, pw)
        if isinstance(dh, np.ndarray) and isinstance(dw, np.ndarray):
            return ops.convert_to_tensor(np.outer(dh, dw)[None, :, :, None], dtype=dtype)
        d = ops.cast(ops.reshape(dh, (-1, 1)) * ops.reshape(dw, (1, -1)), dtype)
        return ops.reshape(d, (1, ops.shape(d)[0], ops.shape(d)[1], 1))

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "ceil_mode": self.ceil_mode,
            "global_pooling": self.global_pooling,
        }


def interp_output_size(size, zoom_factor=None, shrink_factor=None, pad_beg=0, pad_end=0):
    """Caffe ``Interp`` output size along one axis (PSPNet/DeepLab fork).

    ``size + pad_beg + pad_end`` (pads <= 0 crop), then shrink ``(n - 1) // s + 1``, then zoom
    ``n + (n - 1) * (z - 1)``.
    """
    n = size + pad_beg + pad_end
    if shrink_factor is not None:
        n = (n - 1) // shrink_factor + 1
    if zoom_factor is not None:
        n = n + (n - 1) * (zoom_factor - 1)
    return n


def _align_corners_matrix(n_in, n_out, dtype):
    """(n_out, n_in) matrix of Caffe's ``caffe_cpu_interp2`` weights, float32 arithmetic as in C++."""
    if _is_static(n_in, n_out):
        r = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0.0)
        src = np.arange(n_out, dtype=np.float32) * r
        lo = np.floor(src).astype(np.int64)
        lam = (src - lo.astype(np.float32)).astype(np.float32)
        hi = lo + (lo < n_in - 1)
        a = np.zeros((n_out, n_in), np.float32)
        np.add.at(a, (np.arange(n_out), lo), 1.0 - lam)
        np.add.at(a, (np.arange(n_out), hi), lam)
        return ops.convert_to_tensor(a, dtype=dtype)
    n_in_f = ops.cast(n_in, "float32")
    n_out_f = ops.cast(n_out, "float32")
    r = ops.where(n_out > 1, (n_in_f - 1.0) / ops.maximum(n_out_f - 1.0, 1.0), 0.0)
    src = ops.cast(ops.arange(n_out), "float32") * r
    lo = ops.cast(ops.floor(src), "int32")
    lam = src - ops.cast(lo, "float32")
    hi = lo + ops.cast(lo < n_in - 1, "int32")
    a = ops.one_hot(lo, n_in) * (1.0 - lam)[:, None] + ops.one_hot(hi, n_in) * lam[:, None]
    return ops.cast(a, dtype)


@_register
class InterpAlignCorners(keras.layers.Layer):
    """Bilinear resize with align-corners semantics, exactly as Caffe's ``Interp`` layer.

    ``keras.ops.image.resize`` is half-pixel (align_corners=False) and differs by up to 2.7 on a
    60 -> 473 upsampling; this layer builds Caffe's interpolation matrices ``A_h`` (Ho x H) and
    ``A_w`` (Wo x W) and computes ``A_h . x . A_w^T``.

    The output size is, in order of precedence: the spatial size of a second input (called as
    ``layer([x, reference])``), ``size=(Ho, Wo)``, or Caffe's ``zoom_factor``/``shrink_factor``.
    ``pad_beg``/``pad_end`` (<= 0) crop the input first, as in Caffe.

    Input ``(B, H, W, C)``; output ``(B, Ho, Wo, C)``.
    """

    def __init__(self, size=None, zoom_factor=None, shrink_factor=None, pad_beg=0, pad_end=0, **kwargs):
        super().__init__(**kwargs)
        self.size = None if size is None else _pair(size, "size")
        self.zoom_factor = zoom_factor
        self.shrink_factor = shrink_factor
        if pad_beg > 0 or pad_end > 0:
            raise ValueError(f"Interp pad_beg/pad_end must be <= 0. Received: {pad_beg}, {pad_end}")
        self.pad_beg, self.pad_end = int(pad_beg), int(pad_end)

    def _out_size(self, h, w, ref_shape=None):
        if ref_shape is not None:
            return ref_shape[1], ref_shape[2]
        if self.size is not None:
            return self.size
        args = (self.zoom_factor, self.shrink_factor, self.pad_beg, self.pad_end)
        oh = None if h is None else interp_output_size(h, *args)
        ow = None if w is None else interp_output_size(w, *args)
        return oh, ow

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            x_shape, ref = input_shape[0], input_shape[1]
        else:
            x_shape, ref = input_shape, None
        oh, ow = self._out_size(x_shape[1], x_shape[2], ref)
        return (x_shape[0], oh, ow, x_shape[3])

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            x, ref = inputs
            ref_shape = ops.shape(ref)
        else:
            x, ref_shape = inputs, None
        oh, ow = self._out_size(ops.shape(x)[1], ops.shape(x)[2], ref_shape)  # the pads count in here
        if self.pad_beg or self.pad_end:
            end_h = ops.shape(x)[1] + self.pad_end
            end_w = ops.shape(x)[2] + self.pad_end
            x = x[:, -self.pad_beg:end_h, -self.pad_beg:end_w, :]
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        if _is_static(h, w, oh, ow) and (h, w) == (oh, ow):
            return x
        a_h = _align_corners_matrix(h, oh, x.dtype)
        a_w = _align_corners_matrix(w, ow, x.dtype)
        y = ops.einsum("oh,bhwc->bowc", a_h, x)
        return ops.einsum("pw,bowc->bopc", a_w, y)

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "zoom_factor": self.zoom_factor,
            "shrink_factor": self.shrink_factor,
            "pad_beg": self.pad_beg,
            "pad_end": self.pad_end,
        }


# Caffe NCHW axis -> NHWC axis.
_NCHW_TO_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}


@_register
class CropToReference(keras.layers.Layer):
    """Caffe ``Crop``: cut ``x`` to the size of ``reference`` starting at fixed offsets.

    Called as ``layer([x, reference])``. Follows ``crop_layer.cpp``: every axis from ``axis`` on
    (Caffe NCHW numbering, default 2 = height) takes the reference's size, starting at ``offset``
    from the top-left (not centred). One offset applies to all those axes; otherwise one per axis.
    The reference size is read from the live tensor, so any input size works.
    """

    def __init__(self, axis=2, offset=(0,), **kwargs):
        super().__init__(**kwargs)
        if axis < 0:
            axis += 4
        if axis not in (0, 1, 2, 3):
            raise ValueError(f"Crop `axis` must be in [0, 3] (NCHW). Received: axis={axis}")
        offset = (offset,) if isinstance(offset, int) else tuple(int(o) for o in offset)
        n_axes = 4 - axis
        if len(offset) not in (0, 1, n_axes):
            raise ValueError(
                f"Crop needs 0, 1 or {n_axes} offsets for axis={axis}. Received: offset={offset}"
            )
        if any(o < 0 for o in offset):
            raise ValueError(f"Crop offsets must be >= 0. Received: offset={offset}")
        self.axis = axis
        self.offset = offset
        off = offset or (0,)
        self._offsets = {  # NHWC axis -> offset
            _NCHW_TO_NHWC[a]: (off[0] if len(off) == 1 else off[a - axis]) for a in range(axis, 4)
        }

    def _check(self, x_shape, ref_shape):  # Caffe CHECKs this; a slice would silently come out short
        for a, o in self._offsets.items():
            if _is_static(x_shape[a], ref_shape[a]) and o + ref_shape[a] > x_shape[a]:
                raise ValueError(f"{self.name}: cropping {ref_shape[a]} at offset {o} from axis {a} (NHWC) "
                                 f"of size {x_shape[a]}: input {tuple(x_shape)}, reference {tuple(ref_shape)}")

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        self._check(x_shape, ref_shape)
        out = list(x_shape)
        for a in self._offsets:
            out[a] = ref_shape[a]
        return tuple(out)

    def call(self, inputs):
        x, ref = inputs
        ref_shape = ops.shape(ref)
        self._check(ops.shape(x), ref_shape)
        index = []
        for a in range(4):
            if a in self._offsets:
                o = self._offsets[a]
                index.append(slice(o, o + ref_shape[a]))
            else:
                index.append(slice(None))
        return x[tuple(index)]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "offset": self.offset}


@_register
class ChannelScale(keras.layers.Layer):
    """Per-channel multiplication by a weight vector (Caffe ``Scale`` without bias, one bottom).

    FCN-8s at-once scales its pool4/pool3 skips by constants 0.01/0.0001 stored as Scale blobs
    (lr_mult 0): use ``ChannelScale(0.01, trainable=False)``.
    """

    def __init__(self, initial_value=1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_value = float(initial_value)

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.initial_value),
        )

    def call(self, x):
        return x * ops.cast(self.scale, x.dtype)

    def get_config(self):
        return {**super().get_config(), "initial_value": self.initial_value}


@_register
class BilinearKernel(keras.initializers.Initializer):
    """Bilinear upsampling kernel for ``Conv2DTranspose`` (FCN's ``surgery.interp``).

    Kernel shape ``(k, k, C_out, C_in)``; channel ``i`` maps to channel ``i`` only.
    """

    def __call__(self, shape, dtype=None):
        kh, kw, c_out, c_in = shape

        def filt(k):
            factor = (k + 1) // 2
            center = factor - 1 if k % 2 == 1 else factor - 0.5
            return 1 - np.abs(np.arange(k) - center) / factor

        f = np.outer(filt(kh), filt(kw)).astype(np.float32)
        w = np.zeros(shape, np.float32)
        for i in range(min(c_out, c_in)):
            w[:, :, i, i] = f
        return ops.convert_to_tensor(w, dtype=dtype or "float32")

    def get_config(self):
        return {}


@_register
class Normalize(keras.layers.Layer):
    """Pixel normalisation inside the model: ``(reorder(x) * scale - mean) / std``.

    Lets the input pipeline feed raw uint8 pixels (4x fewer bytes host -> device than float32) and
    do the arithmetic on the device, fused into the first convolution by XLA. Same arithmetic and
    order as ``zoo.preprocess`` / ``training.data.Normalization``, in float32; the result is cast
    to the layer's compute dtype (bfloat16 under ``mixed_bfloat16``), as the first layer would have
    cast a host-normalised float32 input. No weights: the constants live in the config.

    Args:
        scale: multiplies the 0-255 pixels first (e.g. ``1 / 255``).
        mean, std: per channel, in ``channel_order``, after ``scale``.
        channel_order: ``"RGB"`` or ``"BGR"``: the order the model wants; input is always RGB.

    Input ``(B, H, W, C)`` RGB pixels 0-255, any dtype (uint8 typically); output same shape,
    compute dtype.
    """

    def __init__(self, scale=1.0 / 255.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), channel_order="RGB", **kwargs):
        kwargs.setdefault("autocast", False)  # cast after the float32 arithmetic, not before
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.channel_order = str(channel_order).upper()
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"`channel_order` must be 'RGB' or 'BGR'. Received: channel_order={channel_order!r}")
        if len(self.mean) != len(self.std) or not all(np.isfinite(self.mean)) or not np.isfinite(self.scale):
            raise ValueError(f"`mean` and `std` must be finite and of equal length (one per channel). "
                             f"Received: mean={mean!r}, std={std!r}, scale={scale!r}")
        if not all(np.isfinite(s) and s != 0 for s in self.std):
            raise ValueError(f"`std` must be finite and non-zero. Received: std={std!r}")

    @classmethod
    def from_record(cls, record, **kwargs):
        """The convention of a :class:`zoo.records.WeightsRecord` (``scale``, ``mean``, ``std``, ``channel_order``)."""
        return cls(record.scale, record.mean, record.std, record.channel_order, **kwargs)

    def build(self, input_shape):
        c = input_shape[-1]
        if c is not None and c != len(self.mean):
            raise ValueError(f"{self.name}: input has {c} channels but mean/std have {len(self.mean)} values.")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.channel_order == "BGR":
            x = ops.flip(x, axis=-1)
        x = x * np.float32(self.scale)
        if any(self.mean):
            x = x - ops.convert_to_tensor(np.asarray(self.mean, np.float32))
        if any(s != 1.0 for s in self.std):
            x = x / ops.convert_to_tensor(np.asarray(self.std, np.float32))
        return ops.cast(x, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mean": self.mean, "std": self.std,
                "channel_order": self.channel_order}
