"""Multi-scale (+ flip) test-time augmentation of training.evaluate and training.inference.predict, against the
protocols written out here in NumPy/OpenCV (CPM's applyModel.m scale search, PSPNet's multi-scale sliding window)."""

import math

import cv2
import numpy as np
import pytest

from training.data import HeatmapDataset, SegmentationDataset
from training.datasets.base import PoseRecord, SegRecord
from tests.training.helpers import Blobs
from training.evaluation import evaluate

# test_segmentation_windows_are_pspnets is integer arithmetic (nothing a Keras backend computes) and runs in
# ./dev test's TensorFlow pass alone; those that build or run a model are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic

KERNEL = (0.2, 0.5, 0.3)  # lopsided, so the mirrored pass differs from the plain one


def _pose_model(size, k):
    """A real Keras 'pose net' whose output is known: heatmap j = the 4x4 average of input channel j, then a
    horizontal (0.2, 0.5, 0.3) correlation (zero padded). Heatmap pixel g averages input px 4g..4g+3: its
    centre is input px 4g + 1.5 (heatmap_offset 1.5, with which the flip test needs no shift)."""
    import keras

    inp = keras.Input((size, size, k))
    x = keras.layers.AveragePooling2D(4)(inp)
    conv = keras.layers.DepthwiseConv2D((1, 3), padding="same", use_bias=False)
    out = conv(x)
    conv.set_weights([np.tile(np.array(KERNEL, np.float32).reshape(1, 3, 1, 1), (1, 1, k, 1))])
    return keras.Model(inp, out)


