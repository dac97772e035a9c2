"""training.evaluate: every sample is scored, whatever the dataset's training settings."""

import numpy as np
import pytest

from training.data import HeatmapDataset, SegmentationDataset
from training.datasets.base import PoseRecord
from training.datasets.synthetic import synthetic_pose, synthetic_segmentation
from tests.training.helpers import Blobs
from training.evaluation import evaluate
from training.transforms import transform_points

# Most tests here are NumPy/OpenCV only (nothing a Keras backend computes) and run in ./dev test's TensorFlow
# pass alone; those that build or run a Keras model are marked backend_agnostic one by one, for its JAX pass too.


class _Replay:
    """Duck-typed model: ``predict_on_batch`` answers batch after batch with ``fn(dataset, batch)``."""

    def __init__(self, ds, fn):
        self.ds, self.fn, self.batch = ds, fn, 0

    def predict_on_batch(self, x):
        out = self.fn(self.ds, self.batch)
        self.batch += 1
        return out


def _all_background(ds, b):
    n = len(ds.batch_indices(b))
    w, h = ds.label_size
    out = np.zeros((n, h, w, ds.num_classes), np.float32)
    out[..., 0] = 1.0
    return out


def test_segmentation_scores_the_last_partial_batch_with_drop_remainder():
    recs = synthetic_segmentation(5, image_size=(32, 32), num_classes=3)
    kw = dict(batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)
    full = SegmentationDataset(recs, **kw)
    labels = np.concatenate([full[b][1] for b in range(len(full))])  # (5, 32, 32): every sample
    assert labels.shape[0] == 5
    # "always background": IoU_0 = #gt0 / #valid, IoU_c = 0 for the other classes that occur
    valid = labels[labels != 255]
    expected = np.mean([np.mean(valid == 0)] + [0.0 for c in (1, 2) if np.any(valid == c)])
    ds = SegmentationDataset(recs, drop_remainder=True, **kw)  # a training setting: 2 full batches only
    res = evaluate(_Replay(full, _all_background), ds, verbose=False)
    assert len(res.rows) == 5
    assert res.mean == pytest.approx(expected, abs=1e-12)


def test_segmentation_mean_leaves_out_a_class_that_occurs_nowhere_and_warns_the_pspnet_mean(recwarn):
    # 4 classes, labels of 3 (class 3 in no mask), "always background": IoU_3 = 0 / 0. FCN's score.py:
    # np.nanmean over the other 3; PSPNet's eval_acc.m / semseg's test.py: I / (U + eps) averaged over all 4.
    recs = synthetic_segmentation(3, image_size=(32, 32), num_classes=3)
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=4, shuffle=False)
    labels = np.concatenate([ds[b][1] for b in range(len(ds))])
    valid = labels[labels != 255]
    iou = np.array([np.mean(valid == 0)] + [0.0 if np.any(valid == c) else np.nan for c in (1, 2, 3)])
    with np.errstate(invalid="ignore"):
        fcn, pspnet = np.nanmean(iou), np.nan_to_num(iou).sum() / 4
    with pytest.warns(UserWarning, match=rf"1 of 4 classes .*\(class3\).*mean IoU {fcn:.6f} is over the other 3 "
                                         rf".*count them as 0: {pspnet:.6f} over all 4"):
        res = evaluate(_Replay(ds, _all_background), ds, verbose=False)
    assert np.isnan(res.table["iou"]["class3"]) and res.mean == pytest.approx(fcn, abs=1e-12)
    recwarn.clear()
    three = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)
    evaluate(_Replay(three, _all_background), three, verbose=False)
    assert not [w for w in recwarn if "classes occur in neither" in str(w.message)]  # every class occurs


def _oracle_heatmaps(ds, b):
    out = []
    for i in ds.batch_indices(b):
        rec = ds.records[int(i)]
        out.append(ds.codec.encode(transform_points(rec.keypoints, ds.matrix(rec)), rec.visible)[0])
    return np.stack(out)


def test_pose_scores_the_last_partial_batch_with_drop_remainder():
    recs = synthetic_pose(10, image_size=(96, 96), num_keypoints=4, seed=3)
    kw = dict(batch_size=4, input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, shuffle=False)
    full = HeatmapDataset(recs, **kw)  # the order evaluate must follow: 3 batches, the last one of 2
    ds = HeatmapDataset(recs, drop_remainder=True, **kw)
    res = evaluate(_Replay(full, _oracle_heatmaps), ds, verbose=False)  # used to raise: 8 predictions, 10 records
    assert len(res.rows) == 10 * 4
    assert res.mean == 1.0  # the targets themselves, decoded: every annotated joint is a hit


def test_the_tables_name_the_datasets_keypoints_and_classes(tmp_path):
    """A dataset made with keypoint_names / class_names (a user's own data) was tabled as joint0.., class0.. while
    predict named them; evaluate's names= still comes first."""
    recs = synthetic_pose(4, image_size=(96, 96), num_keypoints=3, seed=3)
    kw = dict(batch_size=2, input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, shuffle=False)
    ds = HeatmapDataset(recs, keypoint_names=("nose", "tail", "paw"), **kw)
    res = evaluate(_Replay(ds, _oracle_heatmaps), ds, out_dir=tmp_path / "pose", verbose=False)
    assert list(res.table["per_joint"]) == ["nose", "tail", "paw"]
    assert [r["name"] for r in res.rows[:3]] == ["nose", "tail", "paw"]
    assert "nose" in (tmp_path / "pose" / "table.csv").read_text()
    given = evaluate(_Replay(ds, _oracle_heatmaps), ds, names=("a", "b", "c"), verbose=False)
    assert list(given.table["per_joint"]) == ["a", "b", "c"]
    seg = SegmentationDataset(synthetic_segmentation(2, image_size=(32, 32), num_classes=3), batch_size=2,
                              input_size=(32, 32), num_classes=3, shuffle=False, class_names=("sky", "road", "car"))
    assert list(evaluate(_Replay(seg, _all_background), seg, verbose=False).table["iou"]) == ["sky", "road", "car"]


def test_segmentation_nan_score_never_wins():
    recs = synthetic_segmentation(3, image_size=(32, 32), num_classes=3)
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)
    labels = np.concatenate([ds[b][1] for b in range(len(ds))])
    valid = labels[labels != 255]
    expected = np.mean([np.mean(valid == 0)] + [0.0 for c in (1, 2) if np.any(valid == c)])

    def background_with_nan(d, b):  # "always background", but one NaN score for class 1 per image
        out = _all_background(d, b)
        out[:, 0, 0, 1] = np.nan
        return out

    res = evaluate(_Replay(ds, background_with_nan), ds, verbose=False)
    assert res.mean == pytest.approx(expected, abs=1e-12)  # numpy's argmax picked the NaN: class 1 there


