"""Shared state and Caffe semantics of a conversion: names, BatchNorm + Scale folding, BN epsilons.

Used by :mod:`converters.caffe.keras` and its handlers (building) and :mod:`converters.caffe.port` (porting), so both
fold the same pairs and use the same epsilon.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from converters.caffe.errors import UnsupportedLayerError, WeightsMismatchError
from converters.caffe.graph import Layer, Net
from converters.caffe.params import opt, sub

__all__ = ["keras_name", "Conversion", "Context", "bn_scale_pairs", "bn_epsilon", "uses_batch_stats", "at", "preloaded_weights",
           "host_constant_initializers", "cached_signatures"]


def keras_name(caffe_name: str) -> str:
    """The Keras layer name used for a Caffe layer or blob name (Keras forbids ``/``)."""
    return caffe_name.replace("/", "_")


@dataclass
class Conversion:
    """Result of :func:`converters.caffe.keras.convert`: the model and what the conversion did."""

    model: Any
    caffe_layers: int  # layers of the Caffe net (after phase filtering)
    parameters: int  # Keras parameters (trainable + non-trainable)
    folded_bn_scale: int  # BatchNorm + Scale pairs turned into one BatchNormalization
    outputs: dict[str, str] = field(default_factory=dict)  # Caffe top name -> Keras output layer name


class Context:
    """Per-conversion state handed to every handler."""

    def __init__(self, net: Net):
        self.net = net
        self.tensors: dict[str, Any] = {}  # blob id -> Keras tensor
        self.fold = bn_scale_pairs(net)  # BatchNorm layer name -> its Scale layer
        self.folded_scales = {s.name for s in self.fold.values()}
        self.folded = 0
        self._keras_names = _unique_keras_names(net)
        self._reserved = set(self._keras_names.values()) | {keras_name(l.name) for l in net.layers}
        self._used: set[str] = set()

    def name(self, layer: Layer) -> str:
        """Keras name of the layer that carries ``layer``'s weights: its Caffe name with ``/`` as ``_``
        (``_2``, ``_3``, ... appended when that name is already taken, e.g. by ``conv/1`` and ``conv_1``)."""
        n = self._keras_names.get(layer.name, keras_name(layer.name))
        self._used.add(n)
        return n

    def aux(self, base: str, suffix: str) -> str:
        """A unique name for a helper layer, never one of the Caffe layer names."""
        n, i = f"{keras_name(base)}_{suffix}", 1
        while n in self._used or n in self._reserved:
            n, i = f"{keras_name(base)}_{suffix}_{i}", i + 1
        self._used.add(n)
        return n

    def free(self, name: str) -> bool:
        """True when no layer has or will have the Keras name ``name``."""
        return name not in self._used and name not in self._reserved

    def use(self, name: str) -> None:
        """Claim a Keras name (inputs, output identities)."""
        self._used.add(name)

    def assign(self, keras_layer, arrays, layer: Layer):
        """``keras_layer.set_weights(arrays)`` with a clear error naming the Caffe layer."""
        want = [tuple(w.shape) for w in keras_layer.weights]
        have = [tuple(a.shape) for a in arrays]
        if want != have:
            raise WeightsMismatchError(
                f"layer '{layer.name}' ({layer.type}{at(layer)}): blobs give Keras weights {have}, "
                f"the layer needs {want}"
            )
        keras_layer.set_weights(arrays)

    def call(self, keras_layer, inputs, arrays, layer: Layer):
        """``keras_layer(inputs)`` with its weights created from ``arrays`` (the ``set_weights`` order).

        Inside :func:`preloaded_weights` the variables are created with the Caffe values as their
        initial values (one copy, no zero fill and no second assignment: TensorFlow spends ~0.7 s
        of a ResNet-152's build on those). If the layer creates its weights in another order or
        shape, it falls back to :meth:`assign`, which names the layer in its error.
        """
        if not arrays:
            return keras_layer(inputs)
        plan = _Preload(list(arrays))
        _PRELOAD[id(keras_layer)] = plan
        try:
            y = keras_layer(inputs)
        finally:
            _PRELOAD.pop(id(keras_layer), None)
        if not plan.complete(keras_layer):
            self.assign(keras_layer, arrays, layer)
        return y

    def shape(self, blob_id: str):
        """Inferred Caffe (NCHW) shape of a blob, or ``None``."""
        return self.net.shapes.get(blob_id)


def _unique_keras_names(net: Net) -> dict[str, str]:
    """Caffe layer name -> Keras name, unique and never an input's name (Keras requires both)."""
    taken = {keras_name(net.caffe_names.get(b, b)) for b in net.inputs}
    wanted = {keras_name(l.name) for l in net.layers}
    names = {}
    for layer in net.layers:
        if layer.type == "Input":  # becomes keras.Input, named after its top
            continue
        n, k = keras_name(layer.name), 2
        while n in taken:
            n, k = f"{keras_name(layer.name)}_{k}", k + 1
            while n in wanted:  # also keep clear of the names later layers want as they are
                n, k = f"{keras_name(layer.name)}_{k}", k + 1
        taken.add(n)
        names[layer.name] = n
    return names


def at(layer: Layer) -> str:
    """", line N" for messages, when the prototxt line is known."""
    return f", line {layer.line}" if layer.line else ""


def bn_scale_pairs(net: Net) -> dict[str, Layer]:
    """BatchNorm layer name -> the Scale layer folded into it.

    A Scale folds when it is the only consumer of the BatchNorm's top (in place or not), has one
    bottom, and scales per channel (``axis: 1``, ``num_axes: 1``), and the BatchNorm uses its stored
    statistics.
    """
    consumers = net.consumers()
    outputs = set(net.outputs)
    pairs = {}
    for layer in net.layers:
        if layer.type != "BatchNorm" or len(layer.tops) != 1 or uses_batch_stats(layer):
            continue
        top = layer.tops[0]
        users = consumers.get(top, [])
        if top in outputs or len(users) != 1 or users[0].type != "Scale":
            continue
        scale = users[0]
        sp = sub(scale.param, "scale_param")
        if len(scale.bottoms) == 1 and opt(sp, "axis", 1) in (1, -3) and opt(sp, "num_axes", 1) == 1:
            pairs[layer.name] = scale
    return pairs



_HSZHAO_BN_FIELDS = ("var_eps", "moving_average", "decay", "scale_filler", "shift_filler")


def uses_batch_stats(layer: Layer) -> bool:
    """True for a ``BatchNorm`` with ``use_global_stats: false``: Caffe normalizes with the batch's own
    statistics even at test time. Caffe's default is ``phase == TEST``; the reader writes the ``false``
    into the BatchNorm layers that do not set it and are in the TRAIN phase (their own ``phase`` field,
    else the net's: ``load(..., phase="TRAIN")``)."""
    return layer.type == "BatchNorm" and opt(sub(layer.param, "batch_norm_param"), "use_global_stats", True) is False


def bn_epsilon(layer: Layer, *, batch_stats: bool = False) -> float:
    """Epsilon of a ``BatchNorm`` or fork ``BN`` layer, as Caffe uses it at test time.

    - BVLC ``BatchNorm``: ``batch_norm_param.eps`` (default 1e-5).
    - hszhao/PSPNet's earlier ``BN`` (commit 88d0b3: ``bn_param`` with ``scale_filler``/``shift_filler``/
      ``moving_average``/``decay``/``var_eps``): bn_layer.cpp adds ``var_eps`` (default 1e-10) and uses the
      stored statistics only with ``moving_average: true``.
    - yjxiong-style ``BN`` (``slope_filler``/``bias_filler``/``frozen``/``momentum``, as hszhao/PSPNet master's
      deploy files write it): ``bn_param.eps`` (default 1e-5).

    Args:
        batch_stats: accept a BatchNorm with ``use_global_stats: false`` (the converter computes batch
            statistics; a zoo BatchNormalization cannot).

    Raises:
        UnsupportedLayerError: the layer would use batch statistics at test time (and ``batch_stats``
            does not allow it, or it is a fork ``BN``).
    """
    if layer.type == "BatchNorm":
        bp = sub(layer.param, "batch_norm_param")
        if opt(bp, "use_global_stats", True) is False and not batch_stats:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' (BatchNorm{at(layer)}): use_global_stats: false (batch statistics at "
                f"test time) cannot fill a BatchNormalization (moving statistics); caffe.to_keras converts it"
            )
        return _decimal(opt(bp, "eps", 1e-5))
    bp = sub(layer.param, "bn_param")
    if any(opt(bp, f, None) is not None for f in _HSZHAO_BN_FIELDS):
        if opt(bp, "moving_average", False) is not True:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' (BN{at(layer)}): without moving_average: true the PSPNet BN layer uses "
                f"batch statistics at test time, which is not supported"
            )
        return _decimal(opt(bp, "var_eps", 1e-10))
    return _decimal(opt(bp, "eps", 1e-5))