def _pose_net_numpy(crop):
    """The model above on one (H, W, K) float crop."""
    h, w, k = crop.shape
    p = crop.reshape(h // 4, 4, w // 4, 4, k).mean((1, 3))
    pad = np.pad(p, ((0, 0), (1, 1), (0, 0)))
    return KERNEL[0] * pad[:, :-2] + KERNEL[1] * pad[:, 1:-1] + KERNEL[2] * pad[:, 2:]


def _pose_records():
    recs = []
    for i, (cx, cy) in enumerate([(60.3, 45.2), (52.0, 41.7), (66.6, 48.1)]):
        pts = np.array([[cx - 11.3, cy - 9.6], [cx + 8.2, cy + 2.9], [cx - 1.4, cy + 12.3]])
        recs.append(PoseRecord(image=Blobs((120, 90), pts), keypoints=pts, visible=np.ones(3),
                               center=np.array([cx, cy]), scale=60.0, box=np.array([cx - 30, cy - 30, cx + 30, cy + 30]),
                               id=f"p{i}"))
    return recs


def _reference_heatmaps(rec, scales, flip, size=64, pairs=()):
    """CPM's scale search written out: crop at each scale (box / s about the centre), run, flip back (joints of
    ``pairs`` swapped), warp into the scale-1 heatmap frame (q -> input 4q + 1.5 -> s (x - c) + c -> heatmap
    (x - 1.5) / 4), average where covered."""
    img = rec.image.load()
    c = (size - 1) / 2.0
    hs = size // 4
    total, cover = np.zeros((hs, hs, 3)), np.zeros((hs, hs, 1))
    for s in scales:
        f = s * size / rec.scale
        m = np.array([[f, 0, c - f * rec.center[0]], [0, f, c - f * rec.center[1]]])
        crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0).astype(np.float32) / 255
        hm = _pose_net_numpy(crop)
        if flip:
            hm = 0.5 * (hm + _swap(_pose_net_numpy(crop[:, ::-1])[:, ::-1], pairs))
        a = np.array([[s, 0, (s * (1.5 - c) + c - 1.5) / 4], [0, s, (s * (1.5 - c) + c - 1.5) / 4]])
        kw = dict(flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        total += cv2.warpAffine(hm.astype(np.float32), a, (hs, hs), **kw)
        cover += cv2.warpAffine(np.ones((hs, hs), np.float32), a, (hs, hs), **kw)[..., None]
    return np.where(cover > 0, total / np.where(cover > 0, cover, 1), 0)


def _swap(hm, pairs):
    """Heatmaps ``(h, w, K)`` with the channels of each pair exchanged (the mirrored left wrist is the right one)."""
    order = list(range(hm.shape[-1]))
    for a, b in pairs:
        order[a], order[b] = b, a
    return hm[..., order]


def _decode_by_hand(hm, rec, size=64):
    """argmax + quarter step toward the higher neighbour, heatmap px -> input 4 g + 1.5 -> original px."""
    out = []
    for j in range(hm.shape[-1]):
        y, x = np.unravel_index(np.argmax(hm[..., j]), hm.shape[:2])
        px = x + 0.25 * np.sign(hm[y, x + 1, j] - hm[y, x - 1, j])
        py = y + 0.25 * np.sign(hm[y + 1, x, j] - hm[y - 1, x, j])
        f = size / rec.scale
        out.append([(4 * px + 1.5 - (size - 1) / 2) / f + rec.center[0],
                    (4 * py + 1.5 - (size - 1) / 2) / f + rec.center[1]])
    return np.array(out)


@agnostic
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("scales", [(0.8, 1.0, 1.25), (1.3, 0.7)], ids=["around-1", "without-1"])
def test_pose_heatmaps_averaged_over_scales_as_cpm(flip, scales):
    from training.tta import pose_heatmaps, pose_views

    recs = _pose_records()
    model = _pose_model(64, 3)
    ds = HeatmapDataset(recs, batch_size=2, input_size=(64, 64), heatmap_size=(16, 16), sigma=1.5, flip_pairs=(),
                        shuffle=False)
    views = pose_views(ds, scales)
    got = np.concatenate([pose_heatmaps(lambda x: [np.asarray(model.predict_on_batch(x))], views, b, flip=flip,
                                        flip_pairs=(), offset=1.5, check=lambda hm: None) for b in range(len(ds))])
    want = np.stack([_reference_heatmaps(r, scales, flip) for r in recs])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(want, np.stack([_reference_heatmaps(r, (1.0,), flip) for r in recs]), atol=1e-3)

    res = evaluate(model, ds, flip=flip, scales=scales, heatmap_offset=1.5, verbose=False)
    pred = np.array([[r["pred_x"], r["pred_y"]] for r in res.rows]).reshape(len(recs), 3, 2)
    hand = np.stack([_decode_by_hand(h, r) for h, r in zip(want, recs)])
    np.testing.assert_allclose(pred, hand, atol=1.5e-3)  # the CSV's 3 decimals
    truth = np.stack([r.keypoints for r in recs])
    # the blurred blob's peak, to within the quarter step (1 input px = 60/64 original px) and the kernel's lean
    assert np.abs(pred - truth).max() < 1.6 and res.mean == 1.0


@agnostic
def test_pose_scale_one_is_the_plain_evaluation():
    recs = _pose_records()
    model = _pose_model(64, 3)
    ds = HeatmapDataset(recs, batch_size=2, input_size=(64, 64), heatmap_size=(16, 16), sigma=1.5, flip_pairs=(),
                        shuffle=False)
    for flip in (False, True):
        a = evaluate(model, ds, flip=flip, heatmap_offset=1.5, verbose=False)
        b = evaluate(model, ds, flip=flip, heatmap_offset=1.5, scales=[1], verbose=False)
        assert a.rows == b.rows
        want = np.stack([_decode_by_hand(_reference_heatmaps(r, (1.0,), flip), r) for r in recs])
        pred = np.array([[r["pred_x"], r["pred_y"]] for r in a.rows]).reshape(len(recs), 3, 2)
        np.testing.assert_allclose(pred, want, atol=1.5e-3)


# ----------------------------------------------------------------------------- segmentation

WEIGHTS = np.array([[4.0, -2.0, 1.0], [-3.0, 5.0, 0.5], [0.5, 1.0, -4.0]], np.float32)  # rgb -> 3 class logits
BIAS = np.array([-0.5, -1.0, 1.2], np.float32)


def _seg_model(size=None):
    """A real Keras segmentation net with a known output: the (0.2, 0.5, 0.3) horizontal correlation of the
    colours (zero padded; lopsided, so that the mirrored pass differs), then logits = rgb/255 @ WEIGHTS + BIAS."""
    import keras

    inp = keras.Input((size, size, 3))
    blur = keras.layers.DepthwiseConv2D((1, 3), padding="same", use_bias=False)
    conv = keras.layers.Conv2D(3, 1)
    out = conv(blur(inp))
    blur.set_weights([np.tile(np.array(KERNEL, np.float32).reshape(1, 3, 1, 1), (1, 1, 3, 1))])
    conv.set_weights([WEIGHTS.reshape(1, 1, 3, 3), BIAS])
    return keras.Model(inp, out)


def _seg_net_numpy(x, logits=False):
    """The model above on one (H, W, 3) float image: class probabilities (or its logits)."""
    pad = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    x = KERNEL[0] * pad[:, :-2] + KERNEL[1] * pad[:, 1:-1] + KERNEL[2] * pad[:, 2:]
    z = x @ WEIGHTS.astype(np.float64) + BIAS
    if logits:
        return z
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _bilinear(p, u, v):
    """p read at (u, v) bilinearly, clamped to its edge."""
    gh, gw = p.shape[:2]
    u, v = np.clip(u, 0, gw - 1), np.clip(v, 0, gh - 1)
    x0, y0 = np.floor(u).astype(int), np.floor(v).astype(int)
    x1, y1 = np.minimum(x0 + 1, gw - 1), np.minimum(y0 + 1, gh - 1)
    fx, fy = (u - x0)[..., None], (v - y0)[..., None]
    return (1 - fy) * ((1 - fx) * p[y0, x0] + fx * p[y0, x1]) + fy * ((1 - fx) * p[y1, x0] + fx * p[y1, x1])


def _reference_probabilities(img, input_size, scales, flip, fixed, logits=False):
    """PSPNet's multi-scale test written out: the image letterboxed at s times its fit into the input (canvas
    round(s w) x round(s h), for a fixed-size net at least the input), windows of the input 2/3 apart over a larger
    canvas (probabilities averaged where they overlap), flipped pass averaged, read back bilinearly, averaged.
    ``logits``: the scores themselves (the plain evaluation's single pass)."""
    hh, ww = img.shape[:2]
    w, h = input_size
    acc = 0
    for s in scales:
        cw, ch = round(s * w), round(s * h)
        if fixed:
            cw, ch = max(cw, w), max(ch, h)
        f = s * w / max(ww, hh * w / h)
        m = np.array([[f, 0, (cw - 1) / 2 - f * (ww - 1) / 2], [0, f, (ch - 1) / 2 - f * (hh - 1) / 2]])
        canvas = cv2.warpAffine(img, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0).astype(np.float64) / 255

        def net(x):
            p = _seg_net_numpy(x, logits)
            return 0.5 * (p + _seg_net_numpy(x[:, ::-1])[:, ::-1]) if flip else p

        if not fixed or (cw, ch) == (w, h):
            probs = net(canvas)
        else:
            probs, count = np.zeros((ch, cw, 3)), np.zeros((ch, cw, 1))
            sx, sy = math.ceil(w * 2 / 3), math.ceil(h * 2 / 3)
            for iy in range(math.ceil((ch - h) / sy) + 1):
                for ix in range(math.ceil((cw - w) / sx) + 1):
                    x1, y1 = min(ix * sx + w, cw), min(iy * sy + h, ch)
                    probs[y1 - h:y1, x1 - w:x1] += net(canvas[y1 - h:y1, x1 - w:x1])
                    count[y1 - h:y1, x1 - w:x1] += 1
            probs /= count
        ys, xs = np.mgrid[0:hh, 0:ww].astype(np.float64)
        acc = acc + _bilinear(probs, m[0, 0] * xs + m[0, 2], m[1, 1] * ys + m[1, 2])
    return acc / len(scales)


def _seg_records(tmp_path, shapes, seed=0):
    rng = np.random.default_rng(seed)
    recs, masks, images = [], [], []
    for n, (w, h) in enumerate(shapes):
        small = rng.integers(0, 256, (5, 6, 3)).astype(np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)  # smooth colours: regions of each class
        mask = rng.integers(0, 3, (h, w)).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"i{n}.png"), img[..., ::-1])
        cv2.imwrite(str(tmp_path / f"m{n}.png"), mask)
        recs.append(SegRecord(image=str(tmp_path / f"i{n}.png"), mask=str(tmp_path / f"m{n}.png"), id=f"s{n}"))
        masks.append(mask)
        images.append(img)
    return recs, masks, images


