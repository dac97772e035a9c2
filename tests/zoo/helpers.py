"""Small helpers shared by the zoo model tests."""

import contextlib

import keras
import numpy as np


def trainable_count(model) -> int:
    """Number of trainable scalars (weights + BN gamma/beta), as torch counts parameters."""
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def randomize_batchnorm(model, rng) -> None:
    """Non-trivial BN gamma/beta/mean/variance, so a misplaced or lost BN weight changes the output."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c),
            ])


def forward_numpy(model, x):
    """NumPy outputs of ``model`` on ``x``: one compiled graph under JAX (eager JAX compiles every op
    separately), an eager call elsewhere (TensorFlow traces ``predict`` slowly for 600-layer graphs)."""
    if keras.backend.backend() == "jax":
        return model.predict(x, verbose=0)
    out = model(x)
    return [keras.ops.convert_to_numpy(o) for o in out] if isinstance(out, (list, tuple)) else \
        keras.ops.convert_to_numpy(out)



@contextlib.contextmanager
def structure_only():
    """Context to build models whose structure alone is checked (layers, names, shapes, parameter counts):
    their variables get shapes but no values. ``keras.StatelessScope()`` alone draws every variable made inside
    it on exit; drawing the weights is ~85% of a ResNet-50 build on TensorFlow and an XLA compile per kernel
    shape on JAX. On exit, clear_session (without its gc.collect()) drops the undrawn variables from Keras'
    global list, where the next StatelessScope to exit would draw them; name counters restart too."""
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        keras.backend.clear_session(free_memory=False)


def count_keras_draws(monkeypatch) -> list:
    """The shapes Keras' own random initialisers draw from now on (GlorotUniform and HeNormal are VarianceScaling):
    on JAX each shape compiled an XLA program."""
    draws = []
    for cls in (keras.initializers.RandomUniform, keras.initializers.RandomNormal, keras.initializers.VarianceScaling):
        def counted(self, shape, dtype=None, _call=cls.__call__):
            draws.append(shape)
            return _call(self, shape, dtype)
        monkeypatch.setattr(cls, "__call__", counted)
    return draws
