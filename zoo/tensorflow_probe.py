"""Keras' "is TensorFlow installed?" probes, answered without importing TensorFlow into a JAX or PyTorch process.

Keras asks its lazy ``tensorflow`` module ``available`` in places that need TensorFlow only if it is in use: its
serializer (is this object a ``tf.TensorShape``?) and ``keras.utils.set_random_seed`` (seed ``tf.random`` too, for
``tf.data``). The question imports TensorFlow, which kerazoo installs: 1-1.5 s, its memory, and its start-up
notices (twice) in the middle of a JAX run's first epoch or at the start of the demo. No object can be a TensorFlow
one, and no TensorFlow RNG can need a seed, before something imports TensorFlow, so while :func:`tensorflow_if_imported`
holds, TensorFlow counts as available only once imported; on the TensorFlow backend it always is.
"""

from __future__ import annotations

import contextlib
import importlib
import sys

import keras

__all__ = ["tensorflow_if_imported", "set_random_seed"]


class _TensorFlowIfImported:
    """Keras' lazy ``tensorflow`` module, ``available`` only when TensorFlow is already imported."""

    def __init__(self, real):
        self._real = real

    @property
    def available(self):
        return "tensorflow" in sys.modules and self._real.available

    def __getattr__(self, name):
        return getattr(self._real, name)


@contextlib.contextmanager
def tensorflow_if_imported(*module_names):
    """While held, the named Keras modules (their ``tf`` name) see TensorFlow as available only once imported.

    A module of another Keras layout (no such module, or no ``tf`` in it) is left as it is.
    """
    swapped = []
    for name in module_names:
        try:
            module = importlib.import_module(name)
            real = module.tf
        except (ImportError, AttributeError):
            continue
        module.tf = _TensorFlowIfImported(real)
        swapped.append((module, real))
    try:
        yield
    finally:
        for module, real in reversed(swapped):
            module.tf = real


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed(seed)`` (Python's ``random``, NumPy, Keras' seed generator, torch on the torch
    backend; zoo's initialisers draw from ``random``, so builds repeat) without importing TensorFlow into a JAX or
    PyTorch process: TensorFlow's RNG is seeded only if TensorFlow is already imported (the TensorFlow backend)."""
    with tensorflow_if_imported("keras.src.utils.rng_utils"):
        keras.utils.set_random_seed(seed)