def _confusion(preds, masks, c=3):
    cm = np.zeros((c, c), np.int64)
    for p, m in zip(preds, masks):
        cm += np.bincount(c * m.astype(int).ravel() + p.ravel(), minlength=c * c).reshape(c, c)
    return cm


@agnostic
@pytest.mark.parametrize("fixed", [False, True], ids=["any-size", "fixed-size"])
@pytest.mark.parametrize("flip", [False, True])
def test_segmentation_probabilities_averaged_over_scales_as_pspnet(tmp_path, fixed, flip):
    recs, masks, images = _seg_records(tmp_path, [(45, 31), (23, 60), (40, 40)])
    scales = (0.5, 0.75, 1.0, 1.5, 1.75)
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)
    res = evaluate(_seg_model(32 if fixed else None), ds, scales=scales, flip=flip, verbose=False)
    preds = [_reference_probabilities(im, (32, 32), scales, flip, fixed).argmax(-1) for im in images]
    np.testing.assert_array_equal(np.array(res.table["confusion"]), _confusion(preds, masks))
    # the scales change the answer (the per-pixel net sees the colours resampled at each size)
    plain = [_reference_probabilities(im, (32, 32), (1.0,), False, fixed).argmax(-1) for im in images]
    assert any((p != q).any() for p, q in zip(preds, plain))


