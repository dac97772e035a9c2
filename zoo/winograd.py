"""Winograd F(4x4, 3x3) convolution for CPU inference, and ``optimize_for_inference`` that swaps it in.

A 3x3 stride-1 convolution computed tile by tile: each 6x6 input tile ``d`` gives a 4x4 output tile

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A        (Lavin & Gray 2015, "Fast Algorithms for CNNs")

so the 36 elementwise products, summed over input channels, become 36 matrix products of
``(tiles, C) @ (C, K)``: 4x fewer multiply-adds than the direct convolution (36 per 16 outputs
instead of 144). OpenCV's dnn module does this for its 3x3 convolutions, which is why it beat
TensorFlow/oneDNN (direct convolution) on VGG-style nets such as FCN-8s.

The kernel transform ``G g G^T`` is computed once, in float64, when a ``keras.layers.Conv2D`` is
swapped; the layer stores it as a ``(36, C, K)`` weight (4x the 3x3 kernel's memory), and the ``B^T``
and ``A^T`` that turn that kernel back into the convolution as two small non-trainable weights, so a
saved kernel always travels with its transforms. The input and output transforms are written with
``keras.ops`` (slices, reshapes and small matrix products), so the layer runs on every backend.
Results differ from the direct convolution by float32 round-off of the transforms: at most ~1e-5 of
the output's largest magnitude (measured against a float64 direct convolution: 6e-6 for 512->512,
3e-6 for dilated 160->160; a float32 ``Conv2D`` is 0.4-2e-6); for training keep the original
``Conv2D`` (gradients through the transformed kernel are a different parameterisation).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from zoo.api import carry_metadata

__all__ = ["WinogradConv2D", "winograd_kernel", "optimize_for_inference", "winograd_eligible",
           "default_min_channels", "POINTS", "LEGACY_POINTS"]

# F(4x4, 3x3) with interpolation points 0, -1, 1, 1/2, -2 and infinity (Barabasz et al. 2020, "Error
# analysis and improving the accuracy of Winograd convolution for DNNs"): A^T and G evaluate polynomials
# at the points, B^T is the inverse Vandermonde matrix (transposed); each B^T row is scaled to integers
# and its G row divided to match. Against a float64 direct convolution a 512->512 layer (He weights,
# post-ReLU inputs, 28x28) was off by 5-8e-6 of its largest output on TensorFlow and JAX with these
# points, 1.3-2.0e-5 with Lavin's 0, +-1, +-2 (same cost: the transforms are dense 6x6 products).
_BT = np.array([[2, -3, -4, 3, 2, 0],
                [0, -2, 5, -1, -2, 0],
                [0, -2, 1, 5, 2, 0],
                [0, 2, 1, -2, -1, 0],
                [0, 1, -2, -1, 2, 0],
                [0, 2, -3, -4, 3, 2]], np.float64)
_G = np.array([[1 / 2, 0, 0],
               [1 / 6, -1 / 6, 1 / 6],
               [1 / 6, 1 / 6, 1 / 6],
               [16 / 15, 8 / 15, 4 / 15],
               [1 / 30, -1 / 15, 2 / 15],
               [0, 0, 1 / 2]], np.float64)
_AT = np.array([[1, 1, 1, 1, 1, 0],
                [0, -1, 1, 1 / 2, -2, 0],
                [0, 1, 1, 1 / 4, 4, 0],
                [0, -1, 1, 1 / 8, -8, 1]], np.float64)
# Lavin & Gray's points 0, 1, -1, 2, -2: what layers saved before the ``points`` setting hold.
_BT_LAVIN = np.array([[4, 0, -5, 0, 1, 0],
                      [0, -4, -4, 1, 1, 0],
                      [0, 4, -4, -1, 1, 0],
                      [0, -2, -1, 2, 1, 0],
                      [0, 2, -1, -2, 1, 0],
                      [0, 4, 0, -5, 0, 1]], np.float64)
_G_LAVIN = np.array([[1 / 4, 0, 0],
                     [-1 / 6, -1 / 6, -1 / 6],
                     [-1 / 6, 1 / 6, -1 / 6],
                     [1 / 24, 1 / 12, 1 / 6],
                     [1 / 24, -1 / 12, 1 / 6],
                     [0, 0, 1]], np.float64)
_AT_LAVIN = np.array([[1, 1, 1, 1, 1, 0],
                      [0, 1, -1, 2, -2, 0],
                      [0, 1, 1, 4, 4, 0],
                      [0, 1, -1, 8, -8, 1]], np.float64)
POINTS = "0,-1,1,1/2,-2"
LEGACY_POINTS = "0,1,-1,2,-2"
# points -> (B^T, G, A^T). The stored kernel is G g G^T for its layer's points; the layer holds that B^T
# and A^T as weights, so every way of loading weights brings the transforms the kernel needs. Files
# written before (kernel and bias only) are recognised by the kernel itself (see _points_of_kernel).
_TRANSFORMS = {POINTS: (_BT, _G, _AT), LEGACY_POINTS: (_BT_LAVIN, _G_LAVIN, _AT_LAVIN)}
TILE = 4  # output pixels per tile side
# Where the swap pays (benchmarks/winograd_layers.py; TensorFlow 2.21 / oneDNN, 2 AVX2 cores, batch 1):
# 512->512 on 57x57 2.1x, on 29x29 1.75x; 256->256 on 114x114 1.5x; 128->256 1.5x; 128->128 on 227x227
# 1.0x, 64->64 0.6x; on 14x14 (256) and 7x7 (512) maps 0.7x and 0.4x: fixed costs dominate, and a 7x7
# map pads to 8x8 in 4x4 tiles. The transforms cost ~H W (C + K), the saving ~H W C K, so the channel
# rule is on 2CK / (C + K). On JAX (XLA:CPU) the transforms cost more: 128->256 ran at 0.75x and
# 256->256 at 1.2x (512->512 2.2x), so the default there (and on PyTorch, measured at 512 only) is 256.
# Re-measured quietly on 2026-12-06 (jax 0.10.2): single layers vary with the map (256->256 1.39x on
# 57x57 but 0.75x on 114x114), while whole models gained the same with 256 or 320 (fcn8s 1.08-1.20x,
# pspnet50 1.32-1.34x, within noise), so 256 stays.
MIN_CHANNELS = {"tensorflow": 160}
MIN_CHANNELS_OTHER = 256
MIN_SIZE = 20


def _check_points(points, who):
    if points not in _TRANSFORMS:
        raise ValueError(f"{who}: points must be one of {sorted(_TRANSFORMS)}. Received: {points!r}")


def winograd_kernel(kernel, points=POINTS):
    """``(3, 3, C, K)`` HWIO kernel -> ``(36, C, K)`` transformed kernel ``G g G^T`` (row-major 6x6).

    ``points``: the interpolation points whose ``G`` is used (``POINTS``; ``LEGACY_POINTS`` is Lavin's).
    """
    _check_points(points, "winograd_kernel")
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
        raise ValueError(f"winograd_kernel: expected a (3, 3, C, K) kernel. Received shape {kernel.shape}")
    g = _TRANSFORMS[points][1]
    u = np.einsum("ar,rsck,bs->abck", g, kernel.astype(np.float64), g)
    return u.reshape(36, kernel.shape[2], kernel.shape[3]).astype(kernel.dtype)


def _points_of_kernel(kernel):
    """The points whose ``G`` explains a ``(36, C, K)`` transformed kernel: ``[]`` when none does.

    Each ``G g G^T`` lies in a 9-dimensional subspace of the 6x6 matrices, and those of the two known
    point sets meet only at 0 (a kernel of one point set is >= 18.6% of its norm away from the other's
    subspace), so the relative residual of the projection names the points. It is ~1e-7 for a float32
    kernel, up to ~3e-3 for one stored in float16 or bfloat16 (a 16-bit policy did so before
    2026-12-03): 1% is far from both. An all-zero kernel fits every point set.
    """
    u = np.asarray(kernel, np.float64).reshape(6, 6, -1)
    norm = np.linalg.norm(u)
    fits = []
    for points, (_, g, _) in _TRANSFORMS.items():
        proj = g @ np.linalg.pinv(g)  # orthogonal projector onto G's column space
        rest = u - np.einsum("ab,bcn,dc->adn", proj, u, proj, optimize=True)
        if np.linalg.norm(rest) <= 1e-2 * norm:
            fits.append(points)
    return fits


def _dim(x, axis):
    d = x.shape[axis]
    return d if d is not None else ops.shape(x)[axis]


def _at_least(v, lo):
    """``max(v, lo)`` for a size that may be a tensor (TensorFlow graphs of unknown size)."""
    return max(v, lo) if isinstance(v, int) else ops.maximum(v, lo)


def _six_from_four(t, tiles, f):
    """``t`` (M, 4*tiles + 4, f) -> (M * tiles, 6, f): overlapping windows of 6 with step 4.

    Reshapes and two slices instead of a strided gather: TensorFlow's strided slices on an inner
    axis were 3x slower than the whole rest of the transform. ``f`` may be a tensor (unknown sizes).
    """
    head = ops.reshape(t[:, : 4 * tiles], (-1, 4, f))
    tail = ops.reshape(t[:, 4:], (-1, 4, f))[:, :2]
    return ops.concatenate([head, tail], axis=1)


@keras.saving.register_keras_serializable(package="zoo")
class WinogradConv2D(keras.layers.Layer):
    """3x3, stride-1 convolution by Winograd F(4x4, 3x3); same results as ``Conv2D`` up to round-off.

    Args:
        filters: output channels ``K``.
        padding: ``"valid"`` (output ``H-2d x W-2d``) or ``"same"`` (zero padding ``d``, output ``H x W``).
        use_bias: add a ``(K,)`` bias.
        activation: as ``Conv2D``'s (applied after the bias).
        dilation_rate: ``d``, the same on both axes (PSPNet's 2 and 4): the d x d interleaved
            sub-images are convolved as one batch.
        points: the transform's interpolation points, ``POINTS`` (``"0,-1,1,1/2,-2"``, 2-3x less
            round-off) or ``LEGACY_POINTS`` (Lavin's ``"0,1,-1,2,-2"``, what a saved layer without this
            setting holds): the transforms a new layer starts with and ``set_from_conv2d`` uses. Loaded
            weights bring their own transforms (any points load into any layer); a file written before
            the transforms were weights is recognised by its kernel, and ``points`` follows the file.

    Input ``(N, H, W, C)``, channels-last, H and W at least ``2d + 1`` (``"valid"``). Under a
    float16/bfloat16 policy (mixed or not) the layer keeps float32 weights, computes in float32 and returns
    the policy's dtype; integer inputs are cast to the compute dtype. Weights, in ``get_weights`` order:
    ``kernel`` ``(36, C, K)`` (``winograd_kernel(g, points)``), ``bias`` ``(K,)``, and the non-trainable
    ``input_transform`` ``B^T`` ``(6, 6)`` and ``output_transform`` ``A^T`` ``(4, 6)`` of those points.
    Build one from a trained ``Conv2D`` with ``WinogradConv2D.from_conv2d(conv)`` or a whole model with
    ``optimize_for_inference``.
    """

    def __init__(self, filters, padding="valid", use_bias=True, activation=None, dilation_rate=1, points=POINTS,
                 **kwargs):
        super().__init__(**kwargs)
        _check_points(points, "WinogradConv2D")
        if padding not in ("valid", "same"):
            raise ValueError(f"WinogradConv2D: padding must be 'valid' or 'same'. Received: {padding!r}")
        if isinstance(dilation_rate, (tuple, list)):
            if len(set(dilation_rate)) != 1:
                raise ValueError(f"WinogradConv2D: dilation_rate must be the same on both axes. "
                                 f"Received: {tuple(dilation_rate)}")
            dilation_rate = dilation_rate[0]
        # int() would turn 2.7 filters or a 1.5 dilation into 2 and 1 without a word; 0 and negatives
        # failed in call() as a division by zero or a negative pad
        for name, value in (("filters", filters), ("dilation_rate", dilation_rate)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"WinogradConv2D: {name} must be a positive integer. Received: {value!r}")
        self.filters = int(filters)
        self.padding = padding
        self.use_bias = bool(use_bias)
        self.activation = keras.activations.get(activation)
        self.dilation_rate = int(dilation_rate)
        self.points = points
        self.input_spec = keras.layers.InputSpec(ndim=4)  # the tiling reshapes assume (N, H, W, C)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"WinogradConv2D '{self.name}': the channel axis must be known. Received {input_shape}")
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})
        # float32 and autocast=False: a bfloat16 copy of the transformed kernel would cost ~5% of the
        # output's range (its rounding is not undone by the output transform), also under the pure
        # "bfloat16"/"float16" policies; 16-bit policies compute in float32 below.
        dtype = self.variable_dtype
        dtype = "float32" if keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16") else dtype
        self.kernel = self.add_weight(name="kernel", shape=(36, channels, self.filters), initializer="glorot_uniform",
                                      dtype=dtype, autocast=False)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros", dtype=dtype,
                                    autocast=False) if self.use_bias else None
        # Weights, not constants: a kernel loaded by any route (load_weights, set_weights, zoo.load_weights,
        # a legacy .h5) comes with the B^T and A^T it was transformed for, or the count of weights differs.
        bt, _, at = _TRANSFORMS[self.points]
        self.input_transform = self.add_weight(
            name="input_transform", shape=(6, 6), initializer=lambda shape, dtype=None: ops.cast(bt, dtype),
            dtype=dtype, trainable=False, autocast=False)
        self.output_transform = self.add_weight(
            name="output_transform", shape=(4, 6), initializer=lambda shape, dtype=None: ops.cast(at, dtype),
            dtype=dtype, trainable=False, autocast=False)

    def _check_size(self, shape):
        """Conv2D's refusal of a map smaller than the dilated kernel ('valid'), where the size is known."""
        need = 2 * self.dilation_rate + 1
        if self.padding == "valid" and any(d is not None and d < need for d in shape[1:3]):
            raise ValueError(f"WinogradConv2D '{self.name}': padding 'valid' needs at least {need}x{need} pixels "
                             f"(3x3 kernel, dilation {self.dilation_rate}). Received input shape {tuple(shape)}")

    def compute_output_shape(self, input_shape):
        self._check_size(input_shape)
        n, h, w, _ = input_shape
        if self.padding == "valid":
            cut = 2 * self.dilation_rate
            h, w = (None if h is None else h - cut), (None if w is None else w - cut)
        return (n, h, w, self.filters)

    def call(self, x):
        self._check_size(x.shape)
        if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype)):
            # uint8 images: the transforms' negative coefficients would wrap around
            x = ops.cast(x, self.compute_dtype)
        dtype = x.dtype
        if keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16"):
            # 16-bit transforms (coefficients up to 8, sums of 36 terms) cost ~10% of the output's
            # range: compute in float32 and hand back the policy's dtype.
            return ops.cast(self._forward(ops.cast(x, "float32")), dtype)
        return self._forward(x)

    def _forward(self, x):
        d = self.dilation_rate
        pad = d if self.padding == "same" else 0
        if d == 1:
            y = self._valid_tiles(x, pad)
        else:
            # A dilated 3x3 convolution is an undilated one on each of the d x d interleaved
            # sub-images (rows p, p + d, ...): split, convolve all as one batch, interleave back.
            # Sizes known only when run may be too small ('valid'): at least 3 rows per sub-image keeps
            # every reshape's -1 the batch, and the slice to the (empty) output size drops them.
            h, w, c = _dim(x, 1), _dim(x, 2), x.shape[-1]
            ho, wo = _at_least(h + 2 * pad - 2 * d, 0), _at_least(w + 2 * pad - 2 * d, 0)
            hs, ws = _at_least((h + 2 * pad + d - 1) // d, 3), _at_least((w + 2 * pad + d - 1) // d, 3)
            x = ops.pad(x, [[0, 0], [pad, d * hs - h - pad], [pad, d * ws - w - pad], [0, 0]])
            x = ops.transpose(ops.reshape(x, (-1, hs, d, ws, d, c)), (2, 4, 0, 1, 3, 5))
            y = self._valid_tiles(ops.reshape(x, (-1, hs, ws, c)), 0)          # (d d N, hs-2, ws-2, K)
            y = ops.reshape(y, (d, d, -1, hs - 2, ws - 2, self.filters))
            y = ops.reshape(ops.transpose(y, (2, 3, 0, 4, 1, 5)), (-1, d * (hs - 2), d * (ws - 2), self.filters))
            y = y[:, :ho, :wo]
        if self.use_bias:
            y = y + ops.cast(self.bias, y.dtype)
        return self.activation(y) if self.activation is not None else y

    def _valid_tiles(self, x, pad):
        """The undilated 3x3 convolution of ``x`` zero-padded by ``pad`` on every side (no bias)."""
        dtype = x.dtype
        bt, at = ops.cast(self.input_transform, dtype), ops.cast(self.output_transform, dtype)
        h, w, c, k = _dim(x, 1), _dim(x, 2), x.shape[-1], self.filters
        ho, wo = _at_least(h + 2 * pad - 2, 0), _at_least(w + 2 * pad - 2, 0)  # 0: too small (unknown sizes)
        th, tw = (_at_least(ho, 1) + TILE - 1) // TILE, (_at_least(wo, 1) + TILE - 1) // TILE  # one tile keeps the batch
        hp, wp = TILE * th + 4, TILE * tw + 4  # 4 more than the tiles cover: both window slices reshape evenly
        x = ops.pad(x, [[0, 0], [pad, hp - h - pad], [pad, wp - w - pad], [0, 0]])
        # Input transform B^T d B, one axis at a time: rows, then columns.
        t = _six_from_four(ops.reshape(x, (-1, hp, wp * c)), th, wp * c)           # (N th, 6r, Wp C)
        t = ops.matmul(bt, t)                                                      # (N th, 6a, Wp C)
        t = _six_from_four(ops.reshape(t, (-1, wp, c)), tw, c)                      # (N th 6a tw, 6s, C)
        t = ops.matmul(bt, t)                                                      # (N th 6a tw, 6b, C)
        t = ops.reshape(t, (-1, th, 6, tw, 6, c))
        v = ops.reshape(ops.transpose(t, (2, 4, 0, 1, 3, 5)), (36, -1, c))        # (ab, P, C)
        m = ops.matmul(v, ops.cast(self.kernel, dtype))                            # (ab, P, K)
        # Output transform A^T M A: over a (rows), then over b (columns).
        m = ops.matmul(at, ops.reshape(m, (6, -1)))                                 # (4i, 6b P K)
        m = ops.matmul(at, ops.reshape(m, (4, 6, -1)))                              # (4i, 4j, P K)
        y = ops.transpose(ops.reshape(m, (TILE, TILE, -1, th, tw, k)), (2, 3, 0, 4, 1, 5))
        return ops.reshape(y, (-1, TILE * th, TILE * tw, k))[:, :ho, :wo]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "padding": self.padding,
                "use_bias": self.use_bias, "activation": keras.activations.serialize(self.activation),
                "dilation_rate": self.dilation_rate, "points": self.points}

    @classmethod
    def from_config(cls, config):
        # Saved before the points setting: the stored kernel is Lavin's G g G^T, and only his B^T and
        # A^T turn it back into the convolution.
        layer = super().from_config({"points": LEGACY_POINTS, **config})
        layer._points_from_file = True  # a .keras file's: its kernel goes with them (see load_own_variables)
        return layer

    def load_own_variables(self, store):
        """Keras' loading (``load_model``, ``load_weights``) of this layer's entry in a weights file.

        A file written before the transforms were weights holds the kernel (and bias) only: see
        :meth:`old_file_weights`. Nothing is assigned when the file cannot be used.
        """
        own = 2 if self.use_bias else 1
        from_file = self.__dict__.pop("_points_from_file", False)  # the first load after from_config only
        if self.built and len(store.keys()) == own:
            values, points = self.old_file_weights([store[str(i)] for i in range(own)], config_points=from_file)
            for var, value in zip(self.weights, values):  # kernel, bias, B^T, A^T
                var.assign(value)
            self.points = points
            return
        points = None
        if self.built and len(store.keys()) == own + 2:
            bt, at = np.asarray(store[str(own)]), np.asarray(store[str(own + 1)])
            points = next((p for p, (b, _, a) in _TRANSFORMS.items()
                           if bt.shape == b.shape and at.shape == a.shape
                           and np.allclose(bt, b, rtol=0, atol=1e-6) and np.allclose(at, a, rtol=0, atol=1e-6)), None)
            if points is None:
                raise ValueError(f"WinogradConv2D '{self.name}': the file's input/output transforms (B^T {bt.shape}, "
                                 f"A^T {at.shape}) are not those of any known points {sorted(_TRANSFORMS)}")
        super().load_own_variables(store)  # Keras' own count and shape checks
        self.points = points or self.points

    def old_file_weights(self, arrays, *, config_points=False):
        """This layer's weights from a file written before the transforms were weights: ``arrays`` is
        ``[kernel, bias]`` (``[kernel]`` without a bias), as it stored them.

        Its points are read off the kernel (``_points_of_kernel``), whatever points this layer was made with. A
        kernel no ``G`` explains (the transformed kernel trained) takes this layer's points when ``config_points``
        (it was just made from the file's ``.keras`` config, which names them: none is Lavin's), else is refused.

        Returns:
            ``([kernel, bias, B^T, A^T], points)`` (no bias without one), as ``get_weights`` orders them.
        Raises:
            ValueError: no known points explain the kernel (names the layer and what to do).
        """
        kernel = arrays[0]
        fits = _points_of_kernel(kernel) if np.shape(kernel) == tuple(self.kernel.shape) else [self.points]
        fits = fits or ([self.points] if config_points else [])
        if not fits:
            raise ValueError(
                f"WinogradConv2D '{self.name}': the file holds a kernel and bias only (written before the "
                f"layer saved its transforms), and the kernel is not G g G^T for any known points "
                f"{sorted(_TRANSFORMS)}, so which transforms it needs cannot be told (was the transformed "
                f"kernel itself trained?). Set it with layer.set_weights([kernel, bias, B^T, A^T]) "
                f"using the transforms it was made with")
        points = self.points if self.points in fits else fits[0]
        bt, _, at = _TRANSFORMS[points]
        return [*arrays, bt, at], points

    @classmethod
    def from_conv2d(cls, conv):
        """A built ``WinogradConv2D`` computing what the built 3x3 stride-1 ``conv`` computes."""
        reason = _ineligible(conv, min_channels=0, min_size=0)
        if reason:
            raise ValueError(f"WinogradConv2D.from_conv2d: layer '{conv.name}' {reason}")
        layer = cls._like(conv)
        layer.build((None, None, None, conv.kernel.shape[2]))
        layer.set_from_conv2d(conv)
        return layer

    @classmethod
    def _like(cls, conv):
        """An unbuilt layer with ``conv``'s settings and name (its weights come from ``set_from_conv2d``)."""
        # The activation itself, not its serialization: an unregistered function (or lambda) would not
        # deserialize, and the model may never be saved.
        return cls(conv.filters, padding=conv.padding, use_bias=conv.use_bias, activation=conv.activation,
                   dilation_rate=conv.dilation_rate, name=conv.name, dtype=conv.dtype_policy,
                   trainable=conv.trainable, activity_regularizer=conv.activity_regularizer)

    def set_from_conv2d(self, conv):
        # In float64, rounded once to the weight's dtype (float32 also for a 16-bit conv: see build).
        kernel = keras.ops.convert_to_numpy(conv.kernel).astype(np.float64)
        dtype = keras.backend.standardize_dtype(self.kernel.dtype)
        self.kernel.assign(winograd_kernel(kernel, self.points).astype(dtype))
        bt, _, at = _TRANSFORMS[self.points]  # the transforms this kernel needs (loaded weights may have others)
        self.input_transform.assign(bt)
        self.output_transform.assign(at)
        if self.use_bias:
            self.bias.assign(keras.ops.convert_to_numpy(conv.bias))


