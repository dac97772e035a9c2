"""Caffe blobs -> Keras weight arrays, shared by :func:`to_keras` and :func:`port`.

Every function takes float32 arrays in Caffe's layout (as in :class:`graph.Layer.blobs`) and
returns the list of arrays in the order ``keras.layers.Layer.set_weights`` expects. Shape letters:
``O`` output channels, ``I`` input channels, ``g`` groups, ``kh, kw`` kernel size, ``N`` dense units,
``K`` dense inputs, ``C`` channels.
"""

from __future__ import annotations

import math

import numpy as np

from converters.caffe.errors import WeightsMismatchError

__all__ = [
    "conv_kernel",
    "deconv_kernel",
    "dense_kernel",
    "batchnorm_stats",
    "bn_weights",
    "psp_bn_weights",
    "vector",
]


_ALIGN = 64  # bytes: XLA:CPU aliases a numpy array aligned so instead of copying it into a device buffer
_TILE_A = 16  # outer-axis entries per tile of _swap_outer_axes: one 64-byte cache line of each output row
_TILE_BC = 2048  # floats per tile row (middle x inner axis): a tile is 128 KiB, in L2


def aligned_empty(shape, dtype=np.float32):
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary.

    numpy's large allocations start 16 bytes past a page; JAX on the CPU copies such arrays when they
    become variables, but takes an aligned one as it is (ResNet-152: 230 MB, ~0.1 s, not copied).
    """
    n = math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize  # (np.prod: 5 us per call)
    raw = np.empty(n + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start:start + n].view(dtype).reshape(shape)


def _f32(a):
    """``a`` as float32 in a fresh aligned array the conversion owns (never a view of a Net's blob,
    since JAX may alias what it is given)."""
    a = np.asarray(a, dtype=np.float32)
    out = aligned_empty(a.shape)
    np.copyto(out, a)
    return out


def vector(blob, n=None, *, what="blob"):
    """A blob flattened to ``(n,)`` (PSPNet BN stores ``(1, C, 1, 1)``, legacy files ``(1, 1, 1, C)``).

    Raises:
        WeightsMismatchError: if ``n`` is given and the blob does not hold ``n`` values.
    """
    v = _f32(blob).reshape(-1)
    if n is not None and v.size != n:
        raise WeightsMismatchError(f"{what}: expected {n} values, found shape {np.shape(blob)}")
    return v


def _swap_outer_axes(src):
    """``(A, B, C) -> (C, B, A)`` into a fresh aligned array, copied in tiles of ``(A, B)``.

    numpy's one-pass transpose reads with a stride of ``B * C`` floats: 3.5x slower on a ResNet-152's
    230 MB of kernels, and 7-12x on VGG-16's fc6 (411 MB: 2.1-3.6 s -> 0.30-0.34 s). A tile spans 16
    entries of ``A``, so each output row gets whole cache lines, and ``2048 / C`` of ``B`` (fewer numpy
    calls than square 64 x 64 tiles: ResNet-152 0.12 -> 0.10 s).
    """
    a, b, c = src.shape
    dst = aligned_empty((c, b, a), src.dtype)
    tb = max(_TILE_A, _TILE_BC // max(c, 1))
    for a0 in range(0, a, _TILE_A):
        for b0 in range(0, b, tb):
            dst[:, b0:b0 + tb, a0:a0 + _TILE_A] = src[a0:a0 + _TILE_A, b0:b0 + tb].transpose(2, 1, 0)
    return dst


def conv_kernel(w):
    """Convolution weights ``(O, I/g, kh, kw)`` -> Keras ``(kh, kw, I/g, O)`` (no flip: both correlate)."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 4:
        raise WeightsMismatchError(f"convolution weights: expected 4 axes (O, I, kh, kw), found shape {w.shape}")
    o, i, kh, kw = w.shape
    return _swap_outer_axes(w.reshape(o, i, kh * kw)).reshape(kh, kw, i, o)


