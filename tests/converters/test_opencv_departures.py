"""Nets the converter gets right where OpenCV 4.x departs from Caffe, found by differential fuzzing:
``opencv_departures`` must name each (so ``--verify`` says it cannot check the net instead of failing
it and writing no model), and only there: the same layers with the parameter that OpenCV gets wrong
left out still pass against OpenCV. References where OpenCV departs: NumPy ports of Caffe's
``Forward_cpu`` (pooling via ``tests/oracle.caffe_pool_numpy``; deconvolution, LRN, InnerProduct,
Concat and Slice written here from ``deconv_layer.cpp`` (col2im), ``lrn_layer.cpp``,
``inner_product_layer.cpp``, ``concat_layer.cpp``, ``slice_layer.cpp``).
"""

import keras
import numpy as np
import pytest

from converters import caffe
from converters.caffe.opencv import opencv_departures
from converters.caffe.reader import loads
from converters.cli import main
from tests.caffe_files import caffemodel_bytes, random_blobs_for, write_net
from tests.converters.test_exactness import run_against_opencv
from tests.oracle import caffe_pool_numpy, opencv_forward

pytestmark = pytest.mark.backend_agnostic

C, H, W = 4, 13, 23


def _net(body):
    return f'input: "data" input_shape {{ dim: 1 dim: {C} dim: {H} dim: {W} }}\n' + body


def _tanh_and(layer):
    return _net('layer { name: "t" type: "TanH" bottom: "data" top: "t" }\n' + layer)


# name -> (prototxt, the departure's text). Pooling: 13x23 with MAX 1x1 stride 4 pools rows 0, 4, 8, 12 and
# columns 0, 4, ..., 20 and a window starting at column 24, past the image (-FLT_MAX in Caffe, 0 in OpenCV); padding
# H only, Caffe also drops W's window that starts at 24 >= 23 (OpenCV keeps it: one column more).
DEPARTS = {
    "lrn_k": (_net('layer { name: "l" type: "LRN" bottom: "data" top: "l" '
                   'lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 k: 2 } }\n'), "LRN 'l' has k != 1"),
    "ip_transpose": (_net('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                          'inner_product_param { num_output: 5 transpose: true } }\n'),
                     "InnerProduct 'ip' has transpose: true"),
    "deconv_dilation": (_net('layer { name: "d" type: "Deconvolution" bottom: "data" top: "d" '
                             'convolution_param { num_output: 2 kernel_size: 3 stride: 2 pad: 1 dilation: 2 } }\n'),
                        "Deconvolution 'd' has a dilation"),
    "pool_pad_one_axis": (_net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: AVE '
                               'kernel_h: 4 kernel_w: 1 stride_h: 2 stride_w: 4 pad_h: 3 pad_w: 0 } }\n'),
                          "Pooling 'p' pads one axis only"),
    "pool_past_edge": (_net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                            'pooling_param { pool: MAX kernel_size: 1 stride: 4 } }\n'),
                       "Pooling 'p' has a last window that starts past the image"),
    # PSPNet's pyramid pools kept for a smaller input: Caffe's ceil mode pools one window of rows (clipped to the
    # map) and two of columns (0-19, 20-22); OpenCV refuses the net
    "pool_kernel_over_input": (_net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                                    'pooling_param { pool: AVE kernel_size: 20 stride: 20 } }\n'),
                               "Pooling 'p' has a kernel larger than its padded input"),
    "concat_dim": (_tanh_and('layer { name: "c" type: "Concat" bottom: "data" bottom: "t" top: "c" '
                             'concat_param { concat_dim: 3 } }\n'), "Concat 'c' has the legacy concat_dim: 3"),
    "slice_dim": (_net('layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" '
                       'slice_param { slice_dim: 2 slice_point: 5 } }\n'), "Slice 's' has the legacy slice_dim: 2"),
}

