"""Random augmentation for top-down pose and segmentation (numpy + OpenCV only): the :class:`Augmentation`
settings and their per-sample draws, and :func:`photometric_jitter`.

The geometry (affine matrices, warps, point transforms, keypoint flips) lives in :mod:`training.affine`
and is re-exported here, so ``from training.transforms import affine_matrix`` keeps working.

Note:
    Images are (H, W, C) arrays; C = image channels. Angles are in degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from training.affine import (  # re-exported: the geometry was part of this module
    _finite, affine_matrix, check_flip_pairs, compose, flip_keypoints, grid_matrix, invert, swap_pairs,
    transform_points, warp_image, warp_mask,
)

__all__ = [
    "affine_matrix", "compose", "invert", "grid_matrix", "warp_image", "warp_mask", "transform_points",
    "photometric_jitter", "flip_keypoints", "swap_pairs", "check_flip_pairs", "Augmentation",
]


# ----------------------------------------------------------------------------- photometric

def photometric_jitter(image, rng: np.random.Generator, brightness=0.2, contrast=0.2, saturation=0.2,
                       hue=0.0) -> np.ndarray:
    """Random brightness, contrast, saturation and hue change (torchvision ``ColorJitter`` semantics).

    Each factor is drawn uniformly from ``[1 - x, 1 + x]`` (hue shift from ``[-hue, hue]`` of a full
    turn) and applied in the fixed order brightness, contrast, saturation, hue. Each step returns to
    uint8, as torchvision does on uint8 tensors, but rounding (torchvision's ``.to(uint8)`` truncates,
    darkening by half a level per step on average), so brightness and contrast are 256-entry lookup
    tables and saturation one ``cv2.addWeighted``: ~0.2 ms for 256x256x3 instead of ~0.6 ms of
    float32 numpy. Channels are taken as RGB for the luma weights; with BGR input the R/B weights
    swap, which only slightly changes the saturation blend. Grey (H, W) or (H, W, 1) images get
    brightness and contrast only.

    Args:
        image: (H, W, 3), (H, W, 1) or (H, W) uint8 image.
        rng: ``np.random.Generator`` supplying the random factors (one draw per enabled effect).
        brightness, contrast, saturation: jitter strengths in [0, 1]. Default 0.2 each.
        hue: hue jitter strength in [0, 0.5] (fraction of the colour circle). Defaults to 0.

    Returns:
        uint8 image of the same shape.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"`image` must be a uint8 (H, W, 3) or grey image. Received shape {img.shape}, dtype {img.dtype}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy.random.Generator. Received: {type(rng).__name__}")
    for name, v, top in (("brightness", brightness, 1.0), ("contrast", contrast, 1.0),
                         ("saturation", saturation, 1.0), ("hue", hue, 0.5)):
        if not 0.0 <= _finite(v, name) <= top:
            raise ValueError(f"`{name}` must be in [0, {top}]. Received: {name}={v!r}")
    color = img.ndim == 3 and img.shape[2] == 3
    levels = np.arange(256, dtype=np.float32)
    x = np.ascontiguousarray(img)

    def lookup(a, table):  # float32 table -> rounded, clipped uint8 table -> cv2.LUT
        return cv2.LUT(a, np.clip(np.rint(table), 0, 255).astype(np.uint8)).reshape(a.shape)

    if brightness > 0:
        x = lookup(x, levels * np.float32(rng.uniform(1 - brightness, 1 + brightness)))
    if contrast > 0:
        f = rng.uniform(1 - contrast, 1 + contrast)
        means = np.asarray(cv2.mean(x)[:3 if color else 1])  # per-channel means; luma is linear in them
        m = float(means @ np.array([0.299, 0.587, 0.114])) if color else float(means[0])
        x = lookup(x, np.float32(f) * levels + np.float32((1 - f) * m))
    if color and saturation > 0:
        f = rng.uniform(1 - saturation, 1 + saturation)
        gray = cv2.cvtColor(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)  # luma 0.299/0.587/0.114
        x = cv2.addWeighted(x, f, gray, 1 - f, 0.0)  # rounds and saturates to uint8
    if color and hue > 0:
        shift = rng.uniform(-hue, hue)
        hsv = cv2.cvtColor(x.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # float H in [0, 360)
        hsv[:, :, 0] = np.mod(hsv[:, :, 0] + 360.0 * shift, 360.0)
        x = np.clip(np.rint(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0), 0, 255).astype(np.uint8)
    return x if x is not img else x.copy()


@dataclass(frozen=True)
class Augmentation:
    """Random augmentation settings (all plain numbers, picklable).

    The defaults are :meth:`pose`, HRNet/SimpleBaseline's MPII recipe (``lib/dataset/JointsDataset.py``,
    ``SCALE_FACTOR 0.25``, ``ROT_FACTOR 30``, ``FLIP true``, no colour change); :meth:`segmentation` is
    PSPNet's (hszhao/semseg ``tool/train.py``).

    Attributes:
        scale_range: ``(lo, hi)`` zoom factor range of the crop (>1 zooms in: the crop's side in the
            source is divided by the zoom).
        scale_sampling: ``"normal"`` (HRNet pose recipe): the crop's side is multiplied by
            ``clip(N(1, sf), 1/hi, 1/lo)`` with ``sf = (1/lo - 1/hi) / 2``, so the zoom is its inverse,
            in ``[lo, hi]``; HRNet's ``s * clip(randn() * sf + 1, 1 - sf, 1 + sf)`` with ``sf = 0.25`` is
            ``scale_range=(0.8, 4/3)``. ``"uniform"``: zoom ``U(lo, hi)`` (PSPNet's ``RandScale``).
        rotation: degrees; ``"normal"``: ``clip(N(0, r), -2r, 2r)``, ``"uniform"``: ``U(-r, r)``.
        rotation_sampling: see ``rotation``.
        rotation_prob: probability of rotating at all (HRNet 0.6, semseg's ``RandRotate`` 0.5).
        flip_prob: probability of a horizontal mirror (keypoint pairs are swapped).
        translate: random shift, as a fraction of the crop side (the input's short side), ``U(-t, t)``
            per axis; pose only (segmentation crops at a random position instead).
        blur_prob: probability of semseg's ``RandomGaussianBlur``: ``cv2.GaussianBlur`` 5x5, sigma from
            the size (1.1 px), of the image only (PSPNet 0.5; 0: never).
        brightness, contrast, saturation, hue: :func:`photometric_jitter` (in neither original recipe:
            0 in both presets; e.g. 0.2 each for torchvision-style colour jitter).
    """

    scale_range: tuple = (0.8, 1.0 / 0.75)
    scale_sampling: str = "normal"
    rotation: float = 30.0
    rotation_sampling: str = "normal"
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    translate: float = 0.0
    blur_prob: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self):
        # checked here, not when a batch is drawn: a zoom of 0 or a misspelt sampling name (which fell
        # back to uniform) otherwise surfaced mid-training as a per-sample error, or not at all
        try:
            lo, hi = (float(v) for v in self.scale_range)
        except (TypeError, ValueError):
            lo = hi = math.nan
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            raise ValueError(f"Augmentation: scale_range must be (lo, hi) zoom factors with 0 < lo <= hi. "
                             f"Received: scale_range={self.scale_range!r}")
        object.__setattr__(self, "scale_range", (lo, hi))
        for name in ("scale_sampling", "rotation_sampling"):
            if getattr(self, name) not in ("normal", "uniform"):
                raise ValueError(f"Augmentation: {name} must be 'normal' or 'uniform'. "
                                 f"Received: {name}={getattr(self, name)!r}")
        for name, top in (("rotation", math.inf), ("rotation_prob", 1.0), ("flip_prob", 1.0), ("translate", math.inf),
                          ("blur_prob", 1.0),
                          ("brightness", 1.0), ("contrast", 1.0), ("saturation", 1.0), ("hue", 0.5)):
            v = _finite(getattr(self, name), f"Augmentation.{name}")
            if not 0.0 <= v <= top:
                raise ValueError(f"Augmentation: {name} must be in [0, {top}]. Received: {name}={getattr(self, name)!r}")

    @classmethod
    def pose(cls, **overrides) -> "Augmentation":
        """HRNet/SimpleBaseline MPII recipe: crop side x clip(N(1, 0.25), 0.75, 1.25) (zoom 0.8-1.33),
        rotation clip(N(0, 30), -60, 60) with p=0.6, flip 0.5, no colour change (HRNet pads black;
        :class:`~training.data.HeatmapDataset` pads with its normalisation's mean pixel, black for RGB / 255)."""
        return cls(**overrides)

    @classmethod
    def segmentation(cls, **overrides) -> "Augmentation":
        """PSPNet recipe (semseg): zoom U(0.5, 2.0), rotation U(-10, 10) with p=0.5, 5x5 Gaussian blur with
        p=0.5, flip 0.5, no colour change; :class:`~training.data.SegmentationDataset` pads the image with
        the mean pixel and the labels with ``ignore_label``."""
        base = dict(scale_range=(0.5, 2.0), scale_sampling="uniform", rotation=10.0, rotation_sampling="uniform",
                    rotation_prob=0.5, blur_prob=0.5)
        return cls(**{**base, **overrides})

    @classmethod
    def coerce(cls, value, task: str) -> "Augmentation | None":
        """``None``/``False`` -> no augmentation, ``True`` -> the task preset, a dict -> preset + overrides."""
        if value is None or value is False:
            return None
        if isinstance(value, Augmentation):
            return value
        preset = cls.pose if task == "pose" else cls.segmentation
        if value is True:
            return preset()
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"augment: unknown setting(s) {sorted(unknown)}; known: {list(cls.__dataclass_fields__)}.")
            return preset(**value)
        raise TypeError(f"augment must be None, a bool, a dict or an Augmentation. Received: {value!r:.100}")

    def sample(self, rng: np.random.Generator) -> dict:
        """Draw ``zoom``, ``rotation`` (deg), ``flip``, ``shift`` (fraction) for one sample."""
        lo, hi = self.scale_range
        if self.scale_sampling == "normal":
            # HRNet scales the crop's side (s *= clip(N(1, sf), 1 - sf, 1 + sf)), not the zoom: the zoom
            # is the inverse, so its range [0.8, 1.33] is not symmetric about 1
            s_lo, s_hi = 1.0 / hi, 1.0 / lo
            zoom = 1.0 / float(np.clip(rng.normal(1.0, (s_hi - s_lo) / 2.0), s_lo, s_hi))
        else:
            zoom = float(rng.uniform(lo, hi))
        rot = 0.0
        if self.rotation > 0 and rng.random() < self.rotation_prob:
            if self.rotation_sampling == "normal":
                rot = float(np.clip(rng.normal(0.0, self.rotation), -2 * self.rotation, 2 * self.rotation))
            else:
                rot = float(rng.uniform(-self.rotation, self.rotation))
        flip = bool(rng.random() < self.flip_prob)
        shift = rng.uniform(-self.translate, self.translate, size=2) if self.translate > 0 else np.zeros(2)
        return {"zoom": zoom, "rotation": rot, "flip": flip, "shift": shift}

    def jitter(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The photometric part on a warped crop: blur (``blur_prob``), then colour jitter."""
        if self.blur_prob > 0 and rng.random() < self.blur_prob:
            image = cv2.GaussianBlur(image, (5, 5), 0)  # semseg RandomGaussianBlur(radius=5)
        if self.brightness or self.contrast or self.saturation or self.hue:
            return photometric_jitter(image, rng, self.brightness, self.contrast, self.saturation, self.hue)
        return image