def _decimal(v) -> float:
    """A float32 prototxt value as the shortest decimal that rounds to it (0.001, not 0.0010000000474974513)."""
    return float(str(np.float32(v)))



@contextlib.contextmanager
def host_constant_initializers():
    """While converting, ``Zeros``/``Ones`` initializers return numpy arrays (JAX backend only).

    ``jnp.zeros`` compiles one XLA program per weight shape (~40 ms each: 1.2 s of a ResNet-50's
    2.3 s build on a 2-vCPU machine), and every such weight is overwritten by a Caffe blob anyway.
    Only ``__call__`` changes, so the initializers saved in the layer configs stay ``Zeros``/``Ones``.
    """
    if keras.backend.backend() != "jax":
        yield
        return
    classes = {keras.initializers.Zeros: np.zeros, keras.initializers.Ones: np.ones}
    saved = {cls: cls.__dict__["__call__"] for cls in classes}

    import jax

    def host(fill):  # device_put: jnp.asarray of a numpy array also compiles per shape
        def call(self, shape, dtype=None):
            return jax.device_put(fill(shape, keras.backend.standardize_dtype(dtype or "float32")))

        return call

    try:
        for cls, fill in classes.items():
            cls.__call__ = host(fill)
        yield
    finally:
        for cls, call in saved.items():
            cls.__call__ = call


