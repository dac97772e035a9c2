"""Random weight initialisers drawn on the host with NumPy, registered serializable (package ``"zoo"``).

Same distributions as Keras' ``RandomUniform`` / ``RandomNormal`` / ``VarianceScaling`` /
``GlorotUniform``, but drawn by ``numpy.random.Generator`` and handed to the backend as one array.
Why: on JAX, Keras' initialisers call ``jax.random`` eagerly and XLA compiles one program per weight
shape (a 2-stack hourglass: 15 compiles of ``_uniform``, ResNet-50: 21 of ``_normal`` plus their
``multiply`` and ``add``), most of a first build's time in every new process. NumPy compiles nothing.

Seeding follows Keras' unseeded initialisers: ``seed=None`` picks an integer from Python's ``random``
module when the initialiser is made (as ``keras.random``'s ``make_default_seed``), so
``keras.utils.set_random_seed(s)`` (which seeds ``random``) makes builds repeat, and two builds in one
process differ. The config keeps the ``seed`` as given (``None``): a model loaded from a ``.keras``
file or cloned draws fresh weights from the same distributions. One instance per weight: an instance
repeats its draws for the same shape, as Keras' do.

Shapes follow Keras: ``(kh, kw, C_in, C_out)`` conv kernels, ``(C_in, C_out)`` dense kernels; fans as
``keras.initializers.VarianceScaling``'s (``receptive field * C_in`` / ``* C_out``).
"""

from __future__ import annotations

import math
import random

import keras
import numpy as np
from keras import ops

__all__ = [
    "HostUniform", "HostNormal", "HostHeNormal", "HostGlorotUniform", "record_as_keras", "with_host_initializers",
    "host_drawn_copy",
]

_register = keras.saving.register_keras_serializable(package="zoo")
_NUMPY_FLOATS = {"float16": np.float16, "float32": np.float32, "float64": np.float64}


def _fans(shape):
    """``(fan_in, fan_out)`` as Keras' ``compute_fans``: the receptive field times C_in / C_out."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class _HostRandom(keras.initializers.Initializer):
    """Base: a ``numpy.random.Generator`` seeded with ``self.seed`` per call; subclasses ``_draw``."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"{type(self).__name__}: `seed` must be an int or None. Received: seed={seed!r}")
        self._init_seed = None if seed is None else int(seed)
        # keras.random's make_default_seed: Python's `random`, which keras.utils.set_random_seed seeds.
        self.seed = random.randint(1, int(1e9)) if seed is None else int(seed)

    def _draw(self, rng, shape, dtype):
        raise NotImplementedError

    def keras_equivalent(self) -> keras.initializers.Initializer:
        """Keras' built-in initialiser of the same distribution (and the seed as given)."""
        raise NotImplementedError

    def __call__(self, shape, dtype=None):
        dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
        shape = tuple(int(d) for d in shape)
        # float64 draws for float64 weights; float32 for the rest (bfloat16 has no NumPy dtype).
        draw_dtype = np.float64 if dtype == "float64" else np.float32
        values = self._draw(np.random.default_rng(self.seed), shape, draw_dtype)
        if dtype in _NUMPY_FLOATS:
            return ops.convert_to_tensor(values.astype(_NUMPY_FLOATS[dtype], copy=False), dtype=dtype)
        return ops.cast(ops.convert_to_tensor(values), dtype)

    def get_config(self):
        return {"seed": self._init_seed}


@_register
class HostUniform(_HostRandom):
    """U(minval, maxval) (``keras.initializers.RandomUniform``'s distribution), drawn with NumPy.

    Args:
        minval, maxval: bounds, in the weight's units; values lie in ``[minval, maxval)`` up to the
            float rounding of ``minval + (maxval - minval) * u``.
        seed: int, or ``None`` for one drawn from Python's ``random`` when made (see the module docstring).
    """

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval = float(minval)
        self.maxval = float(maxval)
        super().__init__(seed)

    def _draw(self, rng, shape, dtype):
        u = rng.random(shape, dtype=dtype)
        return dtype(self.minval) + dtype(self.maxval - self.minval) * u

    def keras_equivalent(self):
        return keras.initializers.RandomUniform(self.minval, self.maxval, seed=self._init_seed)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