def test_segmentation_windows_are_pspnets():
    from training.tta import windows

    # 32 px windows ceil(2/3 * 32) = 22 apart, ceil((n - 32) / 22) + 1 of them, the last flush with the edge
    assert windows((56, 32), (32, 32)) == ((0, 0), (22, 0), (24, 0))
    assert windows((80, 60), (32, 32)) == ((0, 0), (22, 0), (44, 0), (48, 0), (0, 22), (22, 22), (44, 22), (48, 22),
                                           (0, 28), (22, 28), (44, 28), (48, 28))
    assert windows((32, 32), (32, 32)) == ((0, 0),)


@agnostic
def test_segmentation_scale_one_without_flip_is_unchanged(tmp_path):
    recs, masks, images = _seg_records(tmp_path, [(45, 31), (23, 60)])
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)
    model = _seg_model(32)
    a = evaluate(model, ds, verbose=False)
    b = evaluate(model, ds, scales=(1.0,), verbose=False)
    assert a.table == b.table and a.rows == b.rows
    # a single pass is scored on its raw scores resampled (as before scales existed), not their softmax
    preds = [_reference_probabilities(im, (32, 32), (1.0,), False, True, logits=True).argmax(-1) for im in images]
    np.testing.assert_array_equal(np.array(a.table["confusion"]), _confusion(preds, masks))


@agnostic
def test_segmentation_flip_is_no_longer_ignored(tmp_path):
    recs, masks, images = _seg_records(tmp_path, [(45, 31), (23, 60), (40, 40)], seed=3)
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)
    res = evaluate(_seg_model(None), ds, flip=True, verbose=False)  # it was scored without the mirrored pass
    preds = [_reference_probabilities(im, (32, 32), (1.0,), True, False).argmax(-1) for im in images]
    np.testing.assert_array_equal(np.array(res.table["confusion"]), _confusion(preds, masks))
    plain = [_reference_probabilities(im, (32, 32), (1.0,), False, False).argmax(-1) for im in images]
    assert any((p != q).any() for p, q in zip(preds, plain))


# ----------------------------------------------------------------------------- bad scales


