"""kerazoo training: targets, augmentation, losses and metrics for the zoo's pose and segmentation models.

Importing the package registers the Keras losses, metrics, learning-rate schedule and SGD (package
``kerazoo_training``), so the checkpoints ``fit`` writes load with
``keras.models.load_model(path, safe_mode=True)``, optimizer included. In a data worker process
(:mod:`training.workers`) those names are imported when first used instead: workers make NumPy batches.
"""

import multiprocessing as _mp
import sys as _sys

# Name prefix of the data worker processes (training.workers): they only make NumPy/OpenCV batches, so in
# them this package and its datasets do without Keras (tensorflow, jax or torch would cost seconds of CPU
# per worker before its first batch). Spawned workers carry their name before they import anything.
_DATA_WORKER = "kerazoo-data-worker"
_IN_DATA_WORKER = _mp.current_process().name.startswith(_DATA_WORKER)


def _ignore_ctrl_c() -> None:
    """In a data worker: Ctrl-C is the parent's. A terminal sends it to every process of the command, and each
    worker's own KeyboardInterrupt printed a traceback (four for ``kerazoo train --workers 2 --multiprocessing``)
    above the command's one line; the parent stops ``fit`` and closes its workers itself."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: a process that is no worker of ours
        pass


if _IN_DATA_WORKER:  # a spawned worker imports this package first, before anything it unpickles
    _ignore_ctrl_c()


def _started_as_command() -> bool:
    """True while ``python -m training ...`` imports this package, before ``training.__main__`` runs: Python
    sets ``sys.argv[0]`` to ``-m`` while it locates the module (and imports its package)."""
    if _sys.argv[:1] != ["-m"]:
        return False
    argv = list(getattr(_sys, "orig_argv", ()))  # the interpreter's own command line: which module
    for i, a in enumerate(argv[1:], 1):
        if a.startswith("-m"):
            return (a[2:] or "".join(argv[i + 1:i + 2])) == "training"
    return False


def _interrupt_guard():
    """``python -m training``: Ctrl-C while Keras loads exits 130 in one line (see kerazoo.cli.exit_on_interrupt:
    under JAX a KeyboardInterrupt can be lost in a garbage-collector callback); imported as a library: nothing."""
    import contextlib

    if not _started_as_command():
        return contextlib.nullcontext()
    from kerazoo.cli import exit_on_interrupt

    command = _sys.argv[1:2] if _sys.argv[1:2] in (["train"], ["evaluate"]) else []
    return exit_on_interrupt(" ".join(["python -m training", *command]))


# What needs Keras (directly or through zoo): imported with the package, which registers the losses, metrics,
# schedule and SGD for safe_mode loading -- except in a data worker, where a name is imported when first used.
_KERAS_NAMES = {
    "training.losses": ("HeatmapMSE", "SegmentationCrossEntropy", "auxiliary_loss_weights"),
    "training.schedules": ("LRSchedule",),  # fit() compiles optimizers with it
    "training.solvers": ("CoupledSGD",),  # the sgd presets' optimizer
    "training.metrics": ("MPII_JOINT_NAMES", "bbox_size", "confusion_matrix", "head_size_from_box",
                         "miou_from_confusion", "pck", "pckh", "torso_size"),  # zoo.releases: Keras
    "training.keras_metrics": ("MeanIoUMetric", "PCKMetric"),
}
_LAZY = {"fit": "training.trainer", "evaluate": "training.evaluation"}  # Keras-heavy: loaded when first used
if _IN_DATA_WORKER:
    _LAZY.update((name, module) for module, names in _KERAS_NAMES.items() for name in names)

with _interrupt_guard():  # Ctrl-C while Keras loads: `python -m training` answers as `kerazoo train` does
    if not _IN_DATA_WORKER:
        from training.losses import HeatmapMSE, SegmentationCrossEntropy, auxiliary_loss_weights  # noqa: F401
        from training.schedules import LRSchedule  # noqa: F401
        from training.solvers import CoupledSGD  # noqa: F401
        from training.metrics import (  # noqa: F401
            MPII_JOINT_NAMES, bbox_size, confusion_matrix, head_size_from_box, miou_from_confusion, pck, pckh,
            torso_size,
        )
        from training.keras_metrics import MeanIoUMetric, PCKMetric  # noqa: F401
    from training.targets import (  # noqa: F401
        HeatmapCodec, cpm_center_map, decode_heatmaps, encode_heatmaps, encode_mask, flip_test,
        keypoints_to_image,
    )
    from training.transforms import (  # noqa: F401
        affine_matrix, compose, flip_keypoints, invert, photometric_jitter, swap_pairs, transform_points,
        warp_image, warp_mask,
    )


__all__ = [
    "affine_matrix", "compose", "invert", "warp_image", "warp_mask", "transform_points",
    "photometric_jitter", "flip_keypoints", "swap_pairs",
    "encode_heatmaps", "decode_heatmaps", "HeatmapCodec", "cpm_center_map", "encode_mask",
    "flip_test", "keypoints_to_image",
    "HeatmapMSE", "SegmentationCrossEntropy", "auxiliary_loss_weights",
    "pck", "pckh", "head_size_from_box", "bbox_size", "torso_size", "MPII_JOINT_NAMES",
    "confusion_matrix", "miou_from_confusion", "PCKMetric", "MeanIoUMetric", "LRSchedule", "CoupledSGD",
]


def __getattr__(name):
    # training.fit / training.evaluate (and in a data worker the Keras-dependent names) load when first used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
