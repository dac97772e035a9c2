"""to_keras against OpenCV's Caffe engine: every supported layer type, and small-channel nets with the
topology of ResNet-50, pre-activation ResNet, FCN-8s, CPM and PSPNet-50, at odd input sizes.

Each net is written as prototxt + binary caffemodel with random blobs (tests/caffe_files.py), read with
``caffe.load``, converted, and run on the same random input as OpenCV (fusion and Winograd off).
Requirement per output: ``max|ours - OpenCV| <= 1e-4 * max|OpenCV|`` in float32.
"""

import keras
import numpy as np
import pytest

from converters import caffe
from tests.caffe_files import caffemodel_bytes, random_blobs_for, write_net
from tests.converters import nets
from tests.oracle import opencv_forward

pytestmark = pytest.mark.backend_agnostic

RTOL = 1e-4


def _inputs(net, rng, positive=False):
    feed = {}
    for blob, shape in net.inputs.items():
        x = rng.normal(size=(shape[0], shape[2], shape[3], shape[1])).astype(np.float32)
        feed[net.caffe_names.get(blob, blob)] = np.abs(x) + 0.1 if positive else x
    return feed


def _output_layers(net):
    """Caffe top name -> (the layer that last wrote it, the top's index among its tops, the top)."""
    producers = net.producers()
    return {net.caffe_names.get(b, b): (producers[b].name, list(producers[b].tops).index(b), net.caffe_names.get(b, b))
            for b in net.outputs}


def run_against_opencv(tmp_path, proto, rng, *, opencv_proto=None, opencv_blobs=None, input_shape=None,
                       positive=False, blobs=None):
    """Convert ``proto`` with random blobs and compare every output with OpenCV; returns (net, model, feed)."""
    blobs = random_blobs_for(proto, rng) if blobs is None else blobs
    p, m = write_net(tmp_path, proto, blobs)
    net = caffe.load(p, m)
    model = caffe.to_keras(net, input_shape=input_shape, progress=False)
    feed = _inputs(net, rng, positive)
    cv_proto = opencv_proto or proto
    cv_blobs = opencv_blobs(blobs) if opencv_blobs else blobs
    outs = _output_layers(net)
    ref = opencv_forward(cv_proto, feed, caffemodel_bytes(cv_proto, cv_blobs), list(outs.values()))
    ours = model.predict(feed if len(feed) > 1 else next(iter(feed.values())), verbose=0)
    ours = ours if isinstance(ours, (list, tuple)) else [ours]
    assert len(ours) == len(outs)
    for (top, layer), y in zip(outs.items(), ours):
        y, r = keras.ops.convert_to_numpy(y), ref[layer]
        assert y.shape == r.shape, f"{top}: shape {y.shape} vs OpenCV {r.shape}"
        err = np.abs(y - r).max()
        assert err <= RTOL * np.abs(r).max(), f"{top}: max abs error {err:.3g} vs max |OpenCV| {np.abs(r).max():.3g}"
    return net, model, feed


CONV_POOL = """
name: "conv_pool"
input: "data" input_shape { dim: 1 dim: 4 dim: 23 dim: 19 }
layer { name: "conv_s2" type: "Convolution" bottom: "data" top: "conv_s2"
  convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "conv_hw" type: "Convolution" bottom: "data" top: "conv_hw"
  convolution_param { num_output: 5 kernel_h: 5 kernel_w: 3 pad_h: 2 pad_w: 0 stride_h: 1 stride_w: 2 bias_term: false } }
layer { name: "conv_dil" type: "Convolution" bottom: "data" top: "conv_dil"
  convolution_param { num_output: 4 kernel_size: 3 pad: 2 dilation: 2 } }
layer { name: "conv_group" type: "Convolution" bottom: "data" top: "conv_group"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 group: 2 } }
layer { name: "conv_dw" type: "Convolution" bottom: "data" top: "conv_dw"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2 group: 4 } }
layer { name: "conv_same_hw" type: "Convolution" bottom: "data" top: "conv_same_hw"
  convolution_param { num_output: 3 kernel_h: 1 kernel_w: 5 pad_h: 0 pad_w: 2 } }
layer { name: "conv_wide_pad" type: "Convolution" bottom: "conv_same_hw" top: "conv_wide_pad"
  convolution_param { num_output: 3 kernel_size: 3 pad: 2 } }
layer { name: "relu_leaky" type: "ReLU" bottom: "conv_s2" top: "conv_s2" relu_param { negative_slope: 0.2 } }
layer { name: "prelu" type: "PReLU" bottom: "conv_hw" top: "conv_hw" }
layer { name: "prelu_shared" type: "PReLU" bottom: "conv_dil" top: "conv_dil" prelu_param { channel_shared: true } }
layer { name: "elu" type: "ELU" bottom: "conv_group" top: "conv_group" elu_param { alpha: 0.5 } }
layer { name: "relu" type: "ReLU" bottom: "conv_dw" top: "conv_dw" }
layer { name: "deconv" type: "Deconvolution" bottom: "conv_s2" top: "deconv"
  convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 } }
layer { name: "deconv_group" type: "Deconvolution" bottom: "conv_group" top: "deconv_group"
  convolution_param { num_output: 4 kernel_h: 3 kernel_w: 2 stride: 3 group: 2 bias_term: false } }
layer { name: "max_ceil" type: "Pooling" bottom: "conv_hw" top: "max_ceil"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "ave_pad" type: "Pooling" bottom: "conv_dil" top: "ave_pad"
  pooling_param { pool: AVE kernel_h: 3 kernel_w: 4 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 2 } }
layer { name: "ave_global" type: "Pooling" bottom: "conv_group" top: "ave_global"
  pooling_param { pool: AVE global_pooling: true } }
layer { name: "max_global" type: "Pooling" bottom: "conv_dw" top: "max_global"
  pooling_param { pool: MAX global_pooling: true } }
layer { name: "max_floor" type: "Pooling" bottom: "conv_hw" top: "max_floor"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR } }
"""


