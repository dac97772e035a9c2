"""converters.caffe.reader on bad input: each error class names the file, line, layer or field; fuzzing
(>= 2,000 mutated prototxts and caffemodels) lets only CaffeError subclasses escape ``load()``."""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters import caffe
from converters.caffe.errors import (
    CaffeError,
    CaffeFormatError,
    GraphError,
    UnsupportedLayerError,
    WeightsMismatchError,
)
from converters.caffe.reader import load, loads
from tests.caffe_files import caffemodel_bytes, random_blobs_for, write_net
from tests.converters.test_reader import PSP, SMALL, V0_TEXT, V1_TEXT

BLOBS = random_blobs_for(SMALL, np.random.default_rng(0))
MODEL = caffemodel_bytes(SMALL, BLOBS)
MODEL_V1 = caffemodel_bytes(V1_TEXT.replace('bottom: "label" ', ""), {
    "conv1": [np.ones((4, 3, 3, 3), np.float32)], "fc": [np.ones((6, 100), np.float32), np.ones(6, np.float32)]},
    format="v1")


@pytest.fixture
def small(tmp_path):
    return write_net(tmp_path, SMALL, BLOBS)


def _write(tmp_path, text, name="bad"):
    return write_net(tmp_path, text, name=name)[0]


# ---------------------------------------------------------------------------------- one per class
@pytest.mark.parametrize("keep", [0.5, 0.999, 20 / len(MODEL)])
def test_truncated_caffemodel(small, tmp_path, keep):
    proto, model = small
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(MODEL[: int(len(MODEL) * keep)])
    with pytest.raises(CaffeFormatError, match=rf"caffemodel '{re.escape(str(cut))}' is truncated"):
        load(proto, cut)


def test_prototxt_syntax_error_names_line_and_column(tmp_path):
    text = SMALL.replace("num_output: 5 } }", "num_output: 5 }")  # the last '}' of 'fc' missing
    proto = _write(tmp_path, text)
    with pytest.raises(CaffeFormatError, match=rf"^{re.escape(proto)}:12:1: .*no field named \"layer\""):
        load(proto)
    proto = _write(tmp_path, SMALL.replace("stride: 2 pad: 1", "stride: 2 pad: one"), "syntax")
    with pytest.raises(CaffeFormatError, match=rf"^{re.escape(proto)}:5:\d+: .*one"):
        load(proto)


def test_unknown_field_names_field_and_line(tmp_path):
    proto = _write(tmp_path, SMALL.replace("stride: 2 pad: 1", "stride: 2 padd: 1"))
    with pytest.raises(CaffeFormatError, match=r"bad.prototxt:5:\d+: .*ConvolutionParameter.*\"padd\""):
        load(proto)


def test_unknown_layer_type_names_layer_type_line_and_supported(tmp_path):
    proto = _write(tmp_path, SMALL.replace('"ReLU"', '"SPP"'))
    with pytest.raises(UnsupportedLayerError,
                       match=r"layer 'relu1' \(SPP, .*bad.prototxt:8\).*'SPP'.*supported: .*Convolution"):
        load(proto)
    with pytest.raises(UnsupportedLayerError, match=r"<prototxt>:7: V0 layer 'relu1' has unknown type 'relux'"):
        loads(V0_TEXT.replace('type: "relu"', 'type: "relux"'))


def test_bottom_nobody_produces(tmp_path):
    proto = _write(tmp_path, SMALL.replace('bottom: "pool1" top: "fc"', 'bottom: "pool2" top: "fc"'))
    with pytest.raises(GraphError, match=r"layer 'fc' \(InnerProduct, .*bad.prototxt:11\): bottom 'pool2'"):
        load(proto)
    with pytest.raises(GraphError, match=r"layer 'prob' .*top 'pool1' is already produced"):
        loads(SMALL.replace('bottom: "fc" top: "prob"', 'bottom: "fc" top: "pool1"'))


@pytest.mark.parametrize("change,pattern", [
    (lambda b: {**b, "fc": b["fc"][:1]}, r"layer 'fc' .*:11\) has 1 blob\(s\) .*expected 2: \[\(5, 160\), \(5,\)\]"),
    (lambda b: {**b, "fc": [b["fc"][0].T, b["fc"][1]]},
     r"layer 'fc' .* blob 0: expected shape \(5, 160\) from the prototxt, found \(160, 5\)"),
    (lambda b: {**b, "bn1": b["bn1"][:2] + [np.ones((2,), np.float32)]}, r"layer 'bn1' .* blob 2: .*\(1,\).*\(2,\)"),
    (lambda b: {k: v for k, v in b.items() if k != "conv1"}, r"layer 'conv1' .* needs 2 blob\(s\) .* has none"),
    (lambda b: {**b, "relu1": [np.ones(3, np.float32)]}, r"layer 'relu1' .* has 1 blob\(s\) .*expected 0"),
])
def test_blob_count_and_shape_mismatch(tmp_path, change, pattern):
    proto, model = write_net(tmp_path, SMALL, change(dict(BLOBS)))
    with pytest.raises(WeightsMismatchError, match=pattern):
        load(proto, model)


