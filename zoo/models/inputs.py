"""Input-shape checks shared by the zoo's builders: one message format for every model."""

from __future__ import annotations

import numpy as np

from zoo.errors import InputShapeError

__all__ = ["check_input_shape", "min_input_size_error"]


def min_input_size_error(model_name, size, minimum):
    """An :class:`zoo.errors.InputShapeError` naming the minimum size."""
    return InputShapeError(
        f"{model_name}: input size {size[0]}x{size[1]} is too small; the minimum is "
        f"{minimum[0]}x{minimum[1]} (height x width)."
    )


def check_input_shape(model_name, input_shape, *, default, minimum, channels=3):
    """Validate ``input_shape`` (H, W, C) for a builder; returns the shape to use.

    ``None`` gives ``default``; ``None`` spatial dims are allowed (sizes read at run time). H and W
    must otherwise be ints (NumPy ints are converted), C must be ``channels``: the first
    convolution's kernel needs it.
    Raises :class:`zoo.errors.InputShapeError` naming the minimum size or the expected channels.
    """
    if input_shape is None:
        return tuple(default)
    try:
        input_shape = tuple(input_shape)
    except TypeError:
        raise InputShapeError(
            f"{model_name}: `input_shape` must be (height, width, channels). Received: input_shape={input_shape!r}"
        ) from None
    if len(input_shape) != 3:
        raise InputShapeError(
            f"{model_name}: `input_shape` must be (height, width, channels). Received: input_shape={input_shape}"
        )
    for axis, n in zip(("height", "width"), input_shape[:2]):
        # bool is an int subclass, and 256.0 or "256" would fail deep inside Keras (or build a 1-pixel model).
        if n is not None and (isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer))):
            raise InputShapeError(
                f"{model_name}: the input {axis} must be an int (pixels) or None (any size at run time). "
                f"Received: input_shape={input_shape}"
            )
    h, w = (None if n is None else int(n) for n in input_shape[:2])
    c = input_shape[2]
    if channels is not None and (isinstance(c, (bool, np.bool_)) or c != channels):
        raise InputShapeError(
            f"{model_name}: expected {channels} input channels (channels last). Received: input_shape={input_shape}"
        )
    if (h is not None and h < minimum[0]) or (w is not None and w < minimum[1]):
        raise min_input_size_error(model_name, (h, w), minimum)
    return (h, w, c if channels is None else channels)
