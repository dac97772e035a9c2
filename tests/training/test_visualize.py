"""Pictures: drawn where the coordinates say, written atomically."""

import re
import warnings
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import zoo
from training import inference, visualize

# Most tests here are NumPy/OpenCV only (nothing a Keras backend computes) and run in ./dev test's TensorFlow
# pass alone; those that build or run a Keras model are marked backend_agnostic one by one, for its JAX pass too.


def test_keypoints_are_drawn_at_their_coordinates():
    img = np.zeros((64, 64, 3), np.uint8)
    kp = np.array([[10.0, 20.0], [40.0, 50.0]])
    out = visualize.draw_keypoints(img, kp, skeleton=[(0, 1)], color=(255, 0, 0))
    assert out[20, 10, 0] == 255 and out[50, 40, 0] == 255
    assert out[35, 25, 0] > 0  # the edge between them
    hidden = visualize.draw_keypoints(img, kp, visible=[True, False], skeleton=[(0, 1)], color=(255, 0, 0))
    assert hidden[50, 40, 0] == 0 and hidden[35, 25, 0] == 0
    assert img.max() == 0  # input untouched


def test_heatmap_grid_and_mask_overlay(tmp_path):
    hm = np.zeros((8, 8, 5), np.float32)
    hm[2, 3, 1] = 1.0
    grid = visualize.heatmap_grid(hm, cell=16)
    assert grid.shape == (2 * 16, 3 * 16, 3)  # 5 maps: 3 columns, 2 rows
    mask = np.zeros((10, 10), np.int32)
    mask[:5] = 1
    mask[0, 0] = 255
    img = np.full((10, 10, 3), 100, np.uint8)
    over = visualize.mask_overlay(img, mask)
    assert (over[9, 9] == 100).all() and (over[0, 0] == 100).all() and not (over[3, 3] == 100).all()
    path = visualize.write_png(tmp_path / "a" / "m.png", over)
    back = cv2.imread(str(path))[..., ::-1]
    np.testing.assert_array_equal(back, over)
    assert not list((tmp_path / "a").glob(".*"))


def test_voc_palette_matches_known_colours():
    pal = visualize.voc_palette()
    assert tuple(pal[1]) == (128, 0, 0) and tuple(pal[15]) == (192, 128, 128)


def test_training_curve_from_csv(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("epoch,loss,pck\n0,1.0,0.1\n1,0.5,0.6\n2,0.2,0.9\n")
    img = visualize.training_curve(p)
    assert img.shape == (320, 480, 3) and img.min() < 255


# ----------------------------------------------------------------------------- predict
# (training.inference; still importable from training.visualize, where it used to be)
# Duck-typed models: ``predict`` needs ``inputs`` (shape, dtype), ``predict_on_batch(x)`` and ``name``;
# their outputs are plain NumPy functions of what they are fed, so the true answer is known by hand.


class _Duck:
    def __init__(self, shape, fn, *, centre_map=False, dtype="float32", name="duck"):
        self.inputs = [SimpleNamespace(shape=(None, *shape), dtype=dtype)]
        if centre_map:
            self.inputs.append(SimpleNamespace(shape=(None, *shape[:2], 1), dtype="float32"))
        self.fn, self.name, self.fed = fn, name, None

    def predict_on_batch(self, x):
        self.fed = x
        return self.fn(x)


def _planes(x):
    """The image's own R, G, B planes as three heatmaps / class scores."""
    return x


def _fixed(maps):
    """A model whose output is ``maps`` whatever it is fed."""
    return lambda x: np.asarray(maps, np.float32)[None]


def _peaks(h, w, points):
    """Heatmaps ``(h, w, K)`` with a symmetric peak at each integer (x, y): decoded exactly there."""
    maps = np.zeros((h, w, len(points)), np.float32)
    for k, (x, y) in enumerate(points):
        maps[y, x, k] = 1.0
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            if 0 <= x + dx < w and 0 <= y + dy < h:
                maps[y + dy, x + dx, k] = 0.5
    return maps


def test_predict_takes_grey_rgba_16_bit_and_float_images_as_rgb():
    model = _Duck((16, 16, 3), _planes)
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., :] = (40, 80, 120)
    for c, (x, y) in enumerate([(5, 2), (9, 13), (12, 7)]):
        rgb[y, x, c] = 250
    want = inference.predict(model, rgb, name="hourglass")
    np.testing.assert_array_equal(want.keypoints, [[5, 2], [9, 13], [12, 7]])
    grey = rgb[..., 0]
    for image, same in [(grey, np.dstack([grey] * 3)),  # was an IndexError deep in the model's input
                        (grey[..., None], np.dstack([grey] * 3)),
                        (np.dstack([rgb, np.full((16, 16), 7, np.uint8)]), rgb),  # alpha: was a broadcast error
                        (rgb / 255.0, rgb),  # floats in [0, 1]: were truncated to 0 (a black picture)
                        (rgb.astype(np.float32), rgb),
                        (rgb.astype(np.uint16) * 257, rgb)]:  # 16-bit: 65535 is white
        got = inference.predict(model, image, name="hourglass")
        ref = inference.predict(model, same, name="hourglass")
        np.testing.assert_array_equal(got.keypoints, ref.keypoints)
        np.testing.assert_array_equal(got.picture, ref.picture)
    sixteen = rgb.astype(np.uint16) << 8  # high byte only: astype(uint8) kept the low byte (all 0, black)
    got = inference.predict(model, sixteen, name="hourglass")
    np.testing.assert_array_equal(got.picture, inference.predict(model, np.round(sixteen / 257).astype(np.uint8),
                                                                 name="hourglass").picture)
    assert got.picture[0, 0].tolist() == [40, 80, 120]  # 40 * 256 / 257 = 39.84 -> 40, 120 -> 119.53 -> 120
    for bad in (np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros((4,), np.uint8)):
        with pytest.raises(ValueError, match=r"image must be a non-empty .* Received shape"):
            inference.predict(model, bad, name="hourglass")


