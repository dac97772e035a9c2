"""The converter's intermediate representation: a parsed, upgraded, shape-inferred Caffe net.

Blob names are made unique (SSA): Caffe nets reuse a blob name for in-place layers
(``top == bottom`` for ReLU, BatchNorm, Scale, Dropout); each producer gets a fresh id
(``"conv1"``, then ``"conv1@1"``, ``"conv1@2"`` ...), and consumers refer to the newest one.
``Net.caffe_names`` maps an id back to the Caffe top name. Caffe's Split tops share memory with their
bottom, so after an in-place write to one of them the other names refer to the rewritten id too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Layer", "Net"]


@dataclass
class Layer:
    """One Caffe layer after upgrading (V0/V1 -> V2) and phase filtering.

    Attributes:
        name: Caffe layer name (unique within the Net; duplicates get a ``_1``, ``_2`` suffix).
        type: V2 type string, e.g. ``"Convolution"``.
        bottoms, tops: blob ids (see module doc).
        param: the ``LayerParameter`` protobuf message parsed from the prototxt: hyper-parameters
            always come from the prototxt (forks reuse field numbers in binaries).
        blobs: float32 arrays from the caffemodel in Caffe's layout (legacy 4-D shapes squeezed to
            the layer's canonical shape, e.g. InnerProduct weights (N, K), biases (N,)).
        line: 1-based line of the layer in the prototxt, for error messages (None if unknown).
    """

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    param: Any
    blobs: list[np.ndarray] = field(default_factory=list)
    line: int | None = None


@dataclass
class Net:
    """A Caffe net ready for conversion.

    Attributes:
        name: ``NetParameter.name``.
        inputs: input blob id -> NCHW shape (after any ``input_shape=`` override).
        layers: layers in file (= topological) order, TEST phase, without data/loss/accuracy layers.
        shapes: blob id -> inferred NCHW shape (2-D ``(N, C)`` after InnerProduct), including inputs.
        outputs: blob ids produced and never consumed (the net's outputs).
        caffe_names: blob id -> Caffe blob (top) name.
        prototxt, caffemodel: source paths (``None`` for in-memory nets).
    """

    name: str
    inputs: dict[str, tuple[int, ...]]
    layers: list[Layer]
    shapes: dict[str, tuple[int, ...]]
    outputs: list[str]
    caffe_names: dict[str, str]
    prototxt: str | None = None
    caffemodel: str | None = None

    def layer(self, name: str) -> Layer:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def producers(self) -> dict[str, Layer]:
        """blob id -> the layer producing it."""
        return {t: l for l in self.layers for t in l.tops}

    def consumers(self) -> dict[str, list[Layer]]:
        """blob id -> layers reading it."""
        out: dict[str, list[Layer]] = {}
        for l in self.layers:
            for b in l.bottoms:
                out.setdefault(b, []).append(l)
        return out
