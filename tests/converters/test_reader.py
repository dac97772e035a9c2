"""converters.caffe.reader: input forms, V0/V1 upgrades, legacy blobs, fork fields, SSA, phases, shapes."""

import numpy as np
import pytest

from converters.caffe import caffemodel as caffemodel_mod
from converters.caffe.errors import GraphError
from converters.caffe.reader import blob_shapes, load, loads
from converters.caffe.schema import BVLC, ROUND_FLOOR
from tests.caffe_files import blob_message_bytes, caffemodel_bytes, random_blobs_for, write_net
from tests.oracle import opencv_forward

SMALL = """name: "small"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 17 input_dim: 19
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""
BODY = SMALL.split("\n", 3)[3]  # the layers, without name/input lines


def _blobs_equal(net, blobs):
    for name, arrays in blobs.items():
        got = net.layer(name).blobs
        assert len(got) == len(arrays), name
        for g, a in zip(got, arrays):
            assert g.dtype == np.float32 and g.shape == a.shape
            np.testing.assert_array_equal(g, a.astype(np.float32))


# ------------------------------------------------------------------------------------------ inputs
@pytest.mark.parametrize("header", [
    'input: "data"\ninput_dim: 2 input_dim: 3 input_dim: 17 input_dim: 19\n',
    'input: "data"\ninput_shape { dim: 2 dim: 3 dim: 17 dim: 19 }\n',
    'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 17 dim: 19 } } }\n',
    'layer { name: "d" type: "MemoryData" top: "data" top: "label"\n'
    '  memory_data_param { batch_size: 2 channels: 3 height: 17 width: 19 } }\n',
    'layer { name: "d" type: "DummyData" top: "data" dummy_data_param { shape { dim: 2 dim: 3 dim: 17 dim: 19 } } }\n',
])
def test_four_input_forms_give_the_same_net(tmp_path, header, rng):
    text = 'name: "n"\n' + header + BODY
    blobs = random_blobs_for(SMALL, rng)
    proto, model = write_net(tmp_path, text, blobs)
    net = load(proto, model)
    assert net.inputs == {"data": (2, 3, 17, 19)}
    assert net.shapes["pool1"] == (2, 8, 4, 5) and net.shapes["prob"] == (2, 5)  # ceil: 9 -> 4, 10 -> 5
    assert [l.name for l in net.layers] == ["conv1", "bn1", "sc1", "relu1", "pool1", "fc", "prob"]
    assert net.outputs == ["prob"]
    _blobs_equal(net, blobs)


def test_data_layers_crop_size_and_python_layer_need_input_shape(tmp_path):
    data = ('layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TEST }\n'
            '  transform_param { crop_size: 227 } data_param { batch_size: 10 } }\n')
    net = load(write_net(tmp_path, data + BODY)[0])
    assert net.inputs == {"data": (10, 3, 227, 227)}  # label only feeds nothing: dropped
    py = 'layer { name: "d" type: "Python" top: "data" top: "label" python_param { module: "m" layer: "L" } }\n'
    proto = write_net(tmp_path, py + BODY, name="py")[0]
    with pytest.raises(GraphError, match=r"input 'data'.*input_shape"):
        load(proto)
    net = load(proto, input_shape={"data": (1, 3, 20, 20)})
    assert net.inputs == {"data": (1, 3, 20, 20)} and net.shapes["conv1"] == (1, 8, 10, 10)


def test_input_shape_override_openpose_placeholder(tmp_path):
    text = 'input: "image"\ninput_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1\n' + \
        BODY.replace('"data"', '"image"')
    proto = write_net(tmp_path, text)[0]
    net = load(proto, input_shape=(368, 368))
    assert net.inputs == {"image": (1, 3, 368, 368)} and net.shapes["conv1"] == (1, 8, 184, 184)
    assert load(proto, input_shape={"image": (4, 3, 32, 30)}).shapes["conv1"] == (4, 8, 16, 15)
    with pytest.raises(GraphError, match=r"input_shape names \['nope'\]"):
        load(proto, input_shape={"nope": (3, 3)})
    with pytest.raises(GraphError, match="Received: input_shape"):
        load(proto, input_shape=(368, 0))


def test_legacy_4d_blobs_in_a_v2_file(tmp_path, rng):
    blobs = random_blobs_for(SMALL, rng)  # BatchNorm (8,) -> (1,1,1,8), scale factor (1,1,1,1), IP (1,1,5,160)
    net = load(*write_net(tmp_path, SMALL, blobs, legacy=True))
    _blobs_equal(net, blobs)


def test_loads_from_memory_matches_load(tmp_path, rng):
    blobs = random_blobs_for(SMALL, rng)
    net = loads(SMALL, caffemodel_bytes(SMALL, blobs))
    assert net.prototxt is None and net.caffemodel is None
    _blobs_equal(net, blobs)
    assert blob_shapes(net)["fc"] == [(5, 160), (5,)]
    assert loads(("\ufeff" + SMALL).encode()).shapes == net.shapes  # bytes with a UTF-8 BOM


# ----------------------------------------------------------------------------- V1 / V0 / legacy blobs
V1_TEXT = """name: "v1"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 12 input_dim: 12
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" blobs_lr: 1 blobs_lr: 2
  convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layers { name: "fc" type: INNER_PRODUCT bottom: "pool1" top: "fc" inner_product_param { num_output: 6 } }
