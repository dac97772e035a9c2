"""A minimal Torch7 writer for tests (``torch.save`` binary format, as ``torch7/File.lua`` writes it) and
builders of small Stacked Hourglass networks (``pose-hg-train`` ``hg.lua`` + ``Residual.lua``).

    inp, outs = hourglass_nodes(rng, stacks=2, features=16, keypoints=4)
    write_t7(path, gmodule(inp, outs))          # an nn.gModule laid out the way nngraph stores it
    write_t7(path, hourglass_tree(rng, ...))    # the same network as plain nn containers

Python values map to Lua ones: ``None`` nil, ``bool``, ``int``/``float`` numbers, ``str``, ``dict`` and
``list`` tables (lists get keys 1..n), :class:`Pairs` tables with any keys (tables or torch objects
too), :class:`TObj` torch objects, :class:`Tensor`/:class:`Storage`, :class:`Func` functions. The same
Python object written twice is written once and then referenced by index, as Torch does.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["TObj", "Tensor", "Storage", "Pairs", "Func", "dumps", "write_t7", "gmodule", "call",
           "conv", "bn", "relu", "maxpool", "upsample", "cadd", "identity", "sequential", "concat_table",
           "select_table", "join_table", "residual", "hourglass_nodes", "hourglass_tree", "hg_stacked_nodes"]

DTYPES = {"Double": "<f8", "Float": "<f4", "Half": "<f2", "Long": "<i8", "Int": "<i4", "Short": "<i2",
          "Char": "i1", "Byte": "u1", "Cuda": "<f4", "CudaDouble": "<f8", "CudaHalf": "<f2"}


class TObj:
    """A torch object: class name, fields (dict or Pairs), version (None: pre-versioning header)."""

    def __init__(self, cls, fields=None, version=1):
        self.cls, self.fields, self.version = cls, fields if fields is not None else {}, version


class Storage:
    def __init__(self, data, cls="torch.FloatStorage"):
        self.cls = cls
        self.data = np.ascontiguousarray(data, dtype=DTYPES[cls[6:-7]]).reshape(-1)


class Tensor:
    """A tensor: ``array`` (the logical values), or a view (shape, strides, 0-based offset) of ``storage``."""

    def __init__(self, array=None, cls="torch.FloatTensor", *, storage=None, shape=None, strides=None, offset=0):
        self.cls = cls
        dtype = DTYPES[cls[6:-6]]
        if storage is None:
            array = np.asarray(array, dtype=dtype)
            shape = () if array.shape == (0,) else array.shape  # torch.Tensor() is 0-d and has no storage
            strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
            storage = Storage(array, cls.replace("Tensor", "Storage")) if array.size else None
        self.storage, self.shape, self.strides, self.offset = storage, tuple(shape), tuple(strides), offset
        self.array = array if array is not None else np.lib.stride_tricks.as_strided(
            storage.data[offset:], shape, [s * storage.data.itemsize for s in strides])


class Pairs:
    """A Lua table given as (key, value) pairs; keys may be tables or torch objects."""

    def __init__(self, items=()):
        self.items = list(items)


class Func:
    """A Lua function: bytecode bytes and an upvalues table; ``tag`` 6 (plain) or 7/8 (referenced)."""

    def __init__(self, bytecode=b"\x1bLuaQ", upvalues=None, tag=8):
        self.bytecode, self.upvalues, self.tag = bytecode, upvalues if upvalues is not None else [], tag


class _Writer:
    def __init__(self):
        self.out = bytearray()
        self.index, self.keep = {}, []

    def int(self, v):
        self.out += struct.pack("<i", v)

    def long(self, v):
        self.out += struct.pack("<q", v)

    def string(self, s):
        b = s.encode("utf-8") if isinstance(s, str) else s
        self.int(len(b))
        self.out += b

    def obj(self, v):
        if v is None:
            return self.int(0)
        if isinstance(v, (bool, np.bool_)):
            self.int(5)
            return self.int(1 if v else 0)
        if isinstance(v, (int, float, np.integer, np.floating)):
            self.int(1)
            self.out += struct.pack("<d", float(v))
            return
        if isinstance(v, str):
            self.int(2)
            return self.string(v)
        if isinstance(v, Func) and v.tag == 6:
            self.int(6)
            self.string(v.bytecode)
            return self.obj(v.upvalues)
        tag = v.tag if isinstance(v, Func) else 4 if isinstance(v, (TObj, Tensor, Storage)) else 3
        self.int(tag)
        if id(v) in self.index:
            return self.int(self.index[id(v)])
        self.index[id(v)] = len(self.index) + 1
        self.keep.append(v)
        self.int(self.index[id(v)])
        if isinstance(v, Func):
            self.string(v.bytecode)
            return self.obj(v.upvalues)
        if tag == 3:
            items = v.items if isinstance(v, Pairs) else list(enumerate(v, 1)) if isinstance(v, list) else list(v.items())
            self.int(len(items))
            for k, x in items:
                self.obj(k)
                self.obj(x)
            return
        version = getattr(v, "version", 0)
        if version is not None:
            self.string(f"V {version}")
        self.string(v.cls)
        if isinstance(v, Storage):
            self.long(v.data.size)
            self.out += v.data.tobytes()
        elif isinstance(v, Tensor):
            self.int(len(v.shape))
            for n in v.shape + v.strides:
                self.long(n)
            self.long(v.offset + 1)
            self.obj(v.storage)
        else:
            self.obj(v.fields)


def dumps(value) -> bytes:
    w = _Writer()
    w.obj(value)
    return bytes(w.out)


def write_t7(path, value):
    with open(path, "wb") as f:
        f.write(dumps(value))
    return path


# ----------------------------------------------------------------------------------------- nn modules
TTYPE = "torch.CudaTensor"  # the release was saved from the GPU


def _t(a, ttype=TTYPE):
    return Tensor(np.asarray(a), ttype)


def _module(cls, ttype=TTYPE, version=1, **fields):
    base = {"output": _t(np.zeros(0), ttype), "gradInput": _t(np.zeros(0), ttype), "train": False, "_type": ttype}
    return TObj(cls, {**base, **fields}, version)


def conv(rng, cin, cout, k, stride=1, pad=0, *, cls="cudnn.SpatialConvolution", mm=False, ttype=TTYPE):
    """``SpatialConvolution(cin, cout, k, k, stride, stride, pad, pad)``; ``mm``: 2-D weight
    (``nn.SpatialConvolutionMM`` layout)."""
    w = rng.normal(0, (1.0 / (cin * k * k)) ** 0.5, (cout, cin, k, k))
    if mm:
        cls, w = "nn.SpatialConvolutionMM", w.reshape(cout, cin * k * k)
    return _module(cls, ttype, nInputPlane=cin, nOutputPlane=cout, kW=k, kH=k, dW=stride, dH=stride, padW=pad,
                   padH=pad, groups=1, weight=_t(w, ttype), bias=_t(rng.normal(0, 0.1, cout), ttype),
                   gradWeight=_t(np.zeros(0), ttype), gradBias=_t(np.zeros(0), ttype))


def bn(rng, c, *, eps=1e-5, legacy=False, cls="nn.SpatialBatchNormalization", ttype=TTYPE):
    """``SpatialBatchNormalization(c)`` with non-trivial statistics; ``legacy``: nn before version 2,
    which stored ``running_std = 1/sqrt(var + eps)``."""
    var = rng.uniform(0.5, 1.5, c)
    stats = {"running_std": _t(1 / np.sqrt(var + eps), ttype)} if legacy else {"running_var": _t(var, ttype)}
    return _module(cls, ttype, 1 if legacy else 2, eps=eps, momentum=0.1, affine=True,
                   running_mean=_t(rng.normal(0, 0.1, c), ttype), weight=_t(rng.uniform(0.5, 1.5, c), ttype),
                   bias=_t(rng.normal(0, 0.1, c), ttype), **stats)


def relu(cls="cudnn.ReLU"):
    return _module(cls, inplace=True, threshold=0, val=0)


def maxpool(cls="cudnn.SpatialMaxPooling"):
    return _module(cls, kW=2, kH=2, dW=2, dH=2, padW=0, padH=0, ceil_mode=False)


def upsample(scale=2):
    return _module("nn.SpatialUpSamplingNearest", scale_factor=scale,
                   inputSize=Storage(np.zeros(4), "torch.LongStorage"), outputSize=Storage(np.zeros(4), "torch.LongStorage"))


def cadd(inplace=False):
    return _module("nn.CAddTable", inplace=inplace)


def identity():
    return _module("nn.Identity")


def sequential(*mods):
    return _module("nn.Sequential", modules=list(mods))


def concat_table(*mods):
    return _module("nn.ConcatTable", modules=list(mods))


def select_table(index):
    return _module("nn.SelectTable", index=index)


def join_table(dim):
    return _module("nn.JoinTable", dimension=dim)


def residual(rng, cin, cout, **kw):
    """``Residual(cin, cout)`` of ``Residual.lua``."""
    bkw = {k: v for k, v in kw.items() if k in ("eps", "legacy")}
    ckw = {k: v for k, v in kw.items() if k == "mm"}
    block = sequential(bn(rng, cin, **bkw), relu(), conv(rng, cin, cout // 2, 1, **ckw), bn(rng, cout // 2, **bkw),
                       relu(), conv(rng, cout // 2, cout // 2, 3, 1, 1, **ckw), bn(rng, cout // 2, **bkw), relu(),
                       conv(rng, cout // 2, cout, 1, **ckw))
    skip = identity() if cin == cout else sequential(conv(rng, cin, cout, 1, **ckw))
    return sequential(concat_table(block, skip), cadd(True))


# ----------------------------------------------------------------------------------------- nngraph
class GNode:
    """A node being built, as ``module(inputs)`` returns in nngraph."""

    def __init__(self, module, inputs):
        self.module, self.inputs = module, list(inputs)


def call(module, *inputs):
    return GNode(module, inputs)


def gmodule(inp, outputs):
    """Serialize the nodes reachable from ``outputs`` as ``nn.gModule({inp}, outputs)`` does
    (nngraph ``gmodule.lua``; ``graph`` ``Graph.lua``/``Node.lua``): shared ``data`` tables with
    ``module`` and ``mapindex`` (list + reverse map keyed by data tables), forward (fg) and backward
    (bg) graphs with their own node objects, ``forwardnodes`` in topological order, ``modules``."""
    order, seen = [], set()

    def visit(n):  # inputs before consumers
        if id(n) in seen:
            return
        seen.add(id(n))
        for i in n.inputs:
            visit(i)
        order.append(n)

    for o in outputs:
        visit(o)
    data = {id(n): {"module": n.module, "annotations": {"_debugLabel": f"[hg.lua]:{k}"}, "reverseMap": {}}
            for k, n in enumerate(order, 10)}
    in_data = {"input": [], "annotations": {"_debugLabel": "[gmodule.lua]:1"}, "reverseMap": {}}
    out_data = {"input": [], "annotations": {"_debugLabel": "[gmodule.lua]:2"}, "reverseMap": {}}

    def mapindex(ds):
        return Pairs([(float(i), d) for i, d in enumerate(ds, 1)] + [(d, float(i)) for i, d in enumerate(ds, 1)])

    inputs_of = {id(n): [data[id(i)] for i in n.inputs] or ([in_data] if n is inp else []) for n in order}
    for n in order:
        data[id(n)]["mapindex"] = mapindex(inputs_of[id(n)])
    in_data["mapindex"] = mapindex([])
    out_data["mapindex"] = mapindex([data[id(o)] for o in outputs])
    all_data = [in_data] + [data[id(n)] for n in order] + [out_data]
    ins = {id(d): [] for d in all_data}
    for n in order:
        ins[id(data[id(n)])] = inputs_of[id(n)]
    ins[id(out_data)] = [data[id(o)] for o in outputs]

    def node(d, nid):
        return TObj("nngraph.Node", {"data": d, "children": Pairs(), "visited": False, "marked": False, "id": nid})

    fg = {id(d): node(d, k) for k, d in enumerate(all_data, 1)}
    bg = {id(d): node(d, len(all_data) + 1 - k) for k, d in enumerate(all_data, 1)}
    edges_f, edges_b = [], []
    for d in all_data:
        for src in ins[id(d)]:  # fg: producer -> consumer; bg: consumer -> producer
            for g, a, b, edges in ((fg, src, d, edges_f), (bg, d, src, edges_b)):
                kids = g[id(a)].fields["children"].items
                kids.append((float(len(kids) + 1), g[id(b)]))
                edges.append(TObj("graph.Edge", {"from": g[id(a)], "to": g[id(b)]}))
    for g in (fg, bg):  # children: list part first, then the reverse map
        for n in g.values():
            kids = n.fields["children"].items
            n.fields["children"].items = kids + [(c, k) for k, c in kids]
    for d in all_data[1:]:
        d["forwardNodeId"] = float(fg[id(d)].fields["id"])

    def graph(g, edges):
        nodes = sorted(g.values(), key=lambda n: n.fields["id"])
        return TObj("graph.Graph", {
            "nodes": Pairs([(float(i), n) for i, n in enumerate(nodes, 1)] + [(n, float(i)) for i, n in enumerate(nodes, 1)]),
            "edges": Pairs([(float(i), e) for i, e in enumerate(edges, 1)] + [(e, float(i)) for i, e in enumerate(edges, 1)])})

    forward = [fg[id(d)] for d in all_data]
    return _module("nn.gModule", fg=graph(fg, edges_f), bg=graph(bg, edges_b), innode=fg[id(in_data)],
                   outnode=bg[id(out_data)], forwardnodes=forward, backwardnodes=[bg[id(d)] for d in reversed(all_data)],
                   modules=[n.module for n in order], nInputs=1, verbose=False)


# ----------------------------------------------------------------------------------------- hourglass
def hourglass_nodes(rng, *, stacks, features, keypoints, modules=1, lin_only=False, **kw):
    """``createModel()`` of ``hg.lua`` as nngraph nodes; returns ``(inp, outputs)``.

    ``lin_only``: the earlier ``hg.lua`` (``nModules`` lin layers, no residual after the hourglass).
    ``kw``: ``eps``, ``legacy`` (BN), ``mm`` (conv layout) for every module.
    """
    bkw = {k: v for k, v in kw.items() if k in ("eps", "legacy")}
    ckw = {k: v for k, v in kw.items() if k == "mm"}
    res = lambda a, b, x: call(residual(rng, a, b, **kw), x)  # noqa: E731
    f = features

    def hourglass(n, x):
        up1 = x
        for _ in range(modules):
            up1 = res(f, f, up1)
        low = call(maxpool(), x)
        for _ in range(modules):
            low = res(f, f, low)
        if n > 1:
            low = hourglass(n - 1, low)
        else:
            for _ in range(modules):
                low = res(f, f, low)
        for _ in range(modules):
            low = res(f, f, low)
        return call(cadd(), up1, call(upsample(), low))

    def lin(x):
        return call(relu(), call(bn(rng, f, **bkw), call(conv(rng, f, f, 1, **ckw), x)))

    inp = call(identity())
    x = call(relu(), call(bn(rng, 64, **bkw), call(conv(rng, 3, 64, 7, 2, 3, **ckw), inp)))
    x = res(128, f, res(128, 128, call(maxpool(), res(64, 128, x))))
    inter, outs = x, []
    for i in range(stacks):
        ll = hourglass(4, inter)
        for _ in range(modules):
            ll = lin(ll) if lin_only else res(f, f, ll)
        if not lin_only:
            ll = lin(ll)
        out = call(conv(rng, f, keypoints, 1, **ckw), ll)
        outs.append(out)
        if i < stacks - 1:
            inter = call(cadd(), inter, call(conv(rng, f, f, 1, **ckw), ll), call(conv(rng, keypoints, f, 1, **ckw), out))
    return inp, outs


def hourglass_tree(rng, *, stacks, features, keypoints, **kw):
    """The ``hg.lua`` network (``nModules`` 1) as plain containers: Sequential, ConcatTable,
    SelectTable, CAddTable, Identity. The output is the table of the stacks' heatmaps."""
    f = features
    res = lambda a, b: residual(rng, a, b, **kw)  # noqa: E731

    def hourglass(n):
        low = [maxpool(), res(f, f)] + ([hourglass(n - 1)] if n > 1 else [res(f, f)]) + [res(f, f), upsample()]
        return sequential(concat_table(res(f, f), sequential(*low)), cadd())

    stem = [conv(rng, 3, 64, 7, 2, 3), bn(rng, 64), relu(), res(64, 128), maxpool(), res(128, 128), res(128, f)]
    steps = []
    for s in range(1, stacks + 1):
        body = sequential(hourglass(4), res(f, f), conv(rng, f, f, 1), bn(rng, f), relu())
        if s == 1:  # state: inter -> {inter, ll}
            steps.append(concat_table(identity(), body))
        else:  # state: {inter, o1..o(s-1)} -> {inter, ll, o1..o(s-1)}
            steps.append(concat_table(select_table(1), sequential(select_table(1), body),
                                      *[select_table(j) for j in range(2, s + 1)]))
        # -> {inter, ll, o1..o(s-1), o_s}
        steps.append(concat_table(*[select_table(j) for j in range(1, s + 2)],
                                  sequential(select_table(2), conv(rng, f, keypoints, 1))))
        outs = [select_table(j) for j in range(3, s + 3)]
        if s < stacks:  # -> {inter + ll_ + tmpOut_, o1..o_s}
            feedback = sequential(concat_table(select_table(1), sequential(select_table(2), conv(rng, f, f, 1)),
                                               sequential(select_table(-1), conv(rng, keypoints, f, 1))), cadd())
            steps.append(concat_table(feedback, *outs))
        else:  # -> {o1..o_S}
            steps.append(concat_table(*outs))
    return sequential(*stem, *steps)