@agnostic
@pytest.mark.parametrize("scales", [(), (0,), (1.0, -0.5), (float("nan"),), (math.inf,), "1", 1.0, (True,), None])
def test_bad_scales_are_refused_naming_scales(tmp_path, scales):
    recs, _, _ = _seg_records(tmp_path, [(20, 20)])
    ds = SegmentationDataset(recs, batch_size=1, input_size=(32, 32), num_classes=3, shuffle=False)
    with pytest.raises(ValueError, match=r"evaluate: scales must be a non-empty sequence of finite numbers > 0"):
        evaluate(_seg_model(None), ds, scales=scales, verbose=False)
    pose = HeatmapDataset(_pose_records(), batch_size=2, input_size=(64, 64), heatmap_size=(16, 16), flip_pairs=())
    with pytest.raises(ValueError, match=r"scales="):
        evaluate(_pose_model(64, 3), pose, scales=scales, verbose=False)



# ----------------------------------------------------------------------------- predict (one image)


@agnostic
def test_predict_pose_averages_the_scales_as_cpm():
    from training.inference import predict

    pts = np.array([[20.3, 25.6], [40.2, 33.1], [30.6, 44.4]])
    rec = PoseRecord(image=Blobs((64, 64), pts), keypoints=pts, visible=np.ones(3), center=np.array([31.5, 31.5]),
                     scale=64.0)  # the letterbox of a 64 x 64 image into the 64 x 64 input: the whole image
    scales = (0.8, 1.0, 1.25)
    pred = predict(_pose_model(64, 3), rec.image.load(), heatmap_offset=1.5, scales=scales)
    want = _reference_heatmaps(rec, scales, False)
    np.testing.assert_allclose(pred.output, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pred.keypoints, _decode_by_hand(want, rec), atol=1e-6)


@agnostic
@pytest.mark.parametrize("fixed", [False, True], ids=["any-size", "fixed-size"])
def test_predict_segmentation_averages_the_scales_as_pspnet(tmp_path, fixed):
    from training.inference import predict

    _, _, images = _seg_records(tmp_path, [(45, 31)], seed=5)
    scales = (0.5, 1.0, 1.5)
    pred = predict(_seg_model(32 if fixed else None), images[0], name="x", scales=scales)
    # a model of any size takes the image itself at scale 1; a fixed one the image fitted into its 32 x 32 input
    base = (32, 32) if fixed else (45, 31)
    want = _reference_probabilities(images[0], base, scales, False, fixed)
    np.testing.assert_array_equal(pred.mask, want.argmax(-1))
    assert pred.output.shape == (31, 45, 3)  # the averaged probabilities the mask came from, on the image
    np.testing.assert_allclose(pred.output, want, atol=1e-5)


def _seg_model_of_width(width):
    """:func:`_seg_model` with an open height and a fixed width: a row mean over ``width`` px, times 0, is added to
    the logits (numerically :func:`_seg_net_numpy`), so that an input of another width fails, as a PSPNet's pooling
    of a fixed size does (JAX: no columns for 16 px, 32 upsampled columns against 48)."""
    import keras

    inp = keras.Input((None, width, 3))
    blur = keras.layers.DepthwiseConv2D((1, 3), padding="same", use_bias=False)
    conv = keras.layers.Conv2D(3, 1)
    rows = keras.layers.Conv2D(3, 1, kernel_initializer="zeros")(keras.layers.AveragePooling2D((1, width))(inp))
    out = keras.layers.Add()([conv(blur(inp)), keras.layers.UpSampling2D((1, width))(rows)])
    blur.set_weights([np.tile(np.array(KERNEL, np.float32).reshape(1, 3, 1, 1), (1, 1, 3, 1))])
    conv.set_weights([WEIGHTS.reshape(1, 1, 3, 3), BIAS])
    return keras.Model(inp, out)


