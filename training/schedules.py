"""Learning-rate schedules with linear warm-up: constant, step, poly and cosine (``keras.ops`` only).

One serializable class covers the four shapes used by the zoo's recipes, so a ``.keras`` file
with its optimizer state reloads with ``safe_mode=True``:

- ``"constant"``: ``lr``.
- ``"step"``: ``lr * gamma ** (number of milestones passed)`` (hg/bearpaw x0.1 at epochs 60, 90).
- ``"poly"``: ``(lr - end_lr) * (1 - t / T) ** power + end_lr`` (PSPNet, power 0.9).
- ``"cosine"``: ``end_lr + (lr - end_lr) * (1 + cos(pi t / T)) / 2``.

Warm-up ramps linearly from ``warmup_factor * lr`` to the schedule's value over ``warmup_steps``
(MMPose: 500 iterations from 0.001x). Steps are optimizer iterations.
"""

from __future__ import annotations

import math

import keras
from keras import ops

__all__ = ["LRSchedule", "make_schedule", "KINDS"]

KINDS = ("constant", "step", "poly", "cosine")


@keras.saving.register_keras_serializable(package="kerazoo_training")
class LRSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up + one of :data:`KINDS`.

    Args:
        kind: schedule shape (see module docstring).
        learning_rate: base learning rate.
        total_steps: T, optimizer steps of the whole run (poly/cosine decay length).
        warmup_steps: linear warm-up length in steps (0 = none).
        warmup_factor: starting fraction of the warm-up.
        milestones: step numbers where ``"step"`` multiplies by ``gamma``.
        gamma: step factor.
        power: poly exponent.
        end_learning_rate: final value of poly/cosine.
    """

    def __init__(self, kind="constant", learning_rate=1e-3, total_steps=1, warmup_steps=0, warmup_factor=0.001,
                 milestones=(), gamma=0.1, power=0.9, end_learning_rate=0.0):
        if kind not in KINDS:
            raise ValueError(f"LRSchedule: kind must be one of {KINDS}. Received: kind={kind!r}")
        if not float(learning_rate) > 0:
            raise ValueError(f"LRSchedule: learning_rate must be > 0. Received: {learning_rate!r}")
        self.kind = kind
        self.learning_rate = float(learning_rate)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.warmup_factor = float(warmup_factor)
        self.milestones = tuple(sorted(int(m) for m in milestones))
        self.gamma = float(gamma)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)

    def __call__(self, step):
        t = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.learning_rate, "float32")
        end = ops.convert_to_tensor(self.end_learning_rate, "float32")
        frac = ops.clip(t / float(self.total_steps), 0.0, 1.0)
        if self.kind == "step":
            passed = sum(ops.cast(t >= float(m), "float32") for m in self.milestones) if self.milestones else 0.0
            value = lr * ops.power(ops.convert_to_tensor(self.gamma, "float32"), passed)
        elif self.kind == "poly":
            # (T - t) / T, not 1 - t / T: float32 cancellation near the end (0.2% off at step 89,999 of 90,000)
            left = ops.clip((float(self.total_steps) - t) / float(self.total_steps), 0.0, 1.0)
            value = (lr - end) * ops.power(left, self.power) + end
        elif self.kind == "cosine":
            value = end + (lr - end) * 0.5 * (1.0 + ops.cos(math.pi * frac))
        else:
            value = lr * ops.ones_like(t)
        if self.warmup_steps > 0:
            ramp = self.warmup_factor + (1.0 - self.warmup_factor) * ops.clip(t / float(self.warmup_steps), 0.0, 1.0)
            value = value * ramp
        return value

    def get_config(self):
        return {"kind": self.kind, "learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "warmup_factor": self.warmup_factor,
                "milestones": list(self.milestones), "gamma": self.gamma, "power": self.power,
                "end_learning_rate": self.end_learning_rate}


def make_schedule(kind, learning_rate, *, epochs, steps_per_epoch, warmup_epochs=0.0, milestones=(0.6, 0.9),
                  **kwargs) -> LRSchedule:
    """An :class:`LRSchedule` sized in epochs.

    Args:
        kind: one of :data:`KINDS`.
        learning_rate: base learning rate.
        epochs, steps_per_epoch: run length (T = epochs x steps_per_epoch).
        warmup_epochs: warm-up length in (fractional) epochs.
        milestones: for ``"step"``: fractions of the run in (0, 1) (e.g. ``(0.6, 0.9)``) or epoch
            numbers (values >= 1, fractional ones too: 2.5 is half-way through the third epoch).
        **kwargs: ``gamma``, ``power``, ``warmup_factor``, ``end_learning_rate``.
    """
    total = int(epochs) * int(steps_per_epoch)
    bad = [m for m in milestones if not float(m) > 0]
    if bad:
        raise ValueError(f"make_schedule: milestones must be fractions of the run in (0, 1) or epoch numbers >= 1. "
                         f"Received: milestones={tuple(milestones)!r}")
    ms = [int(round(m * (total if m < 1 else int(steps_per_epoch)))) for m in milestones]
    return LRSchedule(kind, learning_rate, total_steps=total, warmup_steps=int(round(warmup_epochs * steps_per_epoch)),
                      milestones=ms, **kwargs)
