"""PSPNet's own multi-scale test (evaluate/predict base_size=) against hszhao/PSPNet's evaluation/eval_sub.m,
scale_process.m, caffe_process.m and pre_img.m, and MATLAB's imresize, written out here in NumPy."""

import math

import cv2
import numpy as np
import pytest

from tests.training.test_evaluation_tta import _confusion, _seg_model, _seg_net_numpy, _seg_records
from training.data import SegmentationDataset
from training.evaluation import evaluate
from training.normalization import Normalization

# The imresize tests are NumPy/OpenCV only (nothing a Keras backend computes) and run in ./dev test's TensorFlow pass
# alone; those that build or run a model are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic

NORM = Normalization(scale=1 / 255, mean=(0.3, 0.6, 0.2), std=(0.5, 0.4, 0.3))  # black is not 0: the pad shows


def _tri(x):
    return (1 + x) * ((-1 <= x) & (x < 0)) + (1 - x) * ((0 <= x) & (x <= 1))


def _contributions(n_in, n_out):
    """imresize.m's contributions(): per output px (1-based) its source px and weights; antialiased when shrinking."""
    scale = n_out / n_in
    h, kw = ((lambda x: scale * _tri(scale * x)), 2 / scale) if scale < 1 else (_tri, 2.0)
    aux = list(range(1, n_in + 1)) + list(range(n_in, 0, -1))
    out = []
    for x in range(1, n_out + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        idx = [math.floor(u - kw / 2) + j for j in range(math.ceil(kw) + 2)]
        w = np.array([h(np.float64(u - i)) for i in idx])
        out.append((w / w.sum(), [aux[(i - 1) % len(aux)] - 1 for i in idx]))
    return out


def _imresize(a, rows, cols):
    """imresize(a, [rows cols], 'bilinear'): dimensions in order of their scale, uint8 rounded after each."""
    out = np.asarray(a, np.float64)
    size = {0: rows, 1: cols}
    for d in sorted((0, 1), key=lambda d: size[d] / a.shape[d]):
        moved = np.moveaxis(out, d, 0)
        res = np.stack([sum(wj * moved[ij] for wj, ij in zip(w, idx)) for w, idx in _contributions(moved.shape[0],
                                                                                                    size[d])])
        out = np.moveaxis(res, 0, d)
        if a.dtype == np.uint8:
            out = np.clip(np.floor(out + 0.5), 0, 255)
    return out


def test_the_imresize_transcription_is_matlabs():
    rng = np.random.default_rng(0)
    a = rng.random((9, 7, 2)).astype(np.float32)
    # enlarging: the triangle kernel at pixel centres, edges repeated = OpenCV's bilinear
    np.testing.assert_allclose(_imresize(a, 20, 13), cv2.resize(a, (13, 20), interpolation=cv2.INTER_LINEAR),
                               atol=1e-6)
    # halving: the triangle stretched to 4 taps, (1, 3, 3, 1) / 8
    b = rng.random((4, 12))
    half = _imresize(b, 4, 6)
    np.testing.assert_allclose(half[:, 2], (b[:, 3] + 3 * b[:, 4] + 3 * b[:, 5] + b[:, 6]) / 8)


def test_imresize_is_the_transcriptions():
    from training.tta_pspnet import imresize

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (31, 45, 3)).astype(np.uint8)
    for w, h in [(71, 49), (21, 14), (45, 17), (60, 31)]:
        np.testing.assert_array_equal(imresize(img, (w, h)), _imresize(img, h, w).astype(np.uint8))
    score = rng.random((49, 71, 3)).astype(np.float32)
    np.testing.assert_allclose(imresize(score, (45, 31)), _imresize(score, 31, 45), atol=1e-5)