def test_letterbox_fits_the_whole_image_into_a_non_square_input():
    # Landscape input 16 x 12, portrait image 24 x 40: scale min(16/24, 12/40) = 0.3, the image's centre
    # (11.5, 19.5) on the input's (7.5, 5.5). The width alone (16/40) cut the top and bottom off.
    peaks = [(5, 0), (10, 11), (7, 6)]
    model = _Duck((12, 16, 3), _fixed(_peaks(12, 16, peaks)))
    want = [[(x - 7.5) / 0.3 + 11.5, (y - 5.5) / 0.3 + 19.5] for x, y in peaks]
    np.testing.assert_allclose(inference.predict(model, np.zeros((40, 24, 3), np.uint8), name="hourglass").keypoints,
                               want, atol=1e-9)
    # a stride-4 map of a 16 x 12 input: heatmap px * 4
    model = _Duck((12, 16, 3), _fixed(_peaks(3, 4, [(1, 1), (3, 2)])))
    np.testing.assert_allclose(inference.predict(model, np.zeros((40, 24, 3), np.uint8), name="hourglass").keypoints,
                               [[(4 - 7.5) / 0.3 + 11.5, (4 - 5.5) / 0.3 + 19.5],
                                [(12 - 7.5) / 0.3 + 11.5, (8 - 5.5) / 0.3 + 19.5]], atol=1e-9)
    # an image a pixel larger than a portrait input is seen at nearly its size (12/13), not at 12/17
    model = _Duck((16, 12, 3), _planes)
    predicted = inference.predict(model, np.full((17, 13, 3), 200, np.uint8), name="pspnet")
    lit = np.argwhere(model.fed[0].max(-1) > 0.5)
    assert lit.min(0).tolist() == [0, 0] and lit.max(0).tolist() == [15, 11], (lit.min(0), lit.max(0))
    assert predicted.mask.shape == (17, 13)
    # segmentation: a green band along the top of a tall image was cut off (mask: red, class 0)
    image = np.zeros((50, 21, 3), np.uint8)
    image[:, :, 0] = 255
    image[:10, :, :] = (0, 255, 0)
    mask = inference.predict(_Duck((12, 16, 3), _planes), image, name="pspnet").mask
    assert (mask[:7] == 1).all() and (mask[13:] == 0).all(), mask[:, 10]