@_register
class HostNormal(_HostRandom):
    """N(mean, stddev^2), untruncated (``keras.initializers.RandomNormal``'s), drawn with NumPy.

    Args:
        mean, stddev: in the weight's units.
        seed: int, or ``None`` for one drawn from Python's ``random`` when made.
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean = float(mean)
        self.stddev = float(stddev)
        super().__init__(seed)

    def _draw(self, rng, shape, dtype):
        return dtype(self.mean) + dtype(self.stddev) * rng.standard_normal(shape, dtype=dtype)

    def keras_equivalent(self):
        return keras.initializers.RandomNormal(self.mean, self.stddev, seed=self._init_seed)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


@_register
class HostHeNormal(_HostRandom):
    """He (MSRA) normal, untruncated: N(0, 2 / fan) with fan = k * k * C_in (``mode="fan_in"``) or
    k * k * C_out (``"fan_out"``); ``VarianceScaling(2.0, mode, "untruncated_normal")``'s distribution.

    Args:
        mode: ``"fan_in"`` or ``"fan_out"``.
        seed: int, or ``None`` for one drawn from Python's ``random`` when made.
    """

    def __init__(self, mode="fan_in", seed=None):
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"HostHeNormal: `mode` must be 'fan_in' or 'fan_out'. Received: mode={mode!r}")
        self.mode = mode
        super().__init__(seed)

    def _draw(self, rng, shape, dtype):
        fan_in, fan_out = _fans(shape)
        std = math.sqrt(2.0 / max(1, fan_in if self.mode == "fan_in" else fan_out))
        return dtype(std) * rng.standard_normal(shape, dtype=dtype)

    def keras_equivalent(self):
        return keras.initializers.VarianceScaling(2.0, self.mode, "untruncated_normal", seed=self._init_seed)

    def get_config(self):
        return {"mode": self.mode, **super().get_config()}


@_register
class HostGlorotUniform(_HostRandom):
    """Glorot (Xavier) uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)); Keras' default kernel
    initialiser ``GlorotUniform``'s distribution, drawn with NumPy.

    Args:
        seed: int, or ``None`` for one drawn from Python's ``random`` when made.
    """

    def _draw(self, rng, shape, dtype):
        fan_in, fan_out = _fans(shape)
        limit = math.sqrt(3.0 / max(1.0, (fan_in + fan_out) / 2.0))  # = sqrt(6 / (fan_in + fan_out))
        return dtype(limit) * (dtype(2.0) * rng.random(shape, dtype=dtype) - dtype(1.0))

    def keras_equivalent(self):
        return keras.initializers.GlorotUniform(seed=self._init_seed)


def record_as_keras(model) -> None:
    """Put Keras' built-in equivalents in place of the host initialisers on ``model``'s layers, once their
    weights are drawn (or their deferred draws captured), so that a saved ``.keras`` config names only
    ``RandomUniform`` / ``RandomNormal`` / ``VarianceScaling`` / ``GlorotUniform``, as before these existed:
    the file loads with plain ``keras.saving.load_model`` (no ``import zoo`` for a model of built-in layers),
    and a clone or a reloaded config draws from the same distributions."""
    for layer in model._flatten_layers(include_self=False):
        for attr, value in list(vars(layer).items()):
            if attr.endswith("_initializer") and isinstance(value, _HostRandom):
                setattr(layer, attr, value.keras_equivalent())


def _host_twin(config):
    """``(class, kwargs)`` of the host initialiser with the distribution of the serialized Keras initialiser
    ``config``, or ``None`` where there is none (``TruncatedNormal``, ``HeNormal``: truncated; fans over chosen
    axes; another scale)."""
    name, args = config.get("class_name"), dict(config.get("config") or {})
    if config.get("module") != "keras.initializers" or config.get("registered_name") is not None:
        return None
    if args.pop("input_axes", None) is not None or args.pop("output_axes", None) is not None:
        return None
    seed = args.pop("seed", None)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return None  # a SeedGenerator's config, say: Keras' own keeps its meaning
    if name == "RandomUniform" and set(args) <= {"minval", "maxval"}:
        return HostUniform, {**args, "seed": seed}
    if name == "RandomNormal" and set(args) <= {"mean", "stddev"}:
        return HostNormal, {**args, "seed": seed}
    if name == "GlorotUniform" and not args:
        return HostGlorotUniform, {"seed": seed}
    if (name == "VarianceScaling" and args.get("scale") == 2.0 and args.get("distribution") == "untruncated_normal"
            and args.get("mode") in ("fan_in", "fan_out") and set(args) == {"scale", "mode", "distribution"}):
        return HostHeNormal, {"mode": args["mode"], "seed": seed}
    return None


def with_host_initializers(config):
    """A copy of a serialized model config (a ``.keras`` file's ``config.json``, as JSON data) in which every Keras
    random initialiser of a distribution this module draws on the host is that host initialiser instead.

    Why: re-creating a model from its config (``keras.saving.load_model``) draws every weight before the file's
    values replace them, and on JAX Keras' initialisers compile one XLA program per weight shape: 6.4 of the 9.4 s
    that loading a ResNet-152 ``.keras`` took (2 CPU cores). :func:`zoo.load_keras_model` loads this config, then the
    weights, then :func:`record_as_keras` puts Keras' own initialisers back, so the model saves as it was saved.
    """
    if isinstance(config, list):
        return [with_host_initializers(v) for v in config]
    if not isinstance(config, dict):
        return config
    twin = _host_twin(config) if "class_name" in config else None
    if twin is not None:
        cls, kwargs = twin
        return {"module": cls.__module__, "class_name": cls.__name__, "config": kwargs,
                "registered_name": keras.saving.get_registered_name(cls)}
    return {k: with_host_initializers(v) for k, v in config.items()}


def host_drawn_copy(layer, **config_changes):
    """A new, unbuilt layer like ``layer``: ``from_config`` of its config updated with ``config_changes`` (e.g.
    ``dtype=``), its random initialisers drawn on the host (:func:`with_host_initializers`). For the
    ``clone_function`` of a ``keras.models.clone_model`` whose weights are set afterwards (a model in another dtype
    policy): Keras' initialisers would compile one XLA program per weight shape on JAX for draws that are then
    overwritten. Call :func:`record_as_keras` on the clone, so that it saves Keras' initialisers as the original."""
    config = layer.get_config()
    config.update(config_changes)
    return layer.__class__.from_config(with_host_initializers(config))
