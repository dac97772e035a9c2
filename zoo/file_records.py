"""The weights record of a model :func:`zoo.get` builds from a file: an original ``.caffemodel`` / ``.t7``'s (no
metadata) from its registered releases' conventions, and a record fitted to the architecture and head built."""

from __future__ import annotations

from typing import Any

from zoo.records import WeightsRecord
from zoo.registry import ModelSpec

_SOURCE_FORMATS = {".caffemodel": "caffe", ".t7": "torch7"}  # WeightsRecord.source_format of each suffix
# What a release's code assumed about its input and heatmaps (not which data or head it was trained for).
_CONVENTION_FIELDS = ("channel_order", "scale", "mean", "std", "heatmap_offset", "heatmap_sigma")


def _release_conventions(spec: ModelSpec, source_format: str | None) -> WeightsRecord | None:
    """A record with the input and heatmap conventions of ``spec``'s registered releases in
    ``source_format``, for an original file given by path (a ``.caffemodel`` or ``.t7`` carries no
    metadata): ``zoo.get("cpm", weights="pose_iter_320000.caffemodel")`` is preprocessed BGR / 256 - 0.5,
    decoded at CPM's heatmap offset and fine-tuned on CPM's target sigma, as the ``cpm:mpii`` tag is.
    ``None`` when no release of that format is registered or the releases disagree on a convention."""
    releases = [r for r in spec.weights.values() if source_format and r.source_format == source_format]
    if not releases:
        return None
    values = {k: getattr(releases[0], k) for k in _CONVENTION_FIELDS}
    if any(getattr(r, k) != v for r in releases[1:] for k, v in values.items()):
        return None
    return WeightsRecord(source_format=source_format, description=(
        f"conventions of the {spec.name} {source_format} releases ({', '.join(sorted(spec.weights))}): the file "
        f"carries no metadata"), **values)


def _with_architecture(record: WeightsRecord, head: str | None, held: dict[str, Any]) -> WeightsRecord:
    """``record`` with the builder arguments a weights file holds (``held``: its architecture and head
    size) and, when ``held`` gives it, the head size as ``num_classes`` / ``num_keypoints``."""
    size = held.get(head) if head else None
    return record.replace(
        builder_kwargs={**record.builder_kwargs, **held},
        num_classes=size if head == "classes" and size is not None else record.num_classes,
        num_keypoints=size if head == "num_keypoints" and size is not None else record.num_keypoints,
    )


def _with_head_size(record: WeightsRecord, head: str, size: int) -> WeightsRecord:
    """``record`` for a model whose head (builder argument ``head``) has ``size`` outputs: the builder
    argument and ``num_classes`` / ``num_keypoints`` say so, and there are no class/keypoint names or
    flip pairs (they named the outputs of the weights' head, not of a fresh one)."""
    return record.replace(
        builder_kwargs={**record.builder_kwargs, head: size},
        class_names=None, keypoint_names=None, flip_pairs=None,
        num_classes=size if head == "classes" else record.num_classes,
        num_keypoints=size if head == "num_keypoints" else record.num_keypoints,
    )