layers { name: "loss" type: SOFTMAX_LOSS bottom: "fc" bottom: "label" top: "loss" }
"""


@pytest.mark.parametrize("fmt,double", [("v1", False), ("v1", True), ("v2", False)])
def test_v1_prototxt_and_legacy_binary(tmp_path, rng, fmt, double):
    blobs = {"conv1": [rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)],
             "fc": [rng.normal(size=(6, 100)), rng.normal(size=6)]}
    text = V1_TEXT.replace('bottom: "label" ', "")  # a label nobody declares would be a GraphError
    proto, model = write_net(tmp_path, text, blobs, format=fmt, double=double)
    net = load(proto, model)
    assert [(l.name, l.type) for l in net.layers] == [
        ("conv1", "Convolution"), ("relu1", "ReLU"), ("pool1", "Pooling"), ("fc", "InnerProduct")]
    assert net.layer("conv1").param.param[1].lr_mult == 2
    assert net.shapes["fc"] == (1, 6)
    _blobs_equal(net, blobs)  # (1,1,6,100) -> (6, 100), (1,1,1,6) -> (6,), double -> float32


V0_TEXT = """name: "v0"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 10 input_dim: 10
layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }
layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 5 stride: 1 biasterm: false }
  bottom: "pad1" top: "conv1" }
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: MAX kernelsize: 3 stride: 2 } bottom: "conv1" top: "pool1" }
layers { layer { name: "norm1" type: "lrn" local_size: 3 alpha: 0.0001 beta: 0.75 } bottom: "pool1" top: "norm1" }
layers { layer { name: "fc" type: "innerproduct" num_output: 3 } bottom: "norm1" top: "fc" }
layers { layer { name: "prob" type: "softmax" } bottom: "fc" top: "prob" }
"""


def test_v0_prototxt_padding_fold_and_v0_binary(tmp_path, rng):
    w = rng.normal(size=(4, 3, 5, 5)).astype(np.float32)
    fc_w, fc_b = rng.normal(size=(3, 100)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    model = BVLC.NetParameter(name="v0")
    for name, arrays in [("conv1", [w]), ("relu1", []), ("fc", [fc_w, fc_b])]:
        v0 = model.layers.add().layer
        v0.name = name
        for a in arrays:
            v0.blobs.add().MergeFromString(blob_message_bytes(a, legacy=True))
    (tmp_path / "v0.caffemodel").write_bytes(model.SerializeToString())
    proto = write_net(tmp_path, V0_TEXT, name="v0")[0]
    net = load(proto, tmp_path / "v0.caffemodel")
    conv = net.layer("conv1")
    assert "pad1" not in [l.name for l in net.layers] and conv.bottoms == ["data"]
    assert list(conv.param.convolution_param.pad) == [2] and not conv.param.convolution_param.bias_term
    assert net.layer("norm1").param.lrn_param.local_size == 3
    assert net.shapes["conv1"] == (1, 4, 10, 10) and net.shapes["pool1"] == (1, 4, 5, 5)
    assert net.shapes["prob"] == (1, 3)
    _blobs_equal(net, {"conv1": [w], "fc": [fc_w, fc_b]})


def test_unpacked_and_chunked_float_data(tmp_path, rng):
    w = rng.normal(size=(6, 200)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    blob_w = BVLC.BlobProto()
    blob_w.shape.dim.extend([6, 200])
    raw = blob_w.SerializeToString()
    half = w.size // 2  # two packed chunks: protobuf concatenates them
    for part in (w.ravel()[:half], w.ravel()[half:]):
        payload = part.astype("<f4").tobytes()
        raw += bytes([0x2A]) + _varint(len(payload)) + payload
    blob_b = BVLC.BlobProto()
    blob_b.shape.dim.append(6)
    unpacked = blob_b.SerializeToString() + b"".join(bytes([0x2D]) + v.astype("<f4").tobytes() for v in b)
    model = BVLC.NetParameter()
    layer = model.layer.add(name="fc", type="InnerProduct")
    layer.blobs.add().MergeFromString(raw)
    layer.blobs.add().MergeFromString(unpacked)
    text = 'input: "x"\ninput_shape { dim: 1 dim: 200 }\n' \
        'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 6 } }'
    net = loads(text, model.SerializeToString())
    _blobs_equal(net, {"fc": [w, b]})


def _varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


# ---------------------------------------------------------------------------------------- forks
PSP = """name: "psp"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 60 input_dim: 60
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 pad: 2 dilation: 2 bias_term: false } }
layer { name: "conv/bn" type: "BN" bottom: "conv" top: "conv"
  bn_param { slope_filler { type: "constant" value: 1 } bias_filler { type: "constant" value: 0 }
    frozen: true momentum: 0.95 eps: 0.0001 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: AVE kernel_size: 7 stride: 7 ceil_mode: false } }
