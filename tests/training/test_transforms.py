"""training.transforms: affine matrices against OpenCV, keypoints following warped images, masks, flips."""

import cv2
import numpy as np
import pytest

from training.transforms import (
    affine_matrix, compose, flip_keypoints, invert, photometric_jitter, swap_pairs, transform_points,
    warp_image, warp_mask,
)

MPII_FLIP_PAIRS = [[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]


def _blob_image(h, w, points, sigma=2.0):
    """Float image with one Gaussian blob per (x, y) point (OpenCV pixel centres)."""
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w), np.float32)
    for x, y in points:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return img


def _centroid(img, around, radius=6):
    x0, y0 = np.round(around).astype(int)
    ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    win = (np.abs(xs - x0) <= radius) & (np.abs(ys - y0) <= radius)
    m = np.where(win, img, 0).astype(np.float64)
    return np.array([(m * xs).sum() / m.sum(), (m * ys).sum() / m.sum()])


def test_linear_part_matches_opencv_rotation_and_centre_maps_to_output_centre():
    for rot in (0.0, 17.0, -90.0, 145.0):
        m = affine_matrix((31.5, 20.25), 80.0, (64, 48), rotation=rot)
        ref = cv2.getRotationMatrix2D((31.5, 20.25), rot, 64 / 80.0)
        np.testing.assert_allclose(m[:, :2], ref[:, :2], atol=1e-12)
        np.testing.assert_allclose(transform_points([31.5, 20.25], m), [31.5, 23.5], atol=1e-12)


def test_square_region_edges_map_to_output_edges():
    # a 100 px box centred at (50, 60) covers pixel edges [0, 100] -> output edges [-0.5, 63.5]
    m = affine_matrix((49.5, 60.0), 100.0, (64, 64))
    np.testing.assert_allclose(transform_points([[-0.5, 60.0], [99.5, 60.0]], m)[:, 0], [-0.5, 63.5], atol=1e-12)


def test_compose_applies_first_argument_first_and_invert_roundtrips(rng):
    a = affine_matrix((40, 30), 60, (32, 32), rotation=25, shear=10, translate=(2, -3))
    b = affine_matrix((10, 12), 20, (64, 64), rotation=-40, flip=True)
    pts = rng.uniform(-20, 100, (50, 2))
    np.testing.assert_allclose(transform_points(pts, compose(a, b)),
                               transform_points(transform_points(pts, a), b), atol=1e-9)
    np.testing.assert_allclose(transform_points(transform_points(pts, a), invert(a)), pts, atol=1e-9)
    np.testing.assert_allclose(compose(a, invert(a)), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(invert(a), cv2.invertAffineTransform(a), atol=1e-12)


@pytest.mark.parametrize("kw", [
    dict(rotation=0.0), dict(rotation=33.0), dict(rotation=-120.0, shear=12.0),
    dict(rotation=70.0, translate=(3.5, -2.25), flip=True), dict(shear=-20.0, flip=True),
])
def test_keypoints_follow_the_warped_image(rng, kw):
    pts = np.array([[40.3, 51.7], [70.8, 33.1], [55.5, 70.2]])
    img = _blob_image(100, 110, pts, sigma=3.0)
    m = affine_matrix((56.0, 52.0), 90.0, (64, 64), **kw)
    out = warp_image(img[:, :, None], m, (64, 64))
    assert out.shape == (64, 64, 1) and out.dtype == np.float32
    expected = transform_points(pts, m)
    found = np.array([_centroid(out[:, :, 0], p) for p in expected])
    err = np.abs(found - expected).max()
    print(f"blob centroid vs transform_points, max error {err:.4f} px ({kw})")
    assert err < 0.05


def test_flip_is_exact_mirror_of_unflipped_crop(rng):
    # smooth image: cv2 quantises sample positions to 1/32 px, so only smooth content mirrors exactly
    img = cv2.GaussianBlur(rng.random((50, 70, 3)).astype(np.float32), (0, 0), 3.0)
    kw = dict(rotation=20.0, shear=5.0, translate=(1.5, 2.0))
    plain = warp_image(img, affine_matrix((33, 24), 45, (40, 30), **kw), (40, 30))
    flipped = warp_image(img, affine_matrix((33, 24), 45, (40, 30), flip=True, **kw), (40, 30))
    assert np.abs(flipped - plain[:, ::-1]).max() < 5e-3 * np.ptp(img)
    # a half-pixel error in the mirror axis (w - x instead of w - 1 - x) would be far larger
    assert np.abs(flipped[:, 1:] - plain[:, ::-1][:, :-1]).max() > 2e-2 * np.ptp(img)


def test_warp_image_channels_dtypes_and_border(rng):
    m = affine_matrix((10, 10), 40, (16, 16), rotation=45)
    many = rng.random((20, 20, 7)).astype(np.float32)
    out = warp_image(many, m, (16, 16), border_value=-1.0)
    assert out.shape == (16, 16, 7)
    np.testing.assert_allclose(out[..., 5], warp_image(many[..., 5], m, (16, 16), border_value=-1.0), atol=1e-6)
    assert out[0, 0, 0] == -1.0  # corner samples outside the rotated source
    u8 = warp_image(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8), m, (16, 16), border_value=(1, 2, 3))
    assert u8.dtype == np.uint8 and tuple(u8[0, 0]) == (1, 2, 3)