@agnostic
@pytest.mark.parametrize("flip", [False, True])
def test_a_model_with_one_open_axis_is_fixed_size_under_scales(tmp_path, flip):
    """Input shape (None, 32, 3): predict took it for a model of any size and fed scale s canvases round(32 s) px
    wide (a Keras error, or a wrong answer where the width is not checked); like evaluate, it now slides 32 px wide
    windows, the height the image's at scale 1 (predict) or the input's (evaluate)."""
    from training.inference import predict

    recs, masks, images = _seg_records(tmp_path, [(45, 31)], seed=5)
    scales = (0.5, 1.0, 1.5)
    pred = predict(_seg_model_of_width(32), images[0], name="x", scales=scales, flip=flip)
    want = _reference_probabilities(images[0], (32, 31), scales, flip, fixed=True)
    np.testing.assert_array_equal(pred.mask, want.argmax(-1))
    np.testing.assert_allclose(pred.output, want, atol=1e-5)
    ds = SegmentationDataset(recs, batch_size=1, input_size=(32, 32), num_classes=3, shuffle=False)
    res = evaluate(_seg_model_of_width(32), ds, scales=scales, flip=flip, verbose=False)
    want = _reference_probabilities(images[0], (32, 32), scales, flip, fixed=True).argmax(-1)
    np.testing.assert_array_equal(np.array(res.table["confusion"]), _confusion([want], masks))


@agnostic
def test_predict_refuses_base_size_for_a_model_with_an_open_axis_naming_its_shape(tmp_path):
    from training.inference import predict

    _, _, images = _seg_records(tmp_path, [(45, 31)], seed=5)
    with pytest.raises(ValueError, match=r"predict: base_size is PSPNet's test for a segmentation model of a fixed "
                                         r"input size \(its windows\); x is a model that takes any height \(input "
                                         r"shape \(None, 32, 3\)\)"):
        predict(_seg_model_of_width(32), images[0], name="x", base_size=40)


@agnostic
def test_predict_refuses_bad_scales_and_scales_for_a_classifier():
    import keras

    from training.inference import predict

    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"predict: scales must be a non-empty sequence"):
        predict(_seg_model(None), img, scales=(0.0, 1.0))
    inp = keras.Input((32, 32, 3))
    clf = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp)))
    with pytest.raises(ValueError, match=r"predict: scales are for pose and segmentation models"):
        predict(clf, img, scales=(1.0, 2.0))


# ----------------------------------------------------------------------------- predict(flip=True)


def _pose_record(pairs, offset):
    """Pixels / 255 (as the NumPy net takes them), the given left/right pairs and heatmap offset."""
    import zoo

    return zoo.WeightsRecord(scale=1 / 255, flip_pairs=pairs, heatmap_offset=offset)


@agnostic
def test_predict_flip_swaps_the_pairs_and_shifts_for_the_offset():
    """Heatmap pixel g at input px 4 g + 0.5: the mirrored pass's map, flipped back, lies (4 - 1 - 2 * 0.5) / 4 = 0.5
    heatmap px left of the plain one's, so it is moved right by half a pixel (the edge column repeated); joints 0
    and 2 are a left/right pair, so joint 0's map is averaged with the mirrored pass's joint-2 map."""
    from training.inference import predict

    pts = np.array([[20.3, 25.6], [40.2, 33.1], [-50.0, -50.0]])  # joint 2 out of sight: its channel is black
    image = Blobs((64, 64), pts).load()  # 64 x 64 into the 64 x 64 input: the crop is the image
    pred = predict(_pose_model(64, 3), image, record=_pose_record(((0, 2),), 0.5), flip=True)
    crop = image.astype(np.float64) / 255
    back = _swap(_pose_net_numpy(crop[:, ::-1])[:, ::-1], ((0, 2),))
    back = 0.5 * (np.concatenate([back[:, :1], back[:, :-1]], axis=1) + back)  # back[g - 0.5]
    want = 0.5 * (_pose_net_numpy(crop) + back)
    np.testing.assert_allclose(pred.output, want, rtol=1e-5, atol=1e-6)
    rec = PoseRecord(image=None, keypoints=pts, visible=np.ones(3), center=np.array([31.5, 31.5]), scale=64.0)
    np.testing.assert_allclose(pred.keypoints, _decode_by_hand(want, rec) - 1.0, atol=1e-6)  # offset 0.5, not 1.5
    # the swap shows: the mirrored pass's joint 0 is taken as joint 2, found where joint 0 is; without the
    # pair joint 2's map stays empty (no keypoint). Within 2 px: 4 px heatmap cells decoded to a quarter cell
    assert np.abs(pred.keypoints[[0, 2]] - pts[0]).max() < 2.0
    alone = predict(_pose_model(64, 3), image, record=_pose_record((), 0.5), flip=True)
    assert np.abs(alone.keypoints[:2] - pts[:2]).max() < 2.0 and np.isnan(alone.keypoints[2]).all()