layer { name: "up" type: "Interp" bottom: "pool" top: "up" interp_param { height: 60 width: 60 } }
layer { name: "cat" type: "Concat" bottom: "conv" bottom: "up" top: "cat" }
layer { name: "zoom" type: "Interp" bottom: "cat" top: "zoom" interp_param { zoom_factor: 8 } }
layer { name: "shrink" type: "Interp" bottom: "zoom" top: "shrink" interp_param { shrink_factor: 4 } }
"""


def test_pspnet_fork_fields(tmp_path, rng):
    blobs = random_blobs_for(PSP, rng)
    assert [b.shape for b in blobs["conv/bn"]] == [(4,)] * 4
    net = load(*write_net(tmp_path, PSP, blobs))
    bn = net.layer("conv/bn")
    assert bn.param.bn_param.frozen and bn.param.bn_param.eps == pytest.approx(1e-4)
    pool = net.layer("pool").param.pooling_param
    assert pool.round_mode == ROUND_FLOOR and not pool.HasField("ceil_mode")
    assert net.shapes["pool"] == (1, 4, 8, 8)  # floor(53/7)+1; ceil would give 9
    assert net.shapes["up"] == (1, 4, 60, 60) and net.shapes["cat"] == (1, 8, 60, 60)
    assert net.shapes["zoom"] == (1, 8, 473, 473) and net.shapes["shrink"] == (1, 8, 119, 119)
    _blobs_equal(net, blobs)


def test_bvlc_round_mode_floor():
    text = SMALL.replace("kernel_size: 3 stride: 2 }", "kernel_size: 3 stride: 2 round_mode: FLOOR }")
    assert loads(text).shapes["pool1"] == (2, 8, 4, 4)  # floor((10 - 3) / 2) + 1 = 4
    assert loads(SMALL).shapes["pool1"] == (2, 8, 4, 5)  # ceil gives 5


# ----------------------------------------------------------------------------------- graph / phases
def test_inplace_ssa_ids_and_duplicate_names(rng):
    text = SMALL + 'layer { name: "prob" type: "Power" bottom: "prob" top: "prob" power_param { scale: 2 } }\n'
    net = loads(text)
    assert [l.tops[0] for l in net.layers[:4]] == ["conv1", "conv1@1", "conv1@2", "conv1@3"]
    assert net.layer("pool1").bottoms == ["conv1@3"]
    assert net.caffe_names["conv1@2"] == "conv1" and net.outputs == ["prob@1"]
    assert [l.name for l in net.layers[-2:]] == ["prob", "prob_1"]
    assert net.layer("sc1").line == 7


def test_phase_rules_losses_labels_and_split():
    text = """name: "digits"