def test_warp_mask_nearest_with_ignore_border(rng):
    mask = rng.integers(0, 21, (40, 50)).astype(np.int32)
    # integer translation: nearest sampling reproduces labels exactly
    shift = np.array([[1.0, 0, -5], [0, 1.0, -3]])
    out = warp_mask(mask, shift, (50, 40))
    np.testing.assert_array_equal(out[:37, :45], mask[3:, 5:])
    assert np.all(out[37:] == 255) and np.all(out[:, 45:] == 255)
    rot = warp_mask(mask, affine_matrix((25, 20), 50, (64, 64), rotation=45), (64, 64), ignore_value=250)
    assert rot.dtype == np.int32 and set(np.unique(rot)) <= set(np.unique(mask)) | {250}
    assert rot[0, 0] == 250
    with pytest.raises(ValueError, match="`ignore_value` 300 does not fit the mask's dtype uint8"):
        warp_mask(mask.astype(np.uint8), shift, (50, 40), ignore_value=300)  # it wrapped around to class 44
    big = warp_mask(mask * 1000, shift, (50, 40), ignore_value=-7)  # labels beyond uint8/uint16
    np.testing.assert_array_equal(big[:37, :45], mask[3:, 5:] * 1000)
    assert big[39, 49] == -7


def test_flip_keypoints_and_swap_pairs_are_involutions(rng):
    kp = np.c_[rng.uniform(0, 63, (16, 2)), rng.integers(0, 2, 16)]
    once = flip_keypoints(kp, MPII_FLIP_PAIRS, 64)
    np.testing.assert_allclose(once[5, 0], 63 - kp[0, 0])
    assert once[5, 2] == kp[0, 2] and once[6, 0] == 63 - kp[6, 0]
    np.testing.assert_allclose(flip_keypoints(once, MPII_FLIP_PAIRS, 64), kp)
    hm = rng.random((2, 4, 4, 16))
    np.testing.assert_array_equal(swap_pairs(swap_pairs(hm, MPII_FLIP_PAIRS, -1), MPII_FLIP_PAIRS, -1), hm)
    np.testing.assert_array_equal(swap_pairs(hm, MPII_FLIP_PAIRS, -1)[..., 10], hm[..., 15])


def test_flip_keypoints_follow_cv2_flip():
    pts = np.array([[12.25, 20.5], [30.75, 8.0]])
    img = _blob_image(32, 48, pts)
    flipped = cv2.flip(img, 1)
    new = flip_keypoints(pts, [[0, 1]], 48)
    # keypoint 0 of the flipped image is the mirror of old keypoint 1 (left/right swap)
    # (centroids are biased ~0.003 px by the truncated blob tails)
    np.testing.assert_allclose(_centroid(flipped, new[0]), [47 - 30.75, 8.0], atol=1e-2)
    np.testing.assert_allclose(_centroid(flipped, new[1]), [47 - 12.25, 20.5], atol=1e-2)


