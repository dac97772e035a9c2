"""training.metrics: PCK / PCKh table, confusion-matrix mIoU, and their Keras metric twins."""

import keras
import numpy as np
import pytest

from training.metrics import (
    MPII_JOINT_NAMES, MeanIoUMetric, PCKMetric, bbox_size, confusion_matrix, head_size_from_box,
    miou_from_confusion, pck, pckh, torso_size,
)
from training.losses import SegmentationCrossEntropy
from training.targets import decode_heatmaps, encode_heatmaps

# The PCK / PCKh / confusion-matrix functions are NumPy only (nothing a Keras backend computes) and their tests
# run in ./dev test's TensorFlow pass alone; those that build or run a Keras metric or model are marked
# backend_agnostic one by one, for its JAX pass too.


def _pck_loop(pred, gt, vis, norm, alpha):
    hits = np.zeros(gt.shape[1])
    counts = np.zeros(gt.shape[1])
    for n in range(gt.shape[0]):
        if not norm[n] > 0:
            continue
        for k in range(gt.shape[1]):
            if vis[n, k]:
                counts[k] += 1
                d = np.sqrt((pred[n, k, 0] - gt[n, k, 0]) ** 2 + (pred[n, k, 1] - gt[n, k, 1]) ** 2)
                hits[k] += d <= alpha * norm[n]
    return hits, counts


def test_pck_matches_loop_reference_and_edge_cases(rng):
    gt = rng.uniform(0, 100, (40, 14, 2))
    pred = gt + rng.normal(0, 6, gt.shape)
    vis = rng.random((40, 14)) > 0.2
    vis[:, 13] = False
    norm = bbox_size(gt, vis)
    norm[3] = 0.0
    per_joint, mean = pck(pred, gt, vis, norm, alpha=0.2)
    hits, counts = _pck_loop(pred, gt, vis, norm, 0.2)
    np.testing.assert_allclose(per_joint[:13], hits[:13] / counts[:13])
    assert np.isnan(per_joint[13]) and mean == pytest.approx(hits.sum() / counts.sum())
    # boundary counts as a hit (<=); NaN predictions are misses
    g = np.zeros((1, 2, 2))
    p = np.array([[[3.0, 4.0], [np.nan, 0.0]]])
    assert pck(p, g, np.ones((1, 2)), np.array([25.0]), alpha=0.2)[1] == 0.5


def test_bbox_and_torso_normalisers():
    kp = np.array([[[0, 0], [10, 4], [3, 30]], [[5, 5], [0, 0], [0, 0]]], np.float64)
    vis = np.array([[1, 1, 1], [1, 0, 0]])
    np.testing.assert_allclose(bbox_size(kp, vis), [30.0, 0.0])
    t = torso_size(kp, vis, 0, 1)
    assert t[0] == pytest.approx(np.hypot(10, 4)) and np.isnan(t[1])
    np.testing.assert_allclose(head_size_from_box([[10, 20, 40, 60]]), [0.6 * 50.0])


def test_pckh_table_with_mpii_joint_names(rng):
    n = 20
    gt = rng.uniform(0, 200, (n, 16, 2))
    boxes = np.concatenate([gt[:, 9] - 10, gt[:, 9] + [20, 30]], axis=1)  # 30 x 40 head box -> diag 50
    head = head_size_from_box(boxes)
    np.testing.assert_allclose(head, 30.0)
    # joint j is off by j + 0.5 px along x: with threshold 0.5 * 30 = 15 px, joints 0..14 hit, 15 misses
    pred = gt + np.c_[np.arange(16) + 0.5, np.zeros(16)][None]
    vis = np.ones((n, 16))
    vis[:5, 0] = 0
    table = pckh(pred, gt, vis, head)
    assert list(table["per_joint"]) == list(MPII_JOINT_NAMES)
    assert table["per_joint"]["l_wrist"] == 0.0 and table["per_joint"]["r_ankle"] == 1.0
    assert table["counts"]["r_ankle"] == 15 and table["counts"]["pelvis"] == 20
    assert table["groups"]["Wrist"] == 0.5 and table["groups"]["Head"] == 1.0
    # Mean excludes pelvis and thorax: 13 of 14 joints hit, each counted 20 times except r_ankle 15
    assert table["mean"] == pytest.approx((15 + 12 * 20) / (15 + 13 * 20))
    assert table["mean_all"] == pytest.approx((15 + 14 * 20) / (15 + 15 * 20))
    # at alpha 0.1 (3 px) only joints 0, 1, 2 hit
    assert table["mean@0.1"] == pytest.approx((15 + 2 * 20) / (15 + 13 * 20))
    small = pckh(pred[:, :3], gt[:, :3], vis[:, :3], head, joint_names=["a", "b", "c"])
    assert "groups" not in small and small["mean"] == small["mean_all"] == 1.0


