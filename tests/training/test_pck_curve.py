"""PCK curves, their AUC and the end-point error: training.metrics (pck_thresholds, pck_curve, end_point_error,
keypoint_auc_mmpose), the plot (training.visualize.pck_curve_plot) and what evaluate adds to a pose table.

References are written here: hand counts, a NumPy transcription of MPII's evaluatePCKh.m (computePCK,
area_under_curve) and of MMPose's keypoint_auc."""

import csv

import cv2
import numpy as np
import pytest

from tests.training import test_evaluation as te
from training.data import HeatmapDataset
from training.datasets.base import PoseRecord
from training.datasets.mpii import MPII_FLIP_PAIRS
from training.evaluation import evaluate, format_table
from training.metrics import MPII_JOINT_NAMES, end_point_error, keypoint_auc_mmpose, pck_curve, pck_thresholds, pckh
from training.transforms import transform_points
from training.visualize import PCK_PLOT_MARGINS, pck_curve_plot

# Parsers, NumPy and OpenCV only, nothing a Keras backend computes: ./dev test's TensorFlow pass runs these,
# its JAX pass (-m backend_agnostic) has nothing here that could differ.


def test_thresholds_are_mpii_range_or_equal_steps_ending_at_alpha():
    t = pck_thresholds(0.5)
    assert len(t) == 51 and all(t[i] == float(f"{i / 100}") for i in range(51))  # MATLAB's 0:0.01:0.5
    assert len(pck_thresholds(0.2)) == 21 and pck_thresholds(0.2)[-1] == 0.2 and pck_thresholds(0.2)[7] == 0.07
    odd = pck_thresholds(0.333)  # not a multiple of 0.01: 34 equal steps of 0.333 / 34 < 0.01, ending at 0.333
    assert len(odd) == 35 and odd[-1] == 0.333 and odd[0] == 0.0
    np.testing.assert_allclose(np.diff(odd), 0.333 / 34)
    np.testing.assert_allclose(pck_thresholds(0.005), [0.0, 0.005])
    for bad in (0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            pck_thresholds(bad)


def test_curve_auc_and_epe_by_hand():
    # normaliser 10 px: a joint with error e px is a hit at threshold i / 100 when e <= i / 10
    gt = np.zeros((3, 3, 2))
    pred = np.zeros((3, 3, 2))
    pred[0, :, 0] = [0.0, 1.53, 4.2]  # hit from i = 0, 16, 43 (never within 0.3)
    pred[1, :, 0] = [7.0, np.nan, 0.55]  # joint 0 not visible; joint 1 has no prediction: a miss; 0.55 from i = 6
    pred[2, 0, 1] = 3.0  # a sample without a normaliser: out of PCK, in the EPE
    vis = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0]])
    norm = np.array([10.0, 10.0, np.nan])
    c = pck_curve(pred, gt, vis, norm, pck_thresholds(0.3))
    i = np.arange(31)
    # 5 joints count: hits 1 (i < 6), 2 (6..15), 3 (16..30)
    expected = (1 + (i >= 6) + (i >= 16)) / 5
    np.testing.assert_allclose(c["mean"], expected)
    assert c["auc"] == pytest.approx((6 * 1 + 10 * 2 + 15 * 3) / (31 * 5))  # 71 / 155
    np.testing.assert_allclose(c["per_joint"]["joint_0"], np.ones(31))  # 1 of 1, exact at t = 0 (<=, as MPII)
    np.testing.assert_allclose(c["per_joint"]["joint_1"], 0.5 * (i >= 16))
    np.testing.assert_allclose(c["per_joint"]["joint_2"], 0.5 * (i >= 6))
    assert "groups" not in c
    # the curve ends at pckh's table "mean" for the same alpha
    assert c["mean"][-1] == pytest.approx(pckh(pred, gt, vis, norm, alpha=0.3)["mean"])
    epe, n = end_point_error(pred, gt, vis)
    assert n == 5 and epe == pytest.approx((0 + 1.53 + 4.2 + 0.55 + 3.0) / 5)
    assert np.isnan(end_point_error(pred, gt, np.zeros((3, 3)))[0])


