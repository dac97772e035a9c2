"""Exceptions raised by the zoo. Each message names the file, layer or argument at fault."""

__all__ = ["ZooError", "WeightsFileError", "WeightsMismatchError", "InputShapeError"]


class ZooError(Exception):
    """Base class of the zoo's own errors."""


class WeightsFileError(ZooError, OSError):
    """A weights file is missing, unreadable, corrupt, or fails its sha256 check."""


class WeightsMismatchError(ZooError, ValueError):
    """Weights and model disagree: layers missing on either side, or shapes that differ."""


class InputShapeError(ZooError, ValueError):
    """An input shape a model cannot take (too small, wrong rank or channel count)."""
