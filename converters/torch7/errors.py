"""Named exceptions of the Torch7 converter. Messages name the file, the byte offset or the place in
the network, and what was expected there.

Every class derives from :class:`Torch7Error` and from the matching :mod:`zoo.errors` class, so callers
of ``zoo.get(..., weights="model.t7")`` catch them as ``WeightsFileError`` (unreadable file) or
``WeightsMismatchError`` (a readable file that does not fit the model).
"""

from zoo.errors import WeightsFileError, WeightsMismatchError as _ZooWeightsMismatch

__all__ = ["Torch7Error", "Torch7FormatError", "UnsupportedModuleError", "WeightsMismatchError"]


class Torch7Error(Exception):
    """Base class: every error the Torch7 converter raises on bad input derives from it."""


class Torch7FormatError(Torch7Error, WeightsFileError):
    """Missing, truncated or corrupt ``.t7`` file, an ascii-mode file, or a tensor/storage type the
    reader does not know."""


class UnsupportedModuleError(Torch7Error, _ZooWeightsMismatch):
    """A Torch module class (or a setting of one) the op-graph conversion does not support."""


class WeightsMismatchError(Torch7Error, _ZooWeightsMismatch):
    """A network whose structure or shapes differ from what the zoo builder expects (another
    architecture, other ``nStack``/``nFeats``, a BN epsilon other than the builder's, modules left over)."""
