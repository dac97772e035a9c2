"""Read a Caffe deploy prototxt (+ caffemodel) into the converter's IR (:class:`~converters.caffe.graph.Net`).

    net = load("deploy.prototxt", "weights.caffemodel", input_shape=(368, 368))

Steps: parse the text (``schema.TEXT``, fork fields included), upgrade V0/V1 layers, apply the phase's
include/exclude rules, collect the inputs (``input``+``input_dim``, ``input``+``input_shape``, ``Input``
layers, data layers), drop loss/accuracy/silence/data layers, give every blob version an SSA id, infer NCHW
shapes, then attach the caffemodel's blobs by layer name (hyper-parameters never come from the binary).
``Input`` layers become ``Net.inputs`` and are not kept in ``Net.layers``.
"""

from __future__ import annotations

import io
import math
import os

from converters.caffe import caffemodel as _caffemodel
from converters.caffe.errors import CaffeFormatError, GraphError, UnsupportedLayerError, WeightsMismatchError
from converters.caffe.graph import Layer, Net
from converters.caffe.schema import ROUND_CEIL, ROUND_FLOOR, TEXT
from converters.caffe.shapes import infer
from converters.caffe.upgrade import upgrade_layers

__all__ = ["load", "loads", "parse_prototxt", "blob_shapes", "DATA_LAYER_TYPES", "DROPPED_LAYER_TYPES"]

#: Layers whose tops become net inputs (the Python layer only when it has no bottoms).
DATA_LAYER_TYPES = frozenset({
    "Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData", "AnnotatedData", "VideoData",
})
#: Layers dropped at conversion besides data layers (every ``*Loss`` type is dropped too).
DROPPED_LAYER_TYPES = frozenset({"Accuracy", "Silence", "HDF5Output"})
_PHASES = {"TRAIN": 0, "TEST": 1}


def _is_dropped(layer):
    return layer.type in DROPPED_LAYER_TYPES or layer.type.endswith("Loss")


def _is_data(layer):
    return layer.type in DATA_LAYER_TYPES or (layer.type == "Python" and not len(layer.bottom))


# ---------------------------------------------------------------------------------------------- text
def _layer_lines(text):
    """1-based lines of the top-level ``layer`` and ``layers`` entries, in file order."""
    found = {"layer": [], "layers": []}
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif c in "\"'":
            i += 1
            while i < n and text[i] != c and text[i] != "\n":
                i += 2 if text[i] == "\\" else 1
        elif c in "{<":
            depth += 1
        elif c in "}>":
            depth -= 1
        elif depth == 0 and (c.isalpha() or c == "_"):
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if text[i:j] in found:
                found[text[i:j]].append(line)
            i = j
            continue
        i += 1
    return found["layer"], found["layers"]


def parse_prototxt(text, path="<prototxt>"):
    """Parse prototxt text into ``(TEXT.NetParameter, layer_lines, layers_lines)``.

    Raises:
        CaffeFormatError: syntax error or unknown field, as ``"path:line:col: message"``.
    """
    from google.protobuf import text_format

    net = TEXT.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as e:
        line, col = e.GetLine(), e.GetColumn()
        msg = str(e)
        if line is not None and msg.startswith(f"{line}:"):
            msg = msg.split(" : ", 1)[-1] if " : " in msg else msg.split(":", 2)[-1].strip()
        hint = " (unknown field for this Caffe schema)" if "has no field named" in msg else ""
        raise CaffeFormatError(f"{path}:{line}:{col}: {msg}{hint}") from None
    except (ValueError, TypeError, OverflowError, RecursionError, UnicodeError) as e:
        raise CaffeFormatError(f"{path}: cannot parse prototxt: {type(e).__name__}: {e}") from None
    layer_lines, layers_lines = _layer_lines(text)
    if len(layer_lines) != len(net.layer) or len(layers_lines) != len(net.layers):
        layer_lines, layers_lines = [None] * len(net.layer), [None] * len(net.layers)  # odd layout
    return net, layer_lines, layers_lines


