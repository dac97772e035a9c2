"""converters.torch7 on hostile or malformed files: every one gives a Torch7Error naming the file and
what was expected, never a bare Python error, an out-of-bounds read or a huge allocation."""

import numpy as np
import pytest

from converters.torch7 import Torch7FormatError, loads, to_graph
from tests.converters import torch7_files as T

pytestmark = pytest.mark.backend_agnostic


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
