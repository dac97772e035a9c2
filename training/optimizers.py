"""Optimiser recipes of the model families (:data:`PRESETS`, from the original training code) and
:func:`make_optimizer`, which turns one into a Keras optimiser with its learning-rate schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import keras

from training.schedules import KINDS, make_schedule

__all__ = ["Preset", "PRESETS", "make_optimizer", "resolve_preset"]


@dataclass(frozen=True)
class Preset:
    """Optimiser recipe of a model family.

    ``lr_scale`` converts a Caffe learning rate tuned for a *summed* loss to our mean-normalised
    losses: ``"euclidean"`` multiplies by ``h * w * channels / 2`` of the output (Caffe
    ``EuclideanLoss`` = sum / 2N), ``"pixels"`` by ``h * w`` (``SoftmaxWithLoss normalize: false``).
    """

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: tuple = (0.6, 0.9)
    gamma: float = 0.1
    power: float = 0.9
    momentum: float = 0.0
    weight_decay: float | None = None
    rho: float = 0.9
    epsilon: float = 1e-7
    lr_scale: str | None = None


PRESETS = {
    # pose-hg-train opts.lua: RMSprop 2.5e-4, alpha 0.99; Torch adds eps 1e-8 outside the sqrt,
    # Keras inside, so 1e-16 inside matches. bearpaw: x0.1 at epochs 60 and 90 of 100.
    "hourglass": Preset("rmsprop", 2.5e-4, "step", milestones=(0.6, 0.9), gamma=0.1, rho=0.99, epsilon=1e-16),
    # CPM caffe: SGD 8e-5, momentum 0.9, wd 5e-4, step gamma 0.333, Euclidean (summed) loss per stage.
    "cpm": Preset("sgd", 8e-5, "step", milestones=(0.33, 0.67), gamma=0.333, momentum=0.9, weight_decay=5e-4,
                  lr_scale="euclidean"),
    # semseg voc2012_pspnet50.yaml: SGD 0.01, momentum 0.9, wd 1e-4, poly 0.9.
    "pspnet": Preset("sgd", 0.01, "poly", power=0.9, momentum=0.9, weight_decay=1e-4),
    # FCN solver.prototxt: SGD 1e-10 on the unnormalised pixel sum, momentum 0.99, wd 5e-4, fixed.
    "fcn": Preset("sgd", 1e-10, "constant", momentum=0.99, weight_decay=5e-4, lr_scale="pixels"),
    # SimpleBaseline MPII yaml: Adam 1e-3, x0.1 at 90 and 120 of 140 epochs.
    "resnet": Preset("adam", 1e-3, "step", milestones=(90 / 140, 120 / 140), gamma=0.1),
    "default": Preset("adam", 1e-3, "cosine", warmup_epochs=0.0),
}


def resolve_preset(preset, family, overrides) -> Preset:
    """``preset`` (a :class:`Preset`, a :data:`PRESETS` key or ``None``: the family's) with the non-None ``overrides``."""
    p = PRESETS.get(preset, preset) if isinstance(preset, str) else preset
    p = p or PRESETS.get(family, PRESETS["default"])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("learning_rate") is not None:
        overrides.setdefault("lr_scale", None)  # an explicit lr is taken as is
    return replace(p, **overrides)


def make_optimizer(preset: Preset, *, epochs, steps_per_epoch, output_shape=None):
    """Optimiser + schedule of ``preset`` for a run of ``epochs x steps_per_epoch`` steps."""
    lr = preset.learning_rate
    if preset.lr_scale and output_shape is not None and None not in output_shape[1:]:
        h, w, c = output_shape[1:]
        lr *= h * w * c / 2.0 if preset.lr_scale == "euclidean" else h * w
    if preset.schedule not in KINDS:
        raise ValueError(f"schedule must be one of {KINDS}. Received: schedule={preset.schedule!r}")
    sched = make_schedule(preset.schedule, lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                          warmup_epochs=preset.warmup_epochs, milestones=preset.milestones, gamma=preset.gamma,
                          power=preset.power)
    kw = {"learning_rate": sched}
    if preset.weight_decay:
        kw["weight_decay"] = preset.weight_decay
    name = preset.optimizer.lower()
    if name == "sgd":
        return keras.optimizers.SGD(momentum=preset.momentum, **kw)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(rho=preset.rho, epsilon=preset.epsilon, momentum=preset.momentum, **kw)
    if name == "adam":
        return keras.optimizers.Adam(**kw)
    if name == "adamw":
        return keras.optimizers.AdamW(**kw)
    raise ValueError(f"optimizer must be 'sgd', 'rmsprop', 'adam' or 'adamw'. Received: {preset.optimizer!r}")
