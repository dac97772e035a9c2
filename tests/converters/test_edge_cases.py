"""Legal but unusual Caffe nets, each of which the converter once got wrong (found by an adversarial
review): Scale blobs over channels and space, Interp pads and precedence, the Reshape-then-InnerProduct
flatten idiom with a dynamic batch, InnerProduct on the last axis of a 4-D blob, outputs of
multi-top layers, Keras-name collisions, and the errors of nets the converter cannot take.

References are OpenCV's Caffe engine, except where OpenCV departs from Caffe (Interp pads): there the
reference is OpenCV on the input cropped as ``interp_layer.cpp`` crops it.
"""

import keras
import numpy as np
import pytest

from converters import caffe
from converters.caffe.errors import GraphError, UnsupportedLayerError
from converters.caffe.reader import loads
from converters.caffe.opencv import opencv_departures
from converters.cli import main
from tests.caffe_files import caffemodel_bytes, random_blobs_for, write_net
from tests.converters.test_exactness import run_against_opencv
from tests.oracle import caffe_pool_numpy, opencv_forward
from zoo.errors import one_line

# Tests that only read a prototxt (loads: parsing and shape inference, nothing a Keras backend computes) run in
# ./dev test's TensorFlow pass alone; those that convert to Keras are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic


def _net(body, c=4, h=37, w=53):
    return f'input: "data" input_shape {{ dim: 1 dim: {c} dim: {h} dim: {w} }}\n' + body


def _converted(proto, rng):
    """Random blobs for ``proto``, the net with them and its :class:`caffe.keras` conversion."""
    blobs = random_blobs_for(proto, rng)
    net = loads(proto, caffemodel_bytes(proto, blobs))
    return blobs, net, caffe.keras.convert(net, progress=False)


@agnostic
@pytest.mark.parametrize("param", ["axis: 1 num_axes: -1", "axis: 1 num_axes: 2 bias_term: true",
                                   "axis: 2 num_axes: 2 bias_term: true", "axis: 1 num_axes: 3"])
def test_scale_blob_over_channels_and_space(tmp_path, rng, param):
    # A (C, H, W) blob is in Caffe's axis order: reshaping it to NHWC without a transpose was wrong.
    proto = _net(f'layer {{ name: "s" type: "Scale" bottom: "data" top: "s" scale_param {{ {param} }} }}\n')
    run_against_opencv(tmp_path, proto, rng)


@agnostic
@pytest.mark.parametrize("sizing, size", [("zoom_factor: 2", (63, 95)), ("shrink_factor: 3", (11, 16)),
                                          ("height: 20 width: 31", (20, 31)),
                                          ("shrink_factor: 2 zoom_factor: 3", (46, 70))])
def test_interp_pads_crop_once(tmp_path, rng, sizing, size):
    # pad_beg -2 / pad_end -3 crop 37x53 to 32x48, then the size rule applies once (it applied twice):
    # zoom z: (n - 1) z + 1; shrink s: (n - 1) // s + 1; shrink then zoom.
    proto = _net('layer { name: "i" type: "Interp" bottom: "data" top: "i" '
                 f'interp_param {{ {sizing} pad_beg: -2 pad_end: -3 }} }}\n', c=3)
    net = caffe.load(*write_net(tmp_path, proto))
    model = caffe.to_keras(net, progress=False)
    x = rng.normal(size=(1, 37, 53, 3)).astype(np.float32)
    y = keras.ops.convert_to_numpy(model(x))
    assert net.shapes[net.outputs[0]] == (1, 3) + size
    assert tuple(model.output.shape[1:]) == size + (3,) and y.shape == (1,) + size + (3,)
    # Reference: OpenCV's Interp (which ignores pads) from the hand-cropped input to the same size.
    crop = x[:, 2:37 - 3, 2:53 - 3]
    ref_proto = _net(f'layer {{ name: "i" type: "Interp" bottom: "data" top: "i" '
                     f'interp_param {{ height: {size[0]} width: {size[1]} }} }}\n', c=3, h=32, w=48)
    ref = opencv_forward(ref_proto, {"data": crop})["i"]
    np.testing.assert_allclose(y, ref, atol=1e-5 * np.abs(ref).max())