def test_photometric_jitter(rng):
    img = rng.integers(30, 220, (24, 24, 3), dtype=np.uint8)
    assert np.array_equal(photometric_jitter(img, rng, 0, 0, 0, 0), img)
    a = photometric_jitter(img, np.random.default_rng(5), hue=0.1)
    b = photometric_jitter(img, np.random.default_rng(5), hue=0.1)
    assert a.dtype == np.uint8 and a.shape == img.shape and np.array_equal(a, b)
    assert not np.array_equal(a, img)
    f = np.random.default_rng(3).uniform(0.8, 1.2)
    bright = photometric_jitter(img, np.random.default_rng(3), 0.2, 0, 0, 0)
    np.testing.assert_array_equal(bright, np.clip(np.rint(img * np.float32(f)), 0, 255))
    assert photometric_jitter(img[:, :, 0], rng).shape == (24, 24)


@pytest.mark.parametrize("call, match", [
    (lambda: affine_matrix((0, 0), 0, (8, 8)), "scale"),
    (lambda: affine_matrix((0, np.nan), 1, (8, 8)), "center"),
    (lambda: affine_matrix((0, 0), 1, (8, 0)), "output_size"),
    (lambda: affine_matrix((0, 0), 1, (8, 8), shear=90), "shear"),
    (lambda: invert([[0, 0, 1], [0, 0, 1]]), "singular"),
    (lambda: transform_points([[1, 2]], np.eye(3)), r"\(2, 3\)"),
    (lambda: warp_mask(np.zeros((4, 4), np.float32), np.eye(2, 3), (4, 4)), "mask"),
    (lambda: warp_image(np.zeros((4, 4, 3), bool), np.eye(2, 3), (4, 4)), "image"),
    (lambda: warp_image(np.zeros((4, 4, 3), np.int32), np.eye(2, 3), (4, 4)), "dtype"),
    (lambda: flip_keypoints(np.zeros((4, 2)), [[0, 4]], 10), "flip_pairs"),
    (lambda: swap_pairs(np.zeros((4, 2)), [[0, 1], [1, 2]], 0), "flip_pairs"),
    (lambda: photometric_jitter(np.zeros((4, 4, 3), np.float32), np.random.default_rng()), "uint8"),
    (lambda: photometric_jitter(np.zeros((4, 4, 3), np.uint8), np.random.default_rng(), hue=0.7), "hue"),
])
def test_bad_input_raises_named_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _random_crop(rng, src_hw, zoom_range):
    """Random (matrix, output (w, h)) with odd and even sizes, any rotation, shear, shift and flip."""
    h_src, w_src = src_hw
    ow, oh = (int(v) for v in rng.integers(15, 80, 2))
    zoom = rng.uniform(*zoom_range)  # output px per source px
    kw = dict(rotation=rng.uniform(-180, 180), shear=rng.uniform(-15, 15), translate=rng.uniform(-4, 4, 2),
              flip=bool(rng.random() < 0.5))
    center = rng.uniform([0, 0], [w_src, h_src])
    return affine_matrix(center, ow / zoom, (ow, oh), **kw), (ow, oh)


def test_single_bright_pixel_moves_to_the_transformed_keypoint(rng):
    """OpenCV's warpAffine and transform_points agree on pixel centres, for any crop, rotation and flip.

    Reference: bilinear sampling written out in NumPy at cv2.invertAffineTransform(M) @ (x, y, 1)
    (the one-pixel image is the tent max(0, 1-|dx|) * max(0, 1-|dy|) about the keypoint), and the
    centroid of the warped pixel, which a half-pixel convention error moves by 0.5 * zoom px.
    """
    worst = 0.0
    for _ in range(60):
        h_src, w_src = (int(v) for v in rng.integers(21, 91, 2))
        kp = np.array([rng.integers(2, w_src - 2), rng.integers(2, h_src - 2)], np.float64)
        img = np.zeros((h_src, w_src), np.float32)
        img[int(kp[1]), int(kp[0])] = 1.0
        m, (ow, oh) = _random_crop(rng, (h_src, w_src), (1.5, 4.0))
        m = compose(m, [[1, 0, 0], [0, 1, 0]])  # centre the keypoint's neighbourhood in view:
        m[:, 2] += np.array([(ow - 1) / 2, (oh - 1) / 2]) - transform_points(kp, m) + rng.uniform(-3, 3, 2)
        out = warp_image(img, m, (ow, oh))
        ys, xs = np.mgrid[0:oh, 0:ow].astype(np.float64)
        inv = cv2.invertAffineTransform(m)
        sx, sy = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
        tent = np.clip(1 - np.abs(sx - kp[0]), 0, None) * np.clip(1 - np.abs(sy - kp[1]), 0, None)
        assert np.abs(out - tent).max() < 1 / 32 + 1e-6  # cv2 quantises sample positions to 1/32 px
        found = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
        worst = max(worst, np.abs(found - transform_points(kp, m)).max())
    print(f"bright-pixel centroid vs transform_points: max error {worst:.4f} px")
    assert worst < 0.15  # the sampled tent's centroid is ~0.1 px off on a sheared grid; a half-pixel error is >= 0.75