def default_min_channels():
    """The swap threshold on ``2CK / (C + K)`` measured for the current backend (see ``MIN_CHANNELS``)."""
    return MIN_CHANNELS.get(keras.backend.backend(), MIN_CHANNELS_OTHER)


def _ineligible(layer, min_channels=None, min_size=MIN_SIZE):
    """Why ``layer`` cannot (or should not) become a ``WinogradConv2D``; ``None`` when it can."""
    if type(layer) is not keras.layers.Conv2D:  # subclasses (grouped, ...) compute something else
        return "is not a keras.layers.Conv2D"
    if not layer.built:
        return "is not built"
    if tuple(layer.kernel_size) != (3, 3) or tuple(layer.strides) != (1, 1):
        return "is not a 3x3, stride-1 convolution"
    if len(set(layer.dilation_rate)) != 1:
        return f"has different dilations on the two axes {tuple(layer.dilation_rate)}"
    if layer.data_format != "channels_last":
        return f"is {layer.data_format}: WinogradConv2D takes channels_last"
    if layer.groups != 1:
        return f"has groups={layer.groups}"
    if layer.padding not in ("valid", "same"):
        return f"has padding {layer.padding!r}"
    c, k = layer.kernel.shape[2], layer.filters
    min_channels = default_min_channels() if min_channels is None else min_channels
    if 2 * c * k < min_channels * (c + k):
        return f"has {c} input / {k} output channels: harmonic mean below min_channels={min_channels}"
    try:
        out = layer.output.shape[1:3]
    except (AttributeError, ValueError):  # not called in a functional graph (or called more than once)
        out = (None, None)
    if any(d is not None and d < min_size for d in out):
        return f"has a {out[0]}x{out[1]} output, smaller than {min_size} pixels a side"
    return None