def _evaluate_pckh_m(pred, gt, vis, head_size):
    """NumPy transcription of MPII's evaluatePCKh.m: pred(isnan(pred)) = inf; getDistPCKh (NaN where gt is
    missing); computePCK over range = 0:0.01:0.5 per joint and in total over the 14 joints of annolist2matrix
    (pelvis and thorax left out); area_under_curve(scale01(range), total) by the trapezoid rule."""
    rng_ = np.array([k / 100 for k in range(51)])
    pred = np.where(np.isnan(pred), np.inf, pred)
    dist = np.full(gt.shape[:2], np.nan)
    for n in range(gt.shape[0]):
        for j in range(gt.shape[1]):
            if vis[n, j]:
                dist[n, j] = np.sqrt(((pred[n, j] - gt[n, j]) ** 2).sum()) / head_size[n]
    pck = np.zeros((51, 16))
    for j in range(16):
        d = dist[:, j][~np.isnan(dist[:, j])]
        pck[:, j] = [100 * np.mean(d <= r) for r in rng_]
    d = dist[:, [j for j in range(16) if j not in (6, 7)]].ravel()
    d = d[~np.isnan(d)]
    total = np.array([100 * np.mean(d <= r) for r in rng_])
    x = (rng_ - rng_.min()) / (rng_.max() - rng_.min())
    auc = x[0] * total[0] + sum((x[i] - x[i - 1]) * (total[i] + total[i - 1]) for i in range(1, 51))
    return pck, total, auc / 2


def test_curve_matches_a_transcription_of_evaluate_pckh_m(rng):
    n = 60
    gt = rng.uniform(0, 400, (n, 16, 2))
    head = rng.uniform(20, 60, n)
    pred = gt + rng.normal(0, 1, (n, 16, 2)) * head[:, None, None] * rng.uniform(0.05, 0.4, 16)[None, :, None]
    pred[rng.uniform(size=(n, 16)) < 0.05] = np.nan  # missing predictions: misses (MPII sets them to inf)
    vis = rng.uniform(size=(n, 16)) > 0.15
    c = pck_curve(pred, gt, vis, head, pck_thresholds(0.5), joint_names=MPII_JOINT_NAMES)
    pck, total, auc = _evaluate_pckh_m(pred, gt, vis, head)
    for j, name in enumerate(MPII_JOINT_NAMES):
        np.testing.assert_allclose(100 * np.array(c["per_joint"][name]), pck[:, j], err_msg=name)
    np.testing.assert_allclose(100 * np.array(c["mean"]), total)
    np.testing.assert_allclose(100 * np.array(c["groups"]["Ankle"]), (pck[:, 0] + pck[:, 5]) / 2)  # [1 6]
    np.testing.assert_allclose(100 * np.array(c["groups"]["Head"]), pck[:, 9])
    # ours is the mean over the 51 thresholds; MPII's the trapezoid: related as pck_curve's docstring says
    assert 100 * c["auc"] == pytest.approx(total.mean())
    assert (51 * 100 * c["auc"] - (total[0] + total[-1]) / 2) / 50 == pytest.approx(auc)
    assert abs(100 * c["auc"] - auc) < 1.0


def _keypoint_auc_mmpose(pred, gt, mask, norm_factor, num_thrs=20):
    """NumPy transcription of mmpose/evaluation/functional/keypoint_eval.py keypoint_auc."""
    n, k, _ = pred.shape
    nor = np.tile(np.array([[norm_factor, norm_factor]], np.float64), (n, 1))
    accs = []
    for thr in [1.0 * i / num_thrs for i in range(num_thrs)]:
        dist = np.full((n, k), -1.0, np.float32)
        dist[mask > 0] = np.linalg.norm(((pred - gt) / nor[:, None, :])[mask > 0], axis=-1)
        per = []
        for d in dist.T:
            valid = d != -1
            per.append((d[valid] < thr).sum() / valid.sum() if valid.sum() else -1)
        per = np.array(per)
        accs.append(per[per >= 0].mean() if (per >= 0).any() else 0)
    return sum(a / num_thrs for a in accs)


def test_mmpose_auc_by_hand_and_against_a_transcription(rng):
    # 30 px, thresholds 1.5 i px (i = 0..19), strict: 3 px hits from i = 3 (17 of 20), 20 px from i = 14 (6)
    gt = np.zeros((2, 1, 2))
    pred = np.array([[[3.0, 0.0]], [[0.0, 20.0]]])
    assert keypoint_auc_mmpose(pred, gt, np.ones((2, 1))) == pytest.approx((17 + 6) / 40)
    gt = rng.uniform(0, 320, (50, 21, 2))
    pred = gt + rng.normal(0, 8, gt.shape)
    mask = rng.uniform(size=(50, 21)) > 0.2
    mask[:, 4] = False  # a joint never visible: skipped, not a 0
    assert keypoint_auc_mmpose(pred, gt, mask) == pytest.approx(_keypoint_auc_mmpose(pred, gt, mask, 30.0), abs=1e-6)
    with pytest.raises(ValueError, match="num_thresholds"):
        keypoint_auc_mmpose(pred, gt, mask, num_thresholds=0)


