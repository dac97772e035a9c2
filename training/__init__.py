"""kerazoo training: targets, augmentation, losses and metrics for the zoo's pose and segmentation models."""

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
]
