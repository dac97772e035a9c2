"""Sample records, image/mask loading and the errors every dataset reader raises.

Readers turn a dataset on disk into a list of plain records; :mod:`training.data` turns records
into batches. Records hold only paths, numbers and small numpy arrays (or a picklable image
*source* object for generated data), so a list of them pickles cheaply into worker processes.

Note:
    Coordinates are 0-based float pixels of the original image, ``(x, y)`` order, OpenCV pixel
    centres. ``K`` = number of keypoints. Sizes are ``(w, h)``; arrays are ``(H, W, ...)``.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    "DatasetError", "AnnotationError", "ImageReadError", "UnsafePickleError", "WorkerCrashedError",
    "PoseRecord", "SegRecord", "read_image", "read_mask", "write_palette_png", "box_center_scale",
    "describe_source",
]


# ----------------------------------------------------------------------------------------- errors
# Plain one-argument exceptions: they must pickle, because they travel from worker processes back
# to the main process (an exception that cannot be unpickled hangs multiprocessing.Pool).
class DatasetError(Exception):
    """Base class of the training data errors; the message names the file, record and field."""


class AnnotationError(DatasetError, ValueError):
    """An annotation file is unreadable, or a record lacks a field or has a bad value."""


class ImageReadError(DatasetError, OSError):
    """An image or mask file is missing or cannot be decoded."""


class UnsafePickleError(AnnotationError):
    """A pickle asked for an object outside the allowed dict/list/numpy-array set."""


class WorkerCrashedError(DatasetError, RuntimeError):
    """A data-loading worker process died (killed, segfault) while producing a batch."""


# ---------------------------------------------------------------------------------------- records
@dataclass
class PoseRecord:
    """One person/hand instance for top-down heatmap training.

    Attributes:
        image: image file path, or a picklable source with a ``load() -> (H, W, 3) uint8 RGB``
            method (generated data).
        keypoints: ``(K, 2)`` float, original-image pixels.
        visible: ``(K,)`` float 0/1: 1 = annotated and usable for training (occluded but
            annotated joints count as 1; see pose-training §1.5).
        center: ``(2,)`` crop centre ``(x, y)`` in pixels.
        scale: side in pixels of the square crop around ``center`` (NOT MPII's x200 unit).
        box: ``(4,)`` ``x1, y1, x2, y2`` instance box (PCK normaliser), or ``None``.
        head_box: ``(4,)`` head rectangle (PCKh normaliser), or ``None``.
        id: a printable identifier (file name, index, person) used in messages and CSVs.
        meta: free-form extras (raw visibility flags, hand side, ...).
    """

    image: Any
    keypoints: np.ndarray
    visible: np.ndarray
    center: np.ndarray
    scale: float
    box: np.ndarray | None = None
    head_box: np.ndarray | None = None
    id: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        # (K, 2) only: reshape(-1, 2) took a transposed (2, K) array as K scrambled points, silently, and a
        # COCO-style (K, 3) failed in NumPy's reshape without naming the record
        self.keypoints = self._numbers("keypoints", self.keypoints, "(K, 2) x, y pixels")
        if self.keypoints.ndim != 2 or self.keypoints.shape[1] != 2:
            raise AnnotationError(f"record {self.id!r}: 'keypoints' has shape {self.keypoints.shape}; expected "
                                  f"(K, 2) x, y pixels (visibility goes in 'visible').")
        self.visible = self._numbers("visible", self.visible, "(K,) 0/1 flags").reshape(-1)
        self.center = self._numbers("center", self.center, "(2,) x, y pixels", size=2)
        scale = self._numbers("scale", self.scale, "a number of pixels", size=1)
        self.scale = float(scale.reshape(-1)[0])
        if self.box is not None:
            self.box = self._numbers("box", self.box, "(4,) x1, y1, x2, y2", size=4)
            x1, y1, x2, y2 = self.box.reshape(-1)
            if x2 < x1 or y2 < y1:  # (x, y, w, h) or corners swapped: its side was negative, every PCK NaN unsaid
                raise AnnotationError(f"record {self.id!r}: 'box' is {self.box.reshape(-1).tolist()}; expected x1, "
                                      f"y1, x2, y2 with x1 <= x2 and y1 <= y2 (corners, not x, y, w, h).")
        if self.head_box is not None:
            self.head_box = self._numbers("head_box", self.head_box, "(4,) x1, y1, x2, y2", size=4)
        if len(self.visible) != len(self.keypoints):
            raise AnnotationError(
                f"record {self.id!r}: 'visible' has {len(self.visible)} entries but 'keypoints' has "
                f"{len(self.keypoints)} rows; expected one flag per keypoint."
            )
        # a crop must exist: these failed only when the sample was drawn, mid-training, not skippable
        if not (np.isfinite(self.scale) and self.scale > 0) or not np.isfinite(self.center).all():
            raise AnnotationError(
                f"record {self.id!r}: crop centre {self.center.tolist()} and scale {self.scale} must be finite, "
                f"with scale > 0."
            )

    def _numbers(self, name, value, expected, size=None) -> np.ndarray:
        """``value`` as float64 (``size`` elements, flattened, when given); an AnnotationError naming the field."""
        try:
            a = np.asarray(value, np.float64)
        except (TypeError, ValueError):
            raise AnnotationError(f"record {self.id!r}: '{name}' must hold numbers, {expected}. "
                                  f"Received: {value!r}") from None
        if size is not None:
            if a.size != size:
                raise AnnotationError(f"record {self.id!r}: '{name}' has shape {a.shape}; expected {expected}.")
            a = a.reshape(size)
        return a

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def replace(self, **changes) -> "PoseRecord":
        return dataclasses.replace(self, **changes)


@dataclass
class SegRecord:
    """One image and its label mask for semantic segmentation.

    Attributes:
        image: image path or a source with ``load() -> (H, W, 3) uint8 RGB``.
        mask: mask path (palette/grey PNG of class ids; 255 = ignore) or a source with
            ``load() -> (H, W) uint8``.
        id: printable identifier.
        label_map: optional ``(256,)`` lookup table raw mask value -> class id (e.g. RHD's 34
            part labels -> background/left hand/right hand); ``None`` keeps the raw values.
    """

    image: Any
    mask: Any
    id: str = ""
    label_map: np.ndarray | None = None

    def __post_init__(self):
        if self.label_map is not None:
            table = np.asarray(self.label_map)
            # uint8 wrapped 300 to 44 silently; a short table failed in NumPy's reshape without naming the record
            numeric = np.issubdtype(table.dtype, np.number) or table.dtype == bool
            if (table.shape != (256,) or not numeric or not np.all(np.isfinite(table))
                    or not np.array_equal(table, np.round(table)) or table.min() < 0 or table.max() > 255):
                raise AnnotationError(f"SegRecord {self.id or self.image!r}: label_map must be 256 integers in "
                                      f"0..255 (raw mask value -> class id, 255 = ignore). Received: shape "
                                      f"{table.shape}, dtype {table.dtype}"
                                      + (f", values {table.min()}..{table.max()}" if table.size and numeric
                                         else ""))
            self.label_map = table.astype(np.uint8)


def drop_people_seen_in(records, others, tolerance: float = 2.0):
    """``records`` without the people that also appear in ``others`` (train vs validation leakage).

    A record matches when it shows the same image file (compared by resolved path) and its keypoints
    annotated in both lie within ``tolerance`` px of the other's (at least one in common): MPII's
    release ``.mat`` marks the 2,958 people of the standard ``valid.json`` as training people, so
    training on the one and validating on the other would score people the model was fit on.
    Records whose image is not a path (generated data) are kept.

    Args:
        records, others: lists of :class:`PoseRecord`.
        tolerance: max distance in px between two annotations of one joint (1-based vs 0-based
            coordinates of one person differ by 1.41 px at most).

    Returns:
        ``(kept, dropped)``: the kept records, in order, and how many were left out.
    """
    def key(rec):
        return os.path.realpath(os.fspath(rec.image)) if isinstance(rec.image, (str, os.PathLike)) else None

    by_image = {}
    for o in others:
        k = key(o)
        if k is not None:
            by_image.setdefault(k, []).append(o)

    def seen(rec):
        for o in by_image.get(key(rec), ()):
            if o.num_keypoints != rec.num_keypoints:
                continue
            both = (rec.visible > 0) & (o.visible > 0)
            if both.any() and np.max(np.linalg.norm(rec.keypoints[both] - o.keypoints[both], axis=1)) <= tolerance:
                return True
        return False

    kept = [r for r in records if key(r) is None or not seen(r)]
    return kept, len(records) - len(kept)


def box_center_scale(box, padding: float = 1.25) -> tuple[np.ndarray, float]:
    """Square crop ``(center (2,), side px)`` covering box ``x1, y1, x2, y2`` times ``padding``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    center = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0])
    side = max(x2 - x1, y2 - y1, 1.0) * padding
    return center, side


