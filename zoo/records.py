"""Weights records: the metadata that travels with a set of weights (source files, input convention, head,
builder arguments), shared by the registry, the releases, the weights files and every model built from them.

Records are frozen and their mappings read-only: one record object is shared by all its users.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["WeightsRecord", "SourceFile"]


class _ReadOnlyDict(dict):
    """A ``dict`` (JSON, ``**`` and ``isinstance`` work) that refuses changes: a record's mappings are
    shared by the registry and every model built from it, so an edit would change them for all."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a WeightsRecord is read-only; make a changed copy with record.replace(builder_kwargs={...})")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):  # copy/deepcopy/pickle rebuild it whole instead of item by item
        return (type(self), (dict(self),))


def _sha256_hex(value, what: str) -> str | None:
    """``value`` as 64 lower-case hex digits (``sha256sum`` writes lower case; Windows' Get-FileHash and
    certutil upper case), or ``None``. Raises ValueError naming ``what`` for anything else."""
    return _hex_digest(value, what, "SHA-256", 64)


def _hex_digest(value, what: str, algorithm: str, digits: int) -> str | None:
    """``value`` as ``digits`` lower-case hex digits, or ``None``; ValueError naming ``what`` otherwise."""
    if value is None:
        return None
    text = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not re.fullmatch(rf"[0-9a-f]{{{digits}}}", text):
        raise ValueError(f"{what} must be a {algorithm} digest ({digits} hex digits), got {value!r}")
    return text