def test_lsp_layout_is_scored_by_the_torso_as_the_official_lsp_pck():
    from training.datasets.lsp import LSP_FLIP_PAIRS, LSP_JOINTS

    # 14 LSP joints: left shoulder (9) to right hip (2) is 44.7 px; the joints span a 100 px box.
    kp = np.array([[20, 90], [22, 70], [30, 50], [50, 50], [58, 70], [60, 90], [10, 30], [15, 20], [30, 10],
                   [50, 10], [65, 20], [70, 30], [40, 5], [40, -10]], np.float64) + [20, 10]
    assert np.hypot(*(kp[9] - kp[2])) == pytest.approx(44.72, abs=0.01) and np.ptp(kp[:, 1]) == 100
    recs = [r.replace(keypoints=kp, visible=np.ones(14), center=(60.0, 50.0), scale=130.0, box=None)
            for r in synthetic_pose(3, image_size=(128, 128), num_keypoints=14, seed=5)]
    ds = HeatmapDataset(recs, batch_size=2, input_size=(128, 128), heatmap_size=(64, 64), sigma=1.0,
                        flip_pairs=LSP_FLIP_PAIRS, shuffle=False)

    def right_ankle_12px_off(d, b):  # 12 px: a miss against 0.2 x torso (8.9 px), a hit against 0.2 x box (20 px)
        out = []
        for i in d.batch_indices(b):
            rec = d.records[int(i)]
            moved = rec.keypoints + np.where(np.arange(14)[:, None] == 0, [12.0, 0.0], 0.0)
            out.append(d.codec.encode(transform_points(moved, d.matrix(rec)), rec.visible)[0])
        return np.stack(out)

    res = evaluate(_Replay(ds, right_ankle_12px_off), ds, verbose=False)
    assert res.metric == "PCK (torso)@0.2" and list(res.table["per_joint"])[0] == LSP_JOINTS[0]
    assert res.table["per_joint"][LSP_JOINTS[0]] == 0.0 and res.mean == pytest.approx(13 / 14)
    assert all(r["norm"] == pytest.approx(44.721, abs=1e-3) for r in res.rows)


def _seg_files(tmp_path, shapes):
    import cv2

    from training.datasets.base import SegRecord

    recs, masks = [], []
    for n, (h, w) in enumerate(shapes):
        mask = np.zeros((h, w), np.uint8)
        mask[h // 5:h // 2, w // 6:w // 2] = 1  # large blocks: resampling changes only their edges
        mask[h // 2 + 2:, w // 2 + 3:w - 2] = 2
        mask[0, :] = 255  # void
        image = np.dstack([mask * 60] * 3).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"im{n}.png"), image)
        cv2.imwrite(str(tmp_path / f"m{n}.png"), mask)
        recs.append(SegRecord(image=str(tmp_path / f"im{n}.png"), mask=str(tmp_path / f"m{n}.png"), id=f"im{n}"))
        masks.append(mask)
    return recs, masks


def test_segmentation_is_scored_on_the_original_masks(tmp_path):
    recs, masks = _seg_files(tmp_path, [(45, 31), (23, 60), (40, 40)])  # odd sizes, landscape and portrait
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), label_size=(16, 16), num_classes=3,
                             shuffle=False)
    valid = np.concatenate([m[m != 255] for m in masks])  # every original pixel, not the 16 x 16 grid's
    expected = np.mean([np.mean(valid == 0), 0.0, 0.0])
    res = evaluate(_Replay(ds, _all_background), ds, verbose=False)
    assert res.metric == "IoU per class (original image size)"
    assert res.mean == pytest.approx(expected, abs=1e-12)
    assert [r["valid_pixels"] for r in res.rows] == [int((m != 255).sum()) for m in masks]
    small = evaluate(_Replay(ds, _all_background), ds, resolution="input", verbose=False)
    assert small.metric == "IoU per class (network label size)" and small.mean != pytest.approx(expected, abs=1e-6)

    def labels_as_scores(d, b):  # a perfect model at the network's resolution
        y = d[b][1]
        return np.eye(3, dtype=np.float32)[np.where(y == 255, 0, y)] * 10.0

    res = evaluate(_Replay(ds, labels_as_scores), ds, verbose=False)
    assert res.mean > 0.85  # upsampled 16x16 labels against the full masks: only block edges differ
    with pytest.raises(ValueError, match="resolution must be 'original' or 'input'"):
        evaluate(_Replay(ds, _all_background), ds, resolution="full", verbose=False)


def test_scores_to_image_follows_the_label_matrix():
    from training.targets import scores_to_image

    grid = np.arange(4 * 5, dtype=np.float32).reshape(4, 5, 1)  # value = 5 * row + column
    m = np.array([[0.5, 0.0, 0.25], [0.0, 0.5, 1.0]])  # image (x, y) -> grid (x / 2 + 0.25, y / 2 + 1)
    out = scores_to_image(grid, m, (5, 9), rows_per_chunk=2)[..., 0]
    ys, xs = np.mgrid[0:5, 0:9]
    u, v = np.clip(xs / 2 + 0.25, 0, 4), np.clip(ys / 2 + 1.0, 0, 3)
    np.testing.assert_allclose(out, 5 * v + u, atol=1e-5)  # bilinear of a linear ramp is the ramp


def test_flip_test_without_flip_pairs_warns(recwarn):
    recs = synthetic_pose(2, image_size=(32, 32), num_keypoints=4)
    kw = dict(batch_size=2, input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, shuffle=False)

    class Zeros:  # flip-testing predicts each batch twice
        def predict_on_batch(self, x):
            return np.zeros((len(x), 8, 8, 4), np.float32)

    unknown = HeatmapDataset(recs, **kw)
    with pytest.warns(UserWarning, match=r"evaluate\(flip=True\): the dataset was made without flip_pairs"):
        evaluate(Zeros(), unknown, flip=True, verbose=False)
    recwarn.clear()
    evaluate(Zeros(), HeatmapDataset(recs, flip_pairs=(), **kw), flip=True, verbose=False)
    evaluate(Zeros(), unknown, verbose=False)
    assert not [w for w in recwarn if "flip_pairs" in str(w.message)]