def hg_stacked_nodes(rng, *, features=16, keypoints=4):
    """The older two-stack ``hg-stacked.lua`` layout (extra stem residual, two lin layers, JoinTable of
    the lin features with the pooled stem), built from the same parts; not ``hg.lua``."""
    f = features
    res = lambda a, b, x: call(residual(rng, a, b), x)  # noqa: E731

    def hourglass(n, x):
        low = res(f, f, call(maxpool(), x))
        low = hourglass(n - 1, low) if n > 1 else res(f, f, low)
        return call(cadd(), res(f, f, x), call(upsample(), res(f, f, low)))

    def lin(a, b, x):
        return call(relu(), call(bn(rng, b), call(conv(rng, a, b, 1), x)))

    inp = call(identity())
    x = call(relu(), call(bn(rng, 64), call(conv(rng, 3, 64, 7, 2, 3), inp)))
    pool = call(maxpool(), res(64, 128, x))
    x = res(128, f, res(128, 128, res(128, 128, pool)))
    l2 = lin(f, f, lin(f, f, hourglass(4, x)))
    out1 = call(conv(rng, f, keypoints, 1), l2)
    cat = call(conv(rng, f + 128, f, 1), call(join_table(2), l2, pool))
    x = call(cadd(), cat, call(conv(rng, keypoints, f, 1), out1))
    out2 = call(conv(rng, f, keypoints, 1), lin(f, f, lin(f, f, hourglass(4, x))))
    return inp, [out1, out2]