layer { name: "train-data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { crop_size: 8 } data_param { batch_size: 64 } }
layer { name: "val-data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 8 } data_param { batch_size: 32 } }
layer { name: "split" type: "Split" bottom: "data" top: "a" top: "b" }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" eltwise_param { coeff: 1 coeff: -1 } }
layer { name: "drop" type: "Dropout" bottom: "sum" top: "sum" exclude { stage: "deploy" } }
layer { name: "train-only" type: "ReLU" bottom: "sum" top: "t" include { phase: TRAIN } }
layer { name: "ip" type: "InnerProduct" bottom: "sum" top: "ip" inner_product_param { num_output: 2 } }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "sil" type: "Silence" bottom: "label" }
"""
    net = loads(text)
    assert net.inputs == {"data": (32, 3, 8, 8)}  # TEST data layer; its label only fed dropped layers
    assert [l.name for l in net.layers] == ["split", "sum", "drop", "ip"]
    assert net.layer("split").tops == ["a", "b"] and net.outputs == ["ip"]
    assert loads(text, phase="TRAIN").inputs == {"data": (64, 3, 8, 8)}
    deploy = loads('state { stage: "deploy" }\n' + text)
    assert "drop" not in [l.name for l in deploy.layers]
    with pytest.raises(GraphError, match="phase"):
        loads(text, phase="VAL")


# ---------------------------------------------------------------------------- shapes vs OpenCV
SHAPE_NETS = {
    "conv_pool": """input: "data"
input_dim: 1 input_dim: 4 input_dim: 23 input_dim: 21
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 6 kernel_h: 3 kernel_w: 5 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2 } }
layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2"
  convolution_param { num_output: 6 kernel_size: 3 dilation: 2 pad: 2 group: 2 } }
layer { name: "p1" type: "Pooling" bottom: "c2" top: "p1" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "p2" type: "Pooling" bottom: "p1" top: "p2" pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "d1" type: "Deconvolution" bottom: "p2" top: "d1"
  convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 bias_term: false } }
layer { name: "d2" type: "Deconvolution" bottom: "d1" top: "d2"
  convolution_param { num_output: 4 kernel_size: 3 stride: 3 group: 2 } }
layer { name: "gp" type: "Pooling" bottom: "d2" top: "gp" pooling_param { pool: AVE global_pooling: true } }
""",
    "graph_ops": """input: "data"
input_dim: 2 input_dim: 6 input_dim: 9 input_dim: 11
layer { name: "sl" type: "Slice" bottom: "data" top: "s1" top: "s2" slice_param { axis: 1 slice_point: 2 } }
layer { name: "c" type: "Convolution" bottom: "s2" top: "c" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "cat" type: "Concat" bottom: "s1" bottom: "c" top: "cat" }
layer { name: "big" type: "Convolution" bottom: "cat" top: "big"
  convolution_param { num_output: 4 kernel_size: 3 pad: 3 } }
layer { name: "crop" type: "Crop" bottom: "big" bottom: "data" top: "crop" crop_param { axis: 2 offset: 1 offset: 2 } }
layer { name: "lrn" type: "LRN" bottom: "crop" top: "lrn" lrn_param { local_size: 3 } }
layer { name: "pr" type: "PReLU" bottom: "lrn" top: "pr" }
layer { name: "fl" type: "Flatten" bottom: "pr" top: "fl" }
layer { name: "rs" type: "Reshape" bottom: "fl" top: "rs" reshape_param { shape { dim: 0 dim: -1 dim: 11 } } }
layer { name: "ip" type: "InnerProduct" bottom: "rs" top: "ip" inner_product_param { num_output: 7 } }
layer { name: "sm" type: "Softmax" bottom: "ip" top: "sm" }
""",
    "interp": """input: "data"