class _BlobFinder:
    """A stand-in 'model' that finds each joint's blob in the *network input* (intensity centroid, input px)
    and answers a Gaussian heatmap there, written out by hand: ``x_hm = x_in / stride`` (MSRA)."""

    def __init__(self, hm_size, stride, outputs=1):
        self.hm, self.stride, self.outputs, self.found = hm_size, stride, outputs, []

    def predict_on_batch(self, x):
        b, h, w, k = x.shape
        ys, xs = np.mgrid[0:h, 0:w]
        gy, gx = np.mgrid[0:self.hm[1], 0:self.hm[0]]
        out = np.zeros((b, self.hm[1], self.hm[0], k), np.float32)
        for i in range(b):
            for j in range(k):
                v = x[i, :, :, j] - x[i, :, :, j].min()
                cy, cx = np.unravel_index(v.argmax(), v.shape)
                v = v * ((np.abs(xs - cx) <= 6) & (np.abs(ys - cy) <= 6))  # the blob alone
                px, py = (v * xs).sum() / v.sum(), (v * ys).sum() / v.sum()
                self.found.append((px, py))
                mx, my = px / self.stride, py / self.stride
                out[i, :, :, j] = np.exp(-((gx - mx) ** 2 + (gy - my) ** 2) / (2 * 1.5 ** 2))
        garbage = np.full_like(out, 0.5)  # earlier stacks: never decoded
        return [garbage] * (self.outputs - 1) + [out] if self.outputs > 1 else out


def _blob_records(n=3):
    from training.datasets.base import PoseRecord

    rng = np.random.default_rng(4)
    recs = []
    for i in range(n):  # 120 x 90 images (not square), people of 80 px side about (60 + d, 45)
        cx = 60.0 + 3 * i
        pts = np.array([[cx - 15.3, 30.7], [cx + 12.8, 50.2], [cx - 1.9, 66.4]]) + rng.uniform(-2, 2, (3, 2))
        recs.append(PoseRecord(image=Blobs((120, 90), pts), keypoints=pts, visible=np.ones(3),
                               center=np.array([cx, 45.0]), scale=80.0, box=np.array([cx - 40, 5, cx + 40, 85.0]),
                               id=f"blob{i}"))
    return recs


def test_pose_predictions_are_decoded_into_original_image_pixels(tmp_path):
    import csv

    recs = _blob_records()
    truth = {(r.id, j): r.keypoints[j] for r in recs for j in range(3)}
    # stride 1: the decoder's quarter-pixel step leaves <= 0.25 input px = 0.31 original px (80 px onto 64)
    ds = HeatmapDataset(recs, batch_size=2, input_size=(64, 64), heatmap_size=(64, 64), sigma=1.5, flip_pairs=(),
                        shuffle=False)
    res = evaluate(_BlobFinder((64, 64), 1.0, outputs=2), ds, out_dir=tmp_path, verbose=False)
    rows = list(csv.DictReader(open(res.predictions_path)))
    assert len(rows) == 9 and res.mean == 1.0
    for r in rows:
        gx, gy = truth[(r["id"], int(r["joint"]))]
        assert (float(r["gt_x"]), float(r["gt_y"])) == pytest.approx((gx, gy), abs=1e-3)
        assert float(r["pred_x"]) == pytest.approx(gx, abs=0.4) and float(r["pred_y"]) == pytest.approx(gy, abs=0.4)
        err = np.hypot(float(r["pred_x"]) - gx, float(r["pred_y"]) - gy) / 80.0  # box side 80 px
        assert float(r["norm"]) == 80.0 and float(r["error"]) == pytest.approx(err, abs=1e-4)
    # stride 4 (64 -> 16) with the flip test: the 1-px MSRA shift of the mirrored map leaves a bias of 1 input px
    # on it (0.5 px on the average) plus the quarter-pixel step (1 input px): within 1.5 x 80 / 64 original px
    ds = HeatmapDataset(recs, batch_size=2, input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, flip_pairs=(),
                        shuffle=False)
    for flip in (False, True):
        res = evaluate(_BlobFinder((16, 16), 4.0), ds, flip=flip, verbose=False)
        for r in res.rows:
            gx, gy = truth[(r["id"], r["joint"])]
            assert np.hypot(r["pred_x"] - gx, r["pred_y"] - gy) <= 1.5 * 80 / 64, (flip, r)


class _Blank:
    def __init__(self, size):
        self.size = size

    def load(self):
        return np.zeros((self.size[1], self.size[0], 3), np.uint8)


def _gaussians(points, size, sigma=1.5):
    """(K, 2) points (heatmap px) -> (h, w, K) Gaussian maps, written out here."""
    gy, gx = np.mgrid[0:size[1], 0:size[0]]
    return np.stack([np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * sigma ** 2)) for x, y in points], -1)


def test_mpii_pckh_table_and_csv_by_hand(tmp_path):
    import csv

    from training.datasets.base import PoseRecord
    from training.datasets.mpii import MPII_FLIP_PAIRS

    # head box 30 x 40: head size 0.6 x 50 = 30 px, so a hit is <= 15 px at PCKh@0.5 and <= 3 px at 0.1
    err = np.array([[0, 1, 8, 25] * 4, [25, 8, 1, 0] * 4], np.float64)  # x error of each joint, px
    vis = np.ones((2, 16))
    vis[1, 9] = 0  # head top not annotated in the second person
    kp = np.stack([np.array([10 + (j % 4) * 5, 5 + j * 3.3]) for j in range(16)])
    recs = [PoseRecord(image=_Blank((64, 64)), keypoints=kp, visible=vis[n], center=np.array([32.0, 32.0]),
                       scale=64.0, head_box=np.array([0, 0, 30, 40.0]), id=f"p{n}") for n in range(2)]
    ds = HeatmapDataset(recs, batch_size=2, input_size=(64, 64), heatmap_size=(64, 64), sigma=1.5,
                        flip_pairs=MPII_FLIP_PAIRS, shuffle=False)

    def off_by_err(d, b):  # each joint err px to the right of its annotation (input px = original px here)
        out = []
        for i in d.batch_indices(b):
            rec = d.records[int(i)]
            moved = rec.keypoints + np.stack([err[int(i)], np.zeros(16)], 1)
            out.append(_gaussians(transform_points(moved, d.matrix(rec)), (64, 64)))
        return np.stack(out)

    res = evaluate(_Replay(ds, off_by_err), ds, out_dir=tmp_path, verbose=False)
    assert res.metric == "PCKh@0.5"
    hit, hit01 = (err <= 15) & (vis > 0), (err <= 3) & (vis > 0)
    names = list(res.table["per_joint"])
    assert names[0] == "r_ankle" and names[9] == "head_top" and len(names) == 16
    np.testing.assert_allclose(list(res.table["per_joint"].values()), hit.sum(0) / vis.sum(0))
    assert res.table["per_joint"]["head_top"] == 1.0 and res.table["counts"]["head_top"] == 1  # 1 of 1 annotated
    assert res.table["per_joint"]["r_hip"] == 1.0 and res.table["per_joint"]["l_hip"] == 0.5  # errors 8, 1 / 25, 0
    keep = np.array([j not in (6, 7) for j in range(16)])  # pelvis and thorax are left out of the MPII mean
    assert res.mean == pytest.approx(hit[:, keep].sum() / vis[:, keep].sum())  # 20 / 27
    assert res.mean == pytest.approx(20 / 27)
    assert res.table["mean_all"] == pytest.approx(23 / 31)
    assert res.table["mean@0.1"] == pytest.approx(hit01[:, keep].sum() / vis[:, keep].sum())  # 13 / 27
    groups = res.table["groups"]
    assert groups["Head"] == 1.0 and groups["Hip"] == pytest.approx(0.75) and groups["Ankle"] == pytest.approx(0.75)
    rows = list(csv.DictReader(open(res.predictions_path)))
    correct = np.array([int(r["correct"]) for r in rows]).reshape(2, 16)
    np.testing.assert_array_equal(correct, hit)  # the CSV agrees with the table, joint by joint
    assert all(float(r["norm"]) == 30.0 for r in rows)
    table = {r["name"]: r for r in csv.DictReader(open(res.table_path))}
    assert float(table["mean"]["value"]) == pytest.approx(20 / 27, abs=1e-6) and table["l_hip"]["count"] == "2"
    assert float(table["Hip"]["value"]) == 0.75


