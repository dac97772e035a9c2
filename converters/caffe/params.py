"""Reading Caffe layer hyper-parameters with Caffe's defaults.

``layer.param`` is a protobuf ``LayerParameter``; an unset optional field reads as its proto default,
which a run-time schema may not declare, so these helpers apply BVLC's defaults themselves.
They also accept plain objects (``types.SimpleNamespace``) with the same attribute names.
"""

from __future__ import annotations

from types import SimpleNamespace

from converters.caffe.errors import UnsupportedLayerError

__all__ = ["sub", "opt", "rep", "enum", "conv_geometry", "pool_geometry"]

_EMPTY = SimpleNamespace()


def sub(msg, name):
    """Sub-message ``msg.name`` (an empty object when the schema or mock has no such field)."""
    v = getattr(msg, name, None)
    return _EMPTY if v is None else v


def opt(msg, name, default):
    """Optional scalar field ``msg.name``, or ``default`` when it is not set."""
    if hasattr(msg, "HasField"):
        try:
            return getattr(msg, name) if msg.HasField(name) else default
        except ValueError:  # not an optional field of this message (repeated or unknown)
            return getattr(msg, name, default)
    return getattr(msg, name, default)


def rep(msg, name):
    """Repeated field ``msg.name`` as a list (empty when absent)."""
    return list(getattr(msg, name, None) or ())


def enum(value, names):
    """An enum given as number or name -> its name (``names[i]`` is the name of value ``i``)."""
    if isinstance(value, str):
        return value.upper()
    return names[int(value)]


def _hw(msg, name, default, layer, what):
    """``(h, w)`` from ``<what>_h``/``<what>_w`` or the (repeated or scalar) field ``name``."""
    h, w = opt(msg, f"{what}_h", None), opt(msg, f"{what}_w", None)
    if h is not None or w is not None:
        return (int(h if h is not None else default), int(w if w is not None else default))
    v = getattr(msg, name, None)
    if v is None:
        vals = []
    elif isinstance(v, (int, float)):  # optional scalar (Pooling)
        vals = [v] if _has(msg, name) else []
    else:  # repeated (Convolution)
        vals = list(v)
    if not vals:
        return (default, default)
    if len(vals) == 1:
        return (int(vals[0]), int(vals[0]))
    if len(vals) == 2:
        return (int(vals[0]), int(vals[1]))
    raise UnsupportedLayerError(
        f"layer '{layer.name}' ({layer.type}): {len(vals)}-D {what} ({name}: {vals}) is not supported; only 2-D"
    )


def _has(msg, name):
    if not hasattr(msg, "HasField"):
        return True
    try:
        return msg.HasField(name)
    except ValueError:
        return True


def conv_geometry(cp, layer):
    """``(kernel, stride, pad, dilation)`` pairs ``(h, w)`` of a Convolution/Deconvolution parameter."""
    kernel = _hw(cp, "kernel_size", None, layer, "kernel")
    if None in kernel:
        raise UnsupportedLayerError(f"layer '{layer.name}' ({layer.type}): kernel_size is missing")
    axis = opt(cp, "axis", 1)
    if axis not in (1, -3):
        raise UnsupportedLayerError(f"layer '{layer.name}' ({layer.type}): axis {axis} is not supported (only 1)")
    dilation = [int(d) for d in rep(cp, "dilation")] or [1]
    if len(dilation) > 2:
        raise UnsupportedLayerError(f"layer '{layer.name}' ({layer.type}): {len(dilation)}-D dilation")
    dilation = (dilation[0], dilation[-1])
    return kernel, _hw(cp, "stride", 1, layer, "stride"), _hw(cp, "pad", 0, layer, "pad"), dilation


def pool_geometry(pp, layer):
    """``(kernel, stride, pad, global_pooling, ceil_mode)`` of a Pooling parameter.

    Rounding: BVLC ``round_mode`` (CEIL = 0 default, FLOOR = 1); OpenCV/fork ``ceil_mode: false``
    means FLOOR.
    """
    global_pooling = bool(opt(pp, "global_pooling", False))
    kernel = _hw(pp, "kernel_size", None, layer, "kernel")
    if None in kernel and not global_pooling:
        raise UnsupportedLayerError(f"layer '{layer.name}' (Pooling): kernel_size is missing")
    ceil_mode = enum(opt(pp, "round_mode", 0), ("CEIL", "FLOOR")) == "CEIL"
    if opt(pp, "ceil_mode", True) is False:
        ceil_mode = False
    stride, pad = _hw(pp, "stride", 1, layer, "stride"), _hw(pp, "pad", 0, layer, "pad")
    return (kernel if None not in kernel else (1, 1)), stride, pad, global_pooling, ceil_mode