@agnostic
def test_interp_height_width_win_over_shrink_and_zoom(tmp_path, rng):
    # interp_layer.cpp: shrink only, zoom only, height + width, then shrink and zoom. Shape inference
    # followed a different order, so a following InnerProduct got blobs of the wrong size.
    proto = _net('layer { name: "i" type: "Interp" bottom: "data" top: "i" '
                 'interp_param { shrink_factor: 2 zoom_factor: 3 height: 20 width: 20 } }\n'
                 'layer { name: "fc" type: "InnerProduct" bottom: "i" top: "fc" inner_product_param { num_output: 3 } }\n',
                 c=2)
    net = caffe.load(*write_net(tmp_path, proto, random_blobs_for(proto, rng)))
    assert net.shapes[net.layers[0].tops[0]] == (1, 2, 20, 20)
    model = caffe.to_keras(net, progress=False)
    assert model.get_layer("i").output.shape[1:3] == (20, 20)
    assert model.output.shape[1:] == (3,)


@agnostic
@pytest.mark.parametrize("dims", ["dim: 0 dim: -1", "dim: 1 dim: -1", "dim: 0 dim: -1 dim: 1 dim: 1"])
def test_reshape_then_inner_product(tmp_path, rng, dims):
    # Caffe's flatten idiom: the inferred dimension must stay static when the batch is dynamic (TensorFlow).
    proto = _net('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                 'convolution_param { num_output: 4 kernel_size: 3 } }\n'
                 f'layer {{ name: "r" type: "Reshape" bottom: "c" top: "r" reshape_param {{ shape {{ {dims} }} }} }}\n'
                 'layer { name: "fc" type: "InnerProduct" bottom: "r" top: "fc" inner_product_param { num_output: 3 } }\n',
                 h=7, w=5)
    _, model, _ = run_against_opencv(tmp_path, proto, rng)
    assert model.get_layer("r").output.shape[1:] in [(60,), (1, 1, 60)]


@agnostic
@pytest.mark.parametrize("axis", [3, -1])
@pytest.mark.parametrize("chw", [(4, 37, 53), (4, 5, 4)])
def test_inner_product_on_the_width_axis(tmp_path, rng, axis, chw):
    # Caffe's last axis of a 4-D blob is W; the Dense once took NHWC's last axis, C (silently, when C == W).
    proto = _net(f'layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                 f'inner_product_param {{ num_output: 3 axis: {axis} }} }}\n', *chw)
    run_against_opencv(tmp_path, proto, rng)