def test_convolution_deconvolution_pooling_activations(tmp_path, rng):
    # OpenCV reads field 13 of PoolingParameter as `ceil_mode` (bool): give it the same rounding in its words.
    cv = CONV_POOL.replace("round_mode: FLOOR", "ceil_mode: false")
    _, model, _ = run_against_opencv(tmp_path, CONV_POOL, rng, opencv_proto=cv)
    # stride-1 pads of d (k - 1) / 2 became Keras "same"; the others an explicit ZeroPadding2D
    padding = {l.name: l.padding for l in model.layers if isinstance(l, keras.layers.Conv2D)}
    assert sorted(n for n, p in padding.items() if p == "same") == ["conv_dil", "conv_group", "conv_same_hw"], padding
    pads = [l.name for l in model.layers if isinstance(l, keras.layers.ZeroPadding2D)]
    assert sorted(pads) == ["conv_dw_pad", "conv_hw_pad", "conv_s2_pad", "conv_wide_pad_pad"], pads


ELEMENTWISE = """
name: "elementwise"
input: "data" input_shape { dim: 1 dim: 6 dim: 9 dim: 11 }
layer { name: "sig" type: "Sigmoid" bottom: "data" top: "sig" }
layer { name: "tanh" type: "TanH" bottom: "data" top: "tanh" }
layer { name: "abs" type: "AbsVal" bottom: "data" top: "abs" }
layer { name: "bnll" type: "BNLL" bottom: "data" top: "bnll" }
layer { name: "pow" type: "Power" bottom: "abs" top: "pow" power_param { power: 1.5 scale: 0.7 shift: 0.2 } }
layer { name: "exp" type: "Exp" bottom: "tanh" top: "exp" exp_param { base: 2 scale: 0.5 shift: 0.1 } }
layer { name: "log" type: "Log" bottom: "bnll" top: "log" }
layer { name: "split" type: "Split" bottom: "log" top: "log_a" top: "log_b" }
layer { name: "sum" type: "Eltwise" bottom: "sig" bottom: "pow" bottom: "log_a" top: "sum"
  eltwise_param { operation: SUM coeff: 0.5 coeff: -1 coeff: 2 } }
layer { name: "prod" type: "Eltwise" bottom: "sum" bottom: "exp" bottom: "tanh" top: "prod" eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "prod" bottom: "log_b" top: "max" eltwise_param { operation: MAX } }
layer { name: "plain_sum" type: "Eltwise" bottom: "max" bottom: "sig" top: "plain_sum" }
layer { name: "cat" type: "Concat" bottom: "plain_sum" bottom: "data" top: "cat" }
layer { name: "cat_h" type: "Concat" bottom: "cat" bottom: "cat" top: "cat_h" concat_param { axis: 2 } }
layer { name: "drop" type: "Dropout" bottom: "cat_h" top: "cat_h" dropout_param { dropout_ratio: 0.3 } }
layer { name: "slice" type: "Slice" bottom: "cat_h" top: "s1" top: "s2" top: "s3" slice_param { axis: 1 slice_point: 2 slice_point: 7 } }
layer { name: "slice_w" type: "Slice" bottom: "s2" top: "w1" top: "w2" slice_param { axis: 3 slice_point: 4 } }
layer { name: "lrn" type: "LRN" bottom: "s3" top: "lrn" lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 } }
layer { name: "lrn_within" type: "LRN" bottom: "w1" top: "lrn_within"
  lrn_param { local_size: 3 alpha: 0.4 beta: 0.6 norm_region: WITHIN_CHANNEL } }
layer { name: "softmax" type: "Softmax" bottom: "s1" top: "softmax" }
layer { name: "softmax_h" type: "Softmax" bottom: "w2" top: "softmax_h" softmax_param { axis: 2 } }
"""