def _plot_xy(t, p, t_max, size):
    """Where pck_curve_plot's docstring puts threshold t and PCK p (fraction)."""
    left, top, right, bottom = PCK_PLOT_MARGINS
    x0, y0, x1, y1 = left, top, size[0] - right, size[1] - bottom
    return int(round(x0 + t / t_max * (x1 - x0))), int(round(y1 - p * (y1 - y0)))


def test_mpii_evaluate_adds_auc_epe_curve_csv_and_plot(tmp_path):
    # as test_evaluation's MPII table, on whole px of an identity crop (centre 31.5: pixel centres at integers)
    # so the decoded errors are exact: head size 30 px, a joint
    # with error e is a hit at threshold i / 100 when e <= 0.3 i: e = 0 from i = 0, 1 from 4, 8 from 27, 25 never
    err = np.array([[0, 1, 8, 25] * 4, [25, 8, 1, 0] * 4], np.float64)
    vis = np.ones((2, 16))
    vis[1, 9] = 0
    kp = np.stack([np.array([10.0 + (j % 4) * 5, 5.0 + j * 3]) for j in range(16)])
    recs = [PoseRecord(image=te._Blank((64, 64)), keypoints=kp, visible=vis[n], center=np.array([31.5, 31.5]),
                       scale=64.0, head_box=np.array([0, 0, 30, 40.0]), id=f"p{n}") for n in range(2)]
    ds = HeatmapDataset(recs, batch_size=2, input_size=(64, 64), heatmap_size=(64, 64), sigma=1.5,
                        flip_pairs=MPII_FLIP_PAIRS, shuffle=False)

    def off_by_err(d, b):
        out = []
        for i in d.batch_indices(b):
            rec = d.records[int(i)]
            moved = rec.keypoints + np.stack([err[int(i)], np.zeros(16)], 1)
            out.append(te._gaussians(transform_points(moved, d.matrix(rec)), (64, 64)))
        return np.stack(out)

    res = evaluate(te._Replay(ds, off_by_err), ds, out_dir=tmp_path, verbose=False)
    assert res.mean == pytest.approx(20 / 27)  # unchanged, as test_evaluation's
    # the 27 "mean" joints (pelvis, thorax out; head top of person 2 not annotated) have errors
    # 0 x 7, 1 x 7, 8 x 6, 25 x 7
    i = np.arange(51)
    mean = (7 + 7 * (i >= 4) + 6 * (i >= 27)) / 27
    np.testing.assert_allclose(res.table["curve"]["mean"], mean)
    assert res.table["auc"] == pytest.approx((7 * 51 + 7 * 47 + 6 * 24) / (51 * 27))  # 830 / 1377
    # every visible joint (31, pelvis and thorax included): person 1 sums 4 x 34 px, person 2 the same less 8
    assert res.table["epe_count"] == 31 and res.table["epe_px"] == pytest.approx((136 + 128) / 31)
    text = format_table(res)
    assert "auc                   60.28  (mean PCK over 51 thresholds 0..0.5)" in text
    assert "epe_px                 8.52  (n=31, original image px)" in text
    table = {r["name"]: r for r in csv.DictReader(open(res.table_path))}
    assert float(table["auc"]["value"]) == pytest.approx(830 / 1377, abs=1e-6)
    assert float(table["epe_px"]["value"]) == pytest.approx(264 / 31, abs=1e-6) and table["epe_px"]["count"] == "31"
    assert float(table["mean"]["value"]) == pytest.approx(20 / 27, abs=1e-6)

    # pck_curve.csv: threshold, the 16 joints, the 7 groups, mean; one row per threshold
    rows = list(csv.DictReader(open(tmp_path / "pck_curve.csv")))
    assert res.curve_path == tmp_path / "pck_curve.csv"
    assert list(rows[0]) == ["threshold", *MPII_JOINT_NAMES, "Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee",
                             "Ankle", "mean"]
    assert [r["threshold"] for r in rows] == [f"{k / 100:g}" for k in range(51)]
    np.testing.assert_allclose([float(r["mean"]) for r in rows], mean, atol=1e-6)
    # Hip: r_hip errors 8 and 1 (0, 1/2 from i = 4, 1 from 27), l_hip 25 and 0 (1/2)
    hip = ((i >= 4) * 0.5 + (i >= 27) * 0.5 + 0.5) / 2
    np.testing.assert_allclose([float(r["Hip"]) for r in rows], hip, atol=1e-6)
    # head top: error 1 px, 1 of 1 annotated
    np.testing.assert_allclose([float(r["head_top"]) for r in rows], (i >= 4) * 1.0)

    # pck_curve.png: the default 760 x 480, drawn, and its black mean line where the numbers put it
    img = cv2.imread(str(tmp_path / "pck_curve.png"))
    assert res.curve_plot_path == tmp_path / "pck_curve.png" and img.shape == (480, 760, 3)
    assert (img < 128).any(axis=2).mean() > 0.01 and (img == 255).all(axis=2).mean() > 0.5
    for t, p in ((0.1, 14 / 27), (0.4, 20 / 27), (0.02, 7 / 27)):  # on flat stretches of the mean curve
        x, y = _plot_xy(t, p, 0.5, (760, 480))
        assert img[y, x].max() < 60, (t, p, img[y, x])
        assert img[y - 8, x].max() > 100 and img[y + 8, x].max() > 100  # a line, not a dark band
    x, y = _plot_xy(0.4, 0.3, 0.5, (760, 480))
    assert img[y, x].max() > 100  # no mean line at 30 % there

    # alpha not a multiple of 0.01: equal steps up to alpha itself, the curve ending at the table's mean
    res = evaluate(te._Replay(ds, off_by_err), ds, alpha=0.333, verbose=False)
    c = res.table["curve"]
    assert len(c["thresholds"]) == 35 and c["thresholds"][-1] == 0.333 and c["mean"][-1] == res.mean