def test_segmentation_scores_the_main_output_of_a_model_with_an_aux_head(tmp_path):
    recs, masks = _seg_files(tmp_path, [(40, 40), (36, 44)])
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)
    valid = np.concatenate([m[m != 255] for m in masks])

    def main_and_aux(d, b):  # PSPNet order: [main, aux]; the aux head says "class 2" everywhere
        main = _all_background(d, b)
        return [main, np.roll(main, 2, axis=-1)]

    res = evaluate(_Replay(ds, main_and_aux), ds, verbose=False)
    assert res.mean == pytest.approx(np.mean([np.mean(valid == 0), 0.0, 0.0]), abs=1e-12)


def test_nothing_to_score_warns_and_gives_nan(tmp_path):
    import csv

    import cv2

    from training.datasets.base import SegRecord

    recs = [r.replace(visible=np.zeros(4)) for r in synthetic_pose(3, image_size=(32, 32), num_keypoints=4)]
    ds = HeatmapDataset(recs, batch_size=2, input_size=(32, 32), heatmap_size=(8, 8), flip_pairs=(), shuffle=False)
    with pytest.warns(UserWarning, match="no annotated joint in 3 records"):
        res = evaluate(_Replay(ds, _oracle_heatmaps), ds, out_dir=tmp_path / "pose", verbose=False)
    assert np.isnan(res.mean) and all(c == 0 for c in res.table["counts"].values())
    assert len(list(csv.DictReader(open(res.predictions_path)))) == 12

    cv2.imwrite(str(tmp_path / "im.png"), np.zeros((20, 30, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "m.png"), np.full((20, 30), 255, np.uint8))  # every pixel void
    seg = SegmentationDataset([SegRecord(image=str(tmp_path / "im.png"), mask=str(tmp_path / "m.png"), id="void")] * 2,
                              batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)
    for resolution in ("original", "input"):
        with pytest.warns(UserWarning, match="no pixel with a label in \\[0, 3\\) in 2 records"):
            res = evaluate(_Replay(seg, _all_background), seg, resolution=resolution, verbose=False)
        assert np.isnan(res.mean) and np.isnan(res.table["pixel_accuracy"])  # pixel accuracy was 0.0
        assert [r["valid_pixels"] for r in res.rows] == [0, 0]


# ----------------------------------------------------------------------------- keypoint round trip
#
# A person at a known place in an original image -> the unaugmented crop evaluation makes -> the heatmaps an
# ideal model would answer (rendered here) -> evaluate's decode -> original-image pixels. The forward mapping
# is written out from its definitions, not taken from the dataset: HeatmapDataset.matrix fits the square of
# side `scale` about `center` into the input's short side with `center` on the input's centre pixel
# ((w - 1) / 2, (h - 1) / 2), OpenCV pixel centres (pixel [r, c] is at x = c, y = r); heatmaps follow the
# MSRA convention documented in training.targets, x_hm = x_in / stride.


def _to_input(points, center, side, input_size):
    w, h = input_size
    s = min(w, h) / side
    return np.stack([s * (points[:, 0] - center[0]) + (w - 1) / 2, s * (points[:, 1] - center[1]) + (h - 1) / 2], -1)


class _Dot:
    """Picklable image source: a Gaussian dot (sigma 1.5 px) at a sub-pixel position in the red channel, a
    left-to-right ramp in the green one (so that no crop is its own mirror image)."""

    def __init__(self, size, dot):
        self.size, self.dot = size, np.asarray(dot, np.float64)

    def load(self):
        w, h = self.size
        ys, xs = np.mgrid[0:h, 0:w]
        img = np.zeros((h, w, 3))
        img[..., 0] = 250.0 * np.exp(-((xs - self.dot[0]) ** 2 + (ys - self.dot[1]) ** 2) / (2 * 1.5 ** 2))
        img[..., 1] = 10 + 240 * xs / w
        return np.rint(img).astype(np.uint8)


class _IdealPose:
    """Heatmaps of the records' true keypoints (full Gaussians at x_in / stride) for the images it is shown:
    one of the dataset's unaugmented batches, or such a batch mirrored (flip test: x -> w - 1 - x, left/right
    swapped). Two outputs, like a 2-stack hourglass: the first is garbage and must not be decoded."""

    def __init__(self, ds, sigma, offset=0.0):
        self.ds, self.sigma, self.mirrored, self.offset = ds, sigma, 0, offset  # heatmap px g at stride g + offset

    def predict_on_batch(self, x):
        ds = self.ds
        for b in range(len(ds)):
            plain = ds[b][0]
            if plain.shape == x.shape and (np.array_equal(x, plain) or np.array_equal(x, plain[:, :, ::-1])):
                mirrored = not np.array_equal(x, plain)
                break
        else:
            raise AssertionError("neither one of the dataset's batches nor its mirror image")
        (w, _), (hw, hh) = ds.input_size, ds.heatmap_size
        gy, gx = np.mgrid[0:hh, 0:hw]
        out = []
        for i in ds.batch_indices(b):
            rec = ds.records[int(i)]
            kp = _to_input(rec.keypoints, rec.center, rec.scale, ds.input_size)
            if mirrored:
                kp[:, 0] = w - 1 - kp[:, 0]
                for j, k in ds.flip_pairs:
                    kp[[j, k]] = kp[[k, j]]
            m = (kp - self.offset) * hw / w
            out.append(np.stack([np.exp(-((gx - u) ** 2 + (gy - v) ** 2) / (2 * self.sigma ** 2)) for u, v in m], -1))
        self.mirrored += mirrored
        out = np.stack(out).astype(np.float32)
        return [np.full_like(out, 0.5), out]


_GEOMETRIES = {  # name: (original image (w, h), input (w, h), heatmap (w, h))
    "hourglass-wide": ((640, 360), (256, 256), (64, 64)),
    "hourglass-tall": ((360, 640), (256, 256), (64, 64)),
    "cpm-368-wide": ((500, 331), (368, 368), (46, 46)),
    "hourglass-tiny": ((24, 15), (256, 256), (64, 64)),
    "non-square-input": ((300, 401), (192, 256), (48, 64)),
}


@pytest.mark.parametrize("geometry", sorted(_GEOMETRIES))
@pytest.mark.parametrize("flip", [False, True])
def test_keypoints_round_trip_to_original_pixels(geometry, flip):
    (iw, ih), inp, hm = _GEOMETRIES[geometry]
    stride = inp[0] / hm[0]
    rng = np.random.default_rng(len(geometry) + 10 * flip)
    k, pairs = 6, ((0, 1), (2, 4))
    recs, on_grid = [], []
    # people in the middle, near a corner and past the right edge (crop partly outside the image)
    for n, (fx, fy) in enumerate([(0.5, 0.5), (0.12, 0.1), (0.97, 0.6)]):
        center, side = np.array([fx * iw + 0.3, fy * ih - 0.2]), 0.6 * min(iw, ih) * (1 + 0.2 * n)
        s = min(inp) / side
        grid = rng.integers(3, np.array(hm) - 3, (k, 2)) * stride  # heatmap pixels, in input px
        exact = np.stack([(grid[:, 0] - (inp[0] - 1) / 2) / s, (grid[:, 1] - (inp[1] - 1) / 2) / s], -1) + center
        whole = np.round(center + rng.uniform(-0.3, 0.3, (k, 2)) * side)  # integer original pixels
        sub = center + rng.uniform(-0.3, 0.3, (k, 2)) * side
        for kind, kp in (("grid", exact), ("integer", whole), ("sub-pixel", sub)):
            recs.append(PoseRecord(image=_Dot((iw, ih), kp[0]), keypoints=kp, visible=np.ones(k), center=center,
                                   scale=side, box=np.array([0, 0, iw, ih], float), id=f"{kind}{n}"))
            on_grid.append(kind == "grid")
    ds = HeatmapDataset(recs, batch_size=4, input_size=inp, heatmap_size=hm, sigma=2.0, flip_pairs=pairs,
                        num_outputs=2, shuffle=False)  # 9 records: the last batch is partial

    for b in range(len(ds)):  # the crop puts the dot where the forward mapping says (cv2's pixel centres)
        x = ds[b][0]
        for i, r in zip(ds.batch_indices(b), x):
            rec = ds.records[int(i)]
            want = _to_input(rec.keypoints[:1], rec.center, rec.scale, inp)[0]
            v = r[..., 0] - r[..., 0].min()
            dot = rec.keypoints[0]
            rad = int(3 * 1.5 * min(inp) / rec.scale) + 2  # the dot's radius in the crop
            if not (5 < dot[0] < iw - 6 and 5 < dot[1] < ih - 6
                    and np.all(want - rad > 0) and np.all(want + rad < np.array(inp) - 1)):
                continue  # the dot is cut by the image's or the crop's edge
            cy, cx = np.unravel_index(v.argmax(), v.shape)
            win = np.zeros_like(v, bool)
            win[max(cy - rad, 0):cy + rad + 1, max(cx - rad, 0):cx + rad + 1] = True
            v = v * win
            ys, xs = np.mgrid[0:inp[1], 0:inp[0]]
            got = np.array([(v * xs).sum(), (v * ys).sum()]) / v.sum()
            assert np.hypot(*(got - want)) < 0.15 * max(1.0, min(inp) / rec.scale), (rec.id, got, want)

    model = _IdealPose(ds, sigma=2.0)
    res = evaluate(model, ds, flip=flip, verbose=False)
    assert model.mirrored == (len(ds) if flip else 0)
    pred = np.array([[r["pred_x"], r["pred_y"]] for r in res.rows]).reshape(len(recs), k, 2)
    gt = np.stack([r.keypoints for r in recs])
    per_px = np.array([stride * rec.scale / min(inp) for rec in recs])[:, None]  # original px per heatmap px
    err = np.abs(pred - gt) / per_px[..., None]  # (N, K, 2) heatmap px
    grid = np.array(on_grid)
    # the CSV keeps 3 decimals (5e-4 original px). On the heatmap grid the decode is exact (a symmetric peak: no
    # quarter step); elsewhere the quarter-pixel step leaves at most 1/4 heatmap px per axis (rms 1/sqrt(48))
    tol = 6e-4 / per_px[..., None]
    if not flip:
        assert np.all(err[grid] <= tol[grid])
        assert np.all(err <= 0.25 + tol)
    else:  # the mirrored map moved right 1 - 1/stride px by interpolation is a hair lopsided: the quarter step
        # is taken on the grid too, a little further than 1/4 px off the grid (measured <= 0.2525 heatmap px)
        assert np.all(err <= 0.255 + tol)


# ----------------------------------------------------------------------------- segmentation on the original masks


def _letterbox_to_grid(image_shape, input_size, grid_size):
    """NumPy reference: (H, W) original pixel centres -> (u, v) on the network's output grid. The whole image is
    fitted into the input (side max(W, H w / h), centre pixel on centre pixel); a grid of the input's size or
    PSPNet's 8F - 7 (stride ~1) is the input's own pixel grid, a smaller one is corner-aligned."""
    (hh, ww), (w, h), (gw, gh) = image_shape, input_size, grid_size
    s = w / max(ww, hh * w / h)
    ys, xs = np.mgrid[0:hh, 0:ww].astype(np.float64)
    u, v = s * (xs - (ww - 1) / 2) + (w - 1) / 2, s * (ys - (hh - 1) / 2) + (h - 1) / 2
    if round(w / gw) != 1:
        u, v = u * (gw - 1) / (w - 1), v * (gh - 1) / (h - 1)
    return u, v


def _bilinear_argmax(scores, u, v):
    """Labels of the scores read bilinearly at (u, v), clamped to the grid (FCN/PSPNet upsample, then argmax)."""
    gh, gw, _ = scores.shape
    u, v = np.clip(u, 0, gw - 1), np.clip(v, 0, gh - 1)
    x0, y0 = np.floor(u).astype(int), np.floor(v).astype(int)
    x1, y1 = np.minimum(x0 + 1, gw - 1), np.minimum(y0 + 1, gh - 1)
    fx, fy = (u - x0)[..., None], (v - y0)[..., None]
    s = ((1 - fy) * ((1 - fx) * scores[y0, x0] + fx * scores[y0, x1])
         + fy * ((1 - fx) * scores[y1, x0] + fx * scores[y1, x1]))
    return s.argmax(-1)


def _random_scores(shapes, c, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(gh, gw, c)).astype(np.float32) for gh, gw in shapes]