def _check_thresholds(who, min_channels, min_size):
    """A non-negative finite number each (``min_channels`` may be None): NaN would pass every comparison."""
    for name, value in (("min_channels", min_channels), ("min_size", min_size)):
        if name == "min_channels" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not 0 <= value < float("inf"):
            also = " or None" if name == "min_channels" else ""
            raise ValueError(f"{who}: {name} must be a non-negative number{also}. Received: {value!r}")


def winograd_eligible(layer, min_channels=None, min_size=MIN_SIZE):
    """True when ``optimize_for_inference`` would swap ``layer`` (see there for the rule)."""
    _check_thresholds("winograd_eligible", min_channels, min_size)
    return _ineligible(layer, min_channels, min_size) is None


def optimize_for_inference(model, min_channels=None, min_size=MIN_SIZE, verbose=False):
    """A copy of ``model`` whose wide 3x3 stride-1 ``Conv2D`` layers run as ``WinogradConv2D``.

    Args:
        model: a built functional (or Sequential) Keras model, e.g. from ``zoo.get`` or
            ``converters.caffe.to_keras``.
        min_channels: swap a convolution with C input and K output channels only when
            ``2CK / (C + K) >= min_channels``; ``None``: 160 on TensorFlow (128->256 and wider,
            not 128->128), 256 on JAX and PyTorch (where 128->256 was slower).
        min_size: never when its output is known to be under this many pixels a side (default 20).

        The transforms cost ~H W (C + K) and save ~H W C K; on 2 AVX2 cores (TensorFlow) 128->128 ran
        at 1.0x, 128->256 at 1.5x and 512->512 at 2.1x the direct convolution's speed, 14x14 and 7x7
        maps at 0.7x and 0.4x (``benchmarks/winograd_layers.py``). Dilated convolutions (PSPNet's
        2 and 4) are swapped too.
        verbose: print which layers were swapped.

    Returns a new model with the same inputs, outputs and layer names. Layers that are not swapped
    are shared with ``model`` (no weight copy); swapped ones hold the transformed kernel. Outputs
    match ``model``'s to float32 round-off (each swapped layer <= ~1e-5 of its largest output; whole
    models less, the errors average out). For inference only: fine-tune
    ``model`` itself and call this again (SGD on the transformed kernel diverges at the learning rates
    the 3x3 kernel trains with). A swapped layer keeps ``trainable`` and the activity regularizer, not
    kernel/bias regularizers or constraints (so ``model.losses`` lacks weight penalties).
    """
    functional = any(cls.__name__ == "Functional" for cls in type(model).__mro__)  # keras.Model(inputs, outputs)
    if not isinstance(model, keras.Model):
        raise TypeError(f"optimize_for_inference: expected a functional or Sequential Keras model (zoo.get and "
                        f"converters.caffe.to_keras build those; a saved file loads with keras.models.load_model). "
                        f"Received {type(model).__name__} {model!r:.80}")
    if not (functional or isinstance(model, keras.Sequential)):
        raise TypeError(f"optimize_for_inference: expected a functional or Sequential Keras model (zoo.get and "
                        f"converters.caffe.to_keras build those). Received '{model.name}' of type "
                        f"{type(model).__name__}, a subclassed model whose layers cannot be swapped")
    _check_thresholds("optimize_for_inference", min_channels, min_size)
    swapped = []

    def swap(layer):
        if winograd_eligible(layer, min_channels, min_size):
            new = WinogradConv2D._like(layer)
            swapped.append((layer, new))
            return new
        return layer

    clone = keras.models.clone_model(model, clone_function=swap, recursive=True)
    for conv, new in swapped:
        new.set_from_conv2d(conv)
    if verbose:
        names = ", ".join(conv.name for conv, _ in swapped) or "none"
        print(f"optimize_for_inference: {len(swapped)} Conv2D -> WinogradConv2D ({names})")
    return carry_metadata(model, clone)
