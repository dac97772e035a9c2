"""converters.torch7 on hostile or malformed files: every one gives a Torch7Error naming the file and
what was expected, never a bare Python error, an out-of-bounds read or a huge allocation."""

import sys

import numpy as np
import pytest

from converters.torch7 import Torch7FormatError, WeightsMismatchError, infer_hourglass_config, loads, to_graph
from tests.converters import torch7_files as T

# Parsers, NumPy and OpenCV only, nothing a Keras backend computes: ./dev test's TensorFlow pass runs these,
# its JAX pass (-m backend_agnostic) has nothing here that could differ.


def raw_tensor(storage, shape, strides, offset=0, cls="torch.FloatTensor"):
    """A tensor header as written, without the writer's own checks (absurd strides, sizes)."""
    t = T.Tensor.__new__(T.Tensor)
    t.cls, t.storage, t.shape, t.strides, t.offset = cls, storage, tuple(shape), tuple(strides), offset
    return t


# ------------------------------------------------------------------------------------------- reader
def test_tensor_whose_storage_is_another_tensor_is_refused():
    # Torch reads a tensor's storage with luaT_checkudata(torch.<Type>Storage): a tensor there is an
    # error. Taken as a storage, rows of a (10, 10) tensor were sliced as elements: reads past its end.
    big = T.Tensor(np.arange(100, dtype=np.float32).reshape(10, 10))
    view = raw_tensor(big, (90,), (1,), offset=9)
    with pytest.raises(Torch7FormatError, match=r"'t.t7', byte \d+: expected a torch.FloatStorage as the storage of "
                                                r"a torch.FloatTensor, found a torch.FloatTensor"):
        loads(T.dumps([big, view]), "t.t7")


def test_tensor_storage_of_another_type_is_refused():
    t = T.Tensor(np.ones(3), "torch.CudaTensor")
    t.storage = T.Storage(np.ones(3), "torch.FloatStorage")  # same float32 elements, but not a CudaStorage
    with pytest.raises(Torch7FormatError, match=r"'c.t7', byte \d+: expected a torch.CudaStorage as the storage of a "
                                                r"torch.CudaTensor, found a torch.FloatStorage"):
        loads(T.dumps(t), "c.t7")
    ok = loads(T.dumps(T.Tensor(np.arange(3), "torch.CudaTensor")), "c.t7")
    assert ok.dtype == np.float32 and np.array_equal(ok, [0, 1, 2])


def test_absurd_strides_and_sizes_of_a_tensor():
    s = T.Storage(np.arange(4))
    # a size-1 dim may have any stride in Torch: the value is storage[offset] whatever it is
    one = loads(T.dumps(raw_tensor(s, (1, 2), (2**62, 1), offset=1)), "s.t7")
    assert one.shape == (1, 2) and np.array_equal(one, [[1, 2]])
    with pytest.raises(Torch7FormatError, match=r"'z.t7', byte \d+: expected a torch.FloatTensor of at most"):
        loads(T.dumps(raw_tensor(s, (0, 2**62, 2**62), (1, 1, 1))), "z.t7")
    # a stride-0 expansion of 2^39 elements from 4 stored ones: anything reading it (inspect's statistics,
    # the port's copies) would allocate terabytes
    with pytest.raises(Torch7FormatError, match=r"'e.t7', byte \d+: expected a torch.FloatTensor .* its storage of 4"):
        loads(T.dumps(raw_tensor(s, (2**39,), (0,))), "e.t7")
    small = loads(T.dumps(raw_tensor(s, (3, 4), (0, 1))), "e.t7")  # a modest expansion is fine
    assert np.array_equal(small, np.broadcast_to(np.arange(4), (3, 4)))


def test_boolean_keys_are_not_the_numbers_1_and_0():
    # Lua: t[1], t[true], t[0] and t[false] are four keys (Python's True == 1 would merge them)
    r = loads(T.dumps(T.Pairs([(1, "one"), (True, "yes"), (0, "zero"), (False, "no"), (2, "two")])), "k.t7")
    assert (r[1], r[True], r[0], r[False], r[1.0]) == ("one", "yes", "zero", "no", "one")
    assert len(r) == 5 and r.list() == ["one", "two"]
    assert sorted(map(repr, r.keys())) == ["0", "1", "2", "False", "True"]
    assert [v for k, v in r.items() if k is True] == ["yes"] and True in r and False in r and 3 not in r
    assert r.get(True) == "yes" and r.get(False) == "no" and sorted(map(repr, r)) == ["0", "1", "2", "False", "True"]
    only_true = loads(T.dumps(T.Pairs([(True, "yes")])), "k.t7")
    assert only_true.list() == [] and 1 not in only_true


# ------------------------------------------------------------------------------------------- op graph
def _node(fields):
    return T.TObj("nngraph.Node", fields)


def _gmodule(nodes, innode, outnode):
    return T._module("nn.gModule", forwardnodes=nodes, innode=innode, outnode=outnode)