def test_inner_product_weights_at_another_input_size_say_so(small):
    # SMALL's fc takes 8 x 4 x 5 = 160 values at the declared 17 x 19; at 21 x 25, 8 x 5 x 6 = 240
    proto, model = small
    with pytest.raises(WeightsMismatchError, match=r"layer 'fc' .* blob 0: expected shape \(5, 240\) at the input "
                                                   r"size given \(input 'data' \(2, 3, 21, 25\), declared "
                                                   r"\(2, 3, 17, 19\)\), found \(5, 160\) .*; its weights fit "
                                                   r"another input size"):
        load(proto, model, input_shape=(21, 25))  # was: "expected shape (5, 240) from the prototxt"
    # read at the declared size, converted at another: the layer is named (was: "inner product weights (5, 160)
    # do not fit a bottom of shape (C, H, W) = (8, 5, 6)", no layer)
    with pytest.raises(WeightsMismatchError, match=r"^layer 'fc' \(InnerProduct, .*\): inner product weights "
                                                   r"\(5, 160\) do not fit a bottom of shape \(C, H, W\) = "
                                                   r"\(8, 5, 6\); its weights fit another input size"):
        caffe.to_keras(load(proto, model), input_shape=(21, 25), progress=False)


def test_caffemodel_for_another_net(tmp_path, small):
    other = SMALL.replace('name: "', 'name: "x_')
    _, model = write_net(tmp_path, other, random_blobs_for(other, np.random.default_rng(1)), name="other")
    with pytest.raises(WeightsMismatchError, match=r"caffemodel '.*other.caffemodel'.*another net\?"):
        load(small[0], model)


def test_unreadable_paths(tmp_path, small):
    proto, model = small
    missing = tmp_path / "missing.prototxt"
    with pytest.raises(CaffeFormatError, match=rf"cannot read prototxt '{re.escape(str(missing))}'"):
        load(missing)
    with pytest.raises(CaffeFormatError, match=r"cannot read caffemodel '.*nope.caffemodel'"):
        load(proto, tmp_path / "nope.caffemodel")
    with pytest.raises(CaffeFormatError, match=r"cannot read prototxt .*Is a directory"):
        load(tmp_path)
    with pytest.raises(CaffeFormatError, match=r"not UTF-8 .*caffemodel passed as prototxt"):
        load(model)
    with pytest.raises(CaffeFormatError, match=r"caffemodel '.*net.prototxt' is corrupt"):
        load(proto, proto)
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with pytest.raises(CaffeFormatError, match="is empty"):
        load(proto, tmp_path / "empty.caffemodel")


def test_a_caffemodel_from_a_pipe_is_read_whole(tmp_path, small):
    """The shell's <(...) or a FIFO: its size is 0 to fstat, so a pipe was 'empty' whatever it held."""
    import os
    import threading

    proto, model = small
    fifo = tmp_path / "piped.caffemodel"
    for data, said in ((open(model, "rb").read(), None), (b"", "is empty (a pipe or FIFO that gave no bytes)")):
        os.mkfifo(fifo)

        def feed(data=data):
            with open(fifo, "wb") as f:  # blocks until the reader opens it
                f.write(data)

        writer = threading.Thread(target=feed)
        writer.start()
        try:
            if said is None:
                from converters.caffe.caffemodel import read_caffemodel_file

                got, want = read_caffemodel_file(fifo), read_caffemodel_file(model)
                assert [(n, [s for s, _ in b]) for n, b in got] == [(n, [s for s, _ in b]) for n, b in want]
                for (_, a), (_, b) in zip(got, want):
                    for (_, x), (_, y) in zip(a, b):
                        np.testing.assert_array_equal(x, y)
            else:
                with pytest.raises(CaffeFormatError, match=re.escape(said)):
                    load(proto, fifo)
        finally:
            writer.join(timeout=30)
            fifo.unlink()