def test_warp_mask_is_nearest_neighbour_with_ignore_border_for_any_crop(rng):
    """Reference: label at floor(src + 0.5) of cv2.invertAffineTransform(M) @ (x, y, 1), 255 outside the source."""
    for _ in range(40):
        h_src, w_src = (int(v) for v in rng.integers(21, 91, 2))
        mask = rng.integers(0, 21, (h_src, w_src)).astype(np.uint8)
        m, (ow, oh) = _random_crop(rng, (h_src, w_src), (0.5, 4.0))
        out = warp_mask(mask, m, (ow, oh))
        assert out.dtype == np.uint8 and out.shape == (oh, ow)
        ys, xs = np.mgrid[0:oh, 0:ow].astype(np.float64)
        inv = cv2.invertAffineTransform(m)
        sx, sy = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
        ix, iy = np.floor(sx + 0.5).astype(int), np.floor(sy + 0.5).astype(int)
        inside = (ix >= 0) & (ix < w_src) & (iy >= 0) & (iy < h_src)
        ref = np.where(inside, mask[iy.clip(0, h_src - 1), ix.clip(0, w_src - 1)], 255)
        # cv2 computes sample positions in 1/1024 px fixed point: only samples that close to a
        # rounding boundary may pick the neighbour
        margin = np.minimum(np.abs(sx + 0.5 - np.round(sx + 0.5)), np.abs(sy + 0.5 - np.round(sy + 0.5)))
        differ = out != ref
        assert not differ[margin > 2e-3].any()
        assert set(np.unique(out)) <= set(np.unique(mask)) | {255}  # never a blended label


@pytest.mark.parametrize("kw, match", [
    (dict(scale_range=(0.0, 1.25)), "scale_range"),
    (dict(scale_range=(1.25, 0.75)), "scale_range"),
    (dict(scale_range=1.2), "scale_range"),
    (dict(scale_sampling="gaussian"), "scale_sampling must be 'normal' or 'uniform'"),
    (dict(rotation_sampling="Normal"), "rotation_sampling"),
    (dict(rotation=-10), "rotation"),
    (dict(flip_prob=1.5), "flip_prob"),
    (dict(rotation_prob=np.nan), "rotation_prob"),
    (dict(translate=-0.1), "translate"),
    (dict(hue=0.7), "hue"),
    (dict(blur_prob=1.2), "blur_prob"),
])
def test_augmentation_settings_are_checked_when_made(kw, match):
    """A zero zoom failed every sample mid-training; a misspelt sampling name silently sampled uniformly."""
    from training.transforms import Augmentation

    with pytest.raises(ValueError, match=match):
        Augmentation(**kw)
    a = Augmentation(scale_range=[0.5, 2])  # a list from a JSON config
    assert a.scale_range == (0.5, 2.0)