def test_elementwise_merge_slice_lrn_softmax(tmp_path, rng):
    run_against_opencv(tmp_path, ELEMENTWISE, rng)


NORM_SHAPE = """
name: "norm_shape"
input: "data" input_shape { dim: 1 dim: 4 dim: 13 dim: 15 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 6 kernel_size: 3 } }
layer { name: "bn_inplace" type: "BatchNorm" bottom: "conv" top: "conv" batch_norm_param { eps: 0.001 } }
layer { name: "scale_inplace" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "bn_out" type: "BatchNorm" bottom: "conv" top: "bn_out" }
layer { name: "scale_out" type: "Scale" bottom: "bn_out" top: "scale_out" }
layer { name: "bn_lone" type: "BatchNorm" bottom: "scale_out" top: "bn_lone" }
layer { name: "bn_shared" type: "BatchNorm" bottom: "bn_lone" top: "bn_shared" }
layer { name: "scale_alone" type: "Scale" bottom: "bn_shared" top: "scale_alone" scale_param { bias_term: true } }
layer { name: "merge" type: "Eltwise" bottom: "scale_alone" bottom: "bn_shared" top: "merge" }
layer { name: "gap" type: "Pooling" bottom: "merge" top: "gap" pooling_param { pool: AVE global_pooling: true } }
layer { name: "gap_flat" type: "Flatten" bottom: "gap" top: "gap_flat" }
layer { name: "se" type: "InnerProduct" bottom: "gap_flat" top: "se" inner_product_param { num_output: 6 } }
layer { name: "se_sig" type: "Sigmoid" bottom: "se" top: "se" }
layer { name: "excite" type: "Scale" bottom: "merge" bottom: "se" top: "excite" scale_param { axis: 0 } }
layer { name: "fc_spatial" type: "InnerProduct" bottom: "excite" top: "fc_spatial" inner_product_param { num_output: 7 } }
layer { name: "fc_softmax" type: "Softmax" bottom: "fc_spatial" top: "fc_softmax" }
layer { name: "flat" type: "Flatten" bottom: "excite" top: "flat" }
layer { name: "fc_flat" type: "InnerProduct" bottom: "flat" top: "fc_flat" inner_product_param { num_output: 5 } }
layer { name: "reshape" type: "Reshape" bottom: "excite" top: "reshape" reshape_param { shape { dim: 0 dim: 3 dim: -1 dim: 13 } } }
layer { name: "ref" type: "Pooling" bottom: "data" top: "ref" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "crop" type: "Crop" bottom: "excite" bottom: "ref" top: "crop" crop_param { axis: 1 offset: 2 offset: 1 offset: 3 } }
layer { name: "crop_hw" type: "Crop" bottom: "data" bottom: "excite" top: "crop_hw" crop_param { offset: 1 } }
layer { name: "zoom" type: "Interp" bottom: "crop_hw" top: "zoom" interp_param { zoom_factor: 3 } }
layer { name: "resize" type: "Interp" bottom: "crop" top: "resize" interp_param { height: 17 width: 6 } }
layer { name: "softmax4" type: "Softmax" bottom: "resize" top: "softmax4" }
layer { name: "zoom_relu" type: "ReLU" bottom: "zoom" top: "zoom" }
"""


def test_batchnorm_scale_innerproduct_reshape_crop_interp(tmp_path, rng):
    net, model, _ = run_against_opencv(tmp_path, NORM_SHAPE, rng)
    # bn_inplace+scale_inplace and bn_out+scale_out fold; bn_lone has no Scale, bn_shared's top has two readers.
    conversion = caffe.keras.convert(net, progress=False)
    assert conversion.folded_bn_scale == 2
    assert "scale_inplace" not in [l.name for l in model.layers]
    # Outputs are named after their Caffe tops; "zoom" was last written in place by zoom_relu and the
    # name "zoom" belongs to the Interp layer, so that output is "zoom_output".
    assert conversion.outputs == {"fc_softmax": "fc_softmax", "fc_flat": "fc_flat", "reshape": "reshape",
                                  "softmax4": "softmax4", "zoom": "zoom_output"}
    assert model.output_names == list(conversion.outputs.values())