def test_the_letterbox_is_padded_with_the_records_mean_pixel():
    """CPM's test pads with grey 128 (BGR / 256 - 0.5: 0 once normalised), pose-hg-train's crop with black (RGB / 255),
    PSPNet's and FCN's with their mean: the pixel each record's normalisation maps to 0. predict padded black, fed to a
    CPM as -0.5 and to a BGR-mean model as -mean."""
    image = np.full((8, 16, 3), 200, np.uint8)  # letterboxed into 16x16: rows 4-11 the image, 0-2 and 13-15 padding
    for record, pad in ((zoo.WeightsRecord(channel_order="BGR", scale=1 / 256, mean=(0.5,) * 3), 0.0),
                        (zoo.WeightsRecord(scale=1 / 255), 0.0),
                        (zoo.WeightsRecord(channel_order="BGR", mean=(103.939, 116.779, 123.68)),
                         np.round((123.68, 116.779, 103.939))[::-1] - (103.939, 116.779, 123.68))):
        for scales in ((1.0,), (0.5, 1.0)):
            model = _Duck((16, 16, 3), _planes)
            fed = []
            model.predict_on_batch = lambda x, fed=fed: fed.append(np.array(x)) or _planes(x)
            inference.predict(model, image, name="hourglass", record=record, scales=scales)
            for x in fed:
                np.testing.assert_allclose(x[0, :3], np.broadcast_to(pad, (3, 16, 3)), atol=1e-5)
                np.testing.assert_allclose(x[0, 13:], np.broadcast_to(pad, (3, 16, 3)), atol=1e-5)
    fed = []  # no record: pixels / 255 and black padding, as before
    model = _Duck((16, 16, 3), _planes)
    model.predict_on_batch = lambda x: fed.append(np.array(x)) or _planes(x)
    inference.predict(model, image, name="hourglass")
    assert (fed[0][0, :3] == 0).all() and (fed[0][0, 5:11] == np.float32(200 / 255)).all()


def test_keypoints_with_different_strides_across_and_down():
    # input 16 x 12, maps 8 x 4: strides 2 across, 3 down. Joint 0 peaks at (5, 2) with its right and
    # lower neighbours above its left and upper ones: training's quarter offset -> (5.25, 2.25) -> (10.5, 6.75).
    maps = np.zeros((4, 8, 4), np.float32)
    maps[2, 5, 0], maps[2, 6, 0], maps[2, 4, 0], maps[3, 5, 0], maps[1, 5, 0] = 1.0, 0.6, 0.2, 0.6, 0.2
    maps[..., 2] = np.nan  # joint 1 all zero, joint 2 NaN: no keypoint (were (0, 0), drawn in the corner)
    maps[0, 7, 3] = 2.0  # joint 3 in the corner: no neighbours on one side, no offset
    stacked = _Duck((12, 16, 3), lambda x: [np.zeros((1, 4, 8, 4), np.float32), maps[None]])  # the last output
    got = inference.predict(stacked, np.zeros((12, 16, 3), np.uint8), name="hourglass").keypoints
    np.testing.assert_allclose(got[[0, 3]], [[10.5, 6.75], [14.0, 0.0]], atol=1e-9)
    assert np.isnan(got[1:3]).all()


def test_centre_crop_of_a_thin_strip_does_not_enlarge_all_of_it():
    import tracemalloc

    strip = np.random.default_rng(2).integers(0, 256, (2000, 3, 3)).astype(np.uint8)
    tracemalloc.start()
    try:
        crop = inference._centre_crop(strip, (224, 224))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert crop.shape == (224, 224, 3)
    assert peak < 5e6, peak  # was 2000 * 85.3 rows x 256 x 3 = 131 MB, to keep 224 x 224 x 3
    small = np.random.default_rng(3).integers(0, 256, (20, 30, 3)).astype(np.uint8)  # enlarged x 1.83
    ref = cv2.resize(small, (55, 37), interpolation=cv2.INTER_LINEAR)[2:34, 11:43]  # resize, then crop
    assert np.abs(inference._centre_crop(small, (32, 32)).astype(int) - ref).max() <= 1