@agnostic
def test_predict_flip_with_scales_is_cpms_test():
    from training.inference import predict

    pts = np.array([[20.3, 25.6], [40.2, 33.1], [30.6, 44.4]])
    rec = PoseRecord(image=Blobs((64, 64), pts), keypoints=pts, visible=np.ones(3), center=np.array([31.5, 31.5]),
                     scale=64.0)
    scales = (0.8, 1.0, 1.25)
    pred = predict(_pose_model(64, 3), rec.image.load(), record=_pose_record(((2, 0),), 1.5), scales=scales,
                   flip=True)
    want = _reference_heatmaps(rec, scales, True, pairs=((2, 0),))
    np.testing.assert_allclose(pred.output, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pred.keypoints, _decode_by_hand(want, rec), atol=1e-6)
    assert not np.allclose(want, _reference_heatmaps(rec, scales, False), atol=1e-3)  # the mirror counted


@agnostic
@pytest.mark.parametrize("scales", [(1.0,), (0.5, 1.0, 1.5)], ids=["scale-1", "scales"])
@pytest.mark.parametrize("fixed", [False, True], ids=["any-size", "fixed-size"])
def test_predict_segmentation_flip_averages_the_mirrored_probabilities(tmp_path, fixed, scales):
    from training.inference import predict

    _, _, images = _seg_records(tmp_path, [(45, 31)], seed=5)
    pred = predict(_seg_model(32 if fixed else None), images[0], name="x", scales=scales, flip=True)
    base = (32, 32) if fixed else (45, 31)
    want = _reference_probabilities(images[0], base, scales, True, fixed)
    np.testing.assert_array_equal(pred.mask, want.argmax(-1))
    # output: the averaged probabilities the mask came from, on the 45 x 31 image (was the scale-1 pass's raw scores)
    assert pred.output.shape == (31, 45, 3)
    np.testing.assert_allclose(pred.output, want, atol=1e-5)
    assert (want.argmax(-1) != _reference_probabilities(images[0], base, scales, False, fixed).argmax(-1)).any()


@agnostic
def test_predict_flip_is_refused_without_flip_pairs_and_for_a_classifier():
    import keras

    from training.inference import predict

    img = np.zeros((64, 64, 3), np.uint8)
    for record in (None, _pose_record(None, 1.5)):  # a converted .keras has no record; a run's has no pairs
        with pytest.raises(ValueError, match=r"predict: flip needs the keypoints' left/right pairs, and the "
                                             r"model's record has no flip pairs"):
            predict(_pose_model(64, 3), img, name="hourglass", record=record, flip=True)
    with pytest.raises(ValueError, match=r"predict: flip must be True or False.*flip='yes'"):
        predict(_pose_model(64, 3), img, flip="yes")
    inp = keras.Input((32, 32, 3))
    clf = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp)))
    with pytest.raises(ValueError, match=r"predict: flip is for pose and segmentation models"):
        predict(clf, img[:32, :32], flip=True)