def _is_real(value) -> bool:
    """A finite real number (not a bool, a string or None)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    return bool(ok and np.isfinite(value))


def _is_index(value) -> bool:
    """An integer >= 0 (a JSON float such as 3.0 counts: it names the same index)."""
    return _is_real(value) and value >= 0 and float(value) == int(value)


def _is_count(value) -> bool:
    return _is_index(value) and value > 0


def _sequence(value, key: str, expected: str) -> list:
    """``value`` as a list when it is a list/tuple/array; ValueError naming ``key`` otherwise (a string would
    otherwise pass as a sequence of its characters, a number or a mapping fail far from the record)."""
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise ValueError(f"WeightsRecord.{key} must be {expected}, got {value!r}")
    return list(value)


@dataclass(frozen=True)
class SourceFile:
    """One file of an original release, as its authors published it.

    Attributes:
        name: the file's original name (a relative path where the release's names collide, e.g.
            ``voc-fcn8s/deploy.prototxt``); users without internet place it under this name in the
            offline folder (``$KERAZOO_OFFLINE_DIR``).
        url: the original download URL, or ``None`` when the authors only published a web page.
        sha256: pinned hash of the file, computed from the real file; ``None`` until someone has:
            the first download then records it locally (and says so).
        member: when ``name`` is a zip archive, the file to take from it (matched by base name);
            the member may also be placed in the offline folder on its own.
        page: the human download page (Google Drive folders, project pages).
        sha1: SHA-1 of the file this source provides (for an archive: of its ``member``) as an
            independent party published it, computed from the real file; checked on every read, so
            the first download is verified too (its sha256 is then recorded as checked).
        sha1_from: who published ``sha1`` and where (short text, shown by ``zoo.info``); required
            with ``sha1``.
    """

    name: str
    url: str | None = None
    sha256: str | None = None
    member: str | None = None
    page: str | None = None
    sha1: str | None = None
    sha1_from: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "sha256", _sha256_hex(self.sha256, f"sha256 of source file '{self.name}'"))
        object.__setattr__(self, "sha1", _hex_digest(self.sha1, f"sha1 of source file '{self.name}'", "SHA-1", 40))
        published = isinstance(self.sha1_from, str) and self.sha1_from.strip()
        if (self.sha1 is None) != (self.sha1_from is None) or (self.sha1_from is not None and not published):
            raise ValueError(f"source file '{self.name}': sha1 and sha1_from (who published the SHA-1, a non-empty "
                             f"string) go together, got sha1={self.sha1!r}, sha1_from={self.sha1_from!r}")

    @property
    def key(self) -> str:
        """Unique name of what this source provides: ``archive!member`` or ``name``."""
        return f"{self.name}!{self.member}" if self.member else self.name

    @property
    def provides(self) -> str:
        """Base name of the file the converter reads (the member, or the file itself)."""
        return Path(self.member or self.name).name


@dataclass(frozen=True)
class WeightsRecord:
    """Everything a user needs to use a set of weights correctly (torchvision ``Weights.meta`` style).

    Pixel convention for :func:`zoo.preprocess`: images arrive RGB, values in [0, 255]; the model
    receives ``(reorder(pixels) * scale - mean) / std``, channels in ``channel_order``.
    """

    # --- source -----------------------------------------------------------------------------
    url: str | None = None  # where the file is downloaded from
    file_name: str | None = None  # cache file name, unique per (arch, tag)
    sha256: str | None = None  # of the downloaded file; downloads are refused without a match
    source_format: str = "kerazoo"  # "kerazoo" (name-keyed h5), "keras", "caffe" or "torch7"
    sources: tuple[SourceFile, ...] = ()  # original release files, converted once (zoo.pretrained)
    source_page: str | None = None  # where the authors describe the release
    license: str | None = None
    paper: str | None = None  # paper title or URL
    description: str = ""
    # --- input ------------------------------------------------------------------------------
    input_size: tuple[int, int] | None = None  # (H, W) the weights were trained/tested at
    channel_order: str = "RGB"  # "RGB" or "BGR"
    scale: float = 1.0  # multiplies [0, 255] pixels before the mean is subtracted
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)  # in channel_order, after scale
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    # segmentation releases tested PSPNet's way: the long side at test scale s is eval_base_size * s + 1 px
    # (hszhao/PSPNet eval_all.m's base_size; evaluate/predict(base_size=...), training.tta_pspnet)
    eval_base_size: int | None = None
    # --- head -------------------------------------------------------------------------------
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    num_keypoints: int | None = None
    keypoint_names: tuple[str, ...] | None = None
    flip_pairs: tuple[tuple[int, int], ...] | None = None
    output_stride: int | None = None
    # input px where heatmap pixel 0's centre lies: pixel g is at g * output_stride + heatmap_offset
    # (OpenCV pixel centres). 0.0 = training.targets' convention; a release trained otherwise sets it.
    heatmap_offset: float = 0.0
    # Gaussian sigma (heatmap px) of the targets the weights were trained on; None = not recorded (training's 2.0).
    # Fine-tuning keeps it (training.fit), so the model is not first taught wider or narrower peaks.
    heatmap_sigma: float | None = None
    # --- how to build the matching model -----------------------------------------------------
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    # --- documentation only -------------------------------------------------------------------
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. {"MPII val PCKh@0.5": 88.8}

    def __post_init__(self):
        # Records are shared (the registry's, every model built from a tag): nothing in one can be edited.
        for key in ("builder_kwargs", "metrics"):
            value = getattr(self, key)
            if not isinstance(value, dict):
                raise TypeError(f"WeightsRecord.{key} must be a dict, got {type(value).__name__}")
            object.__setattr__(self, key, _ReadOnlyDict(value))
        if self.sources is not None:
            object.__setattr__(self, "sources", tuple(_sequence(self.sources, "sources", "a list of source files")))
        object.__setattr__(self, "sha256", _sha256_hex(self.sha256, "WeightsRecord.sha256"))
        off = self.heatmap_offset
        if not _is_real(off):
            raise ValueError(f"WeightsRecord.heatmap_offset must be a finite number (input px where heatmap pixel 0's "
                             f"centre lies; 0.0 = training's convention), got {off!r}")
        object.__setattr__(self, "heatmap_offset", float(off))
        sigma = self.heatmap_sigma
        if sigma is not None:
            if not (_is_real(sigma) and sigma > 0):
                raise ValueError(f"WeightsRecord.heatmap_sigma must be a finite number > 0 (the Gaussian sigma of the "
                                 f"training targets, heatmap px) or None, got {sigma!r}")
            object.__setattr__(self, "heatmap_sigma", float(sigma))
        # The input convention and head are checked here, not where they are used (zoo.preprocess, the Normalize
        # layer, decoding, flip tests): a wrong value from an edited file or a typo would otherwise divide by zero,
        # feed the wrong channel order or mirror the wrong joints far from the record that said so.
        self._check_input_convention()
        self._check_head()

    def _check_input_convention(self):
        order = self.channel_order
        if not (isinstance(order, str) and order.upper() in ("RGB", "BGR")):
            raise ValueError(f"WeightsRecord.channel_order must be 'RGB' or 'BGR' (the order the model takes its "
                             f"channels in), got {order!r}")
        object.__setattr__(self, "channel_order", order.upper())  # readers compare upper case ('bgr' swaps too)
        if not (_is_real(self.scale) and self.scale > 0):
            raise ValueError(f"WeightsRecord.scale must be a finite number > 0 (multiplies the 0-255 pixels, e.g. "
                             f"1/255), got {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))
        for key in ("mean", "std"):
            value = getattr(self, key)
            items = _sequence(value, key, "1 or 3 numbers (one for all channels or one per channel)")
            if len(items) not in (1, 3) or not all(map(_is_real, items)):
                raise ValueError(f"WeightsRecord.{key} must be 1 or 3 finite numbers (one for all channels or one "
                                 f"per channel, in channel_order, after scale), got {value!r}")
            if key == "std" and not all(v > 0 for v in items):  # preprocess divides by it
                raise ValueError(f"WeightsRecord.std must be > 0 (the pixels are divided by it), got {value!r}")
            object.__setattr__(self, key, tuple(float(v) for v in items))
        if self.input_size is not None:
            items = _sequence(self.input_size, "input_size", "(H, W) in px")
            if len(items) != 2 or not all(_is_count(v) for v in items):
                raise ValueError(f"WeightsRecord.input_size must be (H, W): 2 integers > 0 (input px), "
                                 f"got {self.input_size!r}")
            object.__setattr__(self, "input_size", tuple(int(v) for v in items))
        for key in ("eval_base_size", "output_stride", "num_classes", "num_keypoints"):
            value = getattr(self, key)
            if value is not None:
                if not _is_count(value):
                    raise ValueError(f"WeightsRecord.{key} must be an integer > 0 or None, got {value!r}")
                object.__setattr__(self, key, int(value))

    def _check_head(self):
        for names, count in (("class_names", "num_classes"), ("keypoint_names", "num_keypoints")):
            value, n = getattr(self, names), getattr(self, count)
            if value is None:
                continue
            items = _sequence(value, names, "a list of strings (one name per output)")
            bad = [v for v in items if not isinstance(v, str)]
            if bad:
                raise ValueError(f"WeightsRecord.{names} must be strings (one name per output), got {bad[0]!r} "
                                 f"in {value!r}")
            if n is not None and len(items) != n:
                raise ValueError(f"WeightsRecord.{names} must name the {count}={n} outputs, got {len(items)} "
                                 f"names: {value!r}")
            object.__setattr__(self, names, tuple(items))
        if self.flip_pairs is None:
            return
        n = self.num_keypoints if self.num_keypoints is not None else (
            len(self.keypoint_names) if self.keypoint_names is not None else None)
        expected = ("pairs [left, right] of distinct keypoint indices, each index in one pair at most"
                    + (f", 0 <= index < {n} (num_keypoints)" if n is not None else ", index >= 0"))
        pairs, seen = [], set()
        for pair in _sequence(self.flip_pairs, "flip_pairs", expected):
            try:
                items = _sequence(pair, "flip_pairs", expected)
            except ValueError:
                items = ()
            ok = len(items) == 2 and all(_is_index(v) and (n is None or int(v) < n) for v in items)
            if not ok or {int(v) for v in items} & seen or items[0] == items[1]:
                raise ValueError(f"WeightsRecord.flip_pairs must be {expected}; got {pair!r} in "
                                 f"{self.flip_pairs!r}")
            seen.update(int(v) for v in items)
            pairs.append((int(items[0]), int(items[1])))
        object.__setattr__(self, "flip_pairs", tuple(pairs))

    def to_dict(self) -> dict[str, Any]:
        """A plain, independent copy (JSON types), safe to edit."""
        d = dataclasses.asdict(self)
        for key in ("builder_kwargs", "metrics"):
            d[key] = dict(d[key])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WeightsRecord":
        """Raises TypeError/ValueError for a structure that is not a record (an edited or foreign file), and
        ValueError naming the field, its value and what was expected for a value no model can be fed or decoded
        with (a zero std, channel order 'XYZ', flip pairs that are not pairs of distinct keypoint indices)."""
        if not isinstance(d, dict):
            raise TypeError(f"a record is a JSON object, found {type(d).__name__}")
        for key in ("builder_kwargs", "metrics"):
            if not isinstance(d.get(key, {}), dict):
                raise TypeError(f"'{key}' must be a JSON object, found {type(d[key]).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}  # sequences become tuples in __post_init__
        if kw.get("sources"):
            kw["sources"] = tuple(s if isinstance(s, SourceFile) else SourceFile(**s) for s in kw["sources"])
        return cls(**kw)

    def replace(self, **changes) -> "WeightsRecord":
        return dataclasses.replace(self, **changes)


def check_record_arg(record, who: str) -> None:
    """A ``record=`` argument must be a :class:`WeightsRecord` or ``None``; a TypeError naming ``who`` and how to get
    one otherwise (a dict or a tag failed with an AttributeError far inside)."""
    if record is not None and not isinstance(record, WeightsRecord):
        raise TypeError(f"{who}: record must be a zoo.WeightsRecord or None (a tag's: "
                        f"zoo.get_spec(NAME).weights[TAG]; a model's: zoo.weights_record(model); from a dict: "
                        f"zoo.WeightsRecord.from_dict(d)). "
                        f"Received: {type(record).__name__} {record!r:.80}")