# ---------------------------------------------------------------------------------------- loading
def describe_source(src) -> str:
    """A printable name for a path or image source (used in error messages)."""
    return str(src)


def read_image(src) -> np.ndarray:
    """Read an image as RGB uint8 ``(H, W, 3)``: its stored pixels (EXIF orientation not applied), which the
    datasets' keypoints and masks refer to (``kerazoo predict`` shows a photo upright instead).

    Args:
        src: path, or an object with ``load()``.
    Raises:
        ImageReadError: missing file, or bytes OpenCV cannot decode (names the file).
    """
    if hasattr(src, "load"):
        img = np.asarray(src.load())
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ImageReadError(
                f"image source {describe_source(src)} returned {img.dtype} {img.shape}; "
                f"expected uint8 (H, W, 3) RGB."
            )
        return img
    path = os.fspath(src)
    data = _file_bytes(path, "image")
    # stored pixels, as annotations and masks are in them: cv2 would otherwise apply EXIF orientation; at the file's
    # own depth, converted as predict converts it (16 bits / 257 rounded, where IMREAD_COLOR kept the high byte: one
    # grey level apart; a float TIFF was "corrupt or not an image")
    img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR | cv2.IMREAD_IGNORE_ORIENTATION) \
        if data.size else None
    if img is None:
        raise ImageReadError(f"cannot decode image file '{path}' ({data.size} bytes): corrupt or not an image.")
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    from training.visualize import _rgb_uint8

    return _rgb_uint8(img[..., 2::-1] if img.ndim == 3 and img.shape[2] >= 3 else img)  # BGR(A) -> RGB


