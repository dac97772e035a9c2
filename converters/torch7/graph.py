"""A Torch7 network (``nn.gModule`` from nngraph, or a plain ``nn`` container tree) as a dataflow
graph of primitive ops: ``input``, ``conv``, ``bn``, ``relu``, ``maxpool``, ``upsample_nearest``,
``add``, ``concat``; ``nn.Identity`` (and nngraph's module-less plumbing nodes) disappear.

nngraph (``gmodule.lua``, ``node.lua``): ``forwardnodes`` lists the forward graph's nodes in
topological order; a node's ``data`` table holds its ``module`` and ``mapindex`` (the ordered list
of its inputs' ``data`` tables; ``data`` is shared between a node and its copies in other graphs, so
inputs are found by the identity of ``data``). The node without module whose data is
``innode.data`` is the network input; ``outnode.data.mapindex`` orders the network outputs.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from converters.torch7.errors import Torch7FormatError, UnsupportedModuleError
from converters.torch7.reader import LuaTable, TorchObject, load

__all__ = ["Op", "OpGraph", "to_graph", "load_graph", "describe"]


@dataclass(eq=False)
class Op:
    """One primitive op.

    Attributes:
        kind: ``input``, ``conv``, ``bn``, ``relu``, ``maxpool``, ``upsample_nearest``, ``add``, ``concat``.
        inputs: the ops it reads, in order.
        attrs: ``conv``: weight (O, I/groups, kh, kw), bias (O,) or None, stride/pad (h, w), groups;
            ``bn``: gamma, beta, mean, var (C,), eps; ``maxpool``: kernel/stride/pad (h, w), ceil_mode;
            ``upsample_nearest``: scale; ``concat``: dim (1-based Torch dim, batch included).
        where: where the module sits in the file, e.g. ``"node 14 (cudnn.SpatialConvolution).modules.1"``.
        consumers: the ops that read this one.
    """

    kind: str
    inputs: list
    attrs: dict
    where: str
    consumers: list = field(default_factory=list)


@dataclass
class OpGraph:
    """Ops in topological order; ``inputs``/``outputs`` are the network's, in order."""

    ops: list
    inputs: list
    outputs: list
    source: str = "<graph>"


def describe(op: Op) -> str:
    """Torch-style one-line description, e.g. ``SpatialConvolution 256->128 1x1``."""
    a = op.attrs
    if op.kind == "conv":
        o, i, kh, kw = a["weight"].shape
        s = f"SpatialConvolution {i * a['groups']}->{o} {kh}x{kw}"
        if a["stride"] != (1, 1):
            s += f" stride {a['stride'][0]}" if a["stride"][0] == a["stride"][1] else f" stride {a['stride']}"
        if a["pad"] != (0, 0):
            s += f" pad {a['pad'][0]}" if a["pad"][0] == a["pad"][1] else f" pad {a['pad']}"
        return s
    if op.kind == "bn":
        return f"SpatialBatchNormalization({a['gamma'].shape[0]})"
    if op.kind == "maxpool":
        (kh, kw), (sh, sw) = a["kernel"], a["stride"]
        s = f"SpatialMaxPooling {kh}x{kw}/{sh}" if sh == sw else f"SpatialMaxPooling {kh}x{kw} stride ({sh},{sw})"
        return s + (" pad {}".format(a["pad"]) if a["pad"] != (0, 0) else "") + (" ceil" if a["ceil_mode"] else "")
    if op.kind == "upsample_nearest":
        return f"SpatialUpSamplingNearest({a['scale']})"
    if op.kind == "add":
        return f"CAddTable of {len(op.inputs)} inputs"
    if op.kind == "concat":
        return f"JoinTable({a['dim']}) of {len(op.inputs)} inputs"
    return {"relu": "ReLU", "input": "the network input"}.get(op.kind, op.kind)


def load_graph(path) -> OpGraph:
    """:func:`to_graph` of the object in the ``.t7`` file at ``path``."""
    return to_graph(load(path), source=str(path))


def to_graph(root, source: str = "<graph>") -> OpGraph:
    """Convert a deserialized ``nn.gModule`` or module tree into an :class:`OpGraph` with one input.

    Raises:
        UnsupportedModuleError: a module class (or setting) not listed in this module's docstring;
            the message names the class and where it sits.
        Torch7FormatError: an object that is not a network, or an inconsistent nngraph.
    """
    b = _Builder(source)
    x = b.op("input", [], {}, "input")
    if not isinstance(root, TorchObject):
        raise Torch7FormatError(f"Torch7 file '{source}': expected an nn module at the top, found "
                                f"{type(root).__name__}")
    out = b.module(root, x, "model" if _short(root.class_name) != "gModule" else "")
    outputs = _flatten(out)
    return OpGraph(ops=b.ops, inputs=[x], outputs=outputs, source=source)