@pytest.mark.parametrize("input_size, grid", [((32, 32), (16, 16)), ((32, 24), (32, 24)), ((32, 32), (33, 33))],
                         ids=["stride-2", "stride-1-wide-input", "pspnet-8F-7"])
def test_segmentation_scores_mapped_back_as_a_numpy_letterbox(tmp_path, input_size, grid):
    import cv2

    recs, masks = _seg_files(tmp_path, [(45, 31), (23, 60), (17, 17)])  # odd sizes, portrait and landscape
    c = 3
    for n, m in enumerate(masks):
        m[-1, :3] = 7  # out of range: void as well
        cv2.imwrite(str(tmp_path / f"m{n}.png"), m)
    scores = _random_scores([(grid[1], grid[0])] * len(recs), c, seed=grid[0])
    ds = SegmentationDataset(recs, batch_size=2, input_size=input_size, label_size=grid, num_classes=c,
                             shuffle=False)
    res = evaluate(_Replay(ds, lambda d, b: np.stack([scores[int(i)] for i in d.batch_indices(b)])), ds,
                   verbose=False)
    cm = np.zeros((c, c), np.int64)
    for m, s in zip(masks, scores):
        pred = _bilinear_argmax(s.astype(np.float64), *_letterbox_to_grid(m.shape, input_size, grid))
        ok = m < c  # 255 and 7 are void: neither a miss nor a false positive of what is predicted there
        cm += np.bincount(c * m[ok].astype(int) + pred[ok], minlength=c * c).reshape(c, c)
    np.testing.assert_array_equal(np.array(res.table["confusion"]), cm)
    iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    assert list(res.table["iou"].values()) == pytest.approx(list(iou), abs=1e-12)
    assert res.mean == pytest.approx(iou.mean(), abs=1e-12)
    assert [r["valid_pixels"] for r in res.rows] == [int((m < c).sum()) for m in masks]