def _confusion_loop(pred, gt, c, ignore=255):
    cm = np.zeros((c, c), np.int64)
    for p, g in zip(pred.ravel(), gt.ravel()):
        if g != ignore and 0 <= g < c:
            cm[g, p] += 1
    return cm


def test_confusion_matrix_and_miou_of_the_whole_set_not_mean_of_images(rng):
    gt = rng.integers(0, 3, (2, 6, 7))
    gt[0, 0] = 255
    pred = rng.integers(0, 3, (2, 6, 7))
    cm = confusion_matrix(pred, gt, 3)
    np.testing.assert_array_equal(cm, _confusion_loop(pred, gt, 3))
    assert cm.sum() == gt.size - 7
    # image A: class 1 tiny and missed; image B: class 1 large and right
    ga, pa = np.zeros((4, 4), int), np.zeros((4, 4), int)
    ga[0, 0] = 1
    gb, pb = np.ones((4, 4), int), np.ones((4, 4), int)
    gb[0, 0] = pb[0, 0] = 0
    per_image = np.mean([miou_from_confusion(confusion_matrix(p, g, 2))[1] for p, g in ((pa, ga), (pb, gb))])
    iou, miou = miou_from_confusion(confusion_matrix(pa, ga, 2) + confusion_matrix(pb, gb, 2))
    np.testing.assert_allclose(iou, [16 / 17, 15 / 16])
    print(f"mIoU of the set {miou:.4f} vs mean of per-image mIoU {per_image:.4f}")
    assert miou == pytest.approx((16 / 17 + 15 / 16) / 2) and abs(miou - per_image) > 0.2
    iou, miou = miou_from_confusion(np.diag([4, 0, 2]))
    assert np.isnan(iou[1]) and miou == 1.0
    # IoU is scale-free: a normalised matrix (cells < 1) gives the same IoUs; 3 / (4 + 3 - 3), 4 / (5 + 4 - 4)
    # (the fractional unions were divided by max(union, 1) = 1: 0.375 and 0.5)
    cm = np.array([[3.0, 1.0], [0.0, 4.0]])
    np.testing.assert_allclose(miou_from_confusion(cm / cm.sum())[0], [3 / 4, 4 / 5])


# The originals' formulas, transcribed (independent of training.metrics), for the edge cases below.
def _fcn_fast_hist(a, b, n):
    # shelhamer/fcn.berkeleyvision.org score.py fast_hist: a = gt, b = prediction
    k = (a >= 0) & (a < n)
    return np.bincount(n * a[k].astype(int) + b[k], minlength=n**2).reshape(n, n)


def _fcn_scores(hist):
    # score.py do_seg_tests: overall accuracy, per-class IU and np.nanmean of it (0 / 0 = NaN: left out)
    with np.errstate(divide="ignore", invalid="ignore"):
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
        return np.diag(hist).sum() / hist.sum(), iu, np.nanmean(iu)


def _semseg_intersection_and_union(output, target, k, ignore_index=255):
    # hszhao/semseg util/util.py intersectionAndUnion
    output, target = output.ravel().copy(), target.ravel()
    output[target == ignore_index] = ignore_index
    inter = output[output == target]
    ai = np.histogram(inter, bins=np.arange(k + 1))[0]
    ao = np.histogram(output, bins=np.arange(k + 1))[0]
    at = np.histogram(target, bins=np.arange(k + 1))[0]
    return ai, ao + at - ai, at