def _reference(img, crop, base, scales, flip, norm=NORM):
    """eval_sub.m + scale_process.m + caffe_process.m + pre_img.m for the test's colour net (1-based loops)."""
    rows, cols = img.shape[:2]
    data_all = 0
    for s in scales:
        long_size = int(base * s + 1)  # whole for these scales
        new_rows = new_cols = long_size
        if rows > cols:
            new_cols = math.floor(np.float32(long_size) / np.float32(rows) * cols + 0.5)
        else:
            new_rows = math.floor(np.float32(long_size) / np.float32(cols) * rows + 0.5)
        img_scale = _imresize(img, new_rows, new_cols).astype(np.uint8)
        x = norm(img_scale[None])[0].astype(np.float64)
        pad = np.zeros((max(new_rows, crop), max(new_cols, crop), 3))  # the mean, subtracted: 0
        pad[:new_rows, :new_cols] = x
        pad_rows, pad_cols = pad.shape[:2]
        stride = math.ceil(crop * 2 / 3)
        data = np.zeros((pad_rows, pad_cols, 3))
        count = np.zeros((pad_rows, pad_cols, 1))
        for gy in range(1, math.ceil((pad_rows - crop) / stride) + 2):
            for gx in range(1, math.ceil((pad_cols - crop) / stride) + 2):
                s_x, s_y = (gx - 1) * stride + 1, (gy - 1) * stride + 1
                e_x, e_y = min(s_x + crop - 1, pad_cols), min(s_y + crop - 1, pad_rows)
                s_x, s_y = e_x - crop + 1, e_y - crop + 1
                sub = pad[s_y - 1:e_y, s_x - 1:e_x]
                z = _seg_net_numpy(sub, logits=True)
                if flip:
                    z = z + _seg_net_numpy(sub[:, ::-1], logits=True)[:, ::-1]
                e = np.exp(z)
                data[s_y - 1:e_y, s_x - 1:e_x] += e / e.sum(-1, keepdims=True)
                count[s_y - 1:e_y, s_x - 1:e_x] += 1
        score = (data / count)[:new_rows, :new_cols]
        out = _imresize(score, rows, cols)
        data_all = data_all + out / out.sum(-1, keepdims=True)
    return data_all / len(scales)


SHAPES = [(45, 31), (23, 60)]  # (w, h): a wide and a tall image


@agnostic
@pytest.mark.parametrize("scales", [(0.5,), (1.75,), (0.5, 1.0, 1.75)])
@pytest.mark.parametrize("flip", [False, True])
def test_evaluate_base_size_is_pspnets_test(tmp_path, scales, flip):
    recs, masks, images = _seg_records(tmp_path, SHAPES, seed=4)
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False, normalization=NORM)
    res = evaluate(_seg_model(32), ds, scales=scales, flip=flip, base_size=40, verbose=False)
    want = [_reference(im, 32, 40, scales, flip) for im in images]
    np.testing.assert_array_equal(np.array(res.table["confusion"]), _confusion([p.argmax(-1) for p in want], masks))
    # the letterboxed canvases (base_size None) answer otherwise
    other = evaluate(_seg_model(32), ds, scales=scales, flip=flip, verbose=False)
    assert other.table["confusion"] != res.table["confusion"]


@agnostic
@pytest.mark.parametrize("flip", [False, True])
def test_pspnet_probabilities_are_the_references(tmp_path, flip):
    from training.tta_pspnet import pspnet_probabilities

    _, _, images = _seg_records(tmp_path, SHAPES, seed=6)
    model = _seg_model(32)
    for im in images:
        got = pspnet_probabilities(lambda x: np.asarray(model.predict_on_batch(x)), NORM, im, (32, 32), 40,
                                   (0.5, 1.0, 1.75), flip=flip, batch=3)
        np.testing.assert_allclose(got, _reference(im, 32, 40, (0.5, 1.0, 1.75), flip), atol=2e-5)


@agnostic
@pytest.mark.parametrize("flip", [False, True])
def test_predict_base_size_is_pspnets_test(tmp_path, flip):
    from training.inference import predict
    from zoo.records import WeightsRecord

    _, _, images = _seg_records(tmp_path, SHAPES, seed=7)
    rec = WeightsRecord(mean=tuple(255 * np.array(NORM.mean)), std=tuple(255 * np.array(NORM.std)), scale=1.0)
    for im in images:
        pred = predict(_seg_model(32), im, name="x", record=rec, scales=(0.75, 1.5), flip=flip, base_size=40)
        want = _reference(im, 32, 40, (0.75, 1.5), flip, Normalization(1.0, rec.mean, rec.std))
        np.testing.assert_array_equal(pred.mask, want.argmax(-1))
        # output: the probabilities the mask came from, on the image (was the letterboxed pass's raw 32 x 32 scores)
        assert pred.output.shape == im.shape[:2] + (3,)
        np.testing.assert_allclose(pred.output, want, atol=2e-5)