def test_plot_of_many_joints_keeps_its_size_and_legend():
    t = pck_thresholds(0.2)
    curve = {"thresholds": t.tolist(), "mean": np.clip(t * 4, 0, 1).tolist(), "auc": 0.4,
             "per_joint": {f"j{k}": np.clip(t * (k + 1), 0, 1).tolist() for k in range(42)}}
    curve["per_joint"]["j3"][5] = float("nan")  # a gap, not a crash
    img = pck_curve_plot(curve, size=(500, 300))
    assert img.shape == (300, 500, 3) and img.dtype == np.uint8
    x, y = _plot_xy(0.1, 0.4, 0.2, (500, 300))
    assert img[y, x].max() < 60  # the mean line (PCK 4 t) at t = 0.1
    with pytest.raises(ValueError, match="thresholds"):
        pck_curve_plot({**curve, "thresholds": [0.0]})


def test_joint_names_repeated_or_reserved_are_refused():
    # a repeated name hid a joint in pckh's/pck_curve's per-joint dicts (and evaluate's rows then ran off the end)
    g = np.zeros((2, 3, 2))
    for fn in (lambda: pckh(g, g, np.ones((2, 3)), np.ones(2), joint_names=("a", "a", "b")),
               lambda: pck_curve(g, g, np.ones((2, 3)), np.ones(2), [0.0, 0.1], joint_names=("a", "b", "a"))):
        with pytest.raises(ValueError, match=r"`joint_names` must be 3 distinct names.*\['a'\]"):
            fn()
    # evaluate: a joint called "mean" or "threshold" was a second column of that name in pck_curve.csv (the
    # joint's curve lost under the mean's) and a second "mean" row in table.csv; refused before the model runs
    kp = np.array([[10.0, 10.0], [20.0, 30.0], [40.0, 20.0]])
    recs = [PoseRecord(image=te._Blank((64, 64)), keypoints=kp, visible=np.ones(3), center=np.array([31.5, 31.5]),
                       scale=64.0, box=np.array([0, 0, 60, 60.0]), id=f"p{n}") for n in range(2)]
    ds = HeatmapDataset(recs, batch_size=2, input_size=(64, 64), heatmap_size=(64, 64), sigma=1.5, flip_pairs=(),
                        shuffle=False)

    def never(d, b):
        raise AssertionError("the model ran")

    for names, bad in ((("threshold", "b", "c"), "threshold"), (("a", "mean", "c"), "mean"),
                       (("a", "auc", "c"), "auc"), (("a", "b", "a"), "a")):
        with pytest.raises(ValueError, match=rf"`names` must be 3 distinct joint names.*\['{bad}'\]"):
            evaluate(te._Replay(ds, never), ds, names=names, verbose=False)
    with pytest.raises(ValueError, match="`names` must be 3 distinct joint names.*Received 2"):
        evaluate(te._Replay(ds, never), ds, names=("a", "b"), verbose=False)


