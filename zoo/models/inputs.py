"""Input-shape checks and the ``input_tensor`` argument shared by the zoo's builders.

One message format for every model.
"""

from __future__ import annotations

import re

import keras
import numpy as np

from zoo.errors import InputShapeError

__all__ = [
    "check_input_shape", "min_input_size_error", "builder_input", "build_model", "source_inputs",
    "upstream_layer_names", "register_size_rule", "InputSizeCheck", "INPUT_TENSOR_DOC",
]

# rule name -> check(input_shape (H, W, C)) -> shape, raising InputShapeError: a family's size rule, for the
# InputSizeCheck layer of its any-size models (filled when the family's module is imported, as a saved model's
# deserialisation needs it)
_SIZE_RULES = {}


def register_size_rule(rule, check):
    """Make ``check`` (a builder's own ``input_shape -> (H, W, C)`` check) the size rule named ``rule``."""
    _SIZE_RULES[rule] = check
    return check


@keras.saving.register_keras_serializable(package="zoo")
class InputSizeCheck(keras.layers.Layer):
    """The identity on images (B, H, W, C) that refuses, with its builder's own message, a size the model cannot take.

    A model built with ``None`` height or width takes its sizes from the images, but a family's size rule (the
    hourglass' multiples of 64, CPM's ``size % 8`` in (0, 1)) was then not checked at build time, and an image
    breaking it failed deep inside the network (an ``Add`` or ``Concatenate`` of mismatched shapes, in the
    backend's words). Builders put this layer after such an input. It checks the static shape of each trace:
    every call on JAX and PyTorch and TensorFlow's first trace per input signature (Keras' ``tf.function`` later
    relaxes the sizes to ``None``, and then the backend's error is what comes). No weights, no computation.

    Args:
        rule: the size rule's name (:func:`register_size_rule`), the builder's registry name (``"hourglass"``).
    """

    def __init__(self, rule, **kwargs):
        super().__init__(**kwargs)
        if rule not in _SIZE_RULES:
            raise ValueError(f"InputSizeCheck: no size rule named {rule!r}; known: {', '.join(sorted(_SIZE_RULES))}")
        self.rule = rule

    def call(self, inputs):
        shape = tuple(inputs.shape)
        if all(isinstance(n, int) for n in shape[1:]):  # None while building, or in a relaxed TensorFlow trace
            try:
                _SIZE_RULES[self.rule](shape[1:])
            except InputShapeError as e:
                rule = re.sub(r"\s*Received: input_shape=.*$", "", str(e))  # the builder's argument: not given here
                raise InputShapeError(
                    f"{rule} Received: a batch of shape {shape} (batch, height, width, channels), at layer "
                    f"{self.name!r} of a model built for any size."
                ) from None
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rule": self.rule}


# The ``input_tensor`` entry of the builders' Args sections (8-space indent, as they are written).
INPUT_TENSOR_DOC = """        input_tensor: a Keras tensor (B, H, W, 3) to build the model on instead of a new
            ``keras.Input`` (as in keras.applications), e.g. a preprocessing layer's output on the
            caller's ``keras.Input``; the model's inputs are then
            ``keras.utils.get_source_inputs(input_tensor)``. ``input_shape`` may be left out, else it
            must equal the tensor's (H, W, 3); the size rules below apply to the tensor's shape.
            Defaults to ``None``.
"""


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


def _as_keras_tensor(model_name, value, arg):
    if not keras.backend.is_keras_tensor(value):
        # keras.applications passes it to keras.Input(tensor=...), which in Keras 3 refuses anything but a
        # KerasTensor (and prints the whole array): say so here, with what to do instead.
        shape = getattr(value, "shape", None)
        raise TypeError(
            f"{model_name}: `{arg}` must be a Keras tensor (keras.Input(...) or a layer's output on one); "
            f"Keras 3 cannot start a functional model from concrete data. Received: {type(value).__name__}"
            + (f" of shape {tuple(shape)}" if shape is not None else "")
            + ". Build the model without it and call the model on the data."
        )
    if len(value.shape) != 4:
        raise InputShapeError(
            f"{model_name}: `{arg}` must be a batch of images (B, height, width, channels). "
            f"Received: {arg} of shape {tuple(value.shape)}"
        )
    return value