def test_pose_preset_draws_hrnet_mpii_scale_rotation_and_flip():
    """``augment=True`` for pose is HRNet's MPII recipe (``lib/dataset/JointsDataset.py``, SCALE_FACTOR 0.25,
    ROT_FACTOR 30), written out in NumPy below: the box side ``s *= clip(randn() * sf + 1, 1 - sf, 1 + sf)``,
    ``r = clip(randn() * rf, -2 rf, 2 rf) if random() <= 0.6 else 0``, flip ``random() <= 0.5``, no colour change.
    Our zoom divides the crop's side, so ``1 / zoom`` is HRNet's factor; the preset drew the zoom itself from
    clip(N(1, 0.25), 0.75, 1.25) (side 0.8-1.33, mean 1.07) and added colour jitter 0.2."""
    from training.transforms import Augmentation

    aug, n = Augmentation.pose(), 40000
    rng = np.random.default_rng(0)
    draws = [aug.sample(rng) for _ in range(n)]
    side = 1.0 / np.array([d["zoom"] for d in draws])
    rot = np.array([d["rotation"] for d in draws])
    flip = np.array([d["flip"] for d in draws])

    ref = np.random.default_rng(1)
    sf, rf = 0.25, 30.0
    ref_side = np.clip(ref.standard_normal(n) * sf + 1, 1 - sf, 1 + sf)
    ref_rot = np.where(ref.random(n) <= 0.6, np.clip(ref.standard_normal(n) * rf, -2 * rf, 2 * rf), 0.0)

    assert 0.75 - 1e-9 <= side.min() and side.max() <= 1.25 + 1e-9
    for end in (0.75, 1.25):  # the clipped mass, P(N > 1) = 0.159 at each end
        assert abs(np.isclose(side, end).mean() - np.isclose(ref_side, end).mean()) < 0.012
    q = np.linspace(0.02, 0.98, 25)
    np.testing.assert_allclose(np.quantile(side, q), np.quantile(ref_side, q), atol=0.01)
    assert abs(side.mean() - 1.0) < 0.005
    assert np.abs(rot).max() <= 60.0
    assert abs((rot != 0).mean() - (ref_rot != 0).mean()) < 0.012
    assert abs((np.abs(rot) == 60).mean() - (np.abs(ref_rot) == 60).mean()) < 0.005
    np.testing.assert_allclose(np.quantile(rot[rot != 0], q), np.quantile(ref_rot[ref_rot != 0], q), atol=1.5)
    assert abs(flip.mean() - 0.5) < 0.012
    assert (aug.brightness, aug.contrast, aug.saturation, aug.hue, aug.blur_prob) == (0, 0, 0, 0, 0)


def test_segmentation_preset_draws_pspnet_scale_rotation_blur_and_flip():
    """``augment=True`` for segmentation is semseg's (``tool/train.py``, ``util/transform.py``, VOC yaml):
    ``RandScale([0.5, 2.0])`` U(0.5, 2); ``RandRotate([-10, 10], p=0.5)`` U(-10, 10) when ``random() < 0.5``;
    ``RandomGaussianBlur`` ``cv2.GaussianBlur(image, (5, 5), 0)`` when ``random() < 0.5``; flip 0.5; no colour
    change. The preset rotated every sample, never blurred and added colour jitter 0.2."""
    from training.transforms import Augmentation

    aug, n = Augmentation.segmentation(), 40000
    rng = np.random.default_rng(0)
    draws = [aug.sample(rng) for _ in range(n)]
    zoom = np.array([d["zoom"] for d in draws])
    rot = np.array([d["rotation"] for d in draws])
    ref = np.random.default_rng(1)
    ref_zoom = 0.5 + 1.5 * ref.random(n)
    ref_rot = np.where(ref.random(n) < 0.5, -10 + 20 * ref.random(n), 0.0)
    q = np.linspace(0.02, 0.98, 25)
    assert 0.5 <= zoom.min() and zoom.max() <= 2.0
    np.testing.assert_allclose(np.quantile(zoom, q), np.quantile(ref_zoom, q), atol=0.03)
    assert np.abs(rot).max() <= 10.0
    assert abs((rot != 0).mean() - (ref_rot != 0).mean()) < 0.012
    np.testing.assert_allclose(np.quantile(rot[rot != 0], q), np.quantile(ref_rot[ref_rot != 0], q), atol=0.4)
    assert abs(np.mean([d["flip"] for d in draws]) - 0.5) < 0.012

    image = np.random.default_rng(2).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(image, (5, 5), 0)
    outs = [aug.jitter(image, np.random.default_rng(i)) for i in range(2000)]
    is_blur = np.array([np.array_equal(o, blurred) for o in outs])
    assert all(b or np.array_equal(o, image) for o, b in zip(outs, is_blur))  # the image blurred or untouched
    assert abs(is_blur.mean() - 0.5) < 0.04