def test_inputs_and_arguments(tmp_path):
    with pytest.raises(CaffeFormatError, match=r"1 'input' names need 4 'input_dim' values, got 3"):
        loads(SMALL.replace("input_dim: 2 ", ""))
    with pytest.raises(GraphError, match=r"input 'data' .* no declared shape"):
        loads(SMALL.replace("input_dim: 2 input_dim: 3 input_dim: 17 input_dim: 19", ""))
    with pytest.raises(GraphError, match=r"Received: input_shape='big'"):
        loads(SMALL, input_shape="big")
    with pytest.raises(CaffeFormatError, match=r"mixes V2 'layer"):
        loads(SMALL + V1_TEXT.split("\n", 3)[3])
    with pytest.raises(GraphError, match=r"layer 'pool1' .*input 9x10 is too small|pad 5x5 must be smaller"):
        loads(SMALL.replace("kernel_size: 3 stride: 2 }", "kernel_size: 3 stride: 2 pad: 5 }"))
    with pytest.raises(GraphError, match=r"layer 'conv1' .*group=5 must divide"):
        loads(SMALL.replace("num_output: 8 kernel_size: 3", "num_output: 8 group: 5 kernel_size: 3"))


# ----------------------------------------------------------------------------------------- fuzz
# 800 + 300 + 600 + 500 = 2,200 mutated inputs in all.
_FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True)
_TEXTS = [SMALL, PSP, V1_TEXT, V0_TEXT]
_TOKEN = re.compile(r'"[^"\n]*"|[{}:<>]|[^\s{}:<>"]+')
_VOCAB = ["{", "}", ":", "0", "-1", "3", "99999999999", "2.5", '"data"', '"conv1"', "layer", "layers", "top",
          "bottom", "name", "type", '"Convolution"', '"Pooling"', '"Split"', '"Eltwise"', '"Input"', "input_dim",
          "kernel_size", "stride", "pad", "num_output", "group", "axis", "TEST", "TRAIN", "include", "MAX",
          "slice_point", "offset", "zoom_factor", "bias_term", "false", "#", '"\\x"', "\x00", "é"]


def _must_be_caffe_error(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except CaffeError:
        pass


@settings(_FUZZ, max_examples=800)
@given(st.data())
def test_fuzz_prototxt_token_mutations(data):
    text = data.draw(st.sampled_from(_TEXTS))
    tokens = _TOKEN.findall(text)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(tokens) - 1))
        op = data.draw(st.sampled_from(["delete", "duplicate", "replace", "swap", "insert"]))
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            j = data.draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        else:
            new = data.draw(st.sampled_from(_VOCAB))
            tokens[i:i + (op == "replace")] = [new]
    _must_be_caffe_error(loads, " ".join(tokens), MODEL if text is SMALL else None)


@settings(_FUZZ, max_examples=300)
@given(st.sampled_from(_TEXTS), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1, max_size=6))
def test_fuzz_prototxt_bit_flips(text, flips):
    raw = bytearray(text.encode())
    for pos, bit in flips:
        raw[pos % len(raw)] ^= 1 << bit
    # via load(): the bytes may not be UTF-8 any more
    _must_be_caffe_error(_load_bytes, bytes(raw))


def _load_bytes(raw, model=None):
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f.prototxt")
        with open(path, "wb") as f:
            f.write(raw)
        model_path = None
        if model is not None:
            model_path = os.path.join(d, "f.caffemodel")
            with open(model_path, "wb") as f:
                f.write(model)
        return load(path, model_path)


@settings(_FUZZ, max_examples=600)
@given(st.sampled_from([MODEL, MODEL_V1]),
       st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 7)), min_size=1, max_size=8))
def test_fuzz_caffemodel_bit_flips(model, flips):
    raw = bytearray(model)
    for pos, bit in flips:
        raw[pos % len(raw)] ^= 1 << bit
    text = SMALL if model is MODEL else V1_TEXT.replace('bottom: "label" ', "")
    _must_be_caffe_error(loads, text, bytes(raw))


@settings(_FUZZ, max_examples=500)
@given(st.sampled_from([MODEL, MODEL_V1]), st.integers(0, 10**7),
       st.sampled_from(["truncate", "insert", "delete"]), st.binary(min_size=1, max_size=6))
def test_fuzz_caffemodel_truncate_insert_delete(model, pos, op, chunk):
    pos %= len(model)
    if op == "truncate":
        raw = model[:pos]
    elif op == "insert":
        raw = model[:pos] + chunk + model[pos:]
    else:
        raw = model[:pos] + model[pos + len(chunk):]
    text = SMALL if model is MODEL else V1_TEXT.replace('bottom: "label" ', "")
    _must_be_caffe_error(loads, text, raw)

