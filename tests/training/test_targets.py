"""training.targets: heatmap encode/decode round trips (sub-pixel figures), flips, codec, masks."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.targets import (
    HeatmapCodec, cpm_center_map, decode_heatmaps, encode_heatmaps, encode_mask, flip_test,
    keypoints_to_image,
)
from training.transforms import affine_matrix, flip_keypoints, swap_pairs, transform_points

MPII_FLIP_PAIRS = [[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]


def _msra_reference(kp, vis, w, h, sigma):
    """Loop transcription of HRNet's JointsDataset.generate_target (rounded centre, 3-sigma window).

    HRNet rounds with ``int(x + 0.5)``, which truncates towards zero for negative x; floor is used here
    so that rounding is the same on both sides of the map.
    """
    k = len(kp)
    target = np.zeros((k, h, w))
    weight = np.array(vis, np.float64)
    r = int(math.ceil(3 * sigma))
    for j in range(k):
        mx, my = math.floor(kp[j][0] + 0.5), math.floor(kp[j][1] + 0.5)
        ul, br = (mx - r, my - r), (mx + r + 1, my + r + 1)
        if ul[0] >= w or ul[1] >= h or br[0] <= 0 or br[1] <= 0:
            weight[j] = 0
        if weight[j] > 0.5:
            for y in range(max(0, ul[1]), min(h, br[1])):
                for x in range(max(0, ul[0]), min(w, br[0])):
                    target[j, y, x] = math.exp(-((x - mx) ** 2 + (y - my) ** 2) / (2 * sigma**2))
    return target.transpose(1, 2, 0), weight


def test_roundtrip_subpixel_error_figures():
    rng = np.random.default_rng(1)
    kp = rng.uniform(6.0, 58.0, (48, 16, 2))  # heatmap px, 64x64, away from the border
    vis = np.ones(16)
    hms = np.stack([encode_heatmaps(p, vis, (64, 64), 2.0)[0] for p in kp])
    figures = {}
    for refine in (None, "quarter", "dark"):
        dec, scores = decode_heatmaps(hms, refine=refine)
        assert dec.shape == (48, 16, 2) and scores.shape == (48, 16)
        figures[refine] = np.linalg.norm(dec - kp, axis=-1).mean()
    print("encode(sigma 2, 64x64, sub-pixel) -> decode mean error [heatmap px]: "
          + ", ".join(f"{k}={v:.4f}" for k, v in figures.items()))
    assert 0.3 < figures[None] < 0.45  # uniform sub-pixel offsets: E|d| of argmax ~0.38
    assert figures["quarter"] < 0.23
    assert figures["dark"] < 0.01
    assert figures["dark"] < figures["quarter"] < figures[None]


def test_msra_targets_match_reference_transcription(rng):
    kp = np.r_[rng.uniform(-8, 72, (30, 2)), [[-7.0, 10.0], [-6.5, 10.0], [69.4, 3.0], [3.0, 65.6]]]
    vis = rng.integers(0, 2, len(kp))
    vis[-4:] = 1
    hm, w = encode_heatmaps(kp, vis, (64, 60), 2.0, subpixel=False)
    ref_hm, ref_w = _msra_reference(kp, vis, 64, 60, 2.0)
    np.testing.assert_array_equal(w, ref_w)
    np.testing.assert_allclose(hm, ref_hm, atol=1e-7)
    assert list(w[-4:]) == [0, 1, 1, 0]  # window ends at x=-1 / reaches x=0 ; starts at x=63 / y=60 (h=60)


def test_encode_shape_peak_window_and_invisible():
    hm, w = encode_heatmaps([[10, 20], [30.0, 5.0], [40, 40]], [1, True, 0], (48, 40), sigma=2.0)
    assert hm.shape == (40, 48, 3) and hm.dtype == np.float32 and w.dtype == np.float32
    assert hm[20, 10, 0] == 1.0 and hm[5, 30, 1] == 1.0
    assert hm[20, 16, 0] == pytest.approx(math.exp(-36 / 8)) and hm[20, 17, 0] == 0  # 3-sigma window, r = 6
    assert list(w) == [1, 1, 0] and not hm[..., 2].any()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e30, -1e30])
def test_keypoints_outside_or_not_finite_get_weight_zero_never_nan(bad):
    kp = np.array([[bad, 10.0], [10.0, bad], [-30.0, 10.0], [10.0, 200.0], [31.0, 31.0]])
    hm, w = encode_heatmaps(kp, np.ones(5), (32, 32), 2.0)
    assert np.isfinite(hm).all() and np.isfinite(w).all()
    assert list(w) == [0, 0, 0, 0, 1]
    assert not hm[..., :4].any()


def test_dark_refinement_near_the_border(rng):
    # The blur before DARK's Taylor step pads with zeros: a mirrored border pulled peaks 1.2 px inward.
    hm, _ = encode_heatmaps([[47.14, 2.37]], [1], (64, 48), 2.0)
    k, _ = decode_heatmaps(hm, refine="dark", sigma=2)
    assert abs(k[0, 1] - 2.37) < 0.2 and abs(k[0, 0] - 47.14) < 0.05
    for p in rng.uniform((0, 0), (63, 47), (100, 2)):
        hm, _ = encode_heatmaps([p], [1], (64, 48), 2.0)
        assert np.abs(decode_heatmaps(hm, refine="dark", sigma=2)[0][0] - p).max() <= 0.5  # argmax's bound


def test_decode_batch_equals_single_and_marks_empty_maps(rng):
    hm = rng.random((3, 16, 20, 4)).astype(np.float32)
    hm[1, :, :, 2] = 0.0
    for refine in (None, "quarter", "dark"):
        kb, sb = decode_heatmaps(hm, refine=refine)
        for i in range(3):
            ks, ss = decode_heatmaps(hm[i], refine=refine)
            np.testing.assert_allclose(kb[i], ks)
            np.testing.assert_allclose(sb[i], ss)
        assert list(kb[1, 2]) == [-1, -1] and sb[1, 2] == 0
    nan_map = np.full((8, 8, 1), np.nan, np.float32)
    k, s = decode_heatmaps(nan_map)
    assert list(k[0]) == [-1, -1] and s[0] == 0


def test_codec_roundtrip_in_input_pixels():
    rng = np.random.default_rng(2)
    codec = HeatmapCodec((256, 192), (64, 48), sigma=2.0, refine="dark")
    assert codec.stride == 4.0
    kp = rng.uniform(30, 160, (16, 2))
    hm, w = codec.encode(kp, np.ones(16))
    assert hm.shape == (48, 64, 16) and w.all()
    dec, scores = codec.decode(hm[None])
    err = np.abs(dec[0] - kp).max()
    print(f"HeatmapCodec 256x192 -> 64x48 DARK round trip max error {err:.4f} input px")
    assert err < 0.05 and scores.min() > 0.8
    quarter = HeatmapCodec((256, 192), (64, 48))
    assert np.abs(quarter.decode(hm)[0] - kp).max() < 4 * 0.5
    with pytest.raises(ValueError, match="stride"):
        HeatmapCodec((256, 256), (64, 48))


def test_flipped_target_equals_target_of_flipped_keypoints(rng):
    kp = rng.uniform(2, 62, (16, 2))
    vis = rng.integers(0, 2, 16)
    hm, w = encode_heatmaps(kp, vis, (64, 64), 2.0)
    hm_f, w_f = encode_heatmaps(flip_keypoints(kp, MPII_FLIP_PAIRS, 64),
                                swap_pairs(vis, MPII_FLIP_PAIRS, 0), (64, 64), 2.0)
    np.testing.assert_allclose(hm_f, swap_pairs(hm[:, ::-1], MPII_FLIP_PAIRS, -1), atol=1e-6)
    np.testing.assert_array_equal(w_f, swap_pairs(w, MPII_FLIP_PAIRS, 0))
    twice = swap_pairs(swap_pairs(hm[:, ::-1], MPII_FLIP_PAIRS, -1)[:, ::-1], MPII_FLIP_PAIRS, -1)
    np.testing.assert_array_equal(twice, hm)


def test_flip_test_swaps_pairs_without_shift():
    x = np.random.default_rng(0).random((2, 5, 6, 3)).astype(np.float32)
    out = flip_test(lambda b: b, x, [[0, 2]], shift=False)  # "model" = identity on 3-channel maps
    np.testing.assert_allclose(out, 0.5 * (x + x[..., ::-1]), atol=1e-7)
    out_list = flip_test(lambda b: [b * 0, b], x, [[0, 2]], shift=False)  # last stack is used
    np.testing.assert_allclose(out_list, out)


def test_flip_test_shift_corrects_msra_offset():
    """An ideal MSRA model: heatmap peak at x_in / 4. Flip averaging is biased 0.375 px without the shift."""
    rng = np.random.default_rng(3)
    codec = HeatmapCodec((64, 64), (16, 16), sigma=1.0, refine="dark")
    pairs = [[0, 1]]
    kps = rng.uniform(16, 48, (6, 2, 2))
    images = rng.random((6, 64, 64, 3)).astype(np.float32)
    truth = {images[i].tobytes(): kps[i] for i in range(6)}
    truth.update({images[i, :, ::-1].tobytes(): flip_keypoints(kps[i], pairs, 64) for i in range(6)})

    def ideal(batch):
        return np.stack([codec.encode(truth[np.ascontiguousarray(b).tobytes()], [1, 1])[0] for b in batch])

    bias = {}
    for shift in (False, True, "exact"):
        dec, _ = codec.decode(flip_test(ideal, images, pairs, shift=shift))
        bias[shift] = (dec - kps)[..., 0].mean() / codec.stride  # heatmap px
        # y is unbiased; the two-Gaussian mixture is not a Gaussian, so DARK is only ~0.05 px exact here
        np.testing.assert_allclose((dec - kps)[..., 1], 0, atol=0.1)
    print(f"flip test x bias [heatmap px]: no shift {bias[False]:+.3f}, 1-px shift {bias[True]:+.3f}, "
          f"exact {bias['exact']:+.3f}")
    assert bias[False] == pytest.approx(-0.375, abs=0.03)  # (1 - 1/4) / 2 left
    assert bias[True] == pytest.approx(0.125, abs=0.03)  # HRNet: 1/(2 * 4) right
    assert bias["exact"] == pytest.approx(0.0, abs=0.03)


def test_exact_flip_shift_is_a_fraction_of_a_column_by_stride():
    # a mirror-symmetric "model" whose flipped-back map is the map itself, at stride 4 and stride 1:
    # the exact shift moves it 0.75 px (a linear mix of each column and its left neighbour), or not at all
    maps = np.random.default_rng(1).random((1, 3, 5, 1)).astype(np.float32)
    sym = maps + maps[:, :, ::-1]
    left = np.concatenate([sym[:, :, :1], sym[:, :, :-1]], axis=2)
    out = flip_test(lambda b: sym, np.zeros((1, 12, 20, 3)), [])
    np.testing.assert_allclose(out, 0.5 * (sym + 0.25 * sym + 0.75 * left), rtol=1e-6)
    np.testing.assert_allclose(flip_test(lambda b: sym, np.zeros((1, 3, 5, 3)), []), sym, rtol=1e-6)
    with pytest.raises(ValueError, match="`shift` must be 'exact', True or False"):
        flip_test(lambda b: sym, np.zeros((1, 3, 5, 3)), [], shift="hrnet")


def test_keypoints_to_image_inverts_the_crop(rng):
    pts = rng.uniform(0, 300, (2, 16, 2))
    mat = affine_matrix((150, 140), 260.0, (256, 256), rotation=30, flip=True)
    np.testing.assert_allclose(keypoints_to_image(transform_points(pts, mat), mat), pts, atol=1e-9)


def test_cpm_center_map():
    m = cpm_center_map((46, 40), (20.0, 10.0), sigma=5.0)
    assert m.shape == (40, 46, 1) and m.dtype == np.float32
    assert m[10, 20, 0] == 1.0 and m.argmax() == 10 * 46 + 20
    assert m[10, 25, 0] == pytest.approx(math.exp(-0.5)) and m[15, 20, 0] == pytest.approx(math.exp(-0.5))


def test_encode_mask():
    mask = np.array([[0, 3, 20], [21, 255, 7]], np.uint8)
    out = encode_mask(mask, 21)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[0, 3, 20], [255, 255, 7]])
    np.testing.assert_array_equal(encode_mask(np.array([[-1, 2]]), 2, ignore_label=9), [[9, 9]])


@pytest.mark.parametrize("call, match", [
    (lambda: encode_heatmaps(np.zeros((3, 2)), np.ones(2), (8, 8)), "visible"),
    (lambda: encode_heatmaps(np.zeros((3,)), np.ones(3), (8, 8)), "keypoints"),
    (lambda: encode_heatmaps(np.zeros((3, 2)), np.ones(3), (8, 8), sigma=0), "sigma"),
    (lambda: encode_heatmaps(np.zeros((3, 2)), np.ones(3), (8.5, 8)), "heatmap_size"),
    (lambda: decode_heatmaps(np.zeros((8, 8))), "heatmaps"),
    (lambda: decode_heatmaps(np.zeros((8, 8, 1)), refine="udp"), "refine"),
    (lambda: encode_mask(np.zeros((4, 4), np.float32), 3), "mask"),
    (lambda: flip_test(lambda b: b, np.zeros((1, 4, 4, 2)), [[0, 2]]), "flip_pairs"),
    (lambda: flip_test(lambda b: b[0], np.zeros((2, 4, 4, 2)), [[0, 1]]), "predict_fn"),
    (lambda: flip_test(lambda b: b, np.zeros((1, 4, 4, 2)), [], stride=0), r"`stride` must be a finite number > 0"),
    (lambda: flip_test(lambda b: b, np.zeros((1, 4, 4, 2)), [], stride=True), r"stride=True"),
    (lambda: cpm_center_map((8, 8), (np.nan, 1)), "center"),
])
def test_bad_input_raises_named_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cpm_center_map_agrees_with_the_zoo_builder_helper():
    from zoo.models.cpm import cpm_center_map as zoo_center_map

    np.testing.assert_allclose(cpm_center_map((46, 40), (20.5, 13.0), 21.0),
                               zoo_center_map(40, 46, 21.0, center=(20.5, 13.0)), atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(xy=st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True, width=64),
                             st.floats(allow_nan=True, allow_infinity=True, width=64)), min_size=1, max_size=6),
       sigma=st.floats(0.3, 4.0), subpixel=st.booleans())
def test_encode_never_nan_and_weight_matches_window(xy, sigma, subpixel):
    kp = np.array(xy, np.float64)
    hm, w = encode_heatmaps(kp, np.ones(len(kp)), (12, 9), sigma, subpixel=subpixel)
    assert hm.shape == (9, 12, len(kp)) and np.isfinite(hm).all() and np.isfinite(w).all()
    assert hm.min() >= 0 and hm.max() <= 1
    r = math.ceil(3 * sigma)
    with np.errstate(invalid="ignore", over="ignore"):
        c = np.floor(kp + 0.5)
        expect = np.isfinite(kp).all(1) & (c[:, 0] + r >= 0) & (c[:, 0] - r <= 11) & (c[:, 1] + r >= 0) & (c[:, 1] - r <= 8)
    np.testing.assert_array_equal(w, expect.astype(np.float32))
    assert not hm[..., w == 0].any()


# ----------------------------------------------------------------------------- released conventions

def _cpm_put_gaussian_maps(center, stride, grid_x, grid_y, sigma):
    """Transcription of CPM's cpm_data_transformer.cpp ``putGaussianMaps`` (one joint, entry starting at 0):
    ``start = stride/2.0 - 0.5; x = start + g_x * stride``; skipped where ``exponent > 4.6052``; clamped at 1."""
    entry = np.zeros((grid_y, grid_x))
    start = stride / 2.0 - 0.5
    for g_y in range(grid_y):
        for g_x in range(grid_x):
            x = start + g_x * stride
            y = start + g_y * stride
            d2 = (x - center[0]) * (x - center[0]) + (y - center[1]) * (y - center[1])
            exponent = d2 / 2.0 / sigma / sigma
            if exponent > 4.6052:
                continue
            entry[g_y, g_x] = min(entry[g_y, g_x] + math.exp(-exponent), 1.0)
    return entry


def _hg_target(pt_in, res_in, res_out, sigma=1):
    """Transcription of pose-hg-train's target: ``transform(pt, c, s, 0, res)`` (img.lua: ``pt_ = pt - 1``,
    scale ``res / h``, ``new_point:int():add(1)``) for a crop of side ``h = res_in`` centred on the crop, then
    ``drawGaussian`` (the ``image.gaussian(2 ceil(3 sigma) + 1)`` window, sigma 0.25 of its size, centred on the
    integer pixel). ``pt_in``: 1-based (x, y) in transform's frame of a crop of ``res_in`` px centred on ``c``
    (crop pixel j sits at j + 0.5 in that frame: :func:`_hg_crop_positions`). Returns the (res_out, res_out) map."""
    c, h = res_in / 2.0, float(res_in)
    new = [int(res_out / h * (p - 1) + res_out * (-c / h + 0.5)) + 1 for p in pt_in]  # Lua :int() truncates
    tmp = math.ceil(3 * sigma)
    size = 2 * tmp + 1
    g = np.array([[math.exp(-(((i - (0.5 * size + 0.5)) / (0.25 * size)) ** 2 / 2
                               + ((j - (0.5 * size + 0.5)) / (0.25 * size)) ** 2 / 2))
                   for i in range(1, size + 1)] for j in range(1, size + 1)])  # [row j][col i]
    img = np.zeros((res_out, res_out))
    _pt = (math.floor(new[0]), math.floor(new[1]))
    for r in range(size):
        for q in range(size):
            y1, x1 = _pt[1] - tmp + r, _pt[0] - tmp + q  # 1-based image indices
            if 1 <= y1 <= res_out and 1 <= x1 <= res_out:
                img[y1 - 1, x1 - 1] = max(img[y1 - 1, x1 - 1], g[r, q])
    return img


def test_cpm_targets_decode_to_their_input_coordinates():
    # CPM's Caffe targets (368 -> 46, stride 8, sigma 7 input px): a joint at 8g + 3.5 peaks exactly on pixel g
    rng = np.random.default_rng(5)
    cpm = HeatmapCodec((368, 368), (46, 46), sigma=7 / 8, offset=3.5)
    ours = HeatmapCodec((368, 368), (46, 46), sigma=7 / 8)
    grid = 3.5 + 8.0 * rng.integers(2, 44, (20, 2))
    hm = np.stack([_cpm_put_gaussian_maps(p, 8, 46, 46, 7.0) for p in grid], axis=-1)
    np.testing.assert_allclose(cpm.decode(hm)[0], grid, atol=1e-3)
    np.testing.assert_allclose(ours.decode(hm)[0], grid - 3.5, atol=1e-3)  # the old decoding: 3.5 px up-left
    # anywhere: quarter-pixel decoding is unbiased with the offset (mean over 400 joints), 3.5 px off without it
    pts = rng.uniform(24, 344, (400, 2))
    hm = np.stack([_cpm_put_gaussian_maps(p, 8, 46, 46, 7.0) for p in pts], axis=-1)
    err = cpm.decode(hm)[0] - pts
    print(f"CPM targets, mean decoding error [input px]: offset 3.5 {err.mean(0)}, offset 0 {err.mean(0) - 3.5}")
    assert np.abs(err.mean(0)).max() < 0.25 and np.abs(err).max() <= 8 * 0.5
    assert np.abs(ours.decode(hm)[0] - pts).mean(0).min() > 3.0


def test_codec_offset_encodes_where_the_release_draws():
    # encode puts the Gaussian at (x_in - offset) / stride: on CPM's grid that is exactly its putGaussianMaps
    codec = HeatmapCodec((368, 368), (46, 46), sigma=7 / 8, offset=3.5, subpixel=True)
    p = np.array([[3.5 + 8 * 20, 3.5 + 8 * 11]])
    hm, _ = codec.encode(p, [1])
    ref = _cpm_put_gaussian_maps(p[0], 8, 46, 46, 7.0)
    on = ref > 0  # the release leaves out the tail below exp(-4.6052)
    np.testing.assert_allclose(hm[..., 0][on], ref[on], rtol=1e-5)
    assert repr(codec).endswith("offset=3.5)")
    for bad in (float("nan"), float("inf"), "1", None, True):
        with pytest.raises(ValueError, match=r"`offset` must be a finite number"):
            HeatmapCodec((368, 368), (46, 46), offset=bad)


@pytest.mark.parametrize("stride,offset", [(8, 3.5), (4, 2.0), (4, 0.0), (8, 0.0)])
def test_flip_test_with_a_general_offset_is_unbiased(stride, offset):
    # An ideal model that draws Gaussians (NumPy, sigma 1.5 heatmap px) where heatmap pixel g is at input px
    # stride * g + offset; flip_test(offset=...) must average the two predictions without moving the joint.
    rng = np.random.default_rng(7)
    w = 16
    W = w * stride
    pairs = [[0, 1]]
    kps = rng.uniform(0.25 * W, 0.75 * W, (6, 2, 2))
    images = rng.random((6, W, W, 3)).astype(np.float32)
    truth = {images[i].tobytes(): kps[i] for i in range(6)}
    truth.update({images[i, :, ::-1].tobytes(): flip_keypoints(kps[i], pairs, W) for i in range(6)})
    g = np.arange(w, dtype=np.float64)

    def ideal(batch):
        out = []
        for b in batch:
            c = (truth[np.ascontiguousarray(b).tobytes()] - offset) / stride  # (2, 2) heatmap px
            gx = np.exp(-((g[None] - c[:, :1]) ** 2) / (2 * 1.5**2))
            gy = np.exp(-((g[None] - c[:, 1:]) ** 2) / (2 * 1.5**2))
            out.append(np.einsum("ky,kx->yxk", gy, gx))
        return np.stack(out)

    codec = HeatmapCodec((W, W), (w, w), sigma=1.5, refine="dark", offset=offset)
    dec, _ = codec.decode(flip_test(ideal, images, pairs, offset=offset))
    bias = (dec - kps)[..., 0].mean() / stride
    assert bias == pytest.approx(0.0, abs=0.03)
    if offset == (stride - 1) / 2:  # centred cells (CPM): nothing to move
        np.testing.assert_array_equal(flip_test(ideal, images, pairs, offset=offset),
                                      flip_test(ideal, images, pairs, shift=False))
    if offset:  # the old exact shift (offset 0) moves it (stride - 1) / stride instead
        dec0, _ = codec.decode(flip_test(ideal, images, pairs))
        bias0 = (dec0 - kps)[..., 0].mean() / stride
        assert bias0 == pytest.approx(offset / stride, abs=0.03)  # 2 offset / stride too far right, halved


def test_exact_flip_shift_moves_left_for_offset_2():
    # stride 4, offset 2: (4 - 1 - 4) / 4 = -0.25 px, a mix of each column and its right neighbour (last repeats)
    maps = np.random.default_rng(1).random((1, 3, 5, 1)).astype(np.float32)
    sym = maps + maps[:, :, ::-1]
    right = np.concatenate([sym[:, :, 1:], sym[:, :, -1:]], axis=2)
    out = flip_test(lambda b: sym, np.zeros((1, 12, 20, 3)), [], offset=2.0)
    np.testing.assert_allclose(out, 0.5 * (sym + 0.75 * sym + 0.25 * right), rtol=1e-6)
    with pytest.raises(ValueError, match=r"`offset` must be a finite number"):
        flip_test(lambda b: sym, np.zeros((1, 12, 20, 3)), [], offset=float("nan"))


# pose-hg-train (princeton-vl/pose-hg-train), transcribed for the released hourglass's convention. Lua indices are
# 1-based and the annotations MATLAB's (pixel k's centre at coordinate k); ``:int()`` truncates towards zero.

def _hg_transform(pt, c, s, res, invert=False):
    """src/util/img.lua ``getTransform`` + ``transform`` (rot 0): ``pt_ = pt - 1``, ``t = [[res/h, 0,
    res (-c_x / h + .5)], ...]`` (h = 200 s), inverted if asked, then ``(t pt_ + 1e-4):int() + 1``."""
    h = 200.0 * s
    t = np.array([[res / h, 0, res * (-c[0] / h + 0.5)], [0, res / h, res * (-c[1] / h + 0.5)], [0, 0, 1]])
    if invert:
        t = np.linalg.inv(t)
    new = (t @ np.array([pt[0] - 1.0, pt[1] - 1.0, 1.0]))[:2] + 1e-4
    return np.trunc(new) + 1


def _torch_scale_1d(src, dst_len):
    """torch image's ``scaleLinear_rowcol`` (``image.scale``'s bilinear mode) on one row, its same-size and
    shrinking branches: output px ``di`` averages the input over ``[di, di + 1) * src_len / dst_len``."""
    src_len = len(src)
    if dst_len == src_len:
        return np.array(src, np.float64)
    assert dst_len < src_len
    scale = src_len / dst_len
    out, si0_i, si0_f = [], 0, 0.0
    for di in range(dst_len):
        si1_f = (di + 1) * scale
        si1_i = int(si1_f)
        si1_f -= si1_i
        acc, n = (1 - si0_f) * src[si0_i], 1 - si0_f
        for si in range(si0_i + 1, si1_i):
            acc, n = acc + src[si], n + 1
        if si1_i < src_len:
            acc, n = acc + si1_f * src[si1_i], n + si1_f
        out.append(acc / n)
        si0_i, si0_f = si1_i, si1_f
    return np.array(out)


def _hg_crop_positions(c, s, res, width):
    """img.lua ``crop`` (rot 0) along x of an image ``width`` px wide whose pixel k holds its own MATLAB coordinate
    k: ``ul = transform({1,1}, .., true)``, ``br = transform({res+1,res+1}, .., true)``, pixels ``ul .. br-1``
    copied into a ``br - ul`` px canvas, then ``image.scale`` to ``res``. Returns (res,) the MATLAB x each crop pixel
    shows (a shrunk pixel: the mean of the columns it averages)."""
    ul = int(_hg_transform((1, 1), c, s, res, invert=True)[0])
    br = int(_hg_transform((res + 1, res + 1), c, s, res, invert=True)[0])
    assert 1 <= ul and br <= width + 1  # inside the image: the zero canvas is all copied over
    return _torch_scale_1d(np.arange(ul, br, dtype=np.float64), res)


def _hg_postprocess(hm, c, s):
    """src/util/pose.lua ``postprocess`` for one (64, 64, K) heatmap (eval.lua ``getPreds`` 1-based argmax, 0.25 px
    towards the higher neighbour where ``1 < pX < 64``, ``p:add(0.5)``, img.lua ``transformPreds`` = ``transform``
    inverted at res 64). Returns (K, 2) MATLAB (x, y) in the original image."""
    res, k = hm.shape[0], hm.shape[-1]
    out = np.zeros((k, 2))
    for j in range(k):
        m = hm[:, :, j]
        idx = int(np.argmax(m.ravel())) + 1  # torch.max: 1-based flat index (row-major)
        px, py = (idx - 1) % res + 1, (idx - 1) // res + 1
        p = np.array([px, py], np.float64)
        if 1 < px < res and 1 < py < res:
            diff = np.array([m[py - 1, px] - m[py - 1, px - 2], m[py, px - 1] - m[py - 2, px - 1]])
            p += 0.25 * np.sign(diff)
        out[j] = _hg_transform(p + 0.5, c, s, res, invert=True)
    return out


def test_hourglass_release_offset_is_where_pose_hg_train_targets_put_its_heatmap_pixels():
    # pose-hg-train's targets (pose.lua generateSample: drawGaussian at transform(pts + 1, c, s, r, 64), a truncated
    # int) on its crops (img.lua crop, image.scale): heatmap pixel g is the target of the crop pixels j with
    # floor((j + 0.5) / 4) = g, i.e. j = 4g .. 4g + 3, whose centre is 4g + 1.5 -- the record's heatmap_offset.
    # Our crop (affine_matrix, centre at (w - 1) / 2) shows the same source positions on average (its centre falls
    # between pixels the same way; the original truncates ul to whole pixels, +-0.5 px).
    import zoo

    rng = np.random.default_rng(11)
    learned, crop_gap = [], []
    for _ in range(40):
        s = float(rng.choice([1.28, 2.56, 5.12]))  # h = 256, 512, 1024 px: shrink 1x, 2x, 4x
        c = (rng.uniform(700, 900), rng.uniform(700, 900))  # MATLAB
        pos = _hg_crop_positions(c, s, 256, 2000)  # MATLAB x shown by crop pixel j = 0..255
        g = np.array([_hg_transform((p + 1, c[1] + 1), c, s, 64)[0] - 1 for p in pos])  # 0-based target pixel
        mat = affine_matrix((c[0] - 1, c[1] - 1), 200 * s, (256, 256))  # ours, 0-based
        ours = transform_points(np.stack([pos - 1, np.full(256, c[1] - 1)], -1), mat)[:, 0]
        learned.append(np.arange(256) - 4 * g)
        crop_gap.append(ours - np.arange(256))
    learned, crop_gap = np.concatenate(learned), np.concatenate(crop_gap)
    print(f"pose-hg-train: crop px - 4 x target px: mean {learned.mean():.4f}; our crop - theirs: mean "
          f"{crop_gap.mean():.4f} px")
    assert learned.mean() == pytest.approx(1.5, abs=1e-9) and set(np.unique(learned)) == {0.0, 1.0, 2.0, 3.0}
    assert abs(crop_gap.mean()) < 0.05 and np.abs(crop_gap).max() <= 0.5 + 1e-6
    assert zoo.get_spec("hourglass").weights["mpii"].heatmap_offset == pytest.approx(learned.mean(), abs=0.05)


def test_hourglass_release_decodes_as_pose_hg_train_postprocess():
    # The same heatmaps decoded by pose-hg-train's postprocess (MATLAB px, ending in transformPreds' int() + 1) and
    # by ours with the release's record (HeatmapCodec quarter refinement, heatmap_offset, keypoints_to_image): the
    # original is ours (+1 for MATLAB) plus its final truncation's (0, 1] px, nothing else.
    import zoo

    rec = zoo.get_spec("hourglass").weights["mpii"]
    codec = HeatmapCodec((256, 256), (64, 64), sigma=1.75, offset=rec.heatmap_offset)
    rng = np.random.default_rng(12)
    gaps = []
    for _ in range(30):
        s = rng.uniform(1.5, 5.0)
        # MATLAB, as getPartInfo returns them; the crop inside the image (int() truncates negatives up)
        c = (rng.uniform(600, 900), rng.uniform(600, 900))
        peaks = rng.uniform(2, 62, (16, 2))
        hm = np.stack([_hg_target(p + 1, 256, 64) for p in 4 * peaks], axis=-1)  # any peaked maps will do
        hm += rng.uniform(0, 0.02, hm.shape)  # break the ties: both take the first maximum
        theirs = _hg_postprocess(hm, c, s)
        kp, _ = codec.decode(hm)
        ours = keypoints_to_image(kp, affine_matrix((c[0] - 1, c[1] - 1), 200 * s, (256, 256))) + 1
        gaps.append(theirs - ours)
    gaps = np.concatenate(gaps)
    print(f"pose-hg-train postprocess - ours (MATLAB px): min {gaps.min():.4f}, mean {gaps.mean():.4f}, "
          f"max {gaps.max():.4f}")
    assert gaps.min() > -1e-3 and gaps.max() <= 1 + 1e-3


def test_hourglass_release_flip_test_is_pose_hg_train_plain_average():
    # pose-hg-train averages the mirrored pass unshifted (train.lua: flip(shuffleLR(out)), then (a + b) / 2), its
    # targets being mirror-symmetric (floor((j + 0.5) / 4) for crop px j): with the record's offset the exact shift
    # (4 - 1 - 2 offset) / 4 is 0 and flip_test is that plain average (at offset 2 it moved the map 0.25 px)
    import zoo

    rec = zoo.get_spec("hourglass").weights["mpii"]
    rng = np.random.default_rng(13)
    maps = rng.random((2, 64, 64, 16)).astype(np.float32)
    mirrored = rng.random((2, 64, 64, 16)).astype(np.float32)
    images = rng.random((2, 256, 256, 3)).astype(np.float32)
    out = flip_test(lambda b: maps if np.array_equal(b, images) else mirrored, images, rec.flip_pairs,
                    offset=rec.heatmap_offset)
    plain = 0.5 * (maps + swap_pairs(mirrored[:, :, ::-1], rec.flip_pairs, axis=-1))  # train.lua's average
    np.testing.assert_allclose(out, plain, rtol=1e-6)