def _edge_case_images():
    """Two 3x4 images, 4 classes: ignore pixels (255, some predicted as class 1), a label out of range (7, FCN's
    fast_hist skips it), class 2 predicted but in no gt (IoU 0, counted), class 3 nowhere (IoU 0 / 0)."""
    gt = np.array([[[0, 0, 1, 255], [0, 1, 1, 255], [7, 0, 0, 1]],
                   [[1, 1, 1, 1], [0, 0, 255, 255], [0, 0, 0, 1]]])
    pred = np.array([[[0, 2, 1, 1], [0, 1, 0, 1], [1, 0, 0, 1]],
                     [[1, 1, 2, 1], [0, 1, 1, 0], [0, 0, 0, 0]]])
    return pred, gt


def test_segmentation_scores_equal_fcn_score_py_on_edge_cases():
    pred, gt = _edge_case_images()
    hist = sum(_fcn_fast_hist(g.ravel(), p.ravel(), 4) for p, g in zip(pred, gt))  # accumulated over the set
    cm = sum(confusion_matrix(p, g, 4) for p, g in zip(pred, gt))
    np.testing.assert_array_equal(cm, hist)
    acc, iu, mean_iu = _fcn_scores(hist)
    iou, miou = miou_from_confusion(cm)
    np.testing.assert_array_equal(np.isnan(iou), [False, False, False, True])  # class 3: 0 / 0
    np.testing.assert_allclose(iou, iu)
    assert iou[2] == 0.0 and miou == pytest.approx(mean_iu, abs=1e-15)  # the mean of 3 classes
    assert np.trace(cm) / cm.sum() == pytest.approx(acc, abs=1e-15)  # evaluate's pixel_accuracy


def test_segmentation_scores_versus_semseg_intersection_and_union():
    # semseg's tool/test.py cal_acc: sums of I and U over the set, iou = I / (U + 1e-10), mIoU = np.mean over
    # all K classes (a class in no gt and no prediction counts 0), allAcc = sum(I) / (sum(target) + 1e-10)
    pred, gt = _edge_case_images()
    gt = np.where(gt == 7, 255, gt)  # semseg's labels are in [0, K) or 255 (encode_mask's)
    i, u, t = (sum(x) for x in zip(*(_semseg_intersection_and_union(p, g, 4) for p, g in zip(pred, gt))))
    iou_class, all_acc = i / (u + 1e-10), i.sum() / (t.sum() + 1e-10)
    cm = sum(confusion_matrix(p, g, 4) for p, g in zip(pred, gt))
    iou, miou = miou_from_confusion(cm)
    np.testing.assert_allclose(np.nan_to_num(iou), iou_class, atol=1e-9)
    assert np.trace(cm) / cm.sum() == pytest.approx(all_acc, abs=1e-9)
    # the means differ by the absent class only: FCN/Keras leave it out, semseg/PSPNet's eval_acc.m count it as 0
    assert miou == pytest.approx(iou_class[:3].mean(), abs=1e-9)
    assert np.mean(iou_class) == pytest.approx(3 / 4 * miou, abs=1e-9)


@pytest.mark.backend_agnostic
def test_mean_iou_metric_equals_keras_mean_iou_on_edge_cases():
    pred, gt = _edge_case_images()
    gt = np.where(gt == 7, 255, gt)
    ours, theirs = MeanIoUMetric(4), keras.metrics.MeanIoU(4, ignore_class=255, sparse_y_pred=True)
    for p, g in zip(pred, gt):
        ours.update_state(g[None], p[None])
        theirs.update_state(g[None], p[None])
    np.testing.assert_array_equal(ours.confusion_matrix(), keras.ops.convert_to_numpy(theirs.total_cm))
    assert float(ours.result()) == pytest.approx(float(theirs.result()), abs=1e-6)
    assert float(ours.result()) == pytest.approx(_fcn_scores(ours.confusion_matrix())[2], abs=1e-6)


@pytest.mark.backend_agnostic
def test_mean_iou_metric_takes_a_boolean_mask_as_sample_weight():
    """TensorFlow refused a bool sample_weight ('Cannot convert 0 to EagerTensor of dtype bool'); JAX and PyTorch
    took it. False pixels are skipped, as weight 0."""
    y = np.array([[[0, 1], [2, 1]]])
    pred = np.array([[[0, 2], [2, 1]]])
    mask = np.array([[[True, False], [True, True]]])
    for weight in (mask, mask.astype("float32")):
        m = MeanIoUMetric(3)
        m.update_state(y, pred, sample_weight=weight)
        assert float(m.result()) == pytest.approx(1.0)  # the one wrong pixel is masked out


