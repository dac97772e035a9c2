"""kerazoo training: targets, augmentation, losses and metrics for the zoo's pose and segmentation models.

Importing the package registers the Keras losses, metrics and learning-rate schedule (package
``kerazoo_training``), so the checkpoints ``fit`` writes load with
``keras.models.load_model(path, safe_mode=True)``, optimizer included.
"""

from training.losses import HeatmapMSE, SegmentationCrossEntropy, auxiliary_loss_weights  # noqa: F401
from training.schedules import LRSchedule  # noqa: F401 - registers it: fit() compiles optimizers with it
from training.metrics import (  # noqa: F401
    MPII_JOINT_NAMES, MeanIoUMetric, PCKMetric, bbox_size, confusion_matrix, head_size_from_box,
    miou_from_confusion, pck, pckh, torso_size,
)
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
    "confusion_matrix", "miou_from_confusion", "PCKMetric", "MeanIoUMetric", "LRSchedule",
]


def __getattr__(name):
    # training.fit / training.evaluate load Keras-heavy modules only when first used.
    if name == "fit":
        from training.trainer import fit

        return fit
    if name == "evaluate":
        from training.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'training' has no attribute {name!r}")
