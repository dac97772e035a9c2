"""Named exceptions of the Caffe converter. Messages name the file, line, layer or field at fault."""

__all__ = [
    "CaffeError",
    "CaffeFormatError",
    "UnsupportedLayerError",
    "GraphError",
    "WeightsMismatchError",
]


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