@agnostic
def test_predict_flip_of_a_model_of_any_size_on_a_width_not_a_multiple_of_its_stride():
    """A model of any size (pad right and down to a multiple of 4, 4 x 4 mean: heatmap pixel g at input px 4 g + 1.5
    for every width) on a 50 x 44 image: 13 x 11 maps, stride 4 (not 50 / 13). Mirrored, input px x is at 49 - x,
    its map peak at (49 - x - 1.5) / 4, flipped back (g -> 12 - g) at (x + 0.5) / 4: half a heatmap px right of the
    plain pass's (x - 1.5) / 4, so it moves left by 0.5 (the edge column repeated). 50 / 13 as the stride moved it
    by 0.04 and the flipped keypoints came out ~2 px right."""
    import keras

    from training.inference import predict

    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.AveragePooling2D(4)(keras.layers.ZeroPadding2D(((0, 3), (0, 3)))(inp)))

    def net(x):  # (44, 50, 3) -> (11, 13, 3)
        p = np.pad(x, ((0, 0), (0, 2), (0, 0)))
        return p.reshape(11, 4, 13, 4, 3).mean((1, 3))

    pts = np.array([[20.3, 17.6], [30.2, 23.1], [12.6, 25.4]])
    image = Blobs((50, 44), pts).load()
    pred = predict(model, image, record=_pose_record((), 1.5), flip=True)
    crop = image.astype(np.float64) / 255
    back = net(crop[:, ::-1])[:, ::-1]
    back = 0.5 * (back + np.concatenate([back[:, 1:], back[:, -1:]], axis=1))  # back[g + 0.5]
    want = 0.5 * (net(crop) + back)
    np.testing.assert_allclose(pred.output, want, rtol=1e-5, atol=1e-6)
    plain = predict(model, image, record=_pose_record((), 1.5))
    assert np.abs(pred.keypoints - plain.keypoints).max() < 0.5 and np.abs(pred.keypoints - pts).max() < 1.0


@agnostic
def test_a_scale_whose_canvas_is_too_small_for_a_model_of_any_size_is_refused_naming_scales(tmp_path):
    """A model of any size with an 8 x 8 pooling: scale 0.1 of a 32 x 32 input is a 3 x 3 canvas, for which it gives
    no score (JAX: a 0 x 0 map, which was a ZeroDivisionError; TensorFlow: Keras' own error, naming a layer)."""
    import keras

    from training.inference import predict

    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.Conv2D(3, 1)(keras.layers.AveragePooling2D(8)(inp)))
    recs, _, images = _seg_records(tmp_path, [(45, 31), (23, 60)])
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)
    assert np.isfinite(evaluate(model, ds, scales=(0.5, 1.0), verbose=False).mean)  # 16 x 16: a 2 x 2 map
    with pytest.raises(ValueError, match=r"^evaluate: the model .* the 3x3 canvas of scales=\(0\.1, 1\.0\)"
                                         r".*choose (larger|other) scales"):
        evaluate(model, ds, scales=(0.1, 1.0), verbose=False)
    with pytest.raises(ValueError, match=r"^fcn8s .*4x3 scaled image.*choose (larger|other) scales"):
        predict(model, images[0], name="fcn8s", scales=(0.1, 1.0))


@agnostic
@pytest.mark.parametrize("fixed", [False, True], ids=["any-size", "fixed-size"])
def test_scales_whose_canvases_cannot_fit_in_memory_are_refused_naming_scales(tmp_path, fixed):
    """Scale 5000 of a 32 px input: 160000 x 160000 canvases, a batch of 2 at 16 bytes a pixel (float32 image, int32
    labels) and 2 x 4 x 3 bytes of probabilities: ~1.9 TB, refused before anything is made (it went on to make the
    canvases: OpenCV's "Failed to allocate 76800000000 bytes" here; a scale that needs less than that but more than
    the machine has got a process killed for memory part way). predict: a 45 x 31 image into a fixed 32 x 32 input,
    or at its own size."""
    from training.inference import predict

    recs, _, images = _seg_records(tmp_path, [(45, 31), (23, 60)])
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)
    model = _seg_model(32 if fixed else None)
    need = 2 * 160000 ** 2 * (16 + 8 * 3) / 2 ** 30
    with pytest.raises(ValueError, match=rf"^evaluate: scales=\(1\.0, 5000\.0\) make canvases up to 160000x160000 px, "
                                         rf"which need about {need:,.1f} GiB of host memory for a batch of 2 \(3 class "
                                         rf"probabilities per pixel\), more than this machine's .* GiB; choose smaller"):
        evaluate(model, ds, scales=(1.0, 5000.0), verbose=False)
    side = (160000, 160000) if fixed else (225000, 155000)
    with pytest.raises(ValueError, match=rf"^predict: scales=\(1\.0, 5000\.0\) make canvases up to {side[0]}x{side[1]} "
                                         rf"px, .* for one image \(3 class probabilities per pixel\)"):
        predict(model, images[0], name="x", scales=(1.0, 5000.0))
