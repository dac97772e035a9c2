"""converters.torch7: the .t7 reader (round trips through the test writer), the op graph, the strict
Stacked Hourglass port (Keras outputs of every stack against a float64 NumPy forward of the same Torch
modules, written here from the module description), zoo.get with a .t7 file, and bad input."""

import re
import struct

import keras
import numpy as np
import pytest

import zoo
from converters.torch7 import (
    LuaFunction,
    LuaTable,
    Torch7Error,
    Torch7FormatError,
    TorchObject,
    UnsupportedModuleError,
    WeightsMismatchError,
    infer_hourglass_config,
    load,
    load_graph,
    loads,
    port_hourglass,
)
from tests.converters import torch7_files as T
from zoo.errors import WeightsFileError
from zoo.errors import WeightsMismatchError as ZooWeightsMismatchError
from zoo.models.hourglass import hourglass

# The reader, file-damage, graph-reading and module-count tests parse bytes only (nothing a Keras backend computes)
# and run in ./dev test's TensorFlow pass alone; those that build or port into a model are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic

SMALL = dict(features=16, keypoints=4)
X = np.random.default_rng(7).uniform(0, 1, (2, 64, 64, 3)).astype("float32")


# ------------------------------------------------------------------ independent float64 NumPy forward (NCHW)
def _a(t):
    return np.asarray(t.array, np.float64)