def _malformed():
    rng = np.random.default_rng(0)

    def conv(**fields):
        c = T.conv(rng, 4, 4, 1)
        c.fields.update(fields)
        return c

    def bn(**fields):
        b = T.bn(rng, 4)
        b.fields.update(fields)
        return b

    no_data = _node({"id": 1})
    number_data = _node({"id": 1, "data": 5})
    return [
        ("a number in Sequential.modules", T.sequential(T.relu(), 3.0), r"model.modules.2: expected an nn module, found 3.0"),
        ("a number among forwardnodes", _gmodule([1.0], _node({}), _node({})), r"nn.gModule: expected forwardnodes of nngraph.Node objects, found 1.0"),
        ("a node without data", _gmodule([no_data], no_data, no_data), r"node 1: expected a node with a data table, found nil"),
        ("a node with a number as data", _gmodule([number_data], number_data, number_data), r"node 1: expected a node with a data table, found 5.0"),
        ("padding 'abc'", conv(padding="abc"), r"model \(cudnn.SpatialConvolution\): expected a whole number in field 'padding', found 'abc'"),
        ("groups 'a'", conv(groups="a"), r".*: expected a whole number in field 'groups', found 'a'"),
        ("groups 1.5", conv(groups=1.5), r".*: expected a whole number in field 'groups', found 1.5"),
        ("stride as a table", conv(dH={}), r".*: expected a whole number in field 'dH', found a LuaTable"),
        ("eps 'abc'", bn(eps="abc"), r"model \(nn.SpatialBatchNormalization\): expected a number in field 'eps', found 'abc'"),
        ("eps as a table", bn(eps={}), r".*: expected a number in field 'eps', found a LuaTable"),
    ]


@pytest.mark.parametrize("what,root,message", _malformed(), ids=[m[0] for m in _malformed()])
def test_malformed_networks_name_the_place_and_the_field(what, root, message):
    with pytest.raises(Torch7FormatError, match=r"Torch7 file 'm.t7', " + message):
        to_graph(loads(T.dumps(root)), "m.t7")


def test_deeply_nested_containers_are_an_error_not_a_recursion_error():
    m = T.relu()
    for _ in range(3000):
        m = T.sequential(m)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)  # for the test writer, which is recursive
    try:
        data = T.dumps(m)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(Torch7FormatError, match=r"'deep.t7', model(.modules.1)+ \(nn.Sequential\): expected containers "
                                                r"nested at most \d+ deep"):
        to_graph(loads(data), "deep.t7")


def test_a_module_shared_by_nested_containers_is_not_walked_without_end():
    """torch.save writes a module reached twice once: 40 nested ConcatTables holding one child twice are a 4 KB
    file of 2**40 module applications, which the graph builder walked while its memory grew without end."""
    m = T.relu()
    for _ in range(40):
        m = T.TObj("nn.ConcatTable", {"modules": [m, m]})
    data = T.dumps(m)
    assert len(data) < 10_000
    with pytest.raises(Torch7FormatError, match=r"'dag.t7', model(.modules.[12])+ \(nn.\w+\): expected at most "
                                                r"200,000 module applications in the network"):
        to_graph(loads(data), "dag.t7")


def test_convolution_weight_shape_is_checked_not_only_its_size():
    # Torch's convolution uses the weight's own (out, in, kh, kw) (or 2-D (out, in*kh*kw)); a
    # (2, 4, 3, 3) weight under nOutputPlane 4, nInputPlane 2 holds as many values but is another layer
    c = T.conv(np.random.default_rng(1), 2, 4, 3)
    c.fields["weight"] = T.Tensor(np.zeros((2, 4, 3, 3)), T.TTYPE)
    with pytest.raises(Torch7FormatError, match=r"'w.t7', model \(cudnn.SpatialConvolution\): weight of 72 values "
                                                r"\(\[2, 4, 3, 3\]\), expected 4x2x3x3"):
        to_graph(loads(T.dumps(c)), "w.t7")
    c.fields["weight"] = T.Tensor(np.zeros((4, 18)), T.TTYPE)  # SpatialConvolutionMM's 2-D layout is fine
    assert to_graph(loads(T.dumps(c)), "w.t7").ops[1].attrs["weight"].shape == (4, 2, 3, 3)


def test_nan_batchnorm_epsilon_is_not_the_builders():
    inp, outs = T.hourglass_nodes(np.random.default_rng(2), stacks=1, eps=float("nan"), features=16, keypoints=4)
    with pytest.raises(WeightsMismatchError, match=r"'nan.t7', stem, first BN: expected .* eps 1e-05 .* found eps nan"):
        infer_hourglass_config(to_graph(loads(T.dumps(T.gmodule(inp, outs))), "nan.t7"))


@pytest.mark.parametrize("name", ["nn.Sequential\n", "torch.FloatTensor\n", "nn.ReLU\nnn.Linear"])
def test_class_names_with_a_newline_are_refused(name):
    # Python's '$' matches before a final newline: such a name passed the class-name check
    with pytest.raises(Torch7FormatError, match=r"'n.t7', byte \d+: expected a torch class name, found"):
        loads(T.dumps(T.TObj(name, {})), "n.t7")