def _heatmap_batch(rng, b, k=5, size=16):
    kp = rng.uniform(1, size - 2, (b, k, 2))
    vis = rng.random((b, k)) > 0.25
    tgt, w = zip(*(encode_heatmaps(p, v, (size, size), 1.5) for p, v in zip(kp, vis)))
    tgt, w = np.stack(tgt), np.stack(w)
    noisy = kp + rng.normal(0, 1.5, kp.shape)
    pred = np.stack([encode_heatmaps(p, np.ones(k), (size, size), 1.5)[0] for p in noisy])
    pred = pred + rng.uniform(0, 0.01, pred.shape).astype(np.float32)
    pred[0, ..., 1] = -1.0  # no positive value: a miss even if the argmax lands on the target
    return tgt, pred, w


@pytest.mark.backend_agnostic
def test_pck_metric_equals_plain_functions_over_batches(rng):
    batches = [_heatmap_batch(rng, 4) for _ in range(3)]  # equal shapes: JAX reuses its op caches
    tgt = np.concatenate([t for t, _, _ in batches])
    pred = np.concatenate([p for _, p, _ in batches])
    w = np.concatenate([x for _, _, x in batches])
    gt_xy, _ = decode_heatmaps(tgt, refine=None)
    pred_xy, _ = decode_heatmaps(pred, refine=None)
    vis = w > 0
    _, expected = pck(pred_xy, gt_xy, vis, bbox_size(gt_xy, vis), alpha=0.2)
    for use_weights in (True, False):
        metric = PCKMetric(alpha=0.2)
        for t, p, x in batches:
            metric.update_state(t, p, sample_weight=x[:, None, None, :] if use_weights else None)
        print(f"PCKMetric {float(metric.result()):.4f} vs pck() {expected:.4f}")
        assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


@pytest.mark.backend_agnostic
def test_pck_metric_leaves_out_the_cpm_background_channel():
    # hand-worked: joints at (4, 4) and (8, 4) -> box side 4, threshold 0.2 * 4 = 0.8 heatmap px;
    # joint 0 predicted exactly (hit), joint 1 at (8, 5), 1 px off (miss): PCK = 1/2.
    # The background map max(0, 1 - max_k) peaks at (0, 0); counted as a joint it widened the box
    # to side 8 (threshold 1.6: joint 1 a hit) and was itself a hit, giving 3/3.
    tgt = np.zeros((1, 16, 16, 3), np.float32)
    pred = np.zeros_like(tgt)
    tgt[0, 4, 4, 0] = tgt[0, 4, 8, 1] = 1.0
    pred[0, 4, 4, 0] = pred[0, 5, 8, 1] = 1.0
    tgt[..., 2] = 1.0 - tgt[..., :2].max(-1)
    pred[..., 2] = tgt[..., 2]
    for weights in (np.ones((1, 1, 1, 3), np.float32), None):
        metric = PCKMetric(alpha=0.2, num_keypoints=2)
        metric.update_state(tgt, pred, sample_weight=weights)
        assert float(metric.result()) == pytest.approx(0.5)
    assert PCKMetric(num_keypoints=2).get_config()["num_keypoints"] == 2


@pytest.mark.backend_agnostic
def test_pck_metric_per_sample_weights_leave_out_unannotated_joints():
    # hand-worked: joints 0, 1 at (4, 4), (12, 10) -> box side 8, threshold 1.6 px; joint 0 exact (hit),
    # joint 1 predicted at (12, 12), 2 px off (miss); joint 2 unannotated (zero target). PCK = 1/2 with
    # per-joint weights, no weights, or a (B,) per-sample weight. The (B,) weight counted joint 2 at its
    # target's argmax (0, 0): box side 12 (joint 1 a hit) and joint 2 itself a hit: 3/3.
    tgt = np.zeros((1, 16, 16, 3), np.float32)
    tgt[0, 4, 4, 0] = tgt[0, 10, 12, 1] = 1.0
    pred = np.zeros_like(tgt)
    pred[0, 4, 4, 0] = pred[0, 12, 12, 1] = pred[0, 0, 0, 2] = 1.0
    for weights in (np.array([[[[1, 1, 0]]]], np.float32), None, np.ones((1,), np.float32)):
        metric = PCKMetric(alpha=0.2)
        metric.update_state(tgt, pred, sample_weight=weights)
        assert float(metric.result()) == pytest.approx(0.5)
    metric.update_state(tgt, pred, sample_weight=np.zeros((1,), np.float32))  # weight 0: nothing counted
    assert float(metric.result()) == pytest.approx(0.5)


