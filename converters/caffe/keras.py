"""Caffe IR (:class:`graph.Net`) -> ``keras.Model``, layer by layer, exactly.

This module drives the conversion: it makes the inputs, calls each layer's handler from
:data:`converters.caffe.keras_handlers.LAYER_HANDLERS` in net order, names the outputs and builds the model.
Every ``BatchNorm`` directly followed by a ``Scale`` on the same blob (no other consumer) becomes one
Keras ``BatchNormalization`` named after the BatchNorm layer. Keras layer names are the Caffe layer
names (``/`` replaced by ``_``); helper layers get a suffix (``conv1_pad``).
"""

from __future__ import annotations

import keras

from converters.caffe.context import (Context, Conversion, at, bn_epsilon, bn_scale_pairs,  # noqa: F401 (public here)
                                      cached_signatures, host_constant_initializers, keras_name, preloaded_weights)
from converters.caffe.errors import CaffeError, GraphError, UnsupportedLayerError
from converters.caffe.graph import Net
from converters.caffe.keras_handlers import LAYER_HANDLERS
from zoo.errors import one_line
from zoo.gc_pause import without_cyclic_gc

__all__ = ["LAYER_HANDLERS", "to_keras", "convert", "Conversion", "keras_name", "bn_scale_pairs", "bn_epsilon"]


def _input_shapes(net: Net, input_shape) -> dict[str, tuple]:
    """Blob id -> Keras ``shape`` (without batch) of every net input."""
    out = {}
    for blob, nchw in net.inputs.items():
        nchw = tuple(nchw)
        hw = input_shape.get(net.caffe_names.get(blob, blob)) if isinstance(input_shape, dict) else input_shape
        if len(nchw) == 4:
            h, w = nchw[2], nchw[3]
            if hw is not None:
                hw = tuple(hw)
                if len(hw) == 4:
                    hw = hw[2:]
                if len(hw) != 2:
                    raise ValueError(f"`input_shape` must be (H, W) or a dict name -> (H, W). Received: {input_shape}")
                h, w = hw
            out[blob] = (h, w, nchw[1])
        else:
            out[blob] = nchw[1:]
    return out


def _check_supported(net: Net):
    for layer in net.layers:
        if layer.type not in LAYER_HANDLERS:
            raise UnsupportedLayerError(
                f"Caffe layer type '{layer.type}' (layer '{layer.name}'{at(layer)}) is not supported; "
                f"supported: {', '.join(sorted(LAYER_HANDLERS))}"
            )


def _convert_layer(layer, ctx):
    if layer.name in ctx.folded_scales:  # folded into the preceding BatchNorm
        ctx.tensors[layer.tops[0]] = ctx.tensors[layer.bottoms[0]]
        return
    try:
        xs = [ctx.tensors[b] for b in layer.bottoms]
    except KeyError as e:
        raise GraphError(f"layer '{layer.name}' ({layer.type}{at(layer)}): bottom {e} has no producer") from None
    try:
        ys = LAYER_HANDLERS[layer.type](layer, xs, ctx)
    except CaffeError:
        raise
    except Exception as e:  # Keras shape errors: say which Caffe layer caused them
        raise GraphError(f"layer '{layer.name}' ({layer.type}{at(layer)}): "
                         f"{type(e).__name__}: {one_line(e, 400)}") from e
    for top, y in zip(layer.tops, ys):
        ctx.tensors[top] = y


def convert(net: Net, input_shape=None, *, name: str | None = None, progress: bool | None = None) -> Conversion:
    """Build the Keras model of ``net`` and report what was done (see :func:`to_keras`)."""
    from tqdm.auto import tqdm

    _check_supported(net)
    if not net.inputs or not net.outputs:
        what = "no input (input:/input_shape, or an Input layer)" if not net.inputs else "no output blob"
        raise GraphError(f"net '{net.name or '(unnamed)'}' has {what}: there is nothing to convert")
    ctx = Context(net)
    inputs = []
    for blob, shape in _input_shapes(net, input_shape).items():
        iname = keras_name(net.caffe_names.get(blob, blob))
        ctx.use(iname)
        t = keras.Input(shape=shape, name=iname)
        ctx.tensors[blob] = t
        inputs.append(t)
    bar = tqdm(net.layers, desc="Building Keras model", unit="layer", disable=(None if progress is None else not progress),
               leave=False)
    with without_cyclic_gc():  # the layers, and the functional model that walks them
        with host_constant_initializers(), preloaded_weights(), cached_signatures():
            for layer in bar:
                _convert_layer(layer, ctx)
        bar.close()
        model, names = _functional_model(net, ctx, inputs, name)
    return Conversion(model, len(net.layers), int(model.count_params()), ctx.folded, names)


def _functional_model(net: Net, ctx: Context, inputs, name):
    """The ``keras.Model`` from the converted inputs to ``net``'s output blobs, and ``{Caffe top: the Keras layer
    giving it}``."""
    outputs, names = [], {}
    for blob in net.outputs:
        t = ctx.tensors[blob]
        top = net.caffe_names.get(blob, blob)
        want = keras_name(top)
        producer = t._keras_history[0].name
        if producer != want or any(o is t for o in outputs):
            # The top was last written by another layer (in place) or is shared: name the output.
            oname = want if ctx.free(want) else ctx.aux(want, "output")
            ctx.use(oname)
            t = keras.layers.Identity(name=oname)(t)
        names[top] = t._keras_history[0].name
        outputs.append(t)
    model = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0],
                        name=keras_name(name or net.name or "caffe_net"))
    return model, names


def to_keras(net: Net, input_shape=None, *, name: str | None = None, progress: bool | None = None):
    """Convert a loaded Caffe net to a ``keras.Model`` whose outputs equal Caffe's.

    Args:
        net: from :func:`converters.caffe.load`.
        input_shape: spatial size ``(H, W)`` for every 4-D input (``None`` entries: any size), a
            dict input name -> ``(H, W)``, or ``None`` for the sizes declared in the prototxt.
        name: Keras model name. Defaults to the Caffe net's name.
        progress: show a progress bar while building; ``None``: only on a terminal.
    Returns:
        A functional ``keras.Model``: NHWC inputs named after the Caffe input blobs; one output
        per Caffe output blob (a list when there are several), each produced by a layer named
        after the blob (an ``Identity`` when the blob was last written by an in-place layer; if
        that name belongs to another layer, ``<top>_output``).
    Raises:
        UnsupportedLayerError: a layer type or parameter the converter does not handle (names the
            layer and lists the supported types).
        GraphError: a layer whose output cannot be built (names the layer).
        WeightsMismatchError: blobs that do not fit their layer.
    """
    return convert(net, input_shape, name=name, progress=progress).model