def test_segmentation_reads_the_scores_on_the_model_output_grid(tmp_path):
    # label_size says 16 x 16 but the model answers 8 x 8 (e.g. a stride-4 head): each original pixel must be read
    # on the 8 x 8 grid; the 16 x 16 matrix put every pixel twice as far out (mean IoU 0.43 for a perfect model)
    recs, masks = _seg_files(tmp_path, [(45, 31), (23, 60)])
    c, grid = 3, (8, 8)
    scores = _random_scores([(8, 8)] * 2, c, seed=1)
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), label_size=(16, 16), num_classes=c,
                             shuffle=False)
    model = _Replay(ds, lambda d, b: np.stack([scores[int(i)] for i in d.batch_indices(b)]))
    res = evaluate(model, ds, verbose=False)
    cm = np.zeros((c, c), np.int64)
    for m, s in zip(masks, scores):
        pred = _bilinear_argmax(s.astype(np.float64), *_letterbox_to_grid(m.shape, (32, 32), grid))
        ok = m < c
        cm += np.bincount(c * m[ok].astype(int) + pred[ok], minlength=c * c).reshape(c, c)
    np.testing.assert_array_equal(np.array(res.table["confusion"]), cm)
    # at the network's resolution the labels are made on label_size's grid: no pixel-for-pixel match to score
    with pytest.raises(ValueError, match=r"8x8 .*label_size \(16, 16\)"):
        evaluate(_Replay(ds, lambda d, b: np.stack([scores[int(i)] for i in d.batch_indices(b)])), ds,
                 resolution="input", verbose=False)


class _PerfectForWhatItSees:
    """Answers each image with the target heatmaps of the record whose unaugmented crop it is (found by its
    pixels), so a stand-in sample gets the stand-in's keypoints, as a real model would."""

    def __init__(self, recs, **kw):
        self.recs = recs
        self.one = [HeatmapDataset([r], batch_size=1, shuffle=False, **kw) for r in recs]
        self.crops = np.concatenate([d[0][0] for d in self.one])

    def predict_on_batch(self, x):
        out = []
        for im in x:
            j = int(np.argmin(((self.crops - im) ** 2).sum((1, 2, 3))))
            d, r = self.one[j], self.recs[j]
            out.append(d.codec.encode(transform_points(r.keypoints, d.matrix(r)), r.visible)[0])
        return np.stack(out)


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_records_are_left_out_not_scored_as_their_stand_in(workers, tmp_path):
    import cv2

    from training.datasets.base import SegRecord

    recs = synthetic_pose(5, image_size=(64, 64), num_keypoints=4, seed=3)
    missing = str(tmp_path / "missing.png")
    bad = [recs[0], recs[1].replace(image=missing), *recs[2:]]
    kw = dict(input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, flip_pairs=())
    model = _PerfectForWhatItSees([r for r in bad if r.image != missing], **kw)
    ds = HeatmapDataset(bad, batch_size=2, shuffle=False, on_error="skip", workers=workers, **kw)
    with pytest.warns(UserWarning, match=r"1 of 5 records could not be read .* left out .*synth3_000001"):
        res = evaluate(model, ds, verbose=False)
    # the stand-in's prediction was scored against record 1's keypoints: 0.75 with a model right on every image
    assert res.mean == 1.0 and sum(res.table["counts"].values()) == 4 * 4
    assert {r["id"] for r in res.rows} == {r.id for r in bad if r.image != missing}

    shapes = [(20, 30), (25, 22), (18, 18)]
    seg, masks = _seg_files(tmp_path, shapes)
    seg[1] = SegRecord(image=missing, mask=seg[1].mask, id="gone")  # mask there, image not: a stand-in is drawn
    cv2.imwrite(str(tmp_path / "im0.png"), np.zeros((20, 30, 3), np.uint8))
    sds = SegmentationDataset(seg, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False, on_error="skip",
                              workers=workers)
    for resolution in ("original", "input"):
        with pytest.warns(UserWarning, match=r"1 of 3 records could not be read .* left out .*'gone'"):
            res = evaluate(_Replay(sds, _all_background), sds, resolution=resolution, verbose=False)
        assert [r["id"] for r in res.rows] == ["im0", "im2"]
        if resolution == "original":
            valid = np.concatenate([m[m != 255] for m in (masks[0], masks[2])])
            assert res.mean == pytest.approx(np.mean([np.mean(valid == 0), 0.0, 0.0]), abs=1e-12)


@pytest.mark.parametrize("alpha", [0, 0.0, -0.5, float("nan"), float("inf"), "0.5", True, np.True_])
def test_pose_alpha_must_be_a_positive_number(alpha):
    recs = synthetic_pose(2, image_size=(32, 32), num_keypoints=4)
    ds = HeatmapDataset(recs, batch_size=2, input_size=(32, 32), heatmap_size=(8, 8), flip_pairs=(), shuffle=False)
    model = _Replay(ds, _oracle_heatmaps)
    with pytest.raises(ValueError, match=r"evaluate: alpha must be a number > 0 .*Received: alpha="):
        evaluate(model, ds, alpha=alpha, verbose=False)  # 0 was taken as 'not given': PCK@0.2, silently
    assert model.batch == 0  # refused before predicting anything
    assert evaluate(model, ds, alpha=0.05, verbose=False).metric == "PCK (box)@0.05"