# The same layers where OpenCV computes what Caffe does: nothing to flag, and OpenCV agrees with the conversion.
AGREES = {
    "lrn_k1": _net('layer { name: "l" type: "LRN" bottom: "data" top: "l" lrn_param { alpha: 0.5 k: 1 } }\n'),
    # Caffe's WITHIN_CHANNEL LRN ignores k as OpenCV does (its Power layer's shift is 1)
    "lrn_within_k": _net('layer { name: "l" type: "LRN" bottom: "data" top: "l" '
                         'lrn_param { local_size: 3 alpha: 2 k: 2 norm_region: WITHIN_CHANNEL } }\n'),
    "ip_no_transpose": _net('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                            'inner_product_param { num_output: 5 transpose: false } }\n'),
    # a dilation along an axis of kernel size 1 changes nothing
    "deconv_dilation_k1": _net('layer { name: "d" type: "Deconvolution" bottom: "data" top: "d" convolution_param '
                               '{ num_output: 2 kernel_h: 1 kernel_w: 3 stride: 2 dilation: 2 dilation: 1 } }\n'),
    # padded on H only, but W's last window (0, 3, ..., 21: columns 21-22) starts inside the image
    "pool_pad_one_axis_inside": _net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { '
                                     'pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0 } }\n'),
    "pool_stride_over_kernel_inside": _net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                                           'pooling_param { pool: MAX kernel_size: 2 stride: 3 } }\n'),
    "pool_past_edge_floor": _net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                                 'pooling_param { pool: MAX kernel_size: 1 stride: 4 ceil_mode: false } }\n'),
    "pool_past_edge_ave": _net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                               'pooling_param { pool: AVE kernel_size: 1 stride: 4 } }\n'),  # 0 in both
    # a kernel as large as the padded input: one window, and OpenCV runs it as Caffe does
    "pool_kernel_fills_padded_input": _net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                                           'pooling_param { pool: AVE kernel_size: 15 stride: 20 pad: 1 } }\n'),
    "concat_dim1": _tanh_and('layer { name: "c" type: "Concat" bottom: "data" bottom: "t" top: "c" '
                             'concat_param { concat_dim: 1 } }\n'),
    "concat_dim_one_bottom": _net('layer { name: "c" type: "Concat" bottom: "data" top: "c" '
                                  'concat_param { concat_dim: 3 } }\n'),
    "concat_axis3": _tanh_and('layer { name: "c" type: "Concat" bottom: "data" bottom: "t" top: "c" '
                              'concat_param { axis: 3 } }\n'),
}


