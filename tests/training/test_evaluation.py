"""training.evaluate: every sample is scored, whatever the dataset's training settings."""

import numpy as np
import pytest

from training.data import HeatmapDataset, SegmentationDataset
from training.datasets.synthetic import synthetic_pose, synthetic_segmentation
from training.evaluation import evaluate
from training.transforms import transform_points

pytestmark = pytest.mark.backend_agnostic


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