def _flatten(value):
    if isinstance(value, list):
        return [o for v in value for o in _flatten(v)]
    return [value]


def _found(v) -> str:
    """How a wrong value is named in a message: nil, a number/string/boolean as it is, else its kind."""
    if v is None:
        return "nil"
    return repr(v) if isinstance(v, (str, int, float)) else f"a {type(v).__name__}"


def _short(class_name: str) -> str:
    return class_name.rsplit(".", 1)[-1]


_MAX_DEPTH = 200  # containers nested deeper than this are garbage (and would exhaust Python's stack)
# Module applications in one graph: torch.save writes a module reached twice once, so 40 nested ConcatTables holding
# one child twice are a 4 KB file of 2**40 applications (memory grew without end). An 8-stack hourglass has ~3,000.
_MAX_MODULES = 200_000


def _num(obj, key, default=None):
    v = obj.get(key, default)
    return None if v is None else int(v) if isinstance(v, float) and v.is_integer() else v


class _Builder:
    def __init__(self, source):
        self.source = source
        self.ops: list[Op] = []
        self.depth = 0
        self.modules = 0

    def whole(self, m, key, here, default=None):
        """Field ``key`` of ``m`` as an int (Lua numbers are floats); ``default`` when absent."""
        v = _num(m, key, default)
        if v is not default and (not isinstance(v, int) or isinstance(v, bool)):
            self.fail(here, f"expected a whole number in field '{key}', found {_found(v)}", Torch7FormatError)
        return v

    def op(self, kind, inputs, attrs, where):
        op = Op(kind, list(inputs), attrs, where)
        for i in op.inputs:
            i.consumers.append(op)
        self.ops.append(op)
        return op

    def fail(self, where, msg, cls=UnsupportedModuleError):
        raise cls(f"Torch7 file '{self.source}', {where}: {msg}")

    def single(self, x, where, cls):
        if isinstance(x, list):
            if len(x) == 1 and isinstance(x[0], Op):
                return x[0]
            self.fail(where, f"{cls} expects one tensor input, got a table of {len(x)}")
        return x

    def table(self, x, where, cls):
        if not isinstance(x, list):
            self.fail(where, f"{cls} expects a table of inputs, got a single tensor")
        return [self.single(v, where, cls) for v in x]

    # ---------------------------------------------------------------------------------- modules
    def module(self, m, x, where):
        if not isinstance(m, TorchObject):
            self.fail(where or "model", f"expected an nn module, found {_found(m)}", Torch7FormatError)
        if self.depth >= _MAX_DEPTH:
            self.fail(f"{where} ({m.class_name})", f"expected containers nested at most {_MAX_DEPTH} deep", Torch7FormatError)
        self.modules += 1
        if self.modules > _MAX_MODULES:
            self.fail(f"{where} ({m.class_name})", f"expected at most {_MAX_MODULES:,} module applications in the "
                      f"network (containers that hold one module several times multiply them)", Torch7FormatError)
        self.depth += 1
        try:
            return self._module(m, x, where)
        finally:
            self.depth -= 1

    def _module(self, m, x, where):
        cls = m.class_name
        name = _short(cls)
        here = f"{where} ({cls})" if where else cls
        children = m.get("modules")
        children = children.list() if isinstance(children, LuaTable) else []
        if name == "gModule":
            return self.gmodule(m, x, where)
        if name == "Sequential":
            for i, c in enumerate(children, 1):
                x = self.module(c, x, f"{where}.modules.{i}" if where else f"modules.{i}")
            return x
        if name == "ConcatTable":
            return [self.module(c, x, f"{where}.modules.{i}" if where else f"modules.{i}")
                    for i, c in enumerate(children, 1)]
        if name == "ParallelTable":
            xs = x if isinstance(x, list) else [x]
            if len(xs) < len(children):
                self.fail(here, f"ParallelTable of {len(children)} modules got {len(xs)} inputs")
            return [self.module(c, xi, f"{where}.modules.{i}") for i, (c, xi) in enumerate(zip(children, xs), 1)]
        if name == "Identity":
            return x
        if name == "SelectTable":
            xs = x if isinstance(x, list) else self.fail(here, "SelectTable expects a table input")
            i = _num(m, "index")
            if not isinstance(i, int) or not (1 <= i <= len(xs) or -len(xs) <= i <= -1):
                self.fail(here, f"SelectTable index {i} out of range for a table of {len(xs)}")
            return xs[i - 1] if i > 0 else xs[i]
        if name == "CAddTable":
            return self.op("add", self.table(x, here, cls), {}, here)
        if name == "JoinTable":
            dim = _num(m, "dimension")
            return self.op("concat", self.table(x, here, cls), {"dim": dim, "nInputDims": _num(m, "nInputDims")}, here)
        x = self.single(x, here, cls)
        if name in ("SpatialConvolution", "SpatialConvolutionMM"):
            return self.op("conv", [x], self.conv_attrs(m, here), here)
        if name == "SpatialBatchNormalization":
            return self.op("bn", [x], self.bn_attrs(m, here), here)
        if name == "ReLU":
            return self.op("relu", [x], {}, here)
        if name == "SpatialMaxPooling":
            w = lambda k, d=None: self.whole(m, k, here, d)  # noqa: E731
            attrs = {"kernel": (w("kH"), w("kW")), "stride": (w("dH"), w("dW")),
                     "pad": (w("padH", 0), w("padW", 0)), "ceil_mode": bool(m.get("ceil_mode", False))}
            return self.op("maxpool", [x], attrs, here)
        if name == "SpatialUpSamplingNearest":
            return self.op("upsample_nearest", [x], {"scale": self.whole(m, "scale_factor", here)}, here)
        self.fail(here, f"unsupported Torch module class '{cls}' (supported: nn.gModule, Sequential, "
                        f"ConcatTable, ParallelTable, SelectTable, Identity, CAddTable, JoinTable, "
                        f"SpatialConvolution(MM), SpatialBatchNormalization, ReLU, SpatialMaxPooling, "
                        f"SpatialUpSamplingNearest; nn. or cudnn.)")

    def conv_attrs(self, m, here):
        o, i = _num(m, "nOutputPlane"), _num(m, "nInputPlane")
        kh, kw = _num(m, "kH"), _num(m, "kW")
        groups = self.whole(m, "groups", here, 1) or 1
        w = m.get("weight")
        if not all(isinstance(v, int) and v > 0 for v in (o, i, kh, kw)) or not isinstance(w, np.ndarray):
            self.fail(here, "a convolution needs integer nOutputPlane, nInputPlane, kH, kW and a weight tensor",
                      Torch7FormatError)
        shape = (o, i // groups, kh, kw)
        if w.shape not in (shape, (o, int(np.prod(shape[1:])))):
            self.fail(here, f"weight of {w.size} values ({list(w.shape)}), expected {o}x{i // groups}x{kh}x{kw} "
                            f"= {int(np.prod(shape))} (or 2-D {o}x{int(np.prod(shape[1:]))})", Torch7FormatError)
        # SpatialConvolutionMM (and old nn files) store 2-D (O, I*kh*kw): the same order, reshaped.
        w = np.ascontiguousarray(w).reshape(shape)
        bias = m.get("bias")
        if isinstance(bias, np.ndarray) and bias.size == 0:
            bias = None
        if bias is not None and (not isinstance(bias, np.ndarray) or bias.size != o):
            self.fail(here, f"bias of {getattr(bias, 'size', '?')} values, expected {o}", Torch7FormatError)
        pad = self.whole(m, "padding", here)  # pre-2015 nn: one 'padding' for both axes
        ph, pw = (pad, pad) if pad is not None else (self.whole(m, "padH", here, 0), self.whole(m, "padW", here, 0))
        return {"weight": w, "bias": None if bias is None else bias.reshape(o), "groups": groups,
                "stride": (self.whole(m, "dH", here, 1), self.whole(m, "dW", here, 1)), "pad": (ph, pw)}

    def bn_attrs(self, m, here):
        eps = m.get("eps", 1e-5)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool):
            self.fail(here, f"expected a number in field 'eps', found {_found(eps)}", Torch7FormatError)
        eps = float(eps)
        mean = m.get("running_mean")
        var = m.get("running_var")
        if var is None and isinstance(m.get("running_std"), np.ndarray):
            # nn before BatchNormalization version 2 kept running_std = 1/sqrt(var + eps)
            # (nn/BatchNormalization.lua read(): running_var = running_std^-2 - eps).
            std = m["running_std"].astype(np.float64)
            var = (1.0 / (std * std) - eps).astype(m["running_std"].dtype)
        if not isinstance(mean, np.ndarray) or not isinstance(var, np.ndarray) or mean.size != var.size:
            self.fail(here, "a batch normalization needs running_mean and running_var (or running_std) "
                            "tensors of the same size", Torch7FormatError)
        c = mean.size
        gamma, beta = m.get("weight"), m.get("bias")
        gamma = np.ones(c, mean.dtype) if not isinstance(gamma, np.ndarray) or gamma.size == 0 else gamma
        beta = np.zeros(c, mean.dtype) if not isinstance(beta, np.ndarray) or beta.size == 0 else beta
        if gamma.size != c or beta.size != c:
            self.fail(here, f"weight/bias of {gamma.size}/{beta.size} values, expected {c}", Torch7FormatError)
        return {"gamma": gamma.reshape(c), "beta": beta.reshape(c), "mean": mean.reshape(c),
                "var": var.reshape(c), "eps": eps}

    # ---------------------------------------------------------------------------------- nngraph
    def gmodule(self, g, x, where):
        nodes = g.get("forwardnodes")
        innode, outnode = g.get("innode"), g.get("outnode")
        if not (isinstance(nodes, LuaTable) and isinstance(innode, TorchObject) and isinstance(outnode, TorchObject)):
            self.fail(where or "nn.gModule", "an nn.gModule with forwardnodes, innode and outnode", Torch7FormatError)
        nodes = nodes.list()
        for node in nodes:
            if not isinstance(node, TorchObject):
                self.fail(where or "nn.gModule", f"expected forwardnodes of nngraph.Node objects, found {_found(node)}",
                          Torch7FormatError)
            if not isinstance(node.get("data"), LuaTable):
                self.fail(f"{where}.node {_num(node, 'id', '?')}" if where else f"node {_num(node, 'id', '?')}",
                          f"expected a node with a data table, found {_found(node.get('data'))}", Torch7FormatError)
        in_data, out_data = innode.get("data"), outnode.get("data")
        by_data = {id(n.get("data")): n for n in nodes}
        pos = {id(n): k for k, n in enumerate(nodes, 1)}

        def inputs_of(node):
            mi = node["data"].get("mapindex")
            return mi.list() if isinstance(mi, LuaTable) else []

        def label(node):
            nid = _num(node, "id", "?")
            prefix = f"{where}." if where else ""
            return f"{prefix}node {nid}"

        values = {}  # id(data) -> value
        for node in _topsort(nodes, inputs_of, by_data, lambda n: self.fail(
                label(n), "an acyclic nngraph whose node inputs are graph nodes", Torch7FormatError)):
            data = node["data"]
            if data is in_data:
                values[id(data)] = x
                continue
            ins = []
            for d in inputs_of(node):
                if id(d) not in values:
                    self.fail(label(node), f"an input node computed before it (forwardnodes[{pos[id(node)]}])",
                              Torch7FormatError)
                ins.append(values[id(d)])
            module = data.get("module")
            if isinstance(module, TorchObject):
                value = self.module(module, ins[0] if len(ins) == 1 else ins, label(node))
            elif data.get("selectindex") is not None:  # an output of node:split(n)
                src = ins[0] if len(ins) == 1 else ins
                k = self.whole(data, "selectindex", label(node))
                if not isinstance(src, list) or not 1 <= k <= len(src):
                    self.fail(label(node), f"split output {k} of a table input", Torch7FormatError)
                value = src[k - 1]
            else:  # outnode, split's mnode: pass through like nn.Identity
                value = ins[0] if len(ins) == 1 else ins
            values[id(data)] = value
        if id(out_data) not in values:
            self.fail(where or "nn.gModule", "the outnode among forwardnodes", Torch7FormatError)
        outs = [values[id(d)] for d in inputs_of(outnode)]
        return outs[0] if len(outs) == 1 else outs


def _topsort(nodes, inputs_of, by_data, fail):
    """Kahn's sort keeping the file's order among ready nodes (forwardnodes is already sorted)."""
    deps = {}
    users = {id(n): [] for n in nodes}
    for n in nodes:
        ds = []
        for d in inputs_of(n):
            src = by_data.get(id(d))
            if src is None:
                fail(n)
            ds.append(src)
            users[id(src)].append(n)
        deps[id(n)] = len(ds)
    order = {id(n): k for k, n in enumerate(nodes)}
    ready = [(order[id(n)], id(n), n) for n in nodes if deps[id(n)] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, _, n = heapq.heappop(ready)
        out.append(n)
        for u in users[id(n)]:
            deps[id(u)] -= 1
            if deps[id(u)] == 0:
                heapq.heappush(ready, (order[id(u)], id(u), u))
    if len(out) != len(nodes):
        fail(next(n for n in nodes if deps[id(n)] > 0))
    return out