input_dim: 1 input_dim: 2 input_dim: 7 input_dim: 5
layer { name: "z" type: "Interp" bottom: "data" top: "z" interp_param { zoom_factor: 3 } }
layer { name: "hw" type: "Interp" bottom: "z" top: "hw" interp_param { height: 10 width: 4 } }
""",
}


@pytest.mark.parametrize("key", sorted(SHAPE_NETS))
def test_shapes_match_opencv(key, rng):
    text = SHAPE_NETS[key]
    net = loads(text)
    blobs = random_blobs_for(text, rng)
    layer_names = [l.name for l in net.layers]
    inputs = {}
    for name, shape in net.inputs.items():
        inputs[name] = rng.normal(size=(shape[0],) + tuple(shape[2:]) + (shape[1],)).astype(np.float32)
    outs = opencv_forward(text, inputs, caffemodel_bytes(text, blobs), outputs=layer_names)
    for layer in net.layers:
        ours = net.shapes[layer.tops[0]]
        got = outs[layer.name].shape
        theirs = (got[0], got[3], got[1], got[2]) if len(got) == 4 else got
        assert tuple(theirs) == tuple(ours), layer.name


# ------------------------------------------------------------------------------------- big files
def test_big_file_path_with_progress(tmp_path, rng, monkeypatch, capsys):
    text = 'input: "x"\ninput_shape { dim: 1 dim: 4096 }\n' \
        'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 512 } }'
    blobs = {"fc": [rng.normal(size=(512, 4096)).astype(np.float32), rng.normal(size=512).astype(np.float32)],
             "not_in_prototxt": [np.ones((3, 3), np.float32)]}
    proto, model = write_net(tmp_path, text, blobs)
    monkeypatch.setattr(caffemodel_mod, "PROGRESS_MIN_BYTES", 1024)
    load(proto, model)  # progress=None: auto, off where stderr is no terminal (a log got its '\r' frames)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(caffemodel_mod, "_stderr_is_terminal", lambda: True)
    net = load(proto, model)  # on a terminal, above the (patched) threshold
    assert "reading net.caffemodel" in capsys.readouterr().err
    _blobs_equal(net, {"fc": blobs["fc"]})
    assert net.layer("fc").blobs[0].flags.writeable
    load(proto, model, progress=False)
    assert capsys.readouterr().err == ""


def test_hszhao_pspnet_bn_param_and_interp_type(tmp_path, rng):
    # An earlier commit of hszhao/PSPNet (88d0b3) wrote its deploy files' BN layers in hszhao's own BNParameter
    # field names, var_eps defaulting to 1e-10 (master's use yjxiong's, eps 1e-5: the PSP text above).
    text = PSP.replace(
        "bn_param { slope_filler { type: \"constant\" value: 1 } bias_filler { type: \"constant\" value: 0 }\n"
        "    frozen: true momentum: 0.95 eps: 0.0001 }",
        "bn_param { scale_filler { type: \"constant\" value: 1 } shift_filler { type: \"constant\" value: 0 }\n"
        "    moving_average: true decay: 0.05 }",
    ).replace("interp_param { zoom_factor: 8 }", "interp_param { zoom_factor: 8 interp_type: \"bilinear\" }")
    assert "moving_average" in text and "interp_type" in text
    net = load(*write_net(tmp_path, text, random_blobs_for(text, rng)))
    bp = net.layer("conv/bn").param.bn_param
    assert bp.moving_average and bp.decay == pytest.approx(0.05)
    assert not bp.HasField("var_eps") and bp.var_eps == pytest.approx(1e-10)
    from converters.caffe.context import bn_epsilon

    assert bn_epsilon(net.layer("conv/bn")) == 1e-10
    nearest = text.replace('interp_type: "bilinear"', 'interp_type: "nearest_neighbor"')
    import converters.caffe as caffe

    with pytest.raises(caffe.UnsupportedLayerError, match=r"layer 'zoom'.*interp_type 'nearest_neighbor'"):
        caffe.to_keras(load(write_net(tmp_path, nearest, name="nn")[0]), progress=False)