def _file_bytes(path, what) -> np.ndarray:
    """The bytes of the ``what`` ("image"/"mask") file at ``path``; an ImageReadError naming it when there is none."""
    if os.path.isdir(path):  # was "not found"
        raise ImageReadError(f"{what} path '{path}' is a folder; expected a file.")
    if not os.path.isfile(path):
        raise ImageReadError(f"{what} file not found: '{path}'.")
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as e:  # unreadable (permissions): was a bare PermissionError
        raise ImageReadError(f"cannot read {what} file '{path}': {e.strerror or e}.") from None


def _with_index_palette(data: bytes) -> bytes | None:
    """A palette PNG with its PLTE entries replaced by greys ``(i, i, i)``, else ``None``.

    Decoding that copy gives each pixel's palette index as its colour, for every bit depth
    (1/2/4/8) and whatever the original palette holds (repeated colours included). The new palette
    has all ``2**bit_depth`` entries, however short the original: Pillow writes only the colours it
    holds (VOC's 21), and libpng decodes an index past the palette's end as black, so void pixels
    (255) read as background. The CRC of the new chunk is recomputed; a tRNS chunk is dropped.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    out, pos, is_palette, bit_depth = [data[:8]], 8, False, 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if ctype == b"IHDR":
            is_palette = len(data) > pos + 17 and data[pos + 17] == 3  # colour type byte
            if not is_palette:
                return None
            bit_depth = data[pos + 16] if data[pos + 16] in (1, 2, 4, 8) else 8
        if ctype == b"PLTE":
            n = 2 ** bit_depth
            body = bytes(np.repeat(np.arange(n, dtype=np.uint8), 3))
            out.append(struct.pack(">I", len(body)) + b"PLTE" + body +
                       struct.pack(">I", zlib.crc32(b"PLTE" + body) & 0xFFFFFFFF))
        elif ctype != b"tRNS":
            out.append(data[pos:end])
        pos = end
    return b"".join(out) if is_palette else None


def read_mask(src) -> np.ndarray:
    """Read a label mask as ``(H, W)`` uint8 class ids.

    Palette PNGs (Pascal VOC) give their palette indices, at any bit depth and whatever colours
    the palette holds (OpenCV expands palettes to colour on decode, so the file is decoded with a
    palette of greys ``(i, i, i)`` put in place of its own); grey PNGs are read as-is.

    Raises:
        ImageReadError: missing/undecodable file, an RGB mask without a palette, or a JPEG / lossy WebP file
            (their compression changes class ids).
    """
    if hasattr(src, "load"):
        m = np.asarray(src.load())
        if m.ndim != 2:
            raise ImageReadError(f"mask source {describe_source(src)} returned shape {m.shape}; expected (H, W).")
        return m.astype(np.uint8, copy=False)
    path = os.fspath(src)
    buf = _file_bytes(path, "mask")
    raw = buf.tobytes()
    lossy = "a JPEG" if raw[:3] == b"\xff\xd8\xff" else \
        "a lossy WebP" if raw[:4] == b"RIFF" and raw[8:16] == b"WEBPVP8 " else None
    if lossy:  # read as it decodes, it would invent class ids at every edge (quality 95: 1 pixel in 80)
        raise ImageReadError(f"mask file '{path}' is {lossy}: lossy compression changes class ids; save masks as "
                             f"PNG (palette or grey).")
    indexed = _with_index_palette(raw)
    if indexed is None:
        m = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
        if m is None:
            raise ImageReadError(f"cannot decode mask file '{path}' ({buf.size} bytes).")
        if m.ndim == 3:
            raise ImageReadError(
                f"mask file '{path}' is a {m.shape[2]}-channel image without a palette; expected a "
                f"single-channel or palette PNG of class ids."
            )
        if m.dtype != np.uint8:
            raise ImageReadError(f"mask file '{path}' has dtype {m.dtype}; expected 8-bit class ids.")
        return m
    bgr = cv2.imdecode(np.frombuffer(indexed, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise ImageReadError(f"cannot decode mask file '{path}' ({buf.size} bytes).")
    return np.ascontiguousarray(bgr[..., 0])


def write_palette_png(path, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write ``(H, W)`` uint8 class ids as an 8-bit palette PNG (VOC colours by default), atomically."""
    mask = np.ascontiguousarray(mask, np.uint8)
    if mask.ndim != 2:
        raise ValueError(f"write_palette_png expects a (H, W) mask; received shape {mask.shape}.")
    if palette is None:
        from training.datasets.voc import voc_palette

        palette = voc_palette()
    h, w = mask.shape

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + mask[r].tobytes() for r in range(h))  # filter type 0 per row
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
           + chunk(b"PLTE", np.asarray(palette, np.uint8).reshape(-1, 3).tobytes())
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    from zoo.files import atomic_target, replace_durably

    path = Path(path)
    tmp = atomic_target(path)  # a name of its own: two threads writing one mask do not share a temporary file
    try:
        tmp.write_bytes(png)
        replace_durably(tmp, path)  # synced before the rename: after a power cut the old mask or the whole new one
    finally:
        if tmp.exists():  # the write failed (disk full): no half-written temporary file left behind
            tmp.unlink()
