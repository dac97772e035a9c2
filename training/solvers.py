"""Caffe's and PyTorch's SGD as a Keras optimiser (:class:`CoupledSGD`, ``keras.ops`` only).

The originals the sgd presets reproduce add L2 weight decay to the *gradient*, so it goes through
momentum, and scale each parameter's rate and decay by its own multipliers:

- Caffe ``SGDSolver`` (``src/caffe/solvers/sgd_solver.cpp``): ``Regularize`` adds ``local_decay * w`` to
  the diff (``local_decay = weight_decay * decay_mult``), ``ComputeUpdateValue`` sets
  ``history = momentum * history + local_rate * diff`` (``local_rate = rate * lr_mult``) and
  ``Net::Update`` subtracts ``history`` from ``w``. ``lr_mult`` / ``decay_mult`` come from each layer's
  ``param { }`` in the prototxt.
- PyTorch ``torch.optim.SGD(params_groups, weight_decay=wd)`` (``torch/optim/sgd.py``,
  ``_single_tensor_sgd``, dampening 0): ``g += wd * w``, ``buf = momentum * buf + g``, ``w -= lr * buf``
  with each param group's ``lr``: the learning rate sits *outside* the momentum buffer (the two agree
  while the rate is constant and differ when a schedule changes it).

Keras' ``SGD(weight_decay=wd)`` instead decays outside momentum, ``w -= lr * wd * w`` per step: at a
steady state ``1 / (1 - momentum)`` times weaker than the originals (10x at momentum 0.9, 100x at
FCN's 0.99), and it has no per-variable multipliers.
"""

from __future__ import annotations

import fnmatch
import math
import numbers

import keras
import numpy as np
from keras import ops

__all__ = ["CoupledSGD", "STYLES"]

STYLES = ("caffe", "torch")


def _number(value, what, *, upper=None) -> float:
    # NumPy scalars too (np.float32(0.9) is no float), as Keras' own optimisers take them; never a bool
    ok = (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
          and value >= 0)
    if not ok or (upper is not None and value >= upper):
        bound = f"in [0, {upper})" if upper is not None else ">= 0"
        raise ValueError(f"CoupledSGD: {what} must be a finite number {bound}. Received: {what}={value!r}")
    return float(value)


def _check_multipliers(multipliers) -> tuple:
    """``multipliers`` as a tuple of ``(pattern, lr_mult, decay_mult)``; a clear error for anything else."""
    if isinstance(multipliers, (str, bytes)) or not isinstance(multipliers, (list, tuple)):
        raise ValueError("CoupledSGD: multipliers must be a list of (pattern, lr_mult, decay_mult). "
                         f"Received: multipliers={multipliers!r}")
    out = []
    for i, entry in enumerate(multipliers):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 3 and isinstance(entry[0], str) and entry[0]):
            raise ValueError(f"CoupledSGD: multipliers[{i}] must be (pattern, lr_mult, decay_mult) with a non-empty "
                             f"pattern string. Received: {entry!r}")
        out.append((entry[0], _number(entry[1], f"multipliers[{i}] lr_mult"),
                    _number(entry[2], f"multipliers[{i}] decay_mult")))
    return tuple(out)


@keras.saving.register_keras_serializable(package="kerazoo_training")
class CoupledSGD(keras.optimizers.Optimizer):
    """SGD with momentum, L2 weight decay added to the gradient, and per-variable lr / decay multipliers.

    For a variable ``w`` with gradient ``g`` (the loss' own, without decay), multipliers ``(lr_mult,
    decay_mult)`` and the schedule's rate ``lr`` of this step::

        d = g + l2_decay * decay_mult * w
        "caffe":  h = momentum * h + lr * lr_mult * d;   w -= h          (Caffe SGDSolver, Keras SGD's order)
        "torch":  h = momentum * h + d;                  w -= lr * lr_mult * h   (torch.optim.SGD)

    ``h`` starts at 0 (torch's first step sets ``buf = d``: the same). With ``momentum=0`` both are
    ``w -= lr * lr_mult * d`` and no ``h`` is kept. ``lr_mult=0`` leaves a variable unchanged (Caffe's
    frozen ``lr_mult: 0`` params).

    Args:
        learning_rate: float or ``LearningRateSchedule`` (the base rate, Caffe's ``rate``).
        momentum: in [0, 1).
        l2_decay: the coupled L2 coefficient (Caffe's solver ``weight_decay``, torch's SGD
            ``weight_decay``), >= 0. Not Keras' ``weight_decay``, which is decoupled and refused here.
        multipliers: ``[(pattern, lr_mult, decay_mult), ...]``: the first ``fnmatch`` pattern (case
            sensitive, ``*`` also matches ``/``) that matches a variable's ``path`` (``"layer/kernel"``)
            gives its multipliers; a variable no pattern matches gets ``(1, 1)``.
        style: ``"caffe"`` (rate inside the momentum history) or ``"torch"`` (rate outside).
        **kwargs: Keras' optimizer arguments (``clipnorm``, ``loss_scale_factor``, ...).

    The configuration (multipliers included) is saved with a ``.keras`` file, so a model saved with its
    optimizer reloads (``safe_mode=True`` once :mod:`training` is imported) and resumes with the same
    arithmetic.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, l2_decay=0.0, multipliers=(), style="caffe",
                 name="coupled_sgd", **kwargs):
        decoupled = kwargs.pop("weight_decay", None)  # get_config of the base class writes weight_decay: None
        if decoupled is not None:
            raise ValueError("CoupledSGD: weight_decay is Keras' decoupled decay (w -= lr * wd * w, outside momentum); "
                             f"give the coupled L2 coefficient as l2_decay=. Received: weight_decay={decoupled!r}")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = _number(momentum, "momentum", upper=1)
        self.l2_decay = _number(l2_decay, "l2_decay")
        self.multipliers = _check_multipliers(multipliers)
        if style not in STYLES:
            raise ValueError(f"CoupledSGD: style must be one of {STYLES}. Received: style={style!r}")
        self.style = style

    def multipliers_for(self, path: str) -> tuple[float, float]:
        """``(lr_mult, decay_mult)`` of the variable at ``path`` (``"conv1_stage1/kernel"``)."""
        for pattern, lr_mult, decay_mult in self.multipliers:
            if fnmatch.fnmatchcase(path, pattern):
                return lr_mult, decay_mult
        return 1.0, 1.0

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        # resolved once, in the variables' order: update_step looks them up by the variable's index
        self._variable_multipliers = [self.multipliers_for(v.path) for v in variables]
        self.momentums = self.add_optimizer_variables(variables, "momentum") if self.momentum else []

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        lr_mult, decay_mult = self._variable_multipliers[i]
        dtype = variable.dtype
        d = ops.cast(gradient, dtype)
        decay = self.l2_decay * decay_mult
        if decay:
            d = ops.add(d, ops.multiply(ops.cast(decay, dtype), variable))
        rate = ops.multiply(ops.cast(learning_rate, dtype), ops.cast(lr_mult, dtype))
        if not self.momentum:
            self.assign_sub(variable, ops.multiply(rate, d))
            return
        h = self.momentums[i]
        momentum = ops.cast(self.momentum, dtype)
        if self.style == "caffe":
            self.assign(h, ops.add(ops.multiply(momentum, h), ops.multiply(rate, d)))
            self.assign_sub(variable, h)
        else:
            self.assign(h, ops.add(ops.multiply(momentum, h), d))
            self.assign_sub(variable, ops.multiply(rate, h))

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "l2_decay": self.l2_decay,
                       "multipliers": [list(m) for m in self.multipliers], "style": self.style})
        return config
