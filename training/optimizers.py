"""Optimiser recipes of the model families (:data:`PRESETS`, from the original training code) and
:func:`make_optimizer`, which turns one into a Keras optimiser with its learning-rate schedule.

``"sgd"`` is :class:`training.solvers.CoupledSGD`, Caffe's / PyTorch's arithmetic: L2 weight decay added to
the gradient (through momentum) and per-variable lr / decay multipliers, for the sgd presets (cpm, fcn,
pspnet) and an explicit ``optimizer="sgd"`` alike (its ``weight_decay`` is then coupled too). Keras'
``SGD(weight_decay=)`` decays outside momentum (``1 / (1 - momentum)`` times weaker at a steady state: 10x
at 0.9, 100x at FCN's 0.99) and, under ``lr_scale``, with the scaled rate (K times stronger per step; see
:class:`Preset`). ``"adamw"`` gives decoupled decay.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import keras

from training.schedules import KINDS, make_schedule
from training.solvers import STYLES, CoupledSGD

__all__ = ["Preset", "PRESETS", "make_optimizer", "resolve_preset", "CoupledSGD"]


@dataclass(frozen=True)
class Preset:
    """Optimiser recipe of a model family.

    ``lr_scale`` converts a Caffe learning rate tuned for a *summed* loss to our mean-normalised
    losses: ``"euclidean"`` multiplies by ``K = h * w * channels / 2`` of the output (Caffe
    ``EuclideanLoss`` = sum / 2N), ``"pixels"`` by ``K = h * w`` (``SoftmaxWithLoss normalize: false``).
    Caffe's step is ``lr * (g_caffe + wd * w) = (lr * K) * g_ours + lr * wd * w``, so under the scaled rate
    the SGD decay is ``weight_decay / K``: ``weight_decay`` stays in the original's units (Caffe's
    ``lr * wd`` per step, whatever K is).

    ``multipliers`` (SGD only): ``((pattern, lr_mult, decay_mult), ...)`` by variable path, first match
    wins, unmatched ``(1, 1)`` (:class:`~training.solvers.CoupledSGD`); ``sgd_style``: ``"caffe"`` (rate
    inside the momentum history; Keras SGD's order too) or ``"torch"`` (``torch.optim.SGD``: outside).
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
    multipliers: tuple = ()
    sgd_style: str = "caffe"


# Caffe prototxt param { lr_mult decay_mult } of CPM (shihenw/convolutional-pose-machines-release
# training/genProto.py lines 56-62: every conv of stage 1 lr_mult 5 / bias 10, the other stages' 1 / bias 2;
# decay_mult 1 / bias 0) and FCN (shelhamer/fcn.berkeleyvision.org voc-fcn8s/net.py line 8, conv_relu, and
# the score layers: 1 / bias 2, decay_mult 1 / bias 0; the bilinear deconvs' lr_mult 0 is the builder's
# trainable=False). Keras paths are "layer/kernel", "layer/bias".
CPM_MULTIPLIERS = (("*_stage1/kernel", 5.0, 1.0), ("*_stage1/bias", 10.0, 0.0), ("*/bias", 2.0, 0.0))
FCN_MULTIPLIERS = (("*/bias", 2.0, 0.0),)
# hszhao/semseg tool/train.py (at 2338a13) lines 132-149: modules_new = [model.ppm, model.cls, model.aux] at
# base_lr * 10, the ResNet at base_lr, one SGD weight_decay for every parameter (BN and biases too); train()
# sets the groups' lr to poly(iter) and 10x poly(iter) each iteration. Zoo names: ppm conv5_3_pool{b}_conv
# (+ _bn), cls conv5_4 (+ _bn) and conv6, aux aux_3x3 (+ _bn) and aux_conv6.
PSPNET_MULTIPLIERS = (("conv5_3_pool*", 10.0, 1.0), ("conv5_4*", 10.0, 1.0), ("conv6/*", 10.0, 1.0),
                      ("aux_*", 10.0, 1.0))

_FCN = Preset("sgd", 1e-10, "constant", momentum=0.99, weight_decay=5e-4, lr_scale="pixels", multipliers=FCN_MULTIPLIERS)

PRESETS = {
    # pose-hg-train opts.lua: RMSprop 2.5e-4, alpha 0.99; Torch adds eps 1e-8 outside the sqrt,
    # Keras inside, so 1e-16 inside matches. bearpaw: x0.1 at epochs 60 and 90 of 100.
    "hourglass": Preset("rmsprop", 2.5e-4, "step", milestones=(0.6, 0.9), gamma=0.1, rho=0.99, epsilon=1e-16),
    # CPM caffe (genProto.py getSolverPrototxt): SGD 8e-5, momentum 0.9, wd 5e-4, step gamma 0.333,
    # Euclidean (summed) loss per stage; stage 1 at 5x.
    "cpm": Preset("sgd", 8e-5, "step", milestones=(0.33, 0.67), gamma=0.333, momentum=0.9, weight_decay=5e-4,
                  lr_scale="euclidean", multipliers=CPM_MULTIPLIERS),
    # semseg voc2012_pspnet50.yaml: SGD 0.01, momentum 0.9, wd 1e-4, poly 0.9; torch.optim.SGD, new heads 10x.
    "pspnet": Preset("sgd", 0.01, "poly", power=0.9, momentum=0.9, weight_decay=1e-4,
                     multipliers=PSPNET_MULTIPLIERS, sgd_style="torch"),
    # FCN solver.prototxt: SGD 1e-10 on the unnormalised pixel sum, momentum 0.99, wd 5e-4, fixed.
    "fcn": _FCN,
    # The staged FCNs' solvers (voc-fcn16s, voc-fcn8s solver.prototxt) lower the rate as each stage starts
    # from the previous one's weights: 1e-12 and 1e-14; the at-once FCN-8s keeps 1e-10. Picked by zoo name.
    "fcn16s": replace(_FCN, learning_rate=1e-12),
    "fcn8s": replace(_FCN, learning_rate=1e-14),
    # SimpleBaseline MPII yaml: Adam 1e-3, x0.1 at 90 and 120 of 140 epochs.
    "resnet": Preset("adam", 1e-3, "step", milestones=(90 / 140, 120 / 140), gamma=0.1),
    "default": Preset("adam", 1e-3, "cosine", warmup_epochs=0.0),
}


# Keras' own default rates, for an optimizer override that is not the preset's kind
_KERAS_RATES = {"sgd": 0.01, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3}


def resolve_preset(preset, family, overrides, *, model_name=None) -> Preset:
    """``preset`` (a :class:`Preset`, a :data:`PRESETS` key or ``None``: the model's) with the non-None ``overrides``.

    ``None`` takes :data:`PRESETS` ``[model_name]`` where there is one (the staged FCNs), else the family's.
    An ``optimizer`` override of another kind than the preset's drops the numbers tuned for the preset's
    optimiser (rate and its ``lr_scale``, momentum, rho/epsilon, weight decay, multipliers): cpm's SGD rate
    8e-5 x K would have made Adam's rate 1.27 and its momentum 0.9 gone into RMSprop. It starts from Keras'
    default rate for that optimiser instead (``learning_rate`` overrides it) and keeps the schedule.

    Raises:
        ValueError: ``preset`` is neither a :class:`Preset`, a :data:`PRESETS` key nor ``None`` (a model name
            such as ``"fcn32s"``, which takes its family's, or a typo).
    """
    if not (preset is None or isinstance(preset, Preset) or (isinstance(preset, str) and preset in PRESETS)):
        raise ValueError(f"preset must be a Preset, one of {tuple(PRESETS)} or None (the model's own, else its "
                         f"family's). Received: preset={preset!r}")
    p = PRESETS[preset] if isinstance(preset, str) else preset
    p = p or PRESETS.get(model_name) or PRESETS.get(family, PRESETS["default"])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    kind = overrides.get("optimizer")
    if isinstance(kind, str) and kind.lower() != p.optimizer.lower() and kind.lower() in _KERAS_RATES:
        p = replace(p, learning_rate=_KERAS_RATES[kind.lower()], lr_scale=None, momentum=0.0, rho=0.9,
                    epsilon=1e-7, weight_decay=None, multipliers=(), sgd_style="caffe")
    if overrides.get("learning_rate") is not None:
        overrides.setdefault("lr_scale", None)  # an explicit lr is taken as is
    return replace(p, **overrides)


def make_optimizer(preset: Preset, *, epochs, steps_per_epoch, output_shape=None):
    """Optimiser + schedule of ``preset`` for a run of ``epochs x steps_per_epoch`` steps.

    ``output_shape`` ``(B, h, w, c)`` sizes ``preset.lr_scale`` (ignored without it or with an unknown size).
    ``"sgd"`` is :class:`~training.solvers.CoupledSGD` with ``weight_decay / K`` as its L2 decay and the
    preset's multipliers; the other optimisers are Keras' own (their ``weight_decay`` is decoupled).
    """
    lr, scale = preset.learning_rate, 1.0
    if preset.lr_scale and output_shape is not None and None not in output_shape[1:]:
        h, w, c = output_shape[1:]
        scale = h * w * c / 2.0 if preset.lr_scale == "euclidean" else float(h * w)
        lr *= scale
    if preset.schedule not in KINDS:
        raise ValueError(f"schedule must be one of {KINDS}. Received: schedule={preset.schedule!r}")
    sched = make_schedule(preset.schedule, lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                          warmup_epochs=preset.warmup_epochs, milestones=preset.milestones, gamma=preset.gamma,
                          power=preset.power)
    name = preset.optimizer.lower()
    if name == "sgd":
        if preset.sgd_style not in STYLES:
            raise ValueError(f"sgd_style must be one of {STYLES}. Received: sgd_style={preset.sgd_style!r}")
        # the decay in the original's units: lr * K * (wd / K) = Caffe's lr * wd per step (see Preset)
        return CoupledSGD(learning_rate=sched, momentum=float(preset.momentum),
                          l2_decay=float(preset.weight_decay or 0.0) / scale, multipliers=preset.multipliers,
                          style=preset.sgd_style)
    kw = {"learning_rate": sched}
    if preset.weight_decay:
        kw["weight_decay"] = preset.weight_decay
    if name == "rmsprop":
        return keras.optimizers.RMSprop(rho=preset.rho, epsilon=preset.epsilon, momentum=preset.momentum, **kw)
    if name == "adam":
        return keras.optimizers.Adam(**kw)
    if name == "adamw":
        return keras.optimizers.AdamW(**kw)
    raise ValueError(f"optimizer must be 'sgd', 'rmsprop', 'adam' or 'adamw'. Received: {preset.optimizer!r}")