def test_pose_alpha_too_large_for_the_curve_is_refused_before_predicting():
    recs = synthetic_pose(2, image_size=(32, 32), num_keypoints=4)
    ds = HeatmapDataset(recs, batch_size=2, input_size=(32, 32), heatmap_size=(8, 8), flip_pairs=(), shuffle=False)
    model = _Replay(ds, _oracle_heatmaps)
    with pytest.raises(ValueError, match=r"evaluate: alpha=100000\.0 is too large for the PCK curve"):
        evaluate(model, ds, alpha=1e5, verbose=False)  # 1e7 thresholds of 0.01
    assert model.batch == 0  # was refused only after the whole set had been predicted
    with pytest.raises(ValueError, match=r"evaluate: resolution must be 'original' or 'input' \(segmentation; "
                                         r"pose is scored in original image px\). Received: 'full'"):
        evaluate(model, ds, resolution="full", verbose=False)  # was ignored for a pose set
    assert model.batch == 0


def test_pose_decodes_at_the_model_output_stride():
    # a perfect model answering 32 x 32 maps on a dataset made with heatmap_size 16 x 16: decoded with the
    # dataset's stride 4 instead of the output's 2, every keypoint landed twice as far from the crop's corner
    recs = synthetic_pose(4, image_size=(64, 64), num_keypoints=4, seed=3)
    kw = dict(batch_size=2, input_size=(64, 64), sigma=1.0, flip_pairs=(), shuffle=False)
    answers = HeatmapDataset(recs, heatmap_size=(32, 32), **kw)
    ds = HeatmapDataset(recs, heatmap_size=(16, 16), **kw)
    res = evaluate(_Replay(answers, _oracle_heatmaps), ds, verbose=False)
    assert res.mean == 1.0  # was 0.0
    for r in res.rows:  # the targets' peaks decoded: within a quarter step (1/2 input px) of the keypoints
        assert abs(r["pred_x"] - r["gt_x"]) <= 0.5 + 1e-3 and abs(r["pred_y"] - r["gt_y"]) <= 0.5 + 1e-3

    class Oblong:  # 16 x 8 maps for a 64 x 64 input: strides 4 and 8
        def predict_on_batch(self, x):
            return np.zeros((len(x), 8, 16, 4), np.float32)

    with pytest.raises(ValueError, match=r"evaluate: the model outputs 16x8 heatmaps for 64x64 inputs"):
        evaluate(Oblong(), ds, verbose=False)


def test_segmentation_class_count_must_match(tmp_path):
    recs, _ = _seg_files(tmp_path, [(20, 30), (25, 22)])
    ds = SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False)

    def two_classes(d, b):  # class 2 can never be predicted: its IoU read 0 as if the model missed it
        return _all_background(d, b)[..., :2]

    for resolution in ("original", "input"):
        with pytest.raises(ValueError, match=r"evaluate: the model outputs 2 class scores .* num_classes=3"):
            evaluate(_Replay(ds, two_classes), ds, resolution=resolution, verbose=False)


@pytest.mark.parametrize("release", ["cpm:lsp", "hourglass:mpii"])
@pytest.mark.parametrize("flip", [False, True])
def test_pose_is_decoded_in_the_released_weights_convention(release, flip):
    # An ideal model answering in a release's convention (heatmap pixel g at input px stride * g + offset, the
    # offset hand-derived: CPM 8g + 3.5, hourglass 4g + 1.5) with that release's weights record attached: evaluate
    # reads the offset from the record; joints on that grid come back exact (the CSV's 3 decimals), flip test too
    import zoo

    name, tag = release.split(":")
    record = zoo.get_spec(name).weights[tag]
    inp, hm, offset = {"cpm": ((368, 368), (46, 46), 3.5), "hourglass": ((256, 256), (64, 64), 1.5)}[name]
    stride = inp[0] / hm[0]
    rng = np.random.default_rng(11)
    k, pairs, (iw, ih) = 6, ((0, 1), (2, 4)), (500, 331)
    recs = []
    for n in range(3):
        center, side = np.array([250.3 + 20 * n, 160.8 - 10 * n]), 200.0 + 30 * n
        s = min(inp) / side
        grid = rng.integers(3, np.array(hm) - 3, (k, 2)) * stride + offset  # the release's pixel centres, input px
        kp = np.stack([(grid[:, 0] - (inp[0] - 1) / 2) / s, (grid[:, 1] - (inp[1] - 1) / 2) / s], -1) + center
        recs.append(PoseRecord(image=_Dot((iw, ih), kp[0]), keypoints=kp, visible=np.ones(k), center=center,
                               scale=side, box=np.array([0, 0, iw, ih], float), id=f"p{n}"))
    ds = HeatmapDataset(recs, batch_size=2, input_size=inp, heatmap_size=hm, sigma=2.0, flip_pairs=pairs,
                        num_outputs=2, shuffle=False)
    gt = np.stack([r.keypoints for r in recs])
    per_px = np.array([rec.scale / min(inp) for rec in recs])[:, None, None]  # original px per input px

    def error(**kw):  # (N, K, 2) in input px
        model = _IdealPose(ds, sigma=2.0, offset=offset)
        model._zoo_record = record
        res = evaluate(model, ds, flip=flip, verbose=False, **kw)
        pred = np.array([[r["pred_x"], r["pred_y"]] for r in res.rows]).reshape(gt.shape)
        return (pred - gt) / per_px

    tol = 6e-4 / per_px.min() + (0.255 * stride if flip else 0.0)  # flip: the quarter step (see the round trip)
    assert record.heatmap_offset == offset
    assert np.abs(error()).max() <= tol
    assert np.abs(error(heatmap_offset=offset)).max() <= tol
    np.testing.assert_allclose(error(heatmap_offset=0.0).mean(axis=(0, 1)), -offset, atol=tol)  # the old decoding
    with pytest.raises(ValueError, match=r"evaluate: heatmap_offset must be a finite number"):
        evaluate(_IdealPose(ds, sigma=2.0), ds, heatmap_offset=float("nan"), verbose=False)