@pytest.mark.parametrize("alpha, ticks", [(0.005, [0.001, 0.002, 0.003, 0.004]), (1e-9, [2e-10, 4e-10, 6e-10, 8e-10]),
                                          (1000.0, [200, 400, 600, 800]), (0.5, [0.1, 0.2, 0.3, 0.4]),
                                          (0.333, [0.1, 0.2, 0.3])])
def test_plot_has_round_ticks_at_any_alpha(alpha, ticks):
    # the ticks came from a list 0.01 .. 5: under alpha 0.01 the x axis had the one tick "0", above 30 only 0
    # and alpha. Nothing drawn but the frame and grid here (every PCK NaN): the grid's columns are the ticks
    t = pck_thresholds(alpha)
    nan = [float("nan")] * len(t)
    img = pck_curve_plot({"thresholds": t.tolist(), "mean": nan, "per_joint": {"a": nan}})
    left, _, right, _ = PCK_PLOT_MARGINS
    _, y = _plot_xy(0.0, 0.5, alpha, (760, 480))  # between the 40 % and 60 % lines
    grid = np.flatnonzero(img[y, left + 1:760 - right].max(axis=1) < 255) + left + 1
    assert grid.tolist() == [_plot_xy(v, 0.5, alpha, (760, 480))[0] for v in ticks]


def test_plot_refuses_a_curve_it_cannot_draw():
    # a series of another length was numpy's 'all input arrays must have the same shape', an infinite threshold
    # 'arange: cannot compute length'; decreasing thresholds and values outside [0, 1] (a percentage, 1e12:
    # int32 overflow in the 1/16 px fixed point) were drawn as nonsense
    t = [0.0, 0.1, 0.2]
    ok = {"thresholds": t, "mean": [0.0, 0.5, float("nan")], "per_joint": {"a": [0.0, 0.5, 1.0]}}
    assert pck_curve_plot(ok).shape == (480, 760, 3)
    for bad, match in (({"per_joint": {"a": [0.0, 0.5]}}, r"curve 'a' must be 3 PCK fractions.*shape \(2,\)"),
                       ({"mean": []}, r"curve 'mean' must be 3 PCK fractions.*shape \(0,\)"),
                       ({"mean": [0.0, 50.0, 100.0]}, "curve 'mean' must be 3 PCK fractions.*value 50.0"),
                       ({"per_joint": {"a": [0.0, 1e12, -1.0]}}, "curve 'a' .*value 1000000000000.0"),
                       ({"thresholds": [0.0, float("inf"), 0.2]}, "thresholds.*increasing"),
                       ({"thresholds": [0.0, 0.2, 0.1]}, "thresholds.*increasing"),
                       ({"thresholds": [-0.1, 0.0, 0.2]}, "thresholds.*>= 0")):
        with pytest.raises(ValueError, match=r"pck_curve_plot: .*" + match):
            pck_curve_plot({**ok, **bad})


def test_thresholds_refuse_what_is_no_fraction_naming_alpha():
    # None was float()'s TypeError, "x" its 'could not convert', 1e300 numpy's 'Maximum allowed size exceeded'
    # and 1e7 a billion thresholds; none named alpha
    for bad in (None, "x", "0.5", True, [0.5, 0.2], 1e300, 1e7, float("inf")):
        with pytest.raises(ValueError, match=r"pck_thresholds: `alpha` and `step` must be numbers > 0 .*alpha="):
            pck_thresholds(bad)
    with pytest.raises(ValueError, match="step=None"):
        pck_thresholds(0.5, step=None)
    assert len(pck_thresholds(100.0)) == 10001 and pck_thresholds(np.float32(0.5))[-1] == np.float32(0.5)


def test_mmpose_auc_names_its_arguments():
    # num_thresholds=None was int()'s TypeError, norm_px="a" / None float()'s errors: neither named the argument
    g = np.zeros((2, 3, 2))
    for bad in (None, "20", 2.5, 0, True, [20], float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"`num_thresholds` must be an int >= 1\. Received"):
            keypoint_auc_mmpose(g, g, np.ones((2, 3)), num_thresholds=bad)
    for bad in (None, "a", "30", 0, -30.0, float("nan"), float("inf"), [30.0], True):
        with pytest.raises(ValueError, match=r"`norm_px` must be a number of px > 0\. Received"):
            keypoint_auc_mmpose(g, g, np.ones((2, 3)), norm_px=bad)
    assert keypoint_auc_mmpose(g, g, np.ones((2, 3)), norm_px=np.float32(30), num_thresholds=np.int64(4)) == 0.75