def _decode(raw, path):
    """prototxt bytes -> str (a UTF-8 BOM is dropped)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise CaffeFormatError(f"{path}:{line}: prototxt is not UTF-8 text (a caffemodel passed as prototxt?)") \
            from None


def _read_text(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except (OSError, TypeError, ValueError) as e:
        raise CaffeFormatError(f"cannot read prototxt '{path}': {getattr(e, 'strerror', None) or e}") from None
    return _decode(raw, path)


# ------------------------------------------------------------------------------------------- inputs
def _declared_inputs(net, path):
    """``input:`` declarations -> [(name, shape or None)]."""
    names = list(net.input)
    if len(net.input_shape) and len(net.input_dim):
        raise CaffeFormatError(f"{path}: give either input_dim or input_shape, not both")
    if len(net.input_shape):
        if len(net.input_shape) != len(names):
            raise CaffeFormatError(
                f"{path}: {len(names)} 'input' names but {len(net.input_shape)} 'input_shape' entries")
        return [(n, tuple(int(d) for d in s.dim)) for n, s in zip(names, net.input_shape)]
    if len(net.input_dim):
        if len(net.input_dim) != 4 * len(names):
            raise CaffeFormatError(
                f"{path}: {len(names)} 'input' names need {4 * len(names)} 'input_dim' values, "
                f"got {len(net.input_dim)}")
        dims = [int(d) for d in net.input_dim]
        return [(n, tuple(dims[4 * i: 4 * i + 4])) for i, n in enumerate(names)]
    return [(n, None) for n in names]


def _data_layer_shapes(layer):
    """Best-effort top shapes of a data layer from its params (None where unknown)."""
    n_top = len(layer.top)
    if layer.type == "Input":
        shapes = [tuple(int(d) for d in s.dim) for s in layer.input_param.shape]
        if len(shapes) == 1:
            return shapes * n_top
        return shapes if len(shapes) == n_top else None
    if layer.type == "MemoryData":
        p = layer.memory_data_param
        return [(p.batch_size, p.channels, p.height, p.width)] + [(p.batch_size,)] * (n_top - 1)
    if layer.type == "DummyData":
        p = layer.dummy_data_param
        shapes = [tuple(int(d) for d in s.dim) for s in p.shape]
        if not shapes and len(p.num):
            shapes = [tuple(int(getattr(p, f)[i]) for f in ("num", "channels", "height", "width"))
                      for i in range(min(len(p.num), len(p.channels), len(p.height), len(p.width)))]
        return (shapes * n_top if len(shapes) == 1 else shapes) if shapes else None
    crop = layer.transform_param.crop_size
    batch = {"Data": layer.data_param.batch_size, "ImageData": layer.image_data_param.batch_size,
             "WindowData": layer.window_data_param.batch_size}.get(layer.type) or 1
    gray = layer.transform_param.force_gray or (layer.type == "ImageData" and not layer.image_data_param.is_color)
    if not crop and layer.type == "ImageData" and layer.image_data_param.new_height:
        p = layer.image_data_param
        return [(batch, 1 if gray else 3, p.new_height, p.new_width or p.new_height)] + [None] * (n_top - 1)
    if crop:  # channels are not in the prototxt: images are assumed 3-channel (1 if forced gray)
        return [(batch, 1 if gray else 3, crop, crop)] + [None] * (n_top - 1)
    return None


def _apply_override(name, shape, override):
    if override is None:
        return shape
    want = override.get(name) if isinstance(override, dict) else override
    if want is None:
        return shape
    want = tuple(int(v) for v in want)
    if len(want) == 4:
        return want
    if shape is None or len(shape) != 4:
        raise GraphError(
            f"input '{name}' has no declared 4-D shape to put {want} into: pass input_shape="
            f"{{'{name}': (N, C, H, W)}}")
    return tuple(shape[:2]) + want


def _check_override(input_shape, names):
    if input_shape is None:
        return None
    if isinstance(input_shape, dict):
        unknown = sorted(set(input_shape) - set(names))
        if unknown:
            raise GraphError(f"input_shape names {unknown} are not inputs of the net; inputs: {names}")
        values = list(input_shape.values())
    else:
        values = [input_shape]
    for v in values:
        try:
            ok = not isinstance(v, (str, bytes)) and len(v) in (2, 4) and all(int(d) == d and int(d) > 0 for d in v)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise GraphError(f"input_shape must be (H, W) or (N, C, H, W) of positive ints (or a dict of them "
                             f"by input name). Received: input_shape={input_shape!r}")
    return input_shape


# ------------------------------------------------------------------------------------------- phases
def _meets_rule(rule, state):
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def _included(layer, state, where):
    """Caffe's Net::FilterNet: include rules OR'ed; any met exclude rule drops the layer."""
    if len(layer.include) and len(layer.exclude):
        raise CaffeFormatError(f"{where}: has both include and exclude rules; Caffe allows one kind")
    if len(layer.include):
        return any(_meets_rule(r, state) for r in layer.include)
    return not any(_meets_rule(r, state) for r in layer.exclude)


_HOLE_FIELDS = ("hole", "hole_h", "hole_w")


def _hole_to_dilation(p, where):
    """DeepLab v1's ``hole`` (``HoleConvolution`` in hszhao/PSPNet 88d0b3) as BVLC's ``dilation``, in place.

    hole_conv_layer.cpp: the effective kernel is ``k + (k - 1) (hole - 1)``, im2col takes taps ``hole`` apart, and
    the output is ``(size + 2 pad - effective) / stride + 1``: a dilated convolution. Its checks are kept: hole OR
    hole_h and hole_w, and a HoleConvolution needs one ("No hole paramter set. Use Convolution instead.").
    """
    cp = p.convolution_param
    has = {f: cp.HasField(f) for f in _HOLE_FIELDS}
    if p.type not in ("Convolution", "HoleConvolution"):
        raise UnsupportedLayerError(f"{where}: convolution_param.hole is read for Convolution and HoleConvolution "
                                    f"layers only")
    if has["hole_h"] != has["hole_w"] or (has["hole"] and has["hole_h"]):
        raise GraphError(f"{where}: give hole, or hole_h and hole_w (hole_conv_layer.cpp)")
    if not any(has.values()):
        raise GraphError(f"{where}: a HoleConvolution needs hole (or hole_h and hole_w); Caffe refuses it without "
                         f"(use Convolution)")
    if len(cp.dilation):
        raise GraphError(f"{where}: both hole and dilation; give one (hole is the older name of dilation)")
    h, w = (cp.hole, cp.hole) if has["hole"] else (cp.hole_h, cp.hole_w)
    if min(h, w) < 1:
        raise GraphError(f"{where}: hole {h if h < 1 else w}; expected an integer >= 1")
    cp.dilation.extend([h] if h == w else [h, w])
    for f in _HOLE_FIELDS:
        cp.ClearField(f)
    p.type = "Convolution"


# -------------------------------------------------------------------------------------------- blobs
def _squeezed(shape):
    return tuple(d for d in shape if d != 1)


def _fit_blob(raw, expected, where, index, model_path, resized=""):
    """Check one caffemodel blob against the expected canonical shape; return it reshaped.

    ``resized``: the inputs ``load(input_shape=)`` gave another size (``"input 'data' (1, 3, 225, 231), declared
    (1, 3, 224, 224)"``), which the expected shapes follow; empty when they are the prototxt's own."""
    shape, data = raw
    if math.prod(shape) != data.size:
        raise CaffeFormatError(
            f"{model_path}: {where} blob {index} declares shape {shape} but holds {data.size} values")
    if tuple(shape) != tuple(expected) and (
            math.prod(shape) != math.prod(expected) or _squeezed(shape) != _squeezed(expected)):
        origin = f"at the input size given ({resized})" if resized else "from the prototxt"
        hint = ("; its weights fit another input size (an InnerProduct on a spatial blob takes the size the net "
                "was trained at)") if resized else ""
        raise WeightsMismatchError(
            f"{where} blob {index}: expected shape {tuple(expected)} {origin}, found {tuple(shape)} "
            f"in caffemodel '{model_path}'{hint}")
    return data.reshape(expected)


# ---------------------------------------------------------------------------------------------- load
def load(prototxt, caffemodel=None, *, input_shape=None, phase="TEST", progress=None):
    """Read a Caffe net: prototxt for the graph and hyper-parameters, caffemodel for the blobs.

    Args:
        prototxt: path of the text ``NetParameter`` (V0, V1 or V2 layers; PSPNet fork fields allowed).
        caffemodel: path of the binary weights, or ``None`` for a graph without blobs (shape inference,
            random init). Blobs are matched by layer name; caffemodel layers the prototxt lacks are ignored.
        input_shape: overrides declared input sizes: ``(H, W)`` for every 4-D input (keeps N, C),
            ``(N, C, H, W)``, or a dict input name -> either form. Needed for placeholder inputs
            (OpenPose's 1x1) and for data layers without a crop size.
        phase: ``"TEST"`` (deploy) or ``"TRAIN"``, for include/exclude rules.
        progress: tqdm bar while reading the caffemodel; ``None`` = only for files over 50 MB, on a terminal.

    Returns:
        :class:`Net` with NCHW ``shapes`` for every blob id and float32 blobs in Caffe layout.

    Raises:
        CaffeFormatError: unreadable path, syntax error, unknown field, truncated/corrupt caffemodel.
        UnsupportedLayerError: a layer type without shape inference (message lists supported types).
        GraphError: a bottom nobody produces, missing input shapes, parameters that do not fit.
        WeightsMismatchError: missing blobs, wrong blob count/shape, caffemodel for another net.
    """
    path = os.fspath(prototxt) if isinstance(prototxt, (str, os.PathLike)) else prototxt
    text = _read_text(path)
    read_model = None
    if caffemodel is not None:
        model_path = os.fspath(caffemodel) if isinstance(caffemodel, (str, os.PathLike)) else caffemodel
        caffemodel = model_path

        def read_model():
            return _caffemodel.read_caffemodel_file(model_path, progress=progress)

    return _build(text, str(path), read_model, caffemodel, input_shape, phase)


def loads(prototxt_text, caffemodel_bytes=None, *, input_shape=None, phase="TEST"):
    """:func:`load` from memory: prototxt text (str or bytes) and optional caffemodel bytes.

    ``Net.prototxt`` and ``Net.caffemodel`` are None; messages name ``<prototxt>`` / ``<caffemodel>``.
    """
    if isinstance(prototxt_text, (bytes, bytearray, memoryview)):
        prototxt_text = _decode(bytes(prototxt_text), "<prototxt>")
    elif not isinstance(prototxt_text, str):
        raise CaffeFormatError(f"prototxt text must be str or bytes, got {type(prototxt_text).__name__}")
    read_model = None
    if caffemodel_bytes is not None:
        raw = bytes(caffemodel_bytes)

        def read_model():
            return _caffemodel.read_caffemodel(io.BytesIO(raw), "<caffemodel>", len(raw), progress=False)

    net = _build(prototxt_text, "<prototxt>", read_model, "<caffemodel>", input_shape, phase)
    net.prototxt = net.caffemodel = None
    return net


def blob_shapes(net):
    """Expected canonical blob shapes ``{layer name: [shape, ...]}`` of a loaded net (layers with blobs only)."""
    out = {}
    for layer in net.layers:
        _, shapes = infer(layer.param, [net.shapes[b] for b in layer.bottoms], f"layer '{layer.name}'")
        if shapes:
            out[layer.name] = shapes
    return out


def _build(text, path, read_model, model_path, input_shape, phase):
    """The Net of prototxt ``text``; ``read_model()`` (if given) reads the blobs once the graph checks out."""
    if str(phase).upper() not in _PHASES:
        raise GraphError(f"phase must be 'TEST' or 'TRAIN'. Received: phase={phase!r}")
    net_param, layer_lines, layers_lines = parse_prototxt(text, path)
    params, lines = upgrade_layers(net_param, layer_lines, layers_lines, path)
    state = TEXT.NetState()
    state.CopyFrom(net_param.state)
    state.phase = _PHASES[str(phase).upper()]

    def where(p, line):
        return f"layer '{p.name}' ({p.type or 'no type'}, {path}:{line})" if line else \
            f"layer '{p.name}' ({p.type or 'no type'}, {path})"

    # Inputs in declaration order: net-level, Input layers, data layers.
    inputs = _declared_inputs(net_param, path)
    data_tops, dropped_tops = set(), set()
    kept = []
    for p, line in zip(params, lines):
        if not _included(p, state, where(p, line)):
            continue
        if p.type == "Input" or _is_data(p):
            shapes = _data_layer_shapes(p) or [None] * len(p.top)
            inputs += list(zip(p.top, shapes))
            if p.type != "Input":
                data_tops.update(p.top)
        elif p.type == "Silence":
            kept.append((p, line))  # dropped below, after its bottoms are marked as consumed
        elif _is_dropped(p):
            dropped_tops.update(p.top)  # a Silence may read them
        else:
            phase = p.phase if p.HasField("phase") else state.phase  # net.cpp: the net's phase if unset
            if p.type == "BatchNorm" and phase == _PHASES["TRAIN"] and \
                    not p.batch_norm_param.HasField("use_global_stats"):
                # batch_norm_layer.cpp: use_global_stats defaults to (the layer's phase == TEST).
                p.batch_norm_param.use_global_stats = False
            if p.type == "Pooling" and p.pooling_param.HasField("ceil_mode"):
                pp = p.pooling_param
                mode = ROUND_CEIL if pp.ceil_mode else ROUND_FLOOR
                if pp.HasField("round_mode") and pp.round_mode != mode:
                    raise GraphError(f"{where(p, line)}: ceil_mode and round_mode disagree")
                pp.round_mode = mode
                pp.ClearField("ceil_mode")
            if p.type == "HoleConvolution" or any(p.convolution_param.HasField(f) for f in _HOLE_FIELDS):
                _hole_to_dilation(p, where(p, line))
            kept.append((p, line))
    names = [n for n, _ in inputs]
    if len(set(names)) != len(names):
        raise GraphError(f"{path}: input blob declared twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
    override = _check_override(input_shape, names)

    consumed = {b for p, _ in kept if p.type != "Silence" for b in p.bottom}
    shapes, caffe_names, current, net_inputs, resized = {}, {}, {}, {}, []
    for name, declared in inputs:
        if name in data_tops and name not in consumed:
            continue  # a label (or other data top) that only dropped layers read
        shape = _apply_override(name, declared, override)
        if declared is not None and shape is not None and tuple(shape) != tuple(declared):
            resized.append(f"input '{name}' {tuple(shape)}, declared {tuple(declared)}")
        if shape is None:
            raise GraphError(f"input '{name}' of {path} has no declared shape: pass input_shape=(H, W) or "
                             f"input_shape={{'{name}': (N, C, H, W)}}")
        if any(d <= 0 for d in shape):
            raise GraphError(f"input '{name}' of {path} has shape {shape}; every dim must be positive "
                             "(override it with input_shape=)")
        net_inputs[name] = shapes[name] = tuple(shape)
        caffe_names[name] = current[name] = name

    layers, expected, used_names, versions = [], {}, {}, {}
    # Split, Flatten and Reshape tops share their bottom's memory in Caffe (ShareData in split_layer.cpp,
    # flatten_layer.cpp, reshape_layer.cpp): an in-place write to one of them rewrites the others for
    # their later readers. memory: blob id -> ids of one memory; read: (name, id) pairs read so far;
    # pending: rewritten names nobody has read since (Caffe outputs holding the new values).
    # name_read: a Caffe name was read since its last producer (then no longer a Caffe output).
    memory, read, stale, superseded, pending, name_read = {}, set(), {}, set(), {}, {}
    silenced = set()  # blob ids read by a Silence layer: consumed, so not net outputs (net.cpp)
    for p, line in kept:
        w = where(p, line)
        if p.type == "Silence":
            for b in p.bottom:
                if b not in current and (b in data_tops or b in dropped_tops):
                    continue  # a label that only dropped layers read, or a dropped layer's top
                if b not in current:
                    raise GraphError(f"{w}: bottom '{b}' is not produced by any earlier layer or input")
                silenced.add(current[b])
                pending.pop(b, None)
                name_read[b] = True
            continue
        bottoms = []
        for b in p.bottom:
            if b not in current:
                raise GraphError(f"{w}: bottom '{b}' is not produced by any earlier layer or input")
            if b in stale:
                raise UnsupportedLayerError(f"{w}: reads '{b}' after {stale[b]} rewrote its memory in place "
                                            "with another shape (Caffe's Flatten/Reshape share memory); not supported")
            bottoms.append(current[b])
            pending.pop(b, None)
            name_read[b] = True
        tops_shapes, blob_shapes_ = infer(p, [shapes[b] for b in bottoms], w)
        tops = []
        for j, t in enumerate(p.top):
            in_place = j < len(p.bottom) and p.bottom[j] == t
            if t in current and not in_place:
                raise GraphError(f"{w}: top '{t}' is already produced by another layer (only in-place "
                                 "top == bottom at the same index may reuse a name)")
            versions[t] = versions.get(t, -1) + 1
            tid = t if versions[t] == 0 else f"{t}@{versions[t]}"
            while tid in caffe_names:  # a real blob name that looks like an SSA id
                versions[t] += 1
                tid = f"{t}@{versions[t]}"
            old = current.get(t)
            current[t], caffe_names[tid], shapes[tid] = tid, t, tops_shapes[j]
            name_read[t] = False
            tops.append(tid)
            if in_place and old in memory and (t, old) not in read:
                # (An old version another layer read already is Caffe's "produced by multiple sources"
                # error; OpenCV then keeps the other names as they were, and so do we.)
                shared = memory[old]
                for name, bid in list(current.items()):
                    if name != t and bid in shared:
                        if shapes[bid] == shapes[tid]:
                            current[name] = tid
                            if not name_read.get(name):
                                pending[name] = f"layer '{p.name}' (in place on '{t}')"
                            if caffe_names[bid] == name:
                                superseded.add(bid)
                        else:
                            stale[name] = f"layer '{p.name}' (in place on '{t}')"
                            if not name_read.get(name):
                                pending[name] = stale[name]
                shared.add(tid)
                memory[tid] = shared
        read.update(zip(p.bottom, bottoms))
        if p.type in ("Split", "Flatten", "Reshape"):
            shared = memory.setdefault(bottoms[0], {bottoms[0]})
            for tid in tops:
                shared.add(tid)
                memory[tid] = shared
        used_names[p.name] = used_names.get(p.name, -1) + 1
        unique, k = p.name, used_names[p.name]
        while unique in expected:  # OpenCV's convention for repeated names: conv, conv_1, conv_2
            unique = f"{p.name}_{k}"
            k += 1
        layers.append(Layer(name=unique, type=p.type, bottoms=bottoms, tops=tops, param=p, line=line))
        expected[unique] = (p.name, used_names[p.name], blob_shapes_, w)

    if read_model is not None:
        _attach_blobs(layers, expected, read_model(), model_path, path, {p.name for p in params}, "; ".join(resized))
    consumed_ids = {b for l in layers for b in l.bottoms}
    outputs = [t for l in layers for t in l.tops if t not in consumed_ids | silenced and t not in superseded]
    for name, writer in pending.items():
        raise UnsupportedLayerError(f"{path}: output '{name}' shares memory with a blob that {writer} rewrote "
                                    "in place (Caffe's Split/Flatten/Reshape share memory); not supported")
    net = Net(name=net_param.name, inputs=net_inputs, layers=layers, shapes=shapes, outputs=outputs,
              caffe_names=caffe_names, prototxt=path, caffemodel=model_path if read_model is not None else None)
    return net


def _attach_blobs(layers, expected, model, model_path, path, all_names, resized=""):
    by_name = {}
    for name, blobs in model:
        by_name.setdefault(name, []).append(blobs)
    if not by_name:
        raise CaffeFormatError(f"caffemodel '{model_path}' contains no layers")
    if not set(by_name) & all_names:
        some = ", ".join(sorted(by_name)[:5])
        raise WeightsMismatchError(
            f"none of the {len(by_name)} layer names in caffemodel '{model_path}' (e.g. {some}) appear in "
            f"prototxt '{path}': caffemodel for another net?")
    for layer in layers:
        name, k, shapes, w = expected[layer.name]
        found = by_name.get(name, [])
        raw = found[k] if k < len(found) and found[k] else next((b for b in found if b), [])
        if not raw:
            if shapes:
                raise WeightsMismatchError(
                    f"{w} needs {len(shapes)} blob(s) {shapes} but caffemodel '{model_path}' has none for it")
            continue
        if len(raw) != len(shapes):
            raise WeightsMismatchError(
                f"{w} has {len(raw)} blob(s) in caffemodel '{model_path}', expected {len(shapes)}: {shapes}")
        layer.blobs = [_fit_blob(r, s, w, i, model_path, resized) for i, (r, s) in enumerate(zip(raw, shapes))]
