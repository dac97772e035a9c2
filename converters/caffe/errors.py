"""Named exceptions of the Caffe converter. Messages name the file, line, layer or field at fault."""

__all__ = [
    "CaffeError",
    "CaffeFormatError",
    "UnsupportedLayerError",
    "GraphError",
    "WeightsMismatchError",
    "one_line",
]

import re

from zoo.errors import WeightsMismatchError as _ZooWeightsMismatch


class CaffeError(Exception):
    """Base class: every error the converter raises on bad input derives from it."""


class CaffeFormatError(CaffeError, ValueError):
    """Unreadable path, truncated/corrupt caffemodel, prototxt syntax error or unknown field."""


class UnsupportedLayerError(CaffeError, NotImplementedError):
    """A layer type (or a parameter of it) the converter does not support."""


class GraphError(CaffeError, ValueError):
    """A bottom nobody produces, a missing input, shapes that cannot be inferred."""


class WeightsMismatchError(CaffeError, _ZooWeightsMismatch):
    """Blobs that do not fit their layer (count or shape), a caffemodel for another net,
    or a port where Caffe blobs or zoo weights are left over."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(e: Exception) -> str:
    """``Type: message`` of an error raised inside Keras, on one line, without Keras' wrapping.

    Keras wraps errors from a layer's ``call`` in "Exception encountered when calling ..." with
    bold-text escape codes and the call's arguments; the cause is after "Error encountered:".
    """
    text = _ANSI.sub("", str(e))
    if "Error encountered:" in text:
        text = text.split("Error encountered:", 1)[1].split("Arguments received", 1)[0]
    text = " ".join(text.split())
    return f"{type(e).__name__}: {text[:400] + ' ...' if len(text) > 400 else text}"
