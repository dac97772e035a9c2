"""Synthetic pose and segmentation data, generated on the fly, with exactly known labels.

Nothing is stored on disk: a record holds a small picklable *source* (seed, index, size) whose
``load()`` renders the image (and, for segmentation, the mask) deterministically. Every model in
the zoo can therefore be trained and evaluated with no download.

Pose images: a random tree-shaped "figure" on a textured grey background; limbs are grey lines,
joint ``k`` is a disc of a fixed colour (a 16-colour high-contrast palette), placed at least 2.5
radii from the other joints where 20 random tries find such a place, so a network can learn *which*
joint from colour and *where* from the disc centre (the last try is kept otherwise: about 1 figure in
120 of 16 joints at 128 px has a disc partly or wholly under a later one, still ``visible = 1``;
kept so that the data, and every figure measured on it, stay as they are). Joints that fall outside
the image get ``visible = 0``. The figure has no left/right symmetry, so ``SYNTHETIC_FLIP_PAIRS`` is empty
(mirroring keeps every joint's identity).

Segmentation images: 1-4 random shapes on a textured background; class ``c`` (1..C-1) has its
own colour and shape (disc, rectangle, triangle); the mask is drawn with the same geometry
without anti-aliasing, so labels match pixels exactly. ``ignore_border > 0`` paints a band of
255 (ignore) around each shape, as Pascal VOC does.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.datasets.base import PoseRecord, SegRecord, box_center_scale

__all__ = ["SYNTHETIC_FLIP_PAIRS", "SyntheticPoseImage", "SyntheticSegSource", "synthetic_pose",
           "synthetic_segmentation", "figure_joint_colors", "class_colors"]

SYNTHETIC_FLIP_PAIRS: tuple = ()


# 16 colours chosen to be far apart from each other and from the grey background.
_PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195)], np.uint8)


def figure_joint_colors(k: int) -> np.ndarray:
    """``(k, 3)`` uint8 RGB colours the synthetic figures' joint discs are painted with.

    A 16-colour high-contrast palette, then evenly spaced hues (for drawing predictions, see
    :func:`training.visualize.hue_colors`).
    """
    out = np.zeros((k, 3), np.uint8)
    out[:min(k, 16)] = _PALETTE[:k]
    for j in range(16, k):
        hue = int((j - 16) * 180 / max(k - 16, 1)) % 180  # OpenCV hue unit = 2 degrees
        out[j] = cv2.cvtColor(np.array([[[hue, 255, 200]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return out


def class_colors(num_classes: int) -> np.ndarray:
    """``(C, 3)`` uint8 RGB: class 0 grey, others evenly spaced hues."""
    out = np.zeros((num_classes, 3), np.uint8)
    out[0] = (128, 128, 128)
    for c in range(1, num_classes):
        hue = int(180 * (c - 1) / max(num_classes - 1, 1))
        out[c] = cv2.cvtColor(np.array([[[hue, 230, 230]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return out


def _background(rng, w, h) -> np.ndarray:
    """Low-frequency grey texture plus pixel noise, uint8 (h, w, 3)."""
    coarse = rng.uniform(60, 190, size=(4, 4)).astype(np.float32)
    base = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    img = base[..., None] + rng.normal(0, 8, size=(h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _figure(seed: int, index: int, size, k: int):
    """Joint positions ``(k, 2)``, parents, and drawing sizes of figure ``index``."""
    w, h = size
    rng = np.random.default_rng([seed, index, 1])
    extent = rng.uniform(0.45, 0.7) * min(w, h)
    radius = max(2, int(round(extent * 0.05)))
    root = np.array([rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h])
    parents = np.array([-1] + [(j - 1) // 2 for j in range(1, k)])
    pts = np.zeros((k, 2))
    pts[0] = root
    for j in range(1, k):
        for _ in range(20):  # keep discs apart, so every joint stays visible and unambiguous
            ang = rng.uniform(0, 2 * np.pi)
            length = extent * rng.uniform(0.18, 0.32)
            pts[j] = pts[parents[j]] + length * np.array([np.cos(ang), np.sin(ang)])
            if np.min(np.linalg.norm(pts[:j] - pts[j], axis=1)) >= 2.5 * radius:
                break
    return pts, parents, radius


@dataclass(frozen=True)
class SyntheticPoseImage:
    """Picklable source of synthetic pose image ``index``; ``load()`` -> (h, w, 3) uint8 RGB."""

    seed: int
    index: int
    size: tuple
    num_keypoints: int

    def load(self) -> np.ndarray:
        w, h = self.size
        rng = np.random.default_rng([self.seed, self.index, 2])
        img = _background(rng, w, h)
        for _ in range(3):  # clutter: grey strokes that look like limbs but carry no colour
            p, q = rng.uniform(0, [w, h], size=(2, 2)).astype(int)
            cv2.line(img, tuple(map(int, p)), tuple(map(int, q)), (int(rng.uniform(90, 220)),) * 3, 2)
        pts, parents, r = _figure(self.seed, self.index, self.size, self.num_keypoints)
        shift = 16  # sub-pixel drawing: disc centres are the float keypoints
        ip = np.round(pts * (1 << shift)).astype(np.int64)
        for j in range(1, len(pts)):
            cv2.line(img, tuple(map(int, ip[parents[j]])), tuple(map(int, ip[j])), (200, 200, 200), 2,
                     cv2.LINE_AA, shift)
        for j, c in enumerate(figure_joint_colors(len(pts))):
            cv2.circle(img, tuple(map(int, ip[j])), r << shift, tuple(int(v) for v in c), -1, cv2.LINE_AA, shift)
        return img

    def __str__(self):
        return f"synthetic-pose://{self.seed}/{self.index}"


def synthetic_pose(num_samples: int, *, image_size=(128, 128), num_keypoints: int = 16, seed: int = 0,
                   padding: float = 1.3) -> list[PoseRecord]:
    """Records of ``num_samples`` synthetic figures.

    Args:
        num_samples: number of records.
        image_size: ``(w, h)`` of the generated images.
        num_keypoints: ``K`` joints per figure.
        seed: data seed; use different seeds for train and held-out sets.
        padding: crop = padding x the box of the in-image joints.
    Returns:
        :class:`PoseRecord` list; ``box`` = box of the visible joints.
    """
    w, h = image_size
    records = []
    for i in range(num_samples):
        pts, _, r = _figure(seed, i, image_size, num_keypoints)
        vis = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
        inside = pts[vis] if vis.any() else pts
        box = np.array([inside[:, 0].min() - r, inside[:, 1].min() - r, inside[:, 0].max() + r,
                        inside[:, 1].max() + r])
        center, side = box_center_scale(box, padding)
        records.append(PoseRecord(image=SyntheticPoseImage(seed, i, tuple(image_size), num_keypoints), keypoints=pts,
                                  visible=vis, center=center, scale=side, box=box, id=f"synth{seed}_{i:06d}"))
    return records


def _shapes(seed, index, size, num_classes):
    rng = np.random.default_rng([seed, index, 3])
    w, h = size
    out = []
    for _ in range(int(rng.integers(1, 5))):
        c = int(rng.integers(1, num_classes))
        s = rng.uniform(0.15, 0.4) * min(w, h)
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        kind = (c - 1) % 3
        if kind == 0:
            pts = None
        elif kind == 1:
            a = rng.uniform(0, np.pi)
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            pts = np.array([[-1, -0.6], [1, -0.6], [1, 0.6], [-1, 0.6]]) * s / 2 @ rot.T + (cx, cy)
        else:
            a = rng.uniform(0, 2 * np.pi)
            ang = a + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
            pts = np.stack([np.cos(ang), np.sin(ang)], 1) * s / 1.6 + (cx, cy)
        out.append((c, (cx, cy), s / 2, None if pts is None else np.round(pts).astype(np.int32)))
    return out


def _draw_shape(canvas, shape, value, thickness=-1):
    c, (cx, cy), rad, pts = shape
    if pts is None:
        cv2.circle(canvas, (int(round(cx)), int(round(cy))), int(round(rad)), value, thickness, cv2.LINE_8)
    elif thickness < 0:
        cv2.fillPoly(canvas, [pts], value, cv2.LINE_8)
    else:
        cv2.polylines(canvas, [pts], True, value, thickness, cv2.LINE_8)


@dataclass(frozen=True)
class SyntheticSegSource:
    """Picklable source of synthetic segmentation sample ``index``: ``kind`` "image" or "mask"."""

    seed: int
    index: int
    size: tuple
    num_classes: int
    kind: str = "image"
    ignore_border: int = 0

    def load(self) -> np.ndarray:
        w, h = self.size
        shapes = _shapes(self.seed, self.index, self.size, self.num_classes)
        if self.kind == "mask":
            mask = np.zeros((h, w), np.uint8)
            for sh in shapes:
                _draw_shape(mask, sh, sh[0])
                if self.ignore_border:
                    _draw_shape(mask, sh, 255, self.ignore_border)
            return mask
        rng = np.random.default_rng([self.seed, self.index, 4])
        img = _background(rng, w, h)
        colors = class_colors(self.num_classes)
        for sh in shapes:
            _draw_shape(img, sh, tuple(int(v) for v in colors[sh[0]]))
        noise = rng.normal(0, 6, size=img.shape)
        return np.clip(img + noise, 0, 255).astype(np.uint8)

    def __str__(self):
        return f"synthetic-seg://{self.seed}/{self.index}/{self.kind}"


def synthetic_segmentation(num_samples: int, *, image_size=(128, 128), num_classes: int = 4, seed: int = 0,
                           ignore_border: int = 0) -> list[SegRecord]:
    """Records of ``num_samples`` synthetic images with masks of ``num_classes`` classes (0 = background)."""
    if num_classes < 2:
        raise ValueError(f"synthetic_segmentation: num_classes must be >= 2; received {num_classes}.")
    size = tuple(image_size)
    return [SegRecord(image=SyntheticSegSource(seed, i, size, num_classes, "image"),
                      mask=SyntheticSegSource(seed, i, size, num_classes, "mask", ignore_border),
                      id=f"synthseg{seed}_{i:06d}") for i in range(num_samples)]