@agnostic
def test_a_wide_voc_image_at_1_75_gets_pspnets_six_windows():
    from training.tta_pspnet import pspnet_probabilities, scaled_size

    assert scaled_size((375, 500), 512, 1.75) == (897, 673)  # long 512 * 1.75 + 1, short round(672.75)
    assert scaled_size((500, 375), 512, 0.5) == (193, 257)  # tall: round(257 / 500 * 375) = round(192.75)
    seen = []

    def net(x):
        seen.append(len(x))
        return np.zeros(x.shape[:3] + (2,), np.float32)

    img = np.zeros((375, 500, 3), np.uint8)
    p = pspnet_probabilities(net, lambda b: b.astype(np.float32), img, (473, 473), 512, (1.75,), flip=False, batch=4)
    assert seen == [4, 2] and p.shape == (375, 500, 2)  # 3 across x 2 down, ceil(2/3 473) = 316 apart


@agnostic
@pytest.mark.parametrize("bad", [0, -512, 512.5, float("nan"), "512", True])
def test_bad_base_size_is_refused_naming_it(tmp_path, bad):
    from training.inference import predict

    recs, _, images = _seg_records(tmp_path, [(20, 20)])
    ds = SegmentationDataset(recs, batch_size=1, input_size=(32, 32), num_classes=3, shuffle=False)
    with pytest.raises(ValueError, match=r"evaluate: base_size must be a whole number of px >= 1"):
        evaluate(_seg_model(32), ds, base_size=bad, verbose=False)
    with pytest.raises(ValueError, match=r"predict: base_size must be a whole number"):
        predict(_seg_model(32), images[0], name="x", base_size=bad)
    with pytest.raises(ValueError, match=r"resolution must be 'original'"):
        evaluate(_seg_model(32), ds, base_size=40, resolution="input", verbose=False)


@agnostic
def test_base_size_scales_too_large_for_memory_are_refused_before_any_canvas(tmp_path):
    from training.inference import predict
    from training.tta import _physical_memory

    recs, _, images = _seg_records(tmp_path, [(20, 20)])
    ds = SegmentationDataset(recs, batch_size=1, input_size=(32, 32), num_classes=3, shuffle=False)
    # long side 40 * 1e5 + 1 px: a 4,000,001 px square canvas, 3.2e14 bytes of input and window counts alone
    huge = 1e5
    assert 4_000_001 ** 2 * 20 > _physical_memory()
    with pytest.raises(ValueError, match=r"evaluate: scales=\(100000\.0,\) make canvases up to 4000001x4000001 px"):
        evaluate(_seg_model(32), ds, scales=(huge,), base_size=40, verbose=False)  # was an attempt to allocate them
    with pytest.raises(ValueError, match=r"predict: scales=\(100000\.0,\) make canvases up to 4000001x4000001 px"):
        predict(_seg_model(32), images[0], name="x", scales=(huge,), base_size=40)


@agnostic
def test_base_size_is_refused_for_pose_data(tmp_path):
    from tests.training.test_evaluation_tta import _pose_model, _pose_records
    from training.data import HeatmapDataset

    ds = HeatmapDataset(_pose_records(), batch_size=2, input_size=(64, 64), heatmap_size=(16, 16), flip_pairs=())
    with pytest.raises(ValueError, match=r"evaluate: base_size is PSPNet's segmentation test; the dataset is a "
                                         r"HeatmapDataset\. Received: base_size=40"):
        evaluate(_pose_model(64, 3), ds, base_size=40, verbose=False)


@agnostic
def test_probability_and_strided_outputs_give_the_logits_answer(tmp_path):
    # A net ending in a softmax (as deploys with a "prob" layer do) is read back as log-probabilities, which is the
    # logits up to a per-pixel constant: the same test result. Its arrays may come non-contiguous from a backend.
    from training.tta_pspnet import pspnet_probabilities

    _, _, images = _seg_records(tmp_path, SHAPES, seed=8)
    model = _seg_model(32)

    def probabilities(x):
        z = np.asarray(model.predict_on_batch(x), np.float64)
        e = np.exp(z - z.max(-1, keepdims=True))
        p = (e / e.sum(-1, keepdims=True)).astype(np.float32)
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(p, -1, 0)), 0, -1)  # channels-first memory

    for im in images:
        for flip in (False, True):
            got = pspnet_probabilities(probabilities, NORM, im, (32, 32), 40, (0.5, 1.75), flip=flip, batch=3)
            np.testing.assert_allclose(got, _reference(im, 32, 40, (0.5, 1.75), flip), atol=2e-5)