@pytest.mark.parametrize("case", sorted(DEPARTS))
def test_verify_says_it_cannot_check_where_opencv_departs(tmp_path, rng, case, capsys):
    proto, text = DEPARTS[case]
    files = write_net(tmp_path, proto, random_blobs_for(proto, rng))
    found = opencv_departures(caffe.load(*files))
    assert len(found) == 1 and found[0].startswith(text), found
    out = tmp_path / "m.keras"
    assert main(["caffe", *files, "-o", str(out), "--verify", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "Verify: skipped, OpenCV cannot check this net: " + text in said and out.exists(), said


@pytest.mark.parametrize("case", sorted(AGREES))
def test_no_departure_where_opencv_agrees(tmp_path, rng, case):
    net, _, _ = run_against_opencv(tmp_path, AGREES[case], rng)
    assert opencv_departures(net) == []


def _run(case, rng, blobs=None):
    """(Keras output, OpenCV output, NCHW input in float64, blobs) of DEPARTS[case] on one random input."""
    proto = DEPARTS[case][0]
    blobs = random_blobs_for(proto, rng) if blobs is None else blobs
    model = caffe.to_keras(loads(proto, caffemodel_bytes(proto, blobs)), progress=False)
    x = rng.normal(size=(1, H, W, C)).astype(np.float32)
    ys = model(x)
    outs = [keras.ops.convert_to_numpy(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]
    net = loads(proto)
    tops = [net.caffe_names.get(b, b) for b in net.outputs]
    layer = net.producers()[net.outputs[0]].name
    cv = opencv_forward(proto, {"data": x}, caffemodel_bytes(proto, blobs), [(layer, i, t) for i, t in enumerate(tops)])
    return outs, list(cv.values()), x.transpose(0, 3, 1, 2).astype(np.float64), blobs


def _differs(ours, cv):
    return ours.shape != cv.shape or not np.allclose(ours, cv, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("case, mode, k, s, p", [("pool_pad_one_axis", "ave", (4, 1), (2, 4), (3, 0)),
                                                 ("pool_past_edge", "max", (1, 1), (4, 4), (0, 0))])
def test_pooling_follows_caffe_where_opencv_departs(rng, case, mode, k, s, p):
    (ours,), (cv,), x, _ = _run(case, rng)
    ref = caffe_pool_numpy(x.transpose(0, 2, 3, 1), mode, k, s, p)
    assert ours.shape == ref.shape == ((1, 8, 6, C) if p[0] else (1, 4, 7, C))
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    assert _differs(ours, cv)  # OpenCV: one column more (padded H only), or 0 for the past-the-image column
    if not p[0]:
        assert (ours[:, :, -1] == -np.finfo(np.float32).max).all() and (cv[:, :, -1] == 0).all()


@pytest.mark.parametrize("mode", ["AVE", "MAX"])
def test_pooling_kernel_over_the_input_follows_caffe_where_opencv_refuses(rng, mode):
    import cv2

    proto = DEPARTS["pool_kernel_over_input"][0].replace("AVE", mode)
    model = caffe.to_keras(loads(proto), progress=False)
    x = rng.normal(size=(1, H, W, C)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(model(x))
    ref = caffe_pool_numpy(x.astype(np.float64), mode.lower(), (20, 20), (20, 20), (0, 0))
    assert ours.shape == ref.shape == (1, 1, 2, C)  # ceil((13 - 20) / 20) + 1 = 1 row, ceil(3 / 20) + 1 = 2 columns
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(cv2.error, match=r"total\(os\[i\]\) > 0"):
        opencv_forward(proto, {"data": x})


def _caffe_deconv(x, w, b, s, p, d):
    """deconv_layer.cpp: col2im of W^T x per sample (NCHW, w (C, N, kh, kw)), cropped by pad, plus bias."""
    _, _, h, wd = x.shape
    _, n, kh, kw = w.shape
    oh, ow = s * (h - 1) + d * (kh - 1) + 1 - 2 * p, s * (wd - 1) + d * (kw - 1) + 1 - 2 * p
    y = np.zeros((x.shape[0], n, oh + 2 * p, ow + 2 * p))
    for a in range(kh):
        for c in range(kw):
            contrib = np.einsum("bchw,cn->bnhw", x, w[:, :, a, c])
            y[:, :, a * d:a * d + s * (h - 1) + 1:s, c * d:c * d + s * (wd - 1) + 1:s] += contrib
    return y[:, :, p:p + oh, p:p + ow] + b[None, :, None, None]


def test_deconvolution_dilation_follows_caffe(rng):
    (ours,), (cv,), x, blobs = _run("deconv_dilation", rng)
    w, b = (a.astype(np.float64) for a in blobs["d"])
    ref = _caffe_deconv(x, w, b, 2, 1, 2).transpose(0, 2, 3, 1)
    assert ours.shape == ref.shape == (1, 27, 47, 2)  # 2 * 12 + 2 * 2 + 1 - 2; OpenCV without the dilation: 25 x 45
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    assert cv.shape == (1, 25, 45, 2)


def test_lrn_k_ip_transpose_and_legacy_axes_follow_caffe(rng):
    (lrn,), (cv,), x, _ = _run("lrn_k", rng)
    sq = np.pad(x ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    scale = 2 + 0.5 / 5 * sum(sq[:, i:i + C] for i in range(5))  # lrn_layer.cpp CrossChannelForward_cpu
    np.testing.assert_allclose(lrn, (x * scale ** -0.75).transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)
    assert _differs(lrn, cv)

    (ip,), (cv,), x, blobs = _run("ip_transpose", rng)
    w, b = blobs["ip"]
    assert w.shape == (C * H * W, 5)  # transpose: the blob is (K, N), top = x W + b
    np.testing.assert_allclose(ip, x.reshape(1, -1) @ w + b, rtol=1e-5, atol=1e-4)
    assert _differs(ip, cv)

    (cat,), (cv,), x, _ = _run("concat_dim", rng)
    np.testing.assert_allclose(cat, np.concatenate([x, np.tanh(x)], 3).transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)
    assert _differs(cat, cv)

    (a, b), (cva, _), x, _ = _run("slice_dim", rng)
    nhwc = x.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(a, nhwc[:, :5])
    np.testing.assert_array_equal(b, nhwc[:, 5:])
    assert _differs(a, cva)