def test_cpm_parts_are_drawn_with_cpm_limbs():
    import zoo
    from zoo.releases import CPM_PARTS

    parts = [(2 + (k % 5) * 3, 1 + (k // 5) * 5) for k in range(14)]
    maps = np.concatenate([_peaks(16, 16, parts), np.full((16, 16, 1), 5.0, np.float32)], -1)  # + background
    model = _Duck((16, 16, 3), _fixed(maps), centre_map=True)
    model._zoo_record = zoo.WeightsRecord(keypoint_names=CPM_PARTS)
    image = np.zeros((16, 16, 3), np.uint8)
    pred = inference.predict(model, image, name="cpm")
    np.testing.assert_array_equal(pred.keypoints, parts)  # the background map (largest) is no keypoint
    # the centre map peaks where the image's centre is, (7.5, 7.5) as in training (not the demo's 16 // 2)
    grid = np.arange(16.0) - 7.5
    want = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 21.0 ** 2))
    np.testing.assert_allclose(model.fed[1], want[None, :, :, None], rtol=1e-6)
    # the limbs by name, written out: head-neck, neck-shoulders, arms, shoulder-hip, legs
    name = {n: i for i, n in enumerate(CPM_PARTS)}
    limbs = [("head", "neck"), ("neck", "r_shoulder"), ("neck", "l_shoulder")] + [
        (f"{s}_{a}", f"{s}_{b}") for s in "rl" for a, b in [("shoulder", "elbow"), ("elbow", "wrist"),
                                                            ("shoulder", "hip"), ("hip", "knee"), ("knee", "ankle")]]
    assert sorted(tuple(sorted((name[a], name[b]))) for a, b in limbs) == sorted(
        tuple(sorted(e)) for e in visualize.CPM_SKELETON)
    np.testing.assert_array_equal(pred.picture, visualize.draw_keypoints(image, parts, skeleton=visualize.CPM_SKELETON))
    assert not np.array_equal(pred.picture, visualize.draw_keypoints(image, parts))  # LSP's limbs (K = 14): wrong
    model._zoo_record = zoo.WeightsRecord(keypoint_names=tuple(f"j{i}" for i in range(14)))  # an unknown order
    np.testing.assert_array_equal(inference.predict(model, image, name="cpm").picture,
                                  visualize.draw_keypoints(image, parts, skeleton=()))


def test_a_model_of_any_size_decodes_with_its_integer_stride():
    def stride4(x):  # "same"-padded stride 4: ceil(50 / 4) = 13 columns, ceil(13 / 4) = 4 rows
        hm = np.zeros((1, -(-x.shape[1] // 4), -(-x.shape[2] // 4), 2), np.float32)
        hm[0, :, :, :] = _peaks(hm.shape[1], hm.shape[2], [(12, 3), (5, 1)])
        return hm

    model = _Duck((None, None, 3), stride4)
    got = inference.predict(model, np.zeros((13, 50, 3), np.uint8), name="hourglass").keypoints
    np.testing.assert_allclose(got, [[48, 12], [20, 4]], atol=1e-9)  # was 50/13 and 13/4 per px: (46.2, 9.75)
    fixed = _Duck((13, 50, 3), stride4)  # a fixed input: training's codec, input / map px
    np.testing.assert_allclose(inference.predict(fixed, np.zeros((13, 50, 3), np.uint8), name="hourglass").keypoints,
                               [[12 * 50 / 13, 3 * 13 / 4], [5 * 50 / 13, 13 / 4]], atol=1e-9)


def test_a_model_of_any_size_that_refuses_the_image_says_so():
    def picky(x):
        if x.shape[1] % 8:
            raise TypeError("Exception encountered when calling Concatenate.call().\n\nshapes (1, 6, 8, 32) ...")
        return x

    model = _Duck((None, None, 3), picky, name="picky")
    # Keras' wrapping of a layer's error dropped: its first line was all the message said
    with pytest.raises(ValueError, match=r"hourglass takes inputs of any size, but not this 70x50 image "
                                         r"\(TypeError: shapes \(1, 6, 8, 32\) \.\.\.\); resize or pad it"):
        inference.predict(model, np.zeros((50, 70, 3), np.uint8), name="hourglass")
    assert inference.predict(model, np.zeros((48, 70, 3), np.uint8), name="hourglass").keypoints.shape == (3, 2)
    with pytest.raises(ValueError, match=r"^picky takes inputs of any size"):
        inference.predict(model, np.zeros((50, 70, 3), np.uint8))


@pytest.mark.backend_agnostic
def test_an_image_a_model_refuses_leaves_the_model_working():
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(2, 1, name="head")(inputs)
    x = keras.layers.Add()([x, keras.layers.UpSampling2D(2)(keras.layers.MaxPooling2D(2)(x))])  # even sizes only
    model = keras.Model(inputs, x, name="evens")
    kernel = model.get_layer("head").get_weights()[0]
    image = np.zeros((6, 8, 3), np.uint8)
    image[2, 5, 0] = 255
    before = inference.predict(model, image, name="hourglass").keypoints
    with pytest.raises(ValueError, match=r"hourglass takes inputs of any size, but not this 7x5 image"):
        inference.predict(model, np.zeros((5, 7, 3), np.uint8), name="hourglass")
    # Keras' predict() on JAX had emptied the weights: "'NoneType' object is not callable" from then on
    np.testing.assert_array_equal(inference.predict(model, image, name="hourglass").keypoints, before)
    np.testing.assert_array_equal(model.get_layer("head").get_weights()[0], kernel)


def test_nan_class_scores_never_win():
    model = _Duck((8, 8, 3), _fixed([np.nan, 1.0, 3.0, 2.0]))
    top = inference.predict(model, np.zeros((8, 8, 3), np.uint8), name="resnet50").top
    e = np.exp([1.0 - 3, 0, 2.0 - 3])  # the softmax of the others, by hand
    assert [l for l, _ in top] == ["class 2", "class 3", "class 1", "class 0"]  # was NaN first, all NaN
    np.testing.assert_allclose([p for _, p in top], [*(np.array([e[1], e[2], e[0]]) / e.sum()), 0.0])
    top = inference.predict(_Duck((8, 8, 3), _fixed([np.nan] * 3)), np.zeros((8, 8, 3), np.uint8), name="resnet50").top
    assert [p for _, p in top] == [0.0] * 3


def test_keypoints_too_far_for_opencv_are_not_drawn():
    img = np.zeros((10, 10, 3), np.uint8)
    out = visualize.draw_keypoints(img, [[1e12, 5.0], [5.0, 5.0]], skeleton=[(0, 1)], color=(255, 0, 0))  # was cv2.error
    np.testing.assert_array_equal(out, visualize.draw_keypoints(img, [[5.0, 5.0]], color=(255, 0, 0)))


def test_write_png_keeps_grey_rgba_and_float_images_the_right_way_round(tmp_path):
    grey = np.tile(np.arange(8, dtype=np.uint8) * 30, (4, 1))  # a left-to-right ramp
    back = cv2.imread(str(visualize.write_png(tmp_path / "g.png", grey)))
    np.testing.assert_array_equal(back, np.repeat(grey[..., None], 3, axis=2))  # was mirrored left-right
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255  # red, opaque
    back = cv2.imread(str(visualize.write_png(tmp_path / "c.png", rgba)))
    assert (back[..., ::-1] == (200, 0, 0)).all()  # was written as ABGR
    back = cv2.imread(str(visualize.write_png(tmp_path / "f.png", np.full((2, 2, 3), 0.5, np.float32))))
    assert (back == 128).all()  # float in [0, 1] -> round(0.5 * 255); was 0 (black)


def test_training_curve_leaves_gaps_for_missing_and_nan_values(tmp_path):
    p = tmp_path / "log.csv"
    # val_loss: empty in row 1, missing in the short row 3 (was a TypeError); loss NaN in epoch 2
    p.write_text("epoch,loss,val_loss\n0,1.0,2.0\n1,0.5,\n2,nan,1.0\n3,0.25\n")
    img = visualize.training_curve(p, keys=["loss"])
    # plot box x 40..470, y 10..280: epochs at x = 40 + 430 i / 3 = 40, 183, 327, 470; loss 1.0 at the
    # top (y 10) to 0.5 (y 190): a line in x 40..183 and nothing between epoch 1 and epoch 3 (NaN in 2)
    coloured = img.astype(int).max(-1) - img.astype(int).min(-1) > 60
    assert coloured[10:191, 40:184].any()
    assert not coloured[12:279, 200:465].any()  # was a line to int32 garbage coordinates
    assert coloured[278:283, 465:475].any()  # epoch 3 (0.25, the minimum) alone: a dot at (470, 280)
    both = visualize.training_curve(p)
    assert both.shape == (320, 480, 3)
    q = tmp_path / "empty.csv"
    q.write_text("epoch,loss\n0,nan\n1,\n")
    assert (visualize.training_curve(q)[12:279, 42:469] == 255).all()  # nothing to draw, no crash


def test_heatmap_grid_shows_nan_as_zero_and_takes_grey_images():
    jet0 = cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_JET)[0, 0, ::-1]  # RGB of 0
    hm = np.zeros((4, 4, 2), np.float32)
    hm[..., 1] = np.nan
    with np.errstate(invalid="raise"):  # NaN -> uint8 is undefined (platform-dependent): was a warning here
        grid = visualize.heatmap_grid(hm, cell=8)
    assert (grid == jet0).all()  # all-zero and all-NaN maps: the colour of 0, not white or noise
    grey = visualize.heatmap_grid(hm[..., :1], np.full((6, 6), 100, np.uint8), cell=8)  # was cv2.error
    np.testing.assert_array_equal(grey[0, 0], np.round(0.4 * 100 + 0.6 * jet0.astype(float)))
    with pytest.raises(ValueError, match=r"non-empty \(h, w, K\)"):  # was ZeroDivisionError
        visualize.heatmap_grid(np.zeros((4, 4, 0)))


def test_keypoints_are_drawn_at_subpixel_positions_on_any_image():
    img = np.zeros((32, 32), np.float32)  # grey float image in [0, 1]
    out = visualize.draw_keypoints(img + 0.5, [[10.5, 12.25]], color=(255, 255, 255), radius=3)
    assert out.shape == (32, 32, 3) and out[0, 0, 0] == 128  # was 0: the float image cast to black
    wgt = visualize.draw_keypoints(img, [[10.5, 12.25]], color=(255, 255, 255), radius=3)[..., 0].astype(float)
    ys, xs = np.mgrid[:32, :32]
    centroid = (wgt * xs).sum() / wgt.sum(), (wgt * ys).sum() / wgt.sum()
    np.testing.assert_allclose(centroid, (10.5, 12.25), atol=0.08)  # was (10, 12): round() half to even
    np.testing.assert_array_equal(visualize.draw_keypoints(img, np.zeros((0, 2))), np.zeros((32, 32, 3)))  # was cv2.error
    with pytest.raises(ValueError, match="visible has 1 values for 2 keypoints"):
        visualize.draw_keypoints(img, [[1, 1], [2, 2]], visible=[True])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inf/NaN keypoints are skipped before the fixed-point cast
        out = visualize.draw_keypoints(img, [[np.inf, 1.0], [np.nan, 2.0], [3.0, 3.0]], color=(255, 255, 255))
    np.testing.assert_array_equal(out, visualize.draw_keypoints(img, [[3.0, 3.0]], color=(255, 255, 255)))


def test_mask_overlay_rounds_and_leaves_unknown_labels_alone():
    img = np.full((2, 3, 3), 101, np.uint8)
    mask = np.array([[1, -1, 255], [0, 1, 0]])
    out = visualize.mask_overlay(img, mask, alpha=0.25)
    np.testing.assert_array_equal(out[0, 0], np.round(0.75 * 101 + 0.25 * np.array([128, 0, 0])))  # was 75, not 76
    assert (out[0, 1:] == 101).all() and (out[1, [0, 2]] == 101).all()  # -1 was darkened as class 0
    road = visualize.mask_overlay(img, mask, alpha=0.25, background=None)  # Cityscapes: class 0 is road
    np.testing.assert_array_equal(road[1, 0], np.round(0.75 * np.array([101, 101, 101])))  # VOC colour 0 = black
    with pytest.raises(ValueError, match=r"mask of shape \(3, 2\) does not match the image's \(2, 3\)"):
        visualize.mask_overlay(img, mask.T)


def test_keypoint_radius_may_be_fractional():
    img = np.zeros((16, 16, 3), np.uint8)
    out = visualize.draw_keypoints(img, [[8.0, 8.0]], color=(255, 255, 255), radius=1.5)  # was cv2.error
    ys, xs = np.nonzero(out[..., 0] > 100)  # OpenCV's anti-aliased fringe is faint and ragged at this size
    assert np.hypot(xs - 8, ys - 8).max() <= 2.0 and out[8, 8, 0] == 255 and len(xs) >= 9  # a disc of radius 1.5


@pytest.mark.backend_agnostic
def test_a_segmentation_model_with_an_auxiliary_head_predicts_with_its_main_head():
    import keras

    # PSPNet(aux=True) order: [main, aux]; predict drew the aux head's mask (the last output)
    inputs = keras.Input((6, 8, 3))
    main = keras.layers.Conv2D(3, 1, name="main", kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant([0.0, 1.0, 0.0]))(inputs)
    aux = keras.layers.Conv2D(3, 1, name="aux", kernel_initializer="zeros",
                              bias_initializer=keras.initializers.Constant([0.0, 0.0, 1.0]))(inputs)
    model = keras.Model(inputs, [main, aux], name="two_heads")
    image = np.zeros((6, 8, 3), np.uint8)
    np.testing.assert_array_equal(inference.predict(model, image).mask, np.ones((6, 8)))  # class 1 everywhere
    np.testing.assert_array_equal(inference.predict(model, image, name="pspnet50").mask, np.ones((6, 8)))


def test_predict_is_still_importable_from_visualize():
    from training.visualize import Prediction, predict, predict_overlay

    assert (predict, predict_overlay, Prediction) == (inference.predict, inference.predict_overlay,
                                                      inference.Prediction)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        visualize.nothing_here


@pytest.mark.backend_agnostic
def test_a_coarse_segmentation_output_is_a_mask_when_the_task_says_so(tmp_path):
    import json

    import keras

    from training.models import _run_metadata

    # an unregistered net whose scores are half the input's size: taken for heatmaps (keypoints) from its shape
    inputs = keras.Input((8, 12, 3))
    x = keras.layers.AveragePooling2D(2)(inputs)
    x = keras.layers.Conv2D(3, 1, kernel_initializer="zeros",
                            bias_initializer=keras.initializers.Constant([0.0, 0.0, 1.0]))(x)
    model = keras.Model(inputs, x, name="coarse_seg")
    image = np.zeros((8, 12, 3), np.uint8)
    guessed = visualize.predict(model, image)
    assert guessed.mask is None and guessed.keypoints.shape == (3, 2)
    told = visualize.predict(model, image, task="segmentation")
    np.testing.assert_array_equal(told.mask, np.full((8, 12), 2))  # class 2 everywhere, at the image's size
    with pytest.raises(ValueError, match=r"task must be 'classification', 'segmentation', 'pose' or None.*'mask'"):
        visualize.predict(model, image, task="mask")
    # a training run's .keras: config.json says the task (was drawn as keypoints)
    (tmp_path / "config.json").write_text(json.dumps({"family": "default", "task": "segmentation"}))
    _run_metadata(model, tmp_path / "best.keras")
    np.testing.assert_array_equal(visualize.predict(model, image).mask, np.full((8, 12), 2))


@pytest.mark.backend_agnostic
def test_a_run_models_task_survives_optimize_for_inference(tmp_path):
    """kerazoo predict --winograd predicts with zoo.optimize_for_inference's clone: the run's task (config.json) must
    come with it, or a coarse segmentation output is drawn as keypoints again."""
    import json

    import keras

    import zoo
    from training.models import _run_metadata

    inputs = keras.Input((8, 12, 3))
    x = keras.layers.AveragePooling2D(2)(inputs)
    x = keras.layers.Conv2D(3, 1, kernel_initializer="zeros",
                            bias_initializer=keras.initializers.Constant([0.0, 0.0, 1.0]))(x)
    model = keras.Model(inputs, x, name="coarse_seg")
    (tmp_path / "config.json").write_text(json.dumps({"family": "default", "task": "segmentation"}))
    _run_metadata(model, tmp_path / "best.keras")
    fast = zoo.optimize_for_inference(model)
    pred = visualize.predict(fast, np.zeros((8, 12, 3), np.uint8))
    assert pred.keypoints is None
    np.testing.assert_array_equal(pred.mask, np.full((8, 12), 2))  # class 2 everywhere (the bias), at the image's size


@pytest.mark.backend_agnostic
@pytest.mark.tf_pass_only
def test_a_cpm_runs_background_map_is_not_a_keypoint(tmp_path, capsys):
    """A CPM fine-tuned on 4 keypoints outputs 5 maps, the last its background (config.json: train_data.background).
    predict dropped it only when the model was named cpm in the registry: the run's .keras predicted in Python, or by
    kerazoo predict under another NAME (NAME only says what the output is), gave a 5th keypoint, the background's."""
    import cv2

    import zoo
    from training import fit
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose
    from training.models import _run_metadata
    from zoo.cli import main

    model = zoo.get("cpm", stages=2, num_keypoints=4, input_shape=(32, 32, 3))
    ds = HeatmapDataset(synthetic_pose(4, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                        heatmap_size=(4, 4), sigma=1.0, flip_pairs=(), num_outputs=2, background=True,
                        center_map_sigma=21.0)
    fit(model, ds, epochs=1, out_dir=tmp_path / "run", verbose=0)
    run = zoo.load_keras_model(tmp_path / "run" / "best.keras")
    _run_metadata(run, tmp_path / "run" / "best.keras")
    image = np.full((32, 32, 3), 80, np.uint8)
    for m in (run, zoo.optimize_for_inference(run)):
        pred = visualize.predict(m, image, flip=True, scales=(0.8, 1.0))
        assert pred.output.shape == (4, 4, 5) and pred.keypoints.shape == (4, 2)
    cv2.imwrite(str(tmp_path / "img.png"), image)
    capsys.readouterr()
    assert main(["predict", "mycpm", str(tmp_path / "img.png"), "--weights", str(tmp_path / "run" / "best.keras"),
                 "--out", str(tmp_path / "p.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines[:-1]] == ["0", "1", "2", "3"], lines  # "joint j" for each of the 4


def _center_map_model(h, w):
    """(image, centre map) -> the centre map itself as one heatmap (plus the image times 0): what CPM is fed."""
    import keras

    image, cmap = keras.Input((h, w, 3)), keras.Input((h, w, 1))
    zero = keras.layers.Conv2D(1, 1, kernel_initializer="zeros")(image)
    return keras.Model([image, cmap], keras.layers.Add()([cmap, zero]), name="cmap_echo")


@pytest.mark.backend_agnostic
def test_predict_feeds_a_runs_center_map_sigma(tmp_path):
    """A CPM fitted in Python with HeatmapDataset(center_map_sigma=3) records 3 in config.json's train_data;
    predict fed its .keras the release's sigma 21 whatever the run trained with."""
    import json

    import zoo
    from training.models import _run_metadata

    y, x = np.mgrid[:16, :20]

    def gaussian(sigma):  # peak 1 at the input's centre (9.5, 7.5), sigma in input px
        return np.exp(-((x - 9.5) ** 2 + (y - 7.5) ** 2) / (2.0 * sigma ** 2))

    image = np.full((16, 20, 3), 90, np.uint8)  # the input's size: no letterbox
    for train_data, sigma in (({"center_map_sigma": 3.0}, 3.0), ({"center_map_sigma": 2}, 2.0),
                              ({}, 21.0), ({"center_map_sigma": None}, 21.0), ({"center_map_sigma": -1.0}, 21.0),
                              ({"center_map_sigma": "3"}, 21.0)):  # unset or unreadable: the release's 21
        run = tmp_path / str(len(list(tmp_path.iterdir())))
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"family": "cpm", "task": "pose", "train_data": train_data}))
        model = _center_map_model(16, 20)
        _run_metadata(model, run / "best.keras")
        for m, scales in ((model, (1.0,)), (model, (1.0, 1.0)), (zoo.optimize_for_inference(model), (1.0,))):
            out = visualize.predict(m, image, scales=scales).output  # --winograd's clone fed 21 as well
            np.testing.assert_allclose(out[..., 0], gaussian(sigma), atol=1e-6, err_msg=str(train_data))


def test_label_png_keeps_the_class_numbers(tmp_path):
    """Class indices as a grey PNG, read back unchanged by OpenCV: 8-bit up to 255, 16-bit above (150 ADE20K classes
    fit 8 bits; a 300-class model's do not)."""
    import cv2

    from training.visualize import write_label_png

    labels = np.arange(12 * 25, dtype=np.int64).reshape(12, 25)  # 0..299
    for bits, values in ((None, labels % 256), (8, labels % 256), (None, labels), (16, labels % 256)):
        path = write_label_png(tmp_path / "m.png", values, bits)
        back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert back.dtype == (np.uint8 if (bits or (8 if values.max() <= 255 else 16)) == 8 else np.uint16)
        np.testing.assert_array_equal(back, values)
    with pytest.raises(ValueError, match="labels up to 299 do not fit a 8-bit PNG"):
        write_label_png(tmp_path / "m.png", labels, 8)
    with pytest.raises(ValueError, match=r"labels must be a non-empty \(H, W\) array of integers in 0..65535"):
        write_label_png(tmp_path / "m.png", -labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]  # no temp file left


@pytest.mark.backend_agnostic
@pytest.mark.tf_pass_only
def test_an_any_size_hourglass_refusing_an_image_names_its_size_rule():
    """An hourglass built for None sizes given a 300x300 image: predict said "hourglass takes inputs of any size, but
    not this 300x300 image (TypeError: Exception encountered when calling Add.call().)", Keras' first line, and
    under TensorFlow, after two other sizes (its trace for any size), "(InvalidArgumentError: Graph execution
    error:)"; now the hourglass' rule, and the rule's own words from the model's size check (InputSizeCheck; in
    TensorFlow's trace for any size, which checks nothing, what the backend said of the shapes)."""
    import keras

    from zoo.models.hourglass import hourglass

    keras.backend.clear_session()
    model = hourglass(stacks=1, features=16, num_keypoints=3, input_shape=(None, None, 3))
    model._zoo_name = "hourglass"  # as zoo.get names it
    for sizes in ((), (256, 320)):  # TensorFlow: the batch's sizes traced, then (after two sizes) any size
        for size in sizes:
            assert inference.predict(model, np.zeros((size, size, 3), np.uint8)).keypoints.shape == (3, 2)
        with pytest.raises(ValueError) as refused:
            inference.predict(model, np.zeros((300, 300, 3), np.uint8))
        said = str(refused.value)
        assert said.startswith("hourglass takes inputs of heights and widths that are multiples of 64 (each hourglass "
                               "halves its map 4 times), but not this 300x300 image ("), said
        assert said.endswith("); pad it to 320x320 or resize it"), said  # the rule said once, then a fix
        if not sizes or keras.backend.backend() != "tensorflow":  # the rule, from the model's image_size_check layer
            assert "(InputShapeError: hourglass: input height 300 gives a 75-pixel feature map" in said, said
        else:  # TensorFlow's trace for any size checks nothing: the backend's own words on the two shapes
            assert re.search(r"9\D+9\D+16\D+1\D+8\D+8\D+16", said), said
        assert "Exception encountered" not in said and "Graph execution error" not in said