@pytest.mark.backend_agnostic
def test_pck_metric_nan_pixels_never_win():
    # hand-worked: joints at (4, 4), (12, 10), (8, 2) -> box side max(8, 8) = 8, threshold 1.6 px.
    # Joint 0: one NaN pixel, maximum on the target (hit); joint 1: all NaN (miss); joint 2: a NaN pixel
    # on the target, the finite maximum 5 px away (miss). PCK = 1/3. A NaN pixel used to make the
    # joint a miss whatever the rest of its map said (0/3), unlike decode_heatmaps, which skips NaN.
    tgt = np.zeros((1, 16, 16, 3), np.float32)
    tgt[0, 4, 4, 0] = tgt[0, 10, 12, 1] = tgt[0, 2, 8, 2] = 1.0
    pred = tgt.copy()
    pred[0, 0, 0, 0] = np.nan
    pred[0, ..., 1] = np.nan
    pred[0, 2, 8, 2], pred[0, 7, 8, 2] = np.nan, 0.5
    for weights in (np.ones((1, 1, 1, 3), np.float32), None):
        metric = PCKMetric(alpha=0.2)
        metric.update_state(tgt, pred, sample_weight=weights)
        assert float(metric.result()) == pytest.approx(1 / 3)


@pytest.mark.backend_agnostic
def test_mean_iou_metric_equals_plain_functions_over_batches(rng):
    c = 4
    gts = [rng.integers(0, c, (2, 5, 6)) for _ in range(3)]
    gts[1][0, :2] = 255
    logits = [rng.normal(size=g.shape + (c,)).astype(np.float32) for g in gts]
    cm = sum(confusion_matrix(lg.argmax(-1), g, c) for lg, g in zip(logits, gts))
    iou, expected = miou_from_confusion(cm)
    metric = MeanIoUMetric(c)
    for lg, g in zip(logits, gts):
        metric.update_state(g[..., None], lg)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(metric.confusion), cm)
    np.testing.assert_allclose(metric.iou_per_class(), iou)
    labels = MeanIoUMetric(c)  # label predictions and a per-pixel weight mask
    mask = np.ones(gts[0].shape)
    mask[:, 0] = 0
    labels.update_state(gts[0], logits[0].argmax(-1)[..., None], sample_weight=mask)
    g0 = np.where(mask > 0, gts[0], 255)
    expected0 = miou_from_confusion(confusion_matrix(logits[0].argmax(-1), g0, c))[1]
    assert float(labels.result()) == pytest.approx(expected0)
    # a weight mask shaped like (B, H, W, 1) labels (was a broadcast error on every backend)
    labels = MeanIoUMetric(c)
    labels.update_state(gts[0][..., None], logits[0], sample_weight=mask[..., None])
    assert float(labels.result()) == pytest.approx(expected0)
    metric.reset_state()
    assert float(metric.result()) == 0.0 and not keras.ops.convert_to_numpy(metric.confusion).any()