def builder_input(model_name, input_tensor, input_shape, check, *, name, arg="input_tensor", size_rule=None):
    """The tensor a builder starts from: keras.applications' ``input_tensor`` semantics.

    Args:
        model_name: builder name for messages.
        input_tensor: ``None`` (a new ``keras.Input``), or a Keras tensor (B, H, W, C) to build on, e.g.
            the output of a preprocessing layer on the caller's ``keras.Input``.
        input_shape: the builder's ``input_shape`` argument; with ``input_tensor`` it may be left
            ``None`` (the tensor's shape is used) or must equal the tensor's (H, W, C).
        check: ``input_shape -> (H, W, C)``, the builder's own shape check (default, minimum size,
            valid sizes); it is applied to the tensor's shape too.
        name: name of the new ``keras.Input`` (``"data"``, ``"image"``).
        arg: the argument's name in messages.
        size_rule: the name of ``check`` as a registered size rule (:func:`register_size_rule`): where the
            height or width is ``None``, an :class:`InputSizeCheck` layer ``{name}_size_check`` follows, which
            applies it to the images' sizes when the model runs. ``None``: no layer (any size works).
    Returns:
        The (B, H, W, C) Keras tensor to build on.
    Raises:
        TypeError: ``input_tensor`` is not a Keras tensor (Keras 3 refuses concrete tensors as inputs).
        InputShapeError: the tensor is not 4-D, does not match ``input_shape`` (both named), or fails
            the builder's check (the message adds the tensor's shape).
    """
    if input_tensor is None:
        return _size_checked(keras.Input(shape=check(input_shape), name=name), size_rule, name)
    x = _as_keras_tensor(model_name, input_tensor, arg)
    tensor_shape = tuple(x.shape[1:])
    if input_shape is not None:
        given = check(input_shape)  # its own errors first: a bad input_shape is named as such
        if tuple(given) != tensor_shape:
            raise InputShapeError(
                f"{model_name}: `input_shape` and the shape of `{arg}` disagree; give one of them, or equal "
                f"ones. Received: input_shape={tuple(input_shape)}, {arg} of shape {tuple(x.shape)} "
                f"(batch, height, width, channels)"
            )
    try:
        check(tensor_shape)
    except InputShapeError as e:
        raise InputShapeError(f"{e} (the shape of `{arg}`: {tuple(x.shape)})") from None
    return _size_checked(x, size_rule, name)


def _size_checked(x, size_rule, name):
    if size_rule is None or None not in tuple(x.shape[1:3]):
        return x
    return InputSizeCheck(size_rule, name=f"{name}_size_check")(x)


def source_inputs(*tensors):
    """The model inputs for tensors a builder was given: ``keras.utils.get_source_inputs`` of each,
    in order, without repeats. One input comes back bare (not in a list), as a standalone
    builder's single ``keras.Input``."""
    inputs = []
    for t in tensors:
        for s in keras.utils.get_source_inputs(t):
            if not any(s is seen for seen in inputs):
                inputs.append(s)
    return inputs[0] if len(inputs) == 1 else inputs


def upstream_layer_names(*tensors) -> tuple[str, ...]:
    """Names of the layers between the source inputs of ``tensors`` (the Keras tensors a builder was
    given) and the tensors: the caller's preprocessing. They belong to the composed model but not to
    the zoo architecture, so zoo weights have nothing for them."""
    names = []
    for t in tensors:
        sources = keras.utils.get_source_inputs(t)
        if any(t is s for s in sources):  # the caller's keras.Input itself: nothing upstream
            continue
        for layer in keras.Model(sources, t).layers:
            if not isinstance(layer, keras.layers.InputLayer) and layer.name not in names:
                names.append(layer.name)
    return tuple(names)


def build_model(tensors, outputs, *, name):
    """``keras.Model`` from the source inputs of ``tensors`` (the tensors the builder started from,
    see :func:`source_inputs`) to ``outputs``. It remembers the names of the caller's layers in front
    of them (:func:`upstream_layer_names`) in ``model._zoo_upstream_layers``, in memory only, so that
    ``zoo.get`` loads weights into the zoo's layers and leaves those alone. Its layers' initialisers are
    recorded as Keras' built-in ones (:func:`zoo.initializers.record_as_keras`)."""
    from zoo.initializers import record_as_keras

    model = keras.Model(source_inputs(*tensors), outputs, name=name)
    model._zoo_upstream_layers = upstream_layer_names(*tensors)
    record_as_keras(model)  # drawn on the host; saved as Keras' own initialisers
    return model