def test_saved_model_reloads_in_safe_mode(tmp_path, rng):
    # Every custom layer (grouped conv, Caffe Scale/Eltwise/Power/Exp/Log/LRN/Reshape/Slice, zoo layers).
    for i, proto in enumerate((CONV_POOL, ELEMENTWISE, NORM_SHAPE)):
        net = caffe.load(*write_net(tmp_path, proto, random_blobs_for(proto, rng), name=f"n{i}"))
        model = caffe.to_keras(net, progress=False)
        model.save(tmp_path / f"m{i}.keras")
        loaded = keras.models.load_model(tmp_path / f"m{i}.keras", safe_mode=True)
        x = _inputs(net, rng)["data"]
        for a, b in zip(keras.tree.flatten(model.predict(x, verbose=0)),
                        keras.tree.flatten(loaded.predict(x, verbose=0))):
            np.testing.assert_array_equal(a, b)


def _caffe_deconv(x, w, b, s, p, d):
    """Caffe's deconvolution (deconv_layer.cpp via col2im) written out: x (C, H, W), w (C, O, k, k)."""
    c, h, wd = x.shape
    k = w.shape[-1]
    ke = d * (k - 1) + 1
    out = np.zeros((w.shape[1], s * (h - 1) + ke, s * (wd - 1) + ke))
    for i in range(h):
        for j in range(wd):
            for a in range(k):
                for bb in range(k):
                    out[:, i * s + a * d, j * s + bb * d] += x[:, i, j] @ w[:, :, a, bb]
    return out[:, p:out.shape[1] - p, p:out.shape[2] - p] + b[:, None, None]


def test_dilated_deconvolution(tmp_path, rng):
    # OpenCV 4 ignores a Deconvolution's dilation (its output is 2 px short here): use Caffe's arithmetic.
    proto = """
input: "data" input_shape { dim: 1 dim: 3 dim: 5 dim: 4 }
layer { name: "up" type: "Deconvolution" bottom: "data" top: "up"
  convolution_param { num_output: 2 kernel_size: 3 stride: 2 pad: 1 dilation: 2 } }
"""
    blobs = random_blobs_for(proto, rng)
    net = caffe.load(*write_net(tmp_path, proto, blobs))
    assert net.shapes[net.outputs[0]] == (1, 2, 11, 9)  # 2 (i - 1) + 2 (3 - 1) + 1 - 2
    x = rng.normal(size=(1, 5, 4, 3)).astype(np.float32)
    y = keras.ops.convert_to_numpy(caffe.to_keras(net, progress=False)(x))[0].transpose(2, 0, 1)
    ref = _caffe_deconv(x[0].transpose(2, 0, 1).astype(np.float64), *blobs["up"], s=2, p=1, d=2)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_parameters_opencv_ignores(tmp_path, rng):
    # OpenCV 4 ignores Log's base/scale/shift, LRN's k and InnerProduct's transpose; check them against
    # Caffe's formulas instead (log_layer.cpp: log(shift + scale x) / ln(base); lrn_layer.cpp:
    # x (k + alpha/n sum x^2)^-beta; inner_product_layer.cpp: transpose stores W as (K, N)).
    proto = """
input: "data" input_shape { dim: 1 dim: 7 dim: 3 dim: 5 }
layer { name: "abs" type: "AbsVal" bottom: "data" top: "abs" }
layer { name: "log" type: "Log" bottom: "abs" top: "log" log_param { base: 10 scale: 2 shift: 0.5 } }
layer { name: "lrn" type: "LRN" bottom: "data" top: "lrn" lrn_param { local_size: 3 alpha: 0.5 beta: 0.7 k: 2 } }
layer { name: "fc_t" type: "InnerProduct" bottom: "data" top: "fc_t" inner_product_param { num_output: 4 transpose: true } }
"""
    blobs = random_blobs_for(proto, rng)
    net = caffe.load(*write_net(tmp_path, proto, blobs))
    x = rng.normal(size=(1, 3, 5, 7)).astype(np.float32)
    log, lrn, fc = (keras.ops.convert_to_numpy(y) for y in caffe.to_keras(net, progress=False)(x))
    np.testing.assert_allclose(log, np.log10(2 * np.abs(x) + 0.5), rtol=1e-5, atol=1e-6)
    sq = np.pad(x.astype(np.float64) ** 2, [(0, 0)] * 3 + [(1, 1)])
    window = sq[..., :-2] + sq[..., 1:-1] + sq[..., 2:]
    np.testing.assert_allclose(lrn, x * (2 + 0.5 / 3 * window) ** -0.7, rtol=1e-5, atol=1e-6)
    w, b = blobs["fc_t"]
    assert w.shape == (7 * 3 * 5, 4)
    np.testing.assert_allclose(fc, x.transpose(0, 3, 1, 2).reshape(1, -1) @ w + b, rtol=1e-5, atol=1e-5)