def _conv(x, w, b, stride, pad):
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (xp.shape[2] - kh) // stride + 1, (xp.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
            out += np.einsum("bchw,oc->bohw", patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def _run(m, x):
    """``m:forward(x)`` for the nn modules of the writer (Python objects, not the reader's)."""
    name, f = m.cls.rsplit(".", 1)[-1], m.fields
    if name == "Sequential":
        for c in f["modules"]:
            x = _run(c, x)
        return x
    if name == "ConcatTable":
        return [_run(c, x) for c in f["modules"]]
    if name == "Identity":
        return x
    if name == "SelectTable":
        return x[f["index"] - 1] if f["index"] > 0 else x[f["index"]]
    if name == "CAddTable":
        return sum(x[1:], x[0])
    if name in ("SpatialConvolution", "SpatialConvolutionMM"):
        w = _a(f["weight"]).reshape(f["nOutputPlane"], f["nInputPlane"], f["kH"], f["kW"])
        return _conv(x, w, _a(f["bias"]), f["dH"], f["padH"])
    if name == "SpatialBatchNormalization":
        c = lambda v: v[None, :, None, None]  # noqa: E731
        # old nn normalised with the stored inverse std directly; new nn with 1/sqrt(var + eps)
        inv = _a(f["running_std"]) if "running_std" in f else 1 / np.sqrt(_a(f["running_var"]) + f["eps"])
        return (x - c(_a(f["running_mean"]))) * c(inv * _a(f["weight"])) + c(_a(f["bias"]))
    if name == "ReLU":
        return np.maximum(x, 0)
    if name == "SpatialMaxPooling":
        b, ch, h, w = x.shape
        return x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(b, ch, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    if name == "SpatialUpSamplingNearest":
        return x.repeat(f["scale_factor"], 2).repeat(f["scale_factor"], 3)
    raise AssertionError(name)


def torch_forward(root, x_nhwc):
    """Heatmaps (B, h, w, K) of every stack, as Torch computes them."""
    x = x_nhwc.astype(np.float64).transpose(0, 3, 1, 2)
    if root.cls == "nn.gModule":
        in_data, values = root.fields["innode"].fields["data"], {}
        for node in root.fields["forwardnodes"]:
            d = node.fields["data"]
            ins = [values[id(s)] for k, s in d["mapindex"].items if isinstance(k, float)]
            if d is in_data:
                values[id(d)] = x
            elif "module" in d:
                values[id(d)] = _run(d["module"], ins[0] if len(ins) == 1 else ins)
            else:
                values[id(d)] = ins
        outs = values[id(root.fields["outnode"].fields["data"])]
    else:
        outs = _run(root, x)
    return [o.transpose(0, 2, 3, 1) for o in (outs if isinstance(outs, list) else [outs])]


def keras_forward(model, x):
    if keras.backend.backend() == "jax":  # one compiled graph (eager JAX compiles op by op)
        out = model.predict(x, verbose=0)
    else:
        out = model(x)
        out = [keras.ops.convert_to_numpy(o) for o in (out if isinstance(out, (list, tuple)) else [out])]
    return out if isinstance(out, list) else [out]


def assert_same_heatmaps(model, root):
    want, got = torch_forward(root, X), keras_forward(model, X)
    assert len(got) == len(want)
    for s, (g, w) in enumerate(zip(got, want), 1):
        assert g.shape == w.shape
        err = np.abs(g - w).max() / np.abs(w).max()
        assert err < 1e-4, f"stack {s}: relative error {err:.2e}"


def write(tmp_path, root, name="hg.t7"):
    return T.write_t7(tmp_path / name, root)


@pytest.fixture(scope="module")
def models():
    keras.backend.clear_session()
    return {s: hourglass(stacks=s, num_keypoints=4, features=16, input_shape=(64, 64, 3)) for s in (1, 2)}


# ------------------------------------------------------------------------------------------- reader
def test_reader_round_trips_every_type():
    shared = {"x": 1.0}
    cyc = {"name": "cycle"}
    cyc["self"] = cyc
    node = T.TObj("nngraph.Node", {"id": 3})
    value = {
        "num": 1.5, "int": 3, "neg0": -0.0, "big": 1e300, "str": "hourglass \u00e9", "empty": "", "yes": True,
        "no": False, "a": shared, "b": shared, "cyc": cyc, "list": [10, "x", [1, 2]],
        "keys": T.Pairs([(node, 1), (shared, "by table"), (2.5, "float key"), (True, "bool key")]), "node": node,
        "legacy": T.TObj("nn.Identity", {"train": True}, version=None),
        "fn": T.Func(b"\x1bLJ\x01", [{"name": "x", "value": 4}]), "fn6": T.Func(b"code", [], tag=6),
        "fn7": T.Func(b"old", [], tag=7),
    }
    r = loads(T.dumps(value), "round.t7")
    assert isinstance(r, LuaTable)
    assert (r["num"], r["int"], r["big"], r["str"]) == (1.5, 3.0, 1e300, "hourglass \u00e9")
    assert (r["empty"], r["yes"], r["no"]) == ("", True, False)
    assert np.signbit(r["neg0"])
    assert r["a"] is r["b"] and r["a"]["x"] == 1.0
    assert r["cyc"]["self"] is r["cyc"] and r["cyc"]["name"] == "cycle"
    assert r["list"].list()[:2] == [10.0, "x"] and r["list"][3].list() == [1.0, 2.0] and r["list"][1.0] == 10.0
    n = r["node"]
    assert isinstance(n, TorchObject) and n.class_name == "nngraph.Node" and n.version == 1 and n["id"] == 3
    keys = r["keys"]
    assert keys[n] == 1 and keys[r["a"]] == "by table" and keys[2.5] == "float key" and keys[True] == "bool key"
    assert r["legacy"].class_name == "nn.Identity" and r["legacy"].version == 0 and r["legacy"]["train"] is True
    assert isinstance(r["fn"], LuaFunction) and r["fn"].bytecode == b"\x1bLJ\x01"
    assert r["fn"].upvalues[1]["value"] == 4 and r["fn6"].bytecode == b"code" and r["fn7"].bytecode == b"old"
    assert loads(T.dumps(None)) is None and loads(T.dumps("top")) == "top"


@pytest.mark.parametrize("cls,dtype", [("torch.FloatTensor", np.float32), ("torch.DoubleTensor", np.float64),
                                       ("torch.CudaTensor", np.float32), ("torch.CudaHalfTensor", np.float16),
                                       ("torch.LongTensor", np.int64), ("torch.ByteTensor", np.uint8)])
def test_reader_tensors_of_every_type(cls, dtype):
    a = (np.arange(24) % 7).reshape(2, 3, 4).astype(dtype)
    r = loads(T.dumps([T.Tensor(a, cls)]))[1]
    assert r.dtype == dtype and r.shape == (2, 3, 4) and np.array_equal(r, a)


def test_reader_strided_shared_and_empty_tensors():
    storage = T.Storage(np.arange(30), "torch.DoubleStorage")
    # a transposed view starting at element 3 (Lua offsets are 1-based)
    t = T.Tensor(storage=storage, cls="torch.DoubleTensor", shape=(3, 4), strides=(1, 5), offset=2)
    u = T.Tensor(storage=storage, cls="torch.DoubleTensor", shape=(5,), strides=(6,))
    empties = [T.Tensor(np.zeros(0)), T.Tensor(np.zeros((3, 0)))]
    r = loads(T.dumps({"t": t, "u": u, "again": t, "s": storage, "e": empties})).get
    assert np.array_equal(r("t"), [[2 + i + 5 * j for j in range(4)] for i in range(3)])
    assert np.array_equal(r("t"), t.array) and np.array_equal(r("u"), [0, 6, 12, 18, 24])
    assert r("again") is r("t") and np.shares_memory(r("t"), r("u")) and np.shares_memory(r("s"), r("u"))
    assert not r("t").flags.writeable  # views of the file's bytes
    assert r("e")[1].shape == (0,) and r("e")[2].shape == (3, 0)


def test_reader_is_not_recursive():
    # 5000 nested tables {[1] = {[1] = ...}}, deeper than Python's recursion limit (the writer is recursive)
    level = [struct.pack("<iiii", 3, i, 1, 1) + struct.pack("<d", 1.0) for i in range(1, 5001)]
    r = loads(b"".join(level) + struct.pack("<iii", 3, 5001, 0))
    for _ in range(5000):
        r = r[1]
    assert len(r) == 0


# ------------------------------------------------------------------------------------------- port
@agnostic
@pytest.mark.parametrize("stacks", [1, 2])
@pytest.mark.tf_pass_only
def test_port_gmodule_matches_torch_every_stack(models, tmp_path, stacks):
    inp, outs = T.hourglass_nodes(np.random.default_rng(stacks), stacks=stacks, **SMALL)
    root = T.gmodule(inp, outs)
    path = write(tmp_path, root)
    graph = load_graph(path)
    assert infer_hourglass_config(graph) == dict(stacks=stacks, num_keypoints=4, features=16, modules=1,
                                                 post_residuals=True)
    report = port_hourglass(graph, models[stacks])
    assert not report["skipped"] and len(report["filled"]) == len([l for l in models[stacks].layers if l.weights])
    assert_same_heatmaps(models[stacks], root)


@agnostic
def test_port_plain_module_tree(models, tmp_path):
    root = T.hourglass_tree(np.random.default_rng(3), stacks=2, **SMALL)
    port_hourglass(write(tmp_path, root), models[2])
    assert_same_heatmaps(models[2], root)


@agnostic
def test_legacy_running_std_and_convolution_mm(models, tmp_path):
    inp, outs = T.hourglass_nodes(np.random.default_rng(4), stacks=1, legacy=True, mm=True, **SMALL)
    root = T.gmodule(inp, outs)
    graph = load_graph(write(tmp_path, root))
    assert any(o.where.endswith("(nn.SpatialConvolutionMM)") for o in graph.ops)
    port_hourglass(graph, models[1])
    assert_same_heatmaps(models[1], root)


@agnostic
@pytest.mark.tf_pass_only
def test_two_modules_per_branch(tmp_path):
    inp, outs = T.hourglass_nodes(np.random.default_rng(10), stacks=1, modules=2, features=8, keypoints=3)
    root = T.gmodule(inp, outs)
    graph = load_graph(write(tmp_path, root))
    assert infer_hourglass_config(graph) == dict(stacks=1, num_keypoints=3, features=8, modules=2, post_residuals=True)
    model = hourglass(stacks=1, modules=2, features=8, num_keypoints=3, input_shape=(64, 64, 3))
    port_hourglass(graph, model)
    assert_same_heatmaps(model, root)
    inp, outs = T.hourglass_nodes(np.random.default_rng(11), stacks=3, modules=2, features=8, keypoints=3)
    assert infer_hourglass_config(T.write_t7(tmp_path / "three.t7", T.gmodule(inp, outs)))["stacks"] == 3


@agnostic
@pytest.mark.parametrize("modules", [1, 2])
@pytest.mark.tf_pass_only
def test_released_layout_lin_after_the_hourglass(tmp_path, modules):
    """umich-stacked-hourglass.t7 (earlier hg.lua): nModules lin layers right after each hourglass, no
    residual; ported into hourglass(post_residuals=False), every stack exact."""
    inp, outs = T.hourglass_nodes(np.random.default_rng(20 + modules), stacks=2, modules=modules, lin_only=True,
                                  features=8, keypoints=3)
    root = T.gmodule(inp, outs)
    graph = load_graph(write(tmp_path, root))
    assert infer_hourglass_config(graph) == dict(stacks=2, num_keypoints=3, features=8, modules=modules,
                                                 post_residuals=False)
    model = hourglass(stacks=2, modules=modules, features=8, num_keypoints=3, post_residuals=False,
                      input_shape=(64, 64, 3))
    report = port_hourglass(graph, model)
    assert len(report["filled"]) == len([l for l in model.layers if l.weights])
    assert_same_heatmaps(model, root)
    if modules == 2:
        assert "stack2_lin2_conv" in report["filled"]
    loaded = zoo.get("hourglass", weights=str(write(tmp_path, root, "direct.t7")), input_shape=(64, 64, 3))
    assert loaded.get_layer("stack1_lin_conv") is not None and "stack1_res1_add" not in [l.name for l in loaded.layers]


@agnostic
@pytest.mark.tf_pass_only
def test_zoo_get_reads_config_from_the_file_and_skips_a_new_head(models, tmp_path):
    inp, outs = T.hourglass_nodes(np.random.default_rng(5), stacks=2, **SMALL)
    path = write(tmp_path, T.gmodule(inp, outs))
    port_hourglass(path, models[2])
    model = zoo.get("hourglass", weights=str(path), input_shape=(64, 64, 3))
    assert len(model.outputs) == 2 and model.outputs[0].shape[-1] == 4
    for name in ("stem_conv", "stack2_hg1_low2_res1_bn2", "stack1_inter_heatmaps", "stack2_heatmaps"):
        for a, b in zip(model.get_layer(name).get_weights(), models[2].get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.warns(UserWarning, match=r"num_keypoints=4 but num_keypoints=3 .*stack1_heatmaps"):
        other = zoo.get("hourglass", weights=path, input_shape=(64, 64, 3), num_keypoints=3)
    assert other.get_layer("stack2_heatmaps").kernel.shape == (1, 1, 16, 3)
    np.testing.assert_array_equal(other.get_layer("stack2_lin_bn").get_weights()[3],
                                  models[2].get_layer("stack2_lin_bn").get_weights()[3])
    with pytest.raises(ZooWeightsMismatchError) as e:
        zoo.get("hourglass", weights=path, features=32)
    assert str(e.value) == (f"hourglass: '{path}' holds features=16, but features=32 was asked for; leave out "
                            f"features (the weights give it) or pass features=16.")
    with pytest.raises(ZooWeightsMismatchError, match=r"only be ported into the 'hourglass' family"):
        zoo.get("cpm", weights=path)
    keras.backend.clear_session()


@agnostic
@pytest.mark.tf_pass_only
def test_zoo_get_remembers_the_files_architecture_for_save_weights(tmp_path):
    """A 2-stack, 16-feature, 4-keypoint .t7 loaded without builder arguments, saved with zoo.save_weights and
    reloaded with none: the record held only the caller's arguments (and 16 keypoints), so the reload built the
    default 8-stack hourglass and was refused. Now the saved file rebuilds the file's network."""
    keras.backend.clear_session()
    inp, outs = T.hourglass_nodes(np.random.default_rng(14), stacks=2, **SMALL)
    root = T.gmodule(inp, outs)
    path = write(tmp_path, root)
    model = zoo.get("hourglass", weights=path, input_shape=(64, 64, 3))
    held = {"stacks": 2, "features": 16, "num_keypoints": 4, "modules": 1, "post_residuals": True}
    assert {k: zoo.weights_record(model).builder_kwargs[k] for k in held} == held
    assert zoo.weights_record(model).num_keypoints == 4
    again = zoo.get("hourglass", weights=zoo.save_weights(model, tmp_path / "hg2.h5"))
    assert_same_heatmaps(again, root)  # both stacks, against the NumPy forward of the Torch modules
    # a new head (3 keypoints): the saved copy has the file's trunk and the 3-keypoint head
    with pytest.warns(UserWarning, match=r"num_keypoints=4 but num_keypoints=3"):
        other = zoo.get("hourglass", weights=path, input_shape=(64, 64, 3), num_keypoints=3)
    other = zoo.get("hourglass", weights=zoo.save_weights(other, tmp_path / "hg2k3.h5"))
    assert len(other.outputs) == 2 and other.outputs[-1].shape[-1] == 3
    assert zoo.weights_record(other).builder_kwargs["num_keypoints"] == 3
    keras.backend.clear_session()


@agnostic
@pytest.mark.tf_pass_only
def test_zoo_get_on_an_input_tensor_with_a_weighted_adapter_in_front(tmp_path):
    """The caller's Conv2D in front of input_tensor is not a Torch module: it keeps its weights and the
    composed model computes Torch's heatmaps of the adapter's output (it was 'zoo layers with no Torch
    module: adapter')."""
    keras.backend.clear_session()
    inp, outs = T.hourglass_nodes(np.random.default_rng(12), stacks=2, **SMALL)
    root = T.gmodule(inp, outs)
    path = write(tmp_path, root)
    pixels = keras.Input((64, 64, 3))
    adapter = keras.layers.Conv2D(3, 1, name="adapter")
    model = zoo.get("hourglass", weights=path, input_tensor=adapter(pixels))
    assert model.input is pixels
    w = np.random.default_rng(13).normal(0, 1, (1, 1, 3, 3)).astype(np.float32)
    b = np.array([0.1, -0.2, 0.3], np.float32)
    adapter.set_weights([w, b])
    x = np.einsum("bhwc,cd->bhwd", X, w[0, 0]) + b  # the adapter in NumPy
    want, got = torch_forward(root, x), keras_forward(model, X)
    for s, (g, r) in enumerate(zip(got, want), 1):
        assert np.abs(g - r).max() / np.abs(r).max() < 1e-4, f"stack {s}"
    assert zoo.weights_record(model).heatmap_offset == 1.5  # the hourglass release's convention


# ------------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    inp, outs = T.hourglass_nodes(np.random.default_rng(6), stacks=2, **SMALL)
    return T.write_t7(tmp_path_factory.mktemp("t7") / "two.t7", T.gmodule(inp, outs))


@pytest.mark.parametrize("keep", [0.5, 0.9999, 3])
def test_truncated_file(small_file, tmp_path, keep):
    data = small_file.read_bytes()
    cut = tmp_path / "cut.t7"
    cut.write_bytes(data[:int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(Torch7FormatError, match=rf"Torch7 file '{re.escape(str(cut))}', byte \d+: expected .*truncated"):
        load(cut)


def test_garbage_ascii_missing_and_unknown_tensor_type(tmp_path):
    bad = tmp_path / "garbage.t7"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(Torch7FormatError, match=r"'.*garbage.t7', byte \d+: expected"):
        load(bad)
    bad.write_bytes(struct.pack("<iiii", 3, 1, 1, 9) + bytes(8))  # a table of one pair whose key has tag 9
    with pytest.raises(Torch7FormatError, match=r"garbage.t7', byte 12: expected an object type tag .* found 9"):
        load(bad)
    bad.write_bytes(b"4\n1\n3\nV 1\n")
    with pytest.raises(Torch7FormatError, match=r"garbage.t7', byte 0: expected a binary-mode Torch7 file"):
        load(bad)
    with pytest.raises(Torch7FormatError, match=r"cannot read Torch7 file '.*missing.t7'"):
        load(tmp_path / "missing.t7")
    quux = T.dumps(T.TObj("torch.QuuxTensor", {}))
    with pytest.raises(Torch7FormatError, match=r"'q.t7', byte 8: expected a known tensor/storage type .* "
                                                r"found 'torch.QuuxTensor'"):
        loads(quux, "q.t7")
    huge = bytearray(T.dumps(T.Tensor(np.ones(3, np.float32))))
    huge[-20:-12] = (10**12).to_bytes(8, "little")  # the storage element count
    with pytest.raises(Torch7FormatError, match=r"h.t7', byte \d+: expected torch.FloatStorage data of 1000000000000 elements"):
        loads(bytes(huge), "h.t7")
    assert issubclass(Torch7FormatError, WeightsFileError) and issubclass(WeightsMismatchError, ZooWeightsMismatchError)


def test_fuzzed_files_raise_only_torch7_errors(small_file):
    data = bytearray(small_file.read_bytes()[:20000])
    rng = np.random.default_rng(1)
    for _ in range(300):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), 3):
            mutated[pos] = rng.integers(0, 256)
        try:
            loads(bytes(mutated[:rng.integers(1, len(data))]), "fuzz.t7")
        except Torch7Error as e:
            assert "fuzz.t7" in str(e)


def _graph(tmp_path, inp, outs, name):
    return load_graph(write(tmp_path, T.gmodule(inp, outs), name))


@agnostic
def test_other_architectures_are_rejected_with_the_place(tmp_path):
    rng = np.random.default_rng(8)
    with pytest.raises(WeightsMismatchError, match=r"stacked.t7', stack 1, hourglass level 4, upper branch \(up1\), "
                                                   r"residual 1, conv1: expected SpatialConvolution 128->64 1x1, found "
                                                   r"SpatialConvolution 128->8 1x1 .*JoinTable"):
        infer_hourglass_config(_graph(tmp_path, *T.hg_stacked_nodes(rng), "stacked.t7"))
    with pytest.raises(WeightsMismatchError, match=r"lin.t7' holds a Stacked Hourglass with .*post_residuals=False.* "
                                                   r"but the model 'hourglass' has .*post_residuals=True"):  # the release's layout, other builder
        port_hourglass(_graph(tmp_path, *T.hourglass_nodes(rng, stacks=1, lin_only=True, **SMALL), "lin.t7"),
                       hourglass(stacks=1, num_keypoints=4, features=16, input_shape=(64, 64, 3)))
    with pytest.raises(WeightsMismatchError, match=r"eps.t7', stem, first BN: expected SpatialBatchNormalization\(64\) "
                                                   r"with eps 1e-05 .* found eps 0.001"):
        infer_hourglass_config(_graph(tmp_path, *T.hourglass_nodes(rng, stacks=1, eps=1e-3, **SMALL), "eps.t7"))
    inp, outs = T.hourglass_nodes(rng, stacks=1, **SMALL)
    extra = T.call(T.conv(rng, 4, 4, 1), outs[0])  # one module too many after the heatmaps
    with pytest.raises(WeightsMismatchError, match=r"extra.t7', the network outputs: expected one heatmap convolution "
                                                   r"per stack|extra.t7', stack 1"):
        infer_hourglass_config(_graph(tmp_path, inp, [outs[0], T.call(T.relu(), extra)], "extra.t7"))


def test_unknown_module_names_class_and_place(tmp_path):
    rng = np.random.default_rng(9)
    inp, outs = T.hourglass_nodes(rng, stacks=1, **SMALL)
    tanh = T.call(T.TObj("nn.Tanh", {}), outs[0])
    with pytest.raises(UnsupportedModuleError, match=r"tanh.t7', node \d+ \(nn.Tanh\): unsupported Torch module "
                                                     r"class 'nn.Tanh'"):
        _graph(tmp_path, inp, [tanh], "tanh.t7")


@agnostic
def test_stack_count_mismatch_names_both(models, small_file):
    with pytest.raises(WeightsMismatchError, match=r"two.t7' holds a Stacked Hourglass with stacks=2, .* but the model "
                                                   r"'hourglass' has stacks=1.* build the model with stacks=2"):
        port_hourglass(small_file, models[1])
    with pytest.raises(WeightsMismatchError) as e:  # the converter's own class, a zoo WeightsMismatchError too
        zoo.get("hourglass", weights=small_file, stacks=3)
    assert str(e.value) == (f"hourglass: '{small_file}' holds stacks=2, but stacks=3 was asked for; leave out stacks "
                            f"(the weights give it) or pass stacks=2.")


def test_released_model_module_count(tmp_path):
    """The real umich-stacked-hourglass.t7 lists 261 modules (``net:get(1..261)`` in a public dump:
    yuanyuangoo/pose-hg-train src/prototxt/structure.lua): an 8-stack lin-only hg.lua with nModules 1.
    Our writer's network of that layout has as many, and the port reads it as post_residuals=False."""
    inp, outs = T.hourglass_nodes(np.random.default_rng(30), stacks=8, modules=1, lin_only=True, features=4, keypoints=16)
    root = T.gmodule(inp, outs)
    mods = root.fields["modules"]
    assert len(mods) == 261
    names = [m.cls for m in mods]
    assert names.count("nn.Sequential") == 3 + 8 * 13  # residuals: stem 3, per hourglass 4 levels x 3 + 1
    assert names.count("cudnn.SpatialConvolution") == 1 + 8 * 2 + 7 * 2  # stem, lin + heatmaps, feedbacks
    assert infer_hourglass_config(load_graph(write(tmp_path, root))) == dict(
        stacks=8, num_keypoints=16, features=4, modules=1, post_residuals=False)