class _Preload:
    """The arrays a layer's ``add_weight`` calls take, in order, and the variables they made."""

    def __init__(self, arrays):
        self.arrays, self.made, self.failed = arrays, [], False

    def take(self, shape):
        if self.failed or len(self.made) >= len(self.arrays):
            self.failed = True
            return None
        a = self.arrays[len(self.made)]
        if tuple(a.shape) != tuple(int(d) for d in shape):
            self.failed = True
            return None
        return a

    def complete(self, keras_layer) -> bool:
        return (not self.failed and len(self.made) == len(self.arrays)
                and [id(v) for v in keras_layer.weights] == [id(v) for v in self.made])


_PRELOAD: dict[int, _Preload] = {}  # id(keras layer) -> its arrays, while Context.call runs it


class _ArrayInitializer:
    """Returns one given array (the weights' first and only value); never saved in a config."""

    def __init__(self, array, to_device):
        self.array, self.to_device = array, to_device

    def __call__(self, shape, dtype=None):
        a = self.array
        if dtype is not None and keras.backend.standardize_dtype(dtype) != a.dtype.name:
            a = a.astype(keras.backend.standardize_dtype(dtype))
        return self.to_device(a)


def _backend_array_taker():
    """numpy -> backend array without a copy where the backend allows it.

    The arrays are the 64-byte aligned ones of :mod:`converters.caffe.blobs`, owned by the conversion
    (never views of a Net's blobs), so the variables may keep their memory:
    * JAX: ``jnp.asarray`` compiles per shape; on the CPU ``device_put`` aliases an aligned array.
    * TensorFlow: converting numpy copies it (``convert_to_eager_tensor``) and the variable copies
      that; a DLPack import is the array itself (VGG-16: peak RSS 3.4x -> 2.0x the file).
    * PyTorch: ``torch.as_tensor`` already shares a CPU numpy array's memory.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.device_put
    if backend == "tensorflow":
        from tensorflow.experimental import dlpack

        def take(a):
            if a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % 64 == 0:
                try:
                    return dlpack.from_dlpack(a.__dlpack__())
                except BufferError:  # a dtype DLPack lacks (ml_dtypes' bfloat16 under a "bfloat16" policy)
                    pass
            return a

        return take
    return lambda a: a


@contextlib.contextmanager
def preloaded_weights():
    """While converting, ``add_weight`` of a layer run by :meth:`Context.call` starts from the Caffe arrays.

    Only the initial value changes: the layer keeps its own initializer objects (and configs).
    """
    original = keras.layers.Layer.add_weight
    to_device = _backend_array_taker()

    def add_weight(self, *args, **kwargs):
        plan = _PRELOAD.get(id(self))
        if plan is None:
            return original(self, *args, **kwargs)
        shape = kwargs.get("shape", args[0] if args else None)  # Keras 3 layers pass keywords
        array = plan.take(() if shape is None else shape) if len(args) <= 1 else None
        if array is None:
            plan.failed = True
            return original(self, *args, **kwargs)
        kwargs["initializer"] = _ArrayInitializer(array, to_device)
        variable = original(self, *args, **kwargs)
        plan.made.append(variable)
        return variable

    keras.layers.Layer.add_weight = add_weight
    try:
        yield
    finally:
        keras.layers.Layer.add_weight = original


def _signature_key(obj):
    """What ``inspect.signature(obj)`` depends on, for a function or method; ``None``: not cached.

    A bound method's signature is its function's without the first parameter; a ``functools.wraps``
    wrapper's is the wrapped callable's (``inspect`` follows ``__wrapped__``). ``__signature__`` overrides
    both, so objects carrying one are not cached.
    """
    if isinstance(obj, types.MethodType):
        key = _signature_key(obj.__func__)
        return None if key is None else ("bound", key)
    if isinstance(obj, types.FunctionType) and "__signature__" not in obj.__dict__:
        wrapped = obj.__dict__.get("__wrapped__")
        return obj if wrapped is None else _signature_key(wrapped)
    return None


class _CachedInspect(types.ModuleType):
    """The ``inspect`` module, with ``signature`` and ``getfullargspec`` of a function computed once."""

    def __init__(self):
        super().__init__("inspect")
        self._signatures, self._argspecs = {}, {}

    def __getattr__(self, name):
        return getattr(inspect, name)

    def signature(self, obj, *args, **kwargs):
        key = None if args or kwargs else _signature_key(obj)
        if key is None:
            return inspect.signature(obj, *args, **kwargs)
        sig = self._signatures.get(key)
        if sig is None:
            sig = self._signatures[key] = inspect.signature(obj)
        return sig

    def getfullargspec(self, func):
        if not isinstance(func, types.FunctionType) or "__signature__" in func.__dict__:
            return inspect.getfullargspec(func)  # (no wrapper following here, unlike signature)
        spec = self._argspecs.get(func)
        if spec is None:
            spec = self._argspecs[func] = inspect.getfullargspec(func)
        return spec


_KERAS_INSPECTING = ("keras.src.ops.operation", "keras.src.layers.layer")


@contextlib.contextmanager
def cached_signatures():
    """While converting, Keras' layer modules compute each function's signature once.

    Keras recomputes the same signatures for every layer it creates (``Operation.__new__``: the
    ``__init__``'s signature and argspec, for the auto-config; ``Layer.__init__``: ``call``'s; the first
    call: ``call``'s and ``build``'s), ~15% of a ResNet-152's build on JAX (0.36 -> 0.31 s CPU).
    Signatures are immutable and equal however often they are computed, so the layers and their
    configs are the same. Only those two modules' name ``inspect`` changes, and back afterwards.
    """
    modules = [sys.modules.get(name) for name in _KERAS_INSPECTING]
    modules = [m for m in modules if m is not None and getattr(m, "inspect", None) is inspect]
    cached = _CachedInspect()
    try:
        for m in modules:
            m.inspect = cached
        yield
    finally:
        for m in modules:
            m.inspect = inspect