# --- Topologies of the zoo's Caffe releases, small channels, odd sizes -------------------------------


def test_resnet50_topology(tmp_path, rng):
    proto = nets.resnet50(67, 75, widths=(4, 8, 8, 16), blocks=(2, 2, 1, 1), stem=8, classes=10)
    net, _, _ = run_against_opencv(tmp_path, proto, rng)
    assert caffe.keras.convert(net, progress=False).folded_bn_scale == 1 + 6 * 3 + 4  # conv1, 3 per block, 4 shortcuts


def test_preactivation_resnet_topology(tmp_path, rng):
    proto = nets.resnet_v2(45, 53, widths=(4, 4, 8, 8), blocks=(2, 2, 1, 1), stem=6, classes=7)
    run_against_opencv(tmp_path, proto, rng)


@pytest.mark.parametrize("atonce", [False, True])
def test_fcn8s_topology_any_size(tmp_path, rng, atonce):
    # pad 100, ceil pools, fc6 7x7, deconvs k4s2/k16s8 and top-left crops 5/9/31; converted for any size.
    proto = nets.fcn8s(27, 35, widths=(3, 4, 4, 6, 6), fc=8, classes=3, atonce=atonce)
    run_against_opencv(tmp_path, proto, rng, input_shape=(None, None))


def test_cpm_topology_any_size(tmp_path, rng):
    # 4-channel input sliced at 3, centre map AVE 9/8 with a partial last window, per-stage concat.
    proto = nets.cpm(41, 33, stages=3, parts=4, width=6, mid=4, wide=8)
    run_against_opencv(tmp_path, proto, rng, input_shape=(None, None), positive=True)


def _bn_to_batchnorm_scale(blobs, proto_types):
    out = {}
    for name, arrays in blobs.items():
        if proto_types.get(name) == "BN":
            slope, bias, mean, var = (a.reshape(-1) for a in arrays)
            out[name] = [mean, var, np.ones(1, np.float32)]
            out[name + "_scale"] = [slope, bias]
        else:
            out[name] = arrays
    return out


def test_pspnet50_topology(tmp_path, rng):
    # Fork "BN" layers, dilation 2/4, pyramid AVE pools 12/6/4/2, Interp to 12x12 and zoom 8.
    kw = dict(widths=(4, 4, 8, 8), blocks=(2, 1, 2, 1), stem=(4, 4, 6), ppm=4, head=6, classes=5)
    proto = nets.pspnet50(89, 91, 12, **kw)
    opencv_proto = nets.pspnet50(89, 91, 12, bn="BatchNorm", **kw)
    types = {l.name: l.type for l in caffe.load(write_net(tmp_path, proto, name="shape")[0]).layers}
    run_against_opencv(tmp_path, proto, rng, opencv_proto=opencv_proto,
                       opencv_blobs=lambda b: _bn_to_batchnorm_scale(b, types))


@pytest.mark.parametrize("layer,match", [
    ('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: STOCHASTIC kernel_size: 2 } }',
     r"layer 'p' \(Pooling, line 3\): pool STOCHASTIC"),
    ('layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
     '  convolution_param { num_output: 2 kernel_size: 3 stride: 2 dilation: 2 } }',
     r"layer 'c' \(Convolution, line 3\): stride > 1 together with dilation > 1"),
])
def test_unsupported_parameters_name_the_layer(tmp_path, layer, match):
    proto = f'input: "data" input_shape {{ dim: 1 dim: 2 dim: 9 dim: 9 }}\n\n{layer}\n'
    net = caffe.load(write_net(tmp_path, proto)[0])
    with pytest.raises(caffe.UnsupportedLayerError, match=match):
        caffe.to_keras(net, progress=False)


def test_unsupported_type_lists_supported(tmp_path):
    net = caffe.load(write_net(tmp_path, 'input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
                                         'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')[0])
    net.layers[0].type = "Embed"  # a type the reader might learn before the converter does
    with pytest.raises(caffe.UnsupportedLayerError, match=r"'Embed' \(layer 'r', line 2\).*supported: AbsVal, ArgMax, BN,"):
        caffe.to_keras(net, progress=False)