def deconv_kernel(w, groups=1, dilation=(1, 1)):
    """Deconvolution weights ``(I, O/g, kh, kw)`` -> dense ``Conv2DTranspose`` kernel ``(kh', kw', O, I)``.

    Groups become a block-diagonal kernel (exact: the off-diagonal blocks are zeros); dilation
    becomes a kernel with ``d - 1`` zeros between taps, ``kh' = d (kh - 1) + 1``.
    """
    w = _f32(w)
    c_in, c_out_g, kh, kw = w.shape
    if c_in % groups:
        raise WeightsMismatchError(f"deconvolution weights {w.shape}: {c_in} inputs not divisible by group {groups}")
    dh, dw = dilation
    k = aligned_empty((dh * (kh - 1) + 1, dw * (kw - 1) + 1, c_out_g * groups, c_in))
    k.fill(0.0)
    c_in_g = c_in // groups
    for g in range(groups):
        block = w[g * c_in_g:(g + 1) * c_in_g].transpose(2, 3, 1, 0)  # (kh, kw, O/g, I/g)
        k[::dh, ::dw, g * c_out_g:(g + 1) * c_out_g, g * c_in_g:(g + 1) * c_in_g] = block
    return k


def dense_kernel(w, *, transpose=False, chw=None):
    """InnerProduct weights -> Keras ``Dense`` kernel ``(K, N)``.

    Args:
        w: ``(N, K)``, or ``(K, N)`` when ``transpose`` (Caffe ``inner_product_param.transpose``).
        chw: ``(C, H, W)`` of a spatial bottom blob, when the Keras model flattens it in NHWC
            order: Caffe flattens ``C, H, W``, Keras ``H, W, C``, so the rows are reordered
            ``(N, C, H, W) -> (H, W, C, N)``. ``None`` for a 2-D bottom.
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        w = w.reshape(w.shape[0], -1) if not transpose else w.reshape(-1, w.shape[-1])
    k_rows = w.shape[0] if transpose else w.shape[1]
    if chw is None or int(np.prod(chw[1:])) == 1:
        return _f32(w) if transpose else _swap_outer_axes(w[:, :, None]).reshape(k_rows, -1)
    c, h, wd = chw
    if k_rows != c * h * wd:
        raise WeightsMismatchError(f"inner product weights {w.shape} do not fit a bottom of shape (C, H, W) = {tuple(chw)}")
    if transpose:  # (C*H*W, N): whole rows of N move, which numpy copies fast
        return _f32(w.reshape(c, h * wd, -1).transpose(1, 0, 2)).reshape(k_rows, -1)
    return _swap_outer_axes(w.reshape(-1, c, h * wd)).reshape(k_rows, -1)  # (N, C, HW) -> (HW, C, N)


def batchnorm_stats(blobs, *, what="BatchNorm"):
    """BVLC ``BatchNorm`` blobs ``[mean * f, var * f, [f]]`` -> ``(mean, var)``.

    At test time Caffe multiplies by ``1 / f`` (``f == 0`` gives 0: mean and var become 0).
    """
    if len(blobs) != 3:
        raise WeightsMismatchError(f"{what}: expected 3 blobs (mean, variance, scale factor), found {len(blobs)}")
    mean, var = vector(blobs[0], what=what), vector(blobs[1], what=what)
    f = float(vector(blobs[2], what=what)[0])
    inv = np.float32(0.0 if f == 0 else 1.0 / f)
    return _f32(mean * inv), _f32(var * inv)


def bn_weights(bn_blobs, scale_blobs=None, *, what="BatchNorm"):
    """BatchNorm (+ folded Scale) -> Keras ``BatchNormalization`` ``[gamma, beta, moving_mean, moving_var]``.

    ``scale_blobs`` is ``[gamma]`` or ``[gamma, beta]`` of the following Scale layer, or ``None``
    for a lone BatchNorm (gamma 1, beta 0).
    """
    mean, var = batchnorm_stats(bn_blobs, what=what)
    c = mean.size
    gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    if scale_blobs:
        gamma = vector(scale_blobs[0], c, what=f"{what} (Scale gamma)")
        if len(scale_blobs) > 1:
            beta = vector(scale_blobs[1], c, what=f"{what} (Scale beta)")
    return [gamma, beta, mean, var]


def psp_bn_weights(blobs, *, what="BN"):
    """PSPNet/DeepLab ``BN`` blobs ``[slope, bias, mean, var]`` -> ``[gamma, beta, moving_mean, moving_var]``."""
    if len(blobs) != 4:
        raise WeightsMismatchError(f"{what}: expected 4 blobs (slope, bias, mean, variance), found {len(blobs)}")
    c = vector(blobs[0]).size
    return [vector(b, c, what=what) for b in blobs]