@agnostic
def test_outputs_of_a_layer_with_several_tops(tmp_path, rng, capsys):
    proto = _net('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                 'convolution_param { num_output: 4 kernel_size: 3 } }\n'
                 'layer { name: "sl" type: "Slice" bottom: "c" top: "a" top: "b" slice_param { axis: 1 slice_point: 1 } }\n')
    run_against_opencv(tmp_path, proto, rng)  # the test oracle compares each top, not the first twice
    files = write_net(tmp_path, proto, random_blobs_for(proto, rng))
    assert main(["caffe", *files, "-o", str(tmp_path / "sl.keras"), "--verify", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Verify: a: max relative" in text and "Verify: b: max relative" in text


@agnostic
def test_verify_says_where_opencv_cannot_check(tmp_path, rng, capsys):
    proto = _net('layer { name: "i" type: "Interp" bottom: "data" top: "i" '
                 'interp_param { zoom_factor: 2 pad_beg: -1 pad_end: -2 } }\n', c=2, h=17, w=13)
    files = write_net(tmp_path, proto)
    out = tmp_path / "i.keras"
    assert main(["caffe", *files, "-o", str(out), "--verify", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Verify: skipped" in text and "Interp 'i' has pad_beg/pad_end" in text
    assert "i -> i (None, 27, 19, 2)" in text and out.exists()


@agnostic
def test_lone_pad_w_follows_caffe_and_verify_says_opencv_drops_it(tmp_path, rng, capsys):
    # Caffe reads pad_w alone with pad_h = 0; OpenCV 4 drops the lone pad_w (so it cannot check the layer).
    proto = _net('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                 'convolution_param { num_output: 2 kernel_h: 3 kernel_w: 5 pad_w: 2 } }\n', h=9, w=11)
    x = rng.normal(size=(1, 9, 11, 4)).astype(np.float32)
    blobs = random_blobs_for(proto, rng)
    model = caffe.to_keras(loads(proto, caffemodel_bytes(proto, blobs)), progress=False)
    y = keras.ops.convert_to_numpy(model(x))
    assert y.shape == (1, 7, 11, 2)  # Caffe: H + 0 - 3 + 1, W + 4 - 5 + 1
    w, b = blobs["c"]
    xp = np.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)))
    ref = np.stack([np.einsum("hwc,ochw->o", xp[0, i:i + 3, j:j + 5], w) + b
                    for i in range(7) for j in range(11)]).reshape(1, 7, 11, 2)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    cv = opencv_forward(proto, {"data": x}, blobs={"c": [w, b.reshape(1, -1)]}, outputs=["c"])
    assert cv["c"].shape == (1, 7, 7, 2)  # OpenCV: W - 5 + 1, the lone pad_w dropped
    files = write_net(tmp_path, proto, blobs)
    assert main(["caffe", *files, "-o", str(tmp_path / "c.keras"), "--verify", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Verify: skipped" in text and "Convolution 'c' sets only one of pad_h/pad_w" in text


@agnostic
@pytest.mark.parametrize("mode", ["MAX", "AVE"])
def test_pooling_padded_on_one_axis_clips_both_in_shape_inference(tmp_path, rng, mode):
    # Caffe drops a last window starting at or past W + pad_w whenever pad_h || pad_w: with pad only on
    # H and stride 3 > kernel 1 on W, 5 columns pool to 2, not 3. Shape inference said 3, so the
    # InnerProduct blob Caffe saved (2 * 4 * 2 inputs) was refused as the wrong size. Reference: the
    # NumPy port of Caffe's pooling (OpenCV keeps the column), then Caffe's CHW-flattened product.
    proto = _net(f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param {{ pool: {mode} '
                 'kernel_h: 2 kernel_w: 1 stride_h: 1 stride_w: 3 pad_h: 1 pad_w: 0 } }\n'
                 'layer { name: "fc" type: "InnerProduct" bottom: "p" top: "fc" '
                 'inner_product_param { num_output: 3 } }\n', c=2, h=3, w=5)
    x = rng.normal(size=(1, 3, 5, 2)).astype(np.float32)
    pooled = caffe_pool_numpy(x, mode.lower()[:3], (2, 1), (1, 3), (1, 0))
    assert pooled.shape == (1, 4, 2, 2)
    w, b = rng.normal(size=(3, pooled.size)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    net = loads(proto, caffemodel_bytes(proto, {"fc": [w, b]}))
    assert net.shapes["p"] == (1, 2, 4, 2)
    y = keras.ops.convert_to_numpy(caffe.to_keras(net, progress=False)(x))
    ref = w @ pooled[0].transpose(2, 0, 1).ravel() + b
    np.testing.assert_allclose(y[0], ref, rtol=1e-5, atol=1e-5)


@agnostic
@pytest.mark.parametrize("reshape", ['type: "Flatten" flatten_param { axis: 2 }',
                                     'type: "Reshape" reshape_param { shape { dim: 0 dim: 4 dim: -1 } }'])
@pytest.mark.parametrize("shared", ["", "prelu_param { channel_shared: true }"])
def test_prelu_on_a_3d_blob_has_a_slope_per_channel(tmp_path, rng, reshape, shared):
    # On (N, C, L) Caffe's PReLU learns C slopes and Keras' alpha is (C, 1): its last axis was taken for the
    # channel count ("expected 1 values, found shape (4,)").
    proto = _net(f'layer {{ name: "f" {reshape} bottom: "data" top: "f" }}\n'
                 f'layer {{ name: "prelu" type: "PReLU" bottom: "f" top: "prelu" {shared} }}\n', c=4, h=5, w=7)
    blobs = random_blobs_for(proto, rng)
    blobs["prelu"] = [rng.uniform(-1, 1, size=blobs["prelu"][0].shape).astype(np.float32)]
    _, model, _ = run_against_opencv(tmp_path, proto, rng, blobs=blobs)
    assert model.output.shape == (None, 4, 35)


@agnostic
@pytest.mark.parametrize("slope", [-0.3, -2.5])
def test_relu_with_a_negative_slope(tmp_path, rng, slope):
    # relu_layer.cpp: max(x, 0) + negative_slope * min(x, 0) for any slope; Keras' ReLU and LeakyReLU refuse a
    # negative one (the net was refused).
    proto = _net('layer { name: "r" type: "ReLU" bottom: "data" top: "r" '
                 f'relu_param {{ negative_slope: {slope} }} }}\n', c=3, h=5, w=7)
    _, model, feed = run_against_opencv(tmp_path, proto, rng)
    x = feed["data"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), np.maximum(x, 0) + slope * np.minimum(x, 0),
                               rtol=1e-6, atol=1e-6)
    model.save(tmp_path / "r.keras")
    loaded = keras.models.load_model(tmp_path / "r.keras", safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))


@agnostic
def test_keras_name_collisions_get_suffixes(tmp_path, rng):
    # "conv/1" and "conv_1" are both "conv_1" in Keras; a layer may also be named like the input blob.
    proto = _net('layer { name: "conv/1" type: "Convolution" bottom: "data" top: "a" '
                 'convolution_param { num_output: 2 kernel_size: 3 } }\n'
                 'layer { name: "conv_1" type: "Convolution" bottom: "data" top: "b" '
                 'convolution_param { num_output: 2 kernel_size: 1 } }\n'
                 'layer { name: "data" type: "Convolution" bottom: "data" top: "c" '
                 'convolution_param { num_output: 2 kernel_size: 3 } }\n', c=3, h=11, w=9)
    _, model, _ = run_against_opencv(tmp_path, proto, rng)
    names = [layer.name for layer in model.layers]
    assert {"conv_1", "conv_1_2", "data", "data_2"} <= set(names) and len(names) == len(set(names))


@agnostic
@pytest.mark.parametrize("layer, match", [
    ('type: "Exp" exp_param { base: -2 }', r"'e' \(Exp, line 2\): exp_param.base must be -1 \(e\) or > 0, got -2"),
    ('type: "Log" log_param { base: 0 }', r"log_param.base must be -1 \(e\) or > 0, got 0"),
    ('type: "Slice" slice_param { axis: 0 }', r"'e' \(Slice, line 2\): slicing the batch axis"),
    # axis 0 flattens the whole batch into one row: Keras said "Input 0 with name 'None' ... expected min_ndim=2"
    ('type: "InnerProduct" inner_product_param { num_output: 3 axis: 0 }',
     r"'e' \(InnerProduct, .*:2\): inner_product_param.axis=0 works across the batch axis"),
    ('type: "InnerProduct" inner_product_param { num_output: 3 axis: -4 }', r"inner_product_param.axis=0 .*batch axis"),
])
def test_unconvertible_parameters_say_so(tmp_path, layer, match):
    tops = 'top: "e" top: "f"' if "Slice" in layer else 'top: "e"'
    proto = 'input: "data" input_shape { dim: 2 dim: 4 dim: 5 dim: 7 }\n' \
            f'layer {{ name: "e" {layer} bottom: "data" {tops} }}\n'

    with pytest.raises((GraphError, UnsupportedLayerError), match=match):
        caffe.to_keras(caffe.load(write_net(tmp_path, proto)[0]), progress=False)


@agnostic
def test_crop_of_flat_blobs_is_refused_by_name(tmp_path):
    proto = ('input: "a" input_shape { dim: 2 dim: 9 }\ninput: "b" input_shape { dim: 2 dim: 4 }\n'
             'layer { name: "crop" type: "Crop" bottom: "a" bottom: "b" top: "crop" crop_param { axis: 1 } }\n')
    with pytest.raises(UnsupportedLayerError, match=r"'crop' \(Crop, line 3\): only 4-D .* got a 2-D blob"):
        caffe.to_keras(caffe.load(write_net(tmp_path, proto)[0]), progress=False)


@agnostic
@pytest.mark.parametrize("text, match", [("", "has no input"), ('name: "n"', "'n' has no input"),
                                         ('input: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }', "no output")])
def test_nets_with_nothing_to_convert(text, match):
    with pytest.raises(GraphError, match=match):
        caffe.to_keras(loads(text), progress=False)


@agnostic
def test_errors_from_inside_keras_are_one_line():
    @keras.saving.register_keras_serializable(package="kerazoo_test")
    class Failing(keras.layers.Layer):
        def call(self, x):
            raise ValueError("math domain error")

    try:
        Failing()(keras.Input((3,)))
    except Exception as e:  # Keras' own wrapping, with escape codes and the call's arguments
        raw = e
    text = one_line(raw)
    assert "math domain error" in text and "\n" not in text and "\x1b" not in text
    assert "Arguments received" not in text and "Exception encountered" not in text


@pytest.mark.parametrize("layer, match", [
    ('type: "Concat" bottom: "data" bottom: "data" top: "e" concat_param { axis: 2 concat_dim: 1 }',
     r"'e' \(Concat, <prototxt>:2\): give either concat_param.axis or the legacy concat_dim"),
    ('type: "Slice" bottom: "data" top: "e" top: "f" slice_param { axis: 2 slice_dim: 1 }',
     r"'e' \(Slice, <prototxt>:2\): give either slice_param.axis or the legacy slice_dim"),
])
def test_axis_with_legacy_dim_is_refused(layer, match):
    # concat_layer.cpp / slice_layer.cpp CHECK that only one is set. Shape inference took concat_dim
    # (axis 1) and the Keras layer took axis (2): the model's output was (1, 10, 7, 3), Caffe's shape (1, 6, 5, 7).
    proto = f'input: "data" input_shape {{ dim: 1 dim: 2 dim: 5 dim: 7 }}\nlayer {{ name: "e" {layer} }}\n'
    with pytest.raises(GraphError, match=match):
        loads(proto)


@agnostic
def test_eltwise_max_ignores_coeff(rng):
    # eltwise_layer.cpp refuses coeff only with PROD; MAX takes the plain maximum (Forward_cpu never reads
    # coeffs_ for MAX). The net was refused. OpenCV refuses it too, so the reference is NumPy.
    proto = _net('layer { name: "neg" type: "Power" bottom: "data" top: "neg" power_param { scale: -1 } }\n'
                 'layer { name: "m" type: "Eltwise" bottom: "data" bottom: "neg" top: "m" '
                 'eltwise_param { operation: MAX coeff: 2 coeff: 3 } }\n', c=2, h=3, w=5)
    x = rng.normal(size=(1, 3, 5, 2)).astype(np.float32)
    y = keras.ops.convert_to_numpy(caffe.to_keras(loads(proto), progress=False)(x))
    np.testing.assert_array_equal(y, np.maximum(x, -x))
    with pytest.raises(GraphError, match=r"'m' \(Eltwise, <prototxt>:3\): coeff needs operation SUM or MAX"):
        loads(proto.replace("operation: MAX", "operation: PROD"))


@agnostic
def test_in_place_write_to_a_split_top_rewrites_the_other_tops(rng):
    # split_layer.cpp: every top ShareData()s the bottom, so ReLU in place on "a" also rewrites "b" and
    # "data" for the layers after it (Caffe gives sum = 2 relu(x) + sigmoid(x)); the converter kept the
    # old values of "b" and "data" (sum = relu(x) + x + sigmoid(x)), as OpenCV does. Reference: NumPy.
    proto = _net('layer { name: "split" type: "Split" bottom: "data" top: "a" top: "b" }\n'
                 'layer { name: "early" type: "Sigmoid" bottom: "b" top: "early" }\n'
                 'layer { name: "relu" type: "ReLU" bottom: "a" top: "a" }\n'
                 'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" bottom: "early" top: "sum" }\n'
                 'layer { name: "late" type: "TanH" bottom: "data" top: "late" }\n', c=3, h=7, w=9)
    x = rng.normal(size=(1, 7, 9, 3)).astype(np.float32)
    total, late = (keras.ops.convert_to_numpy(y) for y in caffe.to_keras(loads(proto), progress=False)(x))
    r = np.maximum(x, 0)
    np.testing.assert_allclose(total, 2 * r + 1 / (1 + np.exp(-x)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(late, np.tanh(r), rtol=1e-6, atol=1e-6)


@agnostic
def test_in_place_batchnorm_scale_on_a_split_branch_still_folds(tmp_path, rng):
    # A pre-activation block with an explicit Split: BatchNorm + Scale in place on "a" rewrite the
    # shortcut "b" too, so the sum adds conv(bn(x)) to bn(x), not to x. Reference: NumPy of
    # batch_norm_layer.cpp + scale_layer.cpp, the convolution as einsum.
    proto = _net('layer { name: "split" type: "Split" bottom: "data" top: "a" top: "b" }\n'
                 'layer { name: "bn" type: "BatchNorm" bottom: "a" top: "a" }\n'
                 'layer { name: "sc" type: "Scale" bottom: "a" top: "a" scale_param { bias_term: true } }\n'
                 'layer { name: "conv" type: "Convolution" bottom: "a" top: "conv" '
                 'convolution_param { num_output: 3 kernel_size: 1 } }\n'
                 'layer { name: "sum" type: "Eltwise" bottom: "conv" bottom: "b" top: "sum" }\n', c=3, h=5, w=7)
    blobs, net, conversion = _converted(proto, rng)
    assert conversion.folded_bn_scale == 1
    x = rng.normal(size=(1, 5, 7, 3)).astype(np.float32)
    mean, var, sf = blobs["bn"]
    gamma, beta = blobs["sc"]
    bn = (x - mean / sf[0]) / np.sqrt(var / sf[0] + 1e-5) * gamma + beta
    w, b = blobs["conv"]
    ref = np.einsum("nhwc,oc->nhwo", bn, w[:, :, 0, 0]) + b + bn
    y = keras.ops.convert_to_numpy(conversion.model(x))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


@agnostic
def test_reading_a_blob_before_and_after_an_in_place_layer_keeps_opencv_semantics(tmp_path, rng):
    # Caffe refuses this net ("Top blob 'x' produced by multiple sources": the auto-inserted Split renames
    # the ReLU's bottom); OpenCV reads "x" before the ReLU for "early" and after it for "late". No Split
    # shares memory here, so the in-place rewrite reaches only the later reader.
    proto = _net('layer { name: "conv" type: "Convolution" bottom: "data" top: "x" '
                 'convolution_param { num_output: 3 kernel_size: 3 } }\n'
                 'layer { name: "early" type: "Sigmoid" bottom: "x" top: "early" }\n'
                 'layer { name: "relu" type: "ReLU" bottom: "x" top: "x" }\n'
                 'layer { name: "late" type: "Eltwise" bottom: "x" bottom: "early" top: "late" }\n', c=2, h=7, w=9)
    run_against_opencv(tmp_path, proto, rng)


@pytest.mark.parametrize("body, match", [
    ('layer { name: "flat" type: "Flatten" bottom: "data" top: "f" }\n'
     'layer { name: "relu" type: "ReLU" bottom: "f" top: "f" }\n'
     'layer { name: "late" type: "TanH" bottom: "data" top: "late" }\n',
     r"layer 'late' \(TanH, <prototxt>:4\): reads 'data' after layer 'relu' \(in place on 'f'\) rewrote"),
    ('layer { name: "split" type: "Split" bottom: "data" top: "f" top: "g" }\n'
     'layer { name: "relu" type: "ReLU" bottom: "g" top: "g" }\n',
     r"output 'f' shares memory with a blob that layer 'relu' \(in place on 'g'\) rewrote"),
])
def test_in_place_writes_through_shared_memory_it_cannot_follow_are_refused(body, match):
    # flatten_layer.cpp also shares memory. A rewrite that reaches a blob of another shape, or a net
    # output nobody reads again, is refused by name rather than converted with the old values.
    with pytest.raises(UnsupportedLayerError, match=match):
        loads(_net(body, c=2, h=3, w=5))


@agnostic
def test_verify_skips_reads_through_a_split_rewritten_in_place(tmp_path, capsys):
    proto = _net('layer { name: "split" type: "Split" bottom: "data" top: "a" top: "b" }\n'
                 'layer { name: "relu" type: "ReLU" bottom: "a" top: "a" }\n'
                 'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }\n', c=2, h=5, w=3)
    assert main(["caffe", *write_net(tmp_path, proto), "-o", str(tmp_path / "s.keras"), "--verify",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Verify: skipped" in text and "Eltwise 'sum' reads 'b' after an in-place write to 'a'" in text


@agnostic
def test_batchnorm_with_batch_statistics_in_a_deploy_net(tmp_path, rng):
    # use_global_stats: false in a deploy file: batch_norm_layer.cpp normalizes with the batch's own mean
    # and biased variance per channel, over N, H and W (the stored blobs unused); a following Scale
    # stays a Scale. It was refused. Reference: NumPy for a batch of 2; OpenCV (MVN) for batch 1.
    proto = _net('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" '
                 'batch_norm_param { use_global_stats: false eps: 0.01 } }\n'
                 'layer { name: "sc" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }\n'
                 'layer { name: "keep" type: "Power" bottom: "data" top: "keep" }\n'
                 'layer { name: "gap" type: "Pooling" bottom: "data" top: "gap" pooling_param { pool: MAX kernel_size: 2 } }\n'
                 'layer { name: "flat" type: "Flatten" bottom: "gap" top: "flat" }\n'
                 'layer { name: "bn2" type: "BatchNorm" bottom: "flat" top: "bn2" '
                 'batch_norm_param { use_global_stats: false } }\n', c=3, h=5, w=7)
    blobs, net, conversion = _converted(proto, rng)
    assert conversion.folded_bn_scale == 0
    x = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
    data, flat = (keras.ops.convert_to_numpy(y) for y in conversion.model(x))
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    gamma, beta = blobs["sc"]
    ref = (x64 - mean) / np.sqrt(var + 0.01) * gamma + beta
    np.testing.assert_allclose(data, ref, rtol=1e-4, atol=1e-5)
    pooled = caffe_pool_numpy(ref, "max", (2, 2), (1, 1), (0, 0)).transpose(0, 3, 1, 2).reshape(2, -1)
    np.testing.assert_allclose(flat, (pooled - pooled.mean(0)) / np.sqrt(pooled.var(0) + 1e-5), rtol=1e-4, atol=1e-4)
    # OpenCV turns the layer into MVN, which divides by std + eps instead of sqrt(var + eps): --verify skips it.
    x1 = x64[:1]
    cv = opencv_forward(proto, {"data": x[:1]}, caffemodel_bytes(proto, blobs), outputs=["keep"])["keep"]
    np.testing.assert_allclose(cv, (x1 - x1.mean((0, 1, 2))) / (x1.std((0, 1, 2)) + 0.01) * gamma + beta, rtol=1e-3,
                               atol=1e-3)
    assert any("'bn' uses batch statistics" in d for d in opencv_departures(net))
    ref1 = (x1 - x1.mean(axis=(0, 1, 2))) / np.sqrt(x1.var(axis=(0, 1, 2)) + 0.01) * gamma + beta
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conversion.model(x[:1])[0]), ref1, rtol=1e-4, atol=1e-5)
    conversion.model.save(tmp_path / "bn.keras")
    loaded = keras.models.load_model(tmp_path / "bn.keras", safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)[1]), flat)
    # A zoo BatchNormalization keeps moving statistics: porting such a layer is refused by name.
    inp = keras.Input((5, 7, 3))
    zoo_like = keras.Model(inp, keras.layers.BatchNormalization(name="bn")(inp))
    with pytest.raises(UnsupportedLayerError, match=r"'bn' \(BatchNorm, line 2\): use_global_stats: false .* "
                                                     r"cannot fill a BatchNormalization"):
        caffe.port(net, zoo_like)


@agnostic
def test_slice_of_a_spatial_axis_converted_for_any_size(rng):
    # With input_shape=(None, None) the sliced axis has no static size: an even split (no slice_point)
    # failed with "unsupported operand type(s) for //: 'NoneType' and 'int'". Reference: NumPy slicing.
    proto = _net('layer { name: "sl" type: "Slice" bottom: "data" top: "a" top: "b" slice_param { axis: 2 } }\n'
                 'layer { name: "sw" type: "Slice" bottom: "data" top: "c" top: "d" top: "e" '
                 'slice_param { axis: 3 slice_point: 2 slice_point: 5 } }\n', c=3, h=6, w=9)
    model = caffe.to_keras(loads(proto), input_shape=(None, None), progress=False)
    for h, w in ((6, 9), (10, 7)):
        x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
        ys = [keras.ops.convert_to_numpy(y) for y in model(x)]
        refs = [x[:, :h // 2], x[:, h // 2:], x[:, :, :2], x[:, :, 2:5], x[:, :, 5:]]
        for y, ref in zip(ys, refs):
            np.testing.assert_array_equal(y, ref)


# DeepLab v1's hole and hszhao/PSPNet 88d0b3's HoleConvolution (its deploy files' conv4_x/conv5_x 3x3): a dilation
# in hole_conv_layer.cpp (effective kernel k + (k - 1)(hole - 1), taps hole apart). The reference is OpenCV on the
# same net written with BVLC's dilation.
HOLES = _net('layer { name: "h" type: "HoleConvolution" bottom: "data" top: "h" '
             'convolution_param { num_output: 3 pad: 2 hole: 2 kernel_size: 3 stride: 1 bias_term: false } }\n'
             'layer { name: "c" type: "Convolution" bottom: "h" top: "c" '
             'convolution_param { num_output: 2 kernel_size: 3 pad_h: 2 pad_w: 1 hole_h: 2 hole_w: 3 } }\n',
             h=17, w=23)


@agnostic
@pytest.mark.parametrize("form", ["v2", "v1"])
def test_hole_is_a_dilation(tmp_path, rng, form):
    proto = HOLES
    if form == "v1":  # DeepLab v1's files: V1 layers, CONVOLUTION with hole
        proto = (proto.replace("layer {", "layers {").replace('type: "HoleConvolution"', "type: CONVOLUTION")
                 .replace('type: "Convolution"', "type: CONVOLUTION"))
    dilated = (HOLES.replace('"HoleConvolution"', '"Convolution"').replace("hole: 2", "dilation: 2")
               .replace("hole_h: 2 hole_w: 3", "dilation: 2 dilation: 3"))
    net, model, _ = run_against_opencv(tmp_path, proto, rng, opencv_proto=dilated)
    assert [(l.type, tuple(l.param.convolution_param.dilation)) for l in net.layers] == [
        ("Convolution", (2,)), ("Convolution", (2, 3))]
    # 17 x 23 -> h: 17 x 23 (effective kernel 5, pad 2) -> c: 17 + 4 - 5 + 1 = 17, 23 + 2 - 7 + 1 = 19
    assert model.output.shape == (None, 17, 19, 2)


@pytest.mark.parametrize("params, match", [
    ("num_output: 2 kernel_size: 3", "a HoleConvolution needs hole"),
    ("num_output: 2 kernel_size: 3 hole_h: 2", "give hole, or hole_h and hole_w"),
    ("num_output: 2 kernel_size: 3 hole: 2 hole_h: 2 hole_w: 2", "give hole, or hole_h and hole_w"),
    ("num_output: 2 kernel_size: 3 hole: 2 dilation: 2", "both hole and dilation"),
    ("num_output: 2 kernel_size: 3 hole: 0", r"hole 0; expected an integer >= 1"),
])
def test_hole_errors_name_the_layer(params, match):
    proto = _net(f'layer {{ name: "h" type: "HoleConvolution" bottom: "data" top: "h" '
                 f'convolution_param {{ {params} }} }}\n')
    with pytest.raises(GraphError, match=r"layer 'h' \(HoleConvolution, <prototxt>:2\): " + match):
        loads(proto)
    pool = _net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 2 } '
                'convolution_param { hole: 2 } }\n')
    with pytest.raises(UnsupportedLayerError, match=r"layer 'p' \(Pooling, .*\): convolution_param.hole is read for "):
        loads(pool)