def test_pose_heatmap_count_must_match_the_keypoints():
    # a 16-map model (MPII's joints) on a 14-joint dataset (LSP's) was scored on its first 14 maps, silently
    recs = synthetic_pose(4, image_size=(64, 64), num_keypoints=4, seed=3)
    ds = HeatmapDataset(recs, batch_size=2, input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, flip_pairs=(),
                        shuffle=False)
    for maps in (6, 3):
        def answer(d, b, maps=maps):  # the targets' maps, repeated or cut to `maps` channels
            return np.concatenate([_oracle_heatmaps(d, b)] * 2, axis=-1)[..., :maps]

        for flip in (False, True):
            with pytest.raises(ValueError, match=rf"evaluate: the model outputs {maps} heatmaps .* 4 keypoints"):
                evaluate(_Replay(ds, answer), ds, flip=flip, verbose=False)

    def with_background(d, b):  # CPM: K maps + background, whether or not the dataset was made with background
        hm = _oracle_heatmaps(d, b)
        return np.concatenate([hm, 1.0 - hm.max(-1, keepdims=True)], axis=-1)

    assert evaluate(_Replay(ds, with_background), ds, verbose=False).mean == 1.0


def test_a_prediction_decoded_at_minus_one_is_a_prediction():
    # heatmap_offset -1.0: pixel g is at input px 4 g - 1, so a peak on pixel (0, 0) is input px (-1, -1), the same
    # numbers as the decoder's "no positive maximum" marker; it was dropped (NaN, a miss) for a model right there.
    # Written out: a 64 x 64 crop of the side-64 square about (32, 32) is x_in = x - 32 + 31.5, so x = x_in + 0.5.
    grid = np.array([[0, 0], [5, 9], [12, 3]], float)  # heatmap px
    kp = grid * 4 - 1 + 0.5
    rec = PoseRecord(image=_Blank((64, 64)), keypoints=kp, visible=np.ones(3), center=np.array([32.0, 32.0]),
                     scale=64.0, box=np.array([0, 0, 64, 64.0]), id="corner")
    ds = HeatmapDataset([rec], batch_size=1, input_size=(64, 64), heatmap_size=(16, 16), flip_pairs=(), shuffle=False)
    answer = _gaussians(grid, (16, 16))[None].astype(np.float32)
    res = evaluate(_Replay(ds, lambda d, b: answer), ds, heatmap_offset=-1.0, verbose=False)
    np.testing.assert_allclose([[r["pred_x"], r["pred_y"]] for r in res.rows], kp, atol=1e-3)
    assert res.mean == 1.0


@pytest.mark.backend_agnostic
def test_a_cpm_shaped_model_is_fed_its_centre_map_without_the_dataset_naming_a_sigma():
    """A model that takes (image, centre map) (CPM) evaluated on a dataset made without center_map_sigma got the
    image alone and failed inside Keras ('Output with path `1` is not connected to `inputs`' on JAX); it is given the
    centre map fit() would give (the release's 21 px). Its heatmaps here are that map, peaked on the crop's centre:
    each keypoint, put at its record's centre, is found there (0 px off)."""
    import keras

    image = keras.Input((31, 47, 3), name="image")  # odd sizes: the centre is a pixel, its peak decoded exactly
    centre = keras.Input((31, 47, 1), name="center_map")
    maps = keras.layers.Conv2D(2, 1, use_bias=False, name="maps")(centre)  # both maps = the centre map
    model = keras.Model([image, centre], keras.layers.Add()([maps, keras.layers.Conv2D(2, 1, name="zero")(image)]))
    model.get_layer("maps").set_weights([np.ones((1, 1, 1, 2), np.float32)])
    model.get_layer("zero").set_weights([np.zeros((1, 1, 3, 2), np.float32), np.zeros(2, np.float32)])
    recs = [PoseRecord(image=r.image, keypoints=np.repeat(r.center[None], 2, 0), visible=np.ones(2),
                       center=r.center, scale=r.scale, box=np.concatenate([r.center - 10, r.center + 10]))
            for r in synthetic_pose(3, image_size=(64, 64), num_keypoints=2)]
    ds = HeatmapDataset(recs, batch_size=2, input_size=(47, 31), heatmap_size=(47, 31), flip_pairs=(), shuffle=False)
    res = evaluate(model, ds, verbose=False)
    assert len(res.rows) == 6 and res.mean == 1.0
    for r in res.rows:
        assert abs(r["pred_x"] - r["gt_x"]) < 1e-6 and abs(r["pred_y"] - r["gt_y"]) < 1e-6, r
    assert ds.center_map_sigma is None  # the caller's dataset is left as it was


class _Terminal:
    """stderr as a terminal: tqdm shows its bar only there (disable=None)."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True


def test_evaluate_shows_a_progress_bar_on_a_terminal_when_verbose(monkeypatch, capsys):
    """Evaluating a validation set at the papers' scales and flip takes minutes on a GPU, hours on a CPU, and printed
    nothing until its table."""
    import sys

    recs = synthetic_pose(10, image_size=(96, 96), num_keypoints=4, seed=3)
    ds = HeatmapDataset(recs, batch_size=4, input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, shuffle=False)
    seg = SegmentationDataset(synthetic_segmentation(3, image_size=(40, 40), num_classes=3, seed=1), batch_size=2,
                              input_size=(32, 32), num_classes=3, shuffle=False)
    for verbose in (True, False):
        for data, oracle, bar in ((ds, _oracle_heatmaps, "evaluate:   0%|          | 0/3 [00:00<?, ?batch/s]"),
                                  (seg, _all_background, "evaluate:   0%|          | 0/2 [00:00<?, ?batch/s]")):
            terminal = _Terminal()
            monkeypatch.setattr(sys, "stderr", terminal)
            res = evaluate(_Replay(data, oracle), data, verbose=verbose)
            monkeypatch.undo()
            assert bar in terminal.text if verbose else terminal.text == "", terminal.text
            assert ("mean" in capsys.readouterr().out) == verbose and res.rows  # the table, printed when verbose


@pytest.mark.backend_agnostic
def test_prediction_rows_are_the_tables_hits_at_the_threshold():
    """A row said correct = error <= alpha with error = dist / norm: at dist = alpha * norm the round-off made it 0
    where the table counted a hit (0.2 * 49.8 / 49.8 = 0.20000000000000004); an infinite normaliser, which the table
    leaves out, gave error 0 and correct 1."""
    from training.evaluation import _pose_rows
    from training.metrics import pck

    norm = np.array([49.8, np.inf, 30.0])
    gt = np.zeros((3, 2, 2))
    pred = gt + np.array([[[0.2 * 49.8, 0.0], [0.2 * 49.8 + 1e-9, 0.0]], [[1.0, 0.0]] * 2, [[0.0, 6.0], [np.nan] * 2]])
    vis = np.ones((3, 2))
    rows = _pose_rows(["a", "b", "c"], set(), pred, gt, vis, norm, np.ones((3, 2)), 0.2, ["j0", "j1"])
    assert [r["correct"] for r in rows] == [1, 0, 0, 0, 1, 0]
    per_joint, _ = pck(pred, gt, vis, norm, alpha=0.2)
    assert per_joint.tolist() == [1.0, 0.0]  # samples a and c; b left out
    assert np.isnan(rows[2]["error"]) and np.isnan(rows[3]["error"]) and rows[4]["error"] == 0.2