@pytest.mark.backend_agnostic
def test_mean_iou_metric_counts_past_int32():
    # A long stream: cell (0, 0) already holds 2**31 - 5 pixels (an epoch of VOC-aug at 512x512 has ~2e9
    # background pixels; COCO-Stuff ten times more). 10 more class-0 pixels and 4 class-0-predicted-1 pixels:
    # CM = [[2**31 + 5, 4], [0, 0]], IoU = [(2**31 + 5) / (2**31 + 9), 0 / 4]. int32 cells wrapped negative.
    metric = MeanIoUMetric(2)
    metric.confusion.assign(np.array([[2**31 - 5, 0], [0, 0]], np.int32))
    pred = np.zeros((1, 2, 7), np.int32)
    pred[0, 1, 3:] = 1
    metric.update_state(np.zeros((1, 2, 7), np.int32), pred)
    np.testing.assert_array_equal(metric.confusion_matrix(), [[2**31 + 5, 4], [0, 0]])
    assert float(metric.result()) == pytest.approx(0.5 * (2**31 + 5) / (2**31 + 9))
    np.testing.assert_allclose(metric.iou_per_class(), [(2**31 + 5) / (2**31 + 9), 0.0])
    # a second carry: the int32 part set to its largest value, then one more pixel: 2**31 + 2**31 = 2**32
    metric.confusion.assign(np.array([[2**31 - 1, 4], [0, 0]], np.int32))
    metric.update_state(np.zeros((1, 1, 1), np.int32), np.zeros((1, 1, 1), np.int32))
    np.testing.assert_array_equal(metric.confusion_matrix(), [[2**32, 4], [0, 0]])
    metric.reset_state()
    assert not metric.confusion_matrix().any() and float(metric.result()) == 0.0


@pytest.mark.backend_agnostic
def test_mean_iou_metric_nan_score_never_wins_on_any_backend():
    # 2x2 pixels of class 1, scores favour class 1; one pixel has a NaN score for class 2.
    # TensorFlow's argmax skipped the NaN (4 pixels right), JAX/PyTorch picked it (3 right, 1 as class 2).
    logits = np.zeros((1, 2, 2, 3), np.float32)
    logits[..., 1] = 1.0
    logits[0, 0, 0, 2] = np.nan
    metric = MeanIoUMetric(3)
    metric.update_state(np.ones((1, 2, 2), np.int32), logits)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(metric.confusion), [[0, 0, 0], [0, 4, 0], [0, 0, 0]])
    assert float(metric.result()) == 1.0


@pytest.mark.backend_agnostic
def test_metrics_in_compiled_evaluate_and_safe_mode_reload(rng, tmp_path):
    c = 3
    logits = rng.normal(size=(6, 4, 4, c)).astype(np.float32)
    labels = rng.integers(0, c, (6, 4, 4))
    labels[0, 0] = 255
    inp = keras.Input((4, 4, c))
    model = keras.Model(inp, keras.layers.Activation("linear")(inp))
    model.compile(loss=SegmentationCrossEntropy(), metrics=[MeanIoUMetric(c, name="miou")])
    res = model.evaluate(logits, labels, batch_size=4, verbose=0, return_dict=True)
    expected = miou_from_confusion(confusion_matrix(logits.argmax(-1), labels, c))[1]
    assert res["miou"] == pytest.approx(expected, abs=1e-6)
    model.save(tmp_path / "seg.keras")
    again = keras.models.load_model(tmp_path / "seg.keras", safe_mode=True)
    res2 = again.evaluate(logits, labels, batch_size=4, verbose=0, return_dict=True)
    assert res2["miou"] == pytest.approx(expected, abs=1e-6) and res2["loss"] == pytest.approx(res["loss"], rel=1e-6)
    for m in (PCKMetric(alpha=0.1), MeanIoUMetric(5, ignore_label=0)):
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(m))
        assert type(again) is type(m) and again.get_config() == m.get_config()


@pytest.mark.parametrize("call, match", [
    (lambda: pck(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)), np.ones((2, 4)), np.ones(2)), "pred"),
    (lambda: pck(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), np.ones((2, 4)), np.ones(2)), "visible"),
    (lambda: pck(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), np.ones((2, 3)), np.ones(3)), "normaliser"),
    (lambda: pckh(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), np.ones((2, 3)), np.ones(2), joint_names=["a"]),
     "joint_names"),
    (lambda: head_size_from_box(np.zeros((2, 3))), "box"),
    (lambda: torso_size(np.zeros((2, 14, 2)), np.ones((2, 14)), 9, 14), "`b` must be a joint index"),
    (lambda: confusion_matrix(np.zeros(3, int), np.zeros(4, int), 2), "shape"),
    (lambda: confusion_matrix(np.array([5]), np.array([1]), 2), "outside"),
    (lambda: miou_from_confusion(np.zeros((2, 3))), "square"),
    pytest.param(lambda: MeanIoUMetric(0), "num_classes", marks=pytest.mark.backend_agnostic),  # a Keras metric
])
def test_bad_input_raises_named_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
