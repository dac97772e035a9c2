"""HeatmapDataset / SegmentationDataset: shapes, seeding, flips, bad input, pickling."""

import math
import pickle
import re

import cv2
import numpy as np
import pytest

from training.data import Augmentation, HeatmapDataset, Normalization, SegmentationDataset
from training.datasets import AnnotationError, DatasetError, ImageReadError, PoseRecord, SegRecord
from training.datasets.synthetic import synthetic_pose, synthetic_segmentation
from training.transforms import transform_points

# Most tests here are NumPy/OpenCV only (nothing a Keras backend computes) and run in ./dev test's TensorFlow
# pass alone; those that build or run a Keras model are marked backend_agnostic one by one, for its JAX pass too.


def _pose(n=8, **kw):
    kw = {"batch_size": 4, "input_size": (32, 32), "heatmap_size": (8, 8), "sigma": 1.0, "flip_pairs": (), **kw}
    return HeatmapDataset(synthetic_pose(n, image_size=(48, 48), num_keypoints=4), **kw)


def test_heatmap_batch_shapes_and_multi_output():
    ds = _pose(10, num_outputs=2, augment=True)
    assert len(ds) == 3
    x, y, w = ds[0]
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert isinstance(y, tuple) and len(y) == 2 and y[0] is y[1]  # one target per stack, shared
    assert y[0].shape == (4, 8, 8, 4) and y[0].dtype == np.float32 and y[0].max() <= 1
    assert w.shape == (4, 1, 1, 4) and w.dtype == np.float32
    assert ds[2][0].shape[0] == 2  # last partial batch
    assert len(_pose(10, drop_remainder=True)) == 2
    with pytest.raises(IndexError):
        ds[3]


def test_batches_are_a_function_of_seed_epoch_and_index():
    a, b = _pose(16, augment=True, seed=1), _pose(16, augment=True, seed=1)
    xa, ya, _ = a[1]
    xb, yb, _ = b[1]
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    a.on_epoch_end()
    assert a.epoch == 1 and not np.array_equal(a.batch_indices(0), b.batch_indices(0))
    assert not np.array_equal(a[1][0], xb)  # new order and new augmentation draws
    b.set_epoch(1)
    np.testing.assert_array_equal(a[1][0], b[1][0])
    assert not np.array_equal(_pose(16, augment=True, seed=2)[1][0], xb)
    no_shuffle = _pose(16, shuffle=False)
    no_shuffle.on_epoch_end()
    np.testing.assert_array_equal(no_shuffle.batch_indices(1), [4, 5, 6, 7])


def test_records_shuffle_or_seed_set_after_the_first_batch_give_a_fresh_datasets_batches():
    # what a worker process's fresh copy makes (workers=N) must be what this one makes (workers=0)
    ds, records = _pose(16, augment=True, seed=1), synthetic_pose(16, image_size=(48, 48), num_keypoints=4)
    ds[0]
    ds.records = records[:10]  # shorter: the old 16-order indexed past the records (IndexError) ...
    fresh = _pose(10, augment=True, seed=1)
    assert len(ds) == 3 and sorted(np.concatenate([ds.batch_indices(i) for i in range(3)])) == list(range(10))
    for i in range(3):
        np.testing.assert_array_equal(ds[i][0], fresh[i][0])
    ds.shuffle = False  # ... and shuffle=False or a new seed kept the old permutation
    np.testing.assert_array_equal(ds.batch_indices(0), [0, 1, 2, 3])
    ds.shuffle, ds.seed = True, 2
    np.testing.assert_array_equal(ds[1][0], _pose(10, augment=True, seed=2)[1][0])


def test_pickles_small_and_identical():
    # Keras' pool pickles the dataset into its workers every epoch; ds[i] runs here, in this process
    ds = _pose(16, augment=True, workers=2, use_multiprocessing=True, persistent_workers=False)
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # records and settings only, no pixels
    clone = pickle.loads(blob)
    clone.set_epoch(3)
    ds.set_epoch(3)
    np.testing.assert_array_equal(clone[2][0], ds[2][0])
    # the persistent workers' copy is as small and never carries the parent's processes
    persistent = _pose(16, augment=True, workers=2, use_multiprocessing=True)
    blob = pickle.dumps(persistent)
    assert len(blob) < 20_000 and pickle.loads(blob)._batch_workers is None and persistent.processes == 2


def _record(tmp_path, kp, vis=None, name="img.png", size=40):
    cv2.imwrite(str(tmp_path / name), np.full((size, size, 3), 90, np.uint8))
    kp = np.asarray(kp, float)
    return PoseRecord(image=str(tmp_path / name), keypoints=kp, visible=np.ones(len(kp)) if vis is None else vis,
                      center=(size / 2 - 0.5, size / 2 - 0.5), scale=size, id=name)


def test_keypoints_outside_image_get_weight_zero_never_nan(tmp_path):
    rec = _record(tmp_path, [[10, 10], [-500, 20], [np.nan, 3], [20, np.inf], [30, 30]], vis=[1, 1, 1, 1, 0])
    ds = HeatmapDataset([rec], batch_size=1, input_size=(40, 40), heatmap_size=(10, 10), augment=True, seed=5, flip_pairs=())
    for epoch in range(3):
        ds.set_epoch(epoch)
        _, y, w = ds[0]
        assert np.isfinite(y).all() and np.isfinite(w).all()
        assert w[0, 0, 0].tolist()[1:] == [0, 0, 0, 0]
        assert not y[0, ..., 1:].any()


def test_flip_swaps_pairs(tmp_path):
    rec = _record(tmp_path, [[8, 20], [30, 12]])
    aug = Augmentation(rotation=0, scale_range=(1, 1), flip_prob=1.0, brightness=0, contrast=0, saturation=0)
    plain = HeatmapDataset([rec], batch_size=1, input_size=(40, 40), heatmap_size=(40, 40), sigma=1.0)
    flipped = HeatmapDataset([rec], batch_size=1, input_size=(40, 40), heatmap_size=(40, 40), sigma=1.0,
                             augment=aug, flip_pairs=[(0, 1)])
    y0, y1 = plain[0][1][0], flipped[0][1][0]

    def peak(m):
        r, c = np.unravel_index(np.argmax(m), m.shape)
        return c, r

    assert peak(y0[..., 0]) == (8, 20) and peak(y0[..., 1]) == (30, 12)
    # joint 0 is now the mirror of joint 1 (x -> w-1-x) and vice versa
    assert peak(y1[..., 0]) == (39 - 30, 12) and peak(y1[..., 1]) == (39 - 8, 20)


def test_missing_or_corrupt_image_names_file_and_index(tmp_path):
    good = _record(tmp_path, [[5, 5]], name="good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    bad = good.replace(image=str(tmp_path / "bad.png"), id="bad")
    gone = good.replace(image=str(tmp_path / "gone.png"), id="gone")
    ds = HeatmapDataset([good, bad, gone], batch_size=3, input_size=(16, 16), heatmap_size=(4, 4), shuffle=False)
    with pytest.raises(ImageReadError, match=r"sample 1 \(id 'bad', image '.*bad.png'\).*cannot decode"):
        ds[0]
    log = tmp_path / "skips.tsv"
    ds = HeatmapDataset([good, bad, gone], batch_size=3, input_size=(16, 16), heatmap_size=(4, 4), shuffle=False,
                        on_error="skip", skip_log=log)
    x, y, w = ds[0]
    assert x.shape[0] == 3  # stand-ins keep the batch full
    assert sorted(ds.skipped()) == [1, 2]
    assert "gone.png" in log.read_text() and len(log.read_text().splitlines()) == 2
    assert sorted(pickle.loads(pickle.dumps(ds)).skipped()) == [1, 2]  # read back from the log
    only_bad = HeatmapDataset([bad], batch_size=1, input_size=(16, 16), heatmap_size=(4, 4), on_error="skip")
    with pytest.raises(DatasetError, match="could not be read"):
        only_bad[0]


def test_bad_arguments_raise_named_errors():
    recs = synthetic_pose(2, num_keypoints=3)
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        HeatmapDataset(recs, on_error="ignore")
    with pytest.raises(ValueError, match="records is empty"):
        HeatmapDataset([])
    with pytest.raises(ValueError, match="flip_pairs"):
        HeatmapDataset(recs, flip_pairs=[(0, 7)])
    with pytest.raises(ValueError, match="unknown setting"):
        HeatmapDataset(recs, augment={"rotate": 3})
    # int() took 2.5 as 2 and "8" as 8
    for bad in (2.5, "8", True, 0, None):
        with pytest.raises(ValueError, match=rf"HeatmapDataset: batch_size must be an integer >= 1. "
                                             rf"Received: batch_size={re.escape(repr(bad))}"):
            HeatmapDataset(recs, batch_size=bad)
    assert HeatmapDataset(recs, batch_size=np.int64(2)).batch_size == 2
    # one record, dicts, or another task's records failed later ("not iterable", AttributeError in a worker)
    with pytest.raises(ValueError, match=r"HeatmapDataset: records must be a list of sample records; received one "
                                         r"PoseRecord: pass \[record\]"):
        HeatmapDataset(recs[0])
    with pytest.raises(ValueError, match=r"HeatmapDataset: records\[1\] is a dict without image, keypoints, "
                                         r"visible, center, scale"):
        HeatmapDataset([recs[0], {"image": "a.png"}])
    seg = SegRecord("i.png", "m.png")
    with pytest.raises(ValueError, match=r"HeatmapDataset: records\[0\] is a SegRecord without keypoints, visible"):
        HeatmapDataset([seg])
    with pytest.raises(ValueError, match=r"SegmentationDataset: records\[0\] is a PoseRecord without mask"):
        SegmentationDataset([recs[0]])
    with pytest.raises(ValueError, match=r"SegmentationDataset: records must be a list of sample records. "
                                         r"Received: int"):
        SegmentationDataset(3)


def test_names_are_checked_and_kept_in_the_config():
    recs = synthetic_pose(2, num_keypoints=3)
    assert HeatmapDataset(recs, keypoint_names=["a", "b", "c"]).config()["keypoint_names"] == ["a", "b", "c"]
    assert HeatmapDataset(recs).config()["keypoint_names"] is None
    for bad in (["a", "b"], "abc", ["a", "b", 3], ["a", "", "c"], 5):
        with pytest.raises(ValueError, match=rf"HeatmapDataset: keypoint_names must be 3 non-empty strings, one per "
                                             rf"keypoint in order, or None. Received: keypoint_names="
                                             rf"{re.escape(repr(bad))}"):
            HeatmapDataset(recs, keypoint_names=bad)
    seg = SegRecord("i.png", "m.png")
    assert SegmentationDataset([seg], num_classes=2, class_names=("bg", "fg")).config()["class_names"] == ["bg", "fg"]
    with pytest.raises(ValueError, match=r"SegmentationDataset: class_names must be 2 non-empty strings, one per "
                                         r"class"):
        SegmentationDataset([seg], num_classes=2, class_names=("bg",))
    # what a run's config.json / .keras gives the model's record (predict and evaluate name the outputs with it)
    from training.models import _run_settings

    for ds, key, names in ((HeatmapDataset(recs, keypoint_names=["a", "b", "c"]), "keypoint_names", ("a", "b", "c")),
                           (SegmentationDataset([seg], num_classes=2, class_names=("bg", "fg")), "class_names",
                            ("bg", "fg"))):
        record = _run_settings({"family": "x", "train_data": ds.config()})["record"]
        assert getattr(record, key) == names
    for older in (None, [], ["a", 3], "abc"):  # runs before names were kept, or a hand-edited entry: no names
        config = {"family": "x", "train_data": dict(HeatmapDataset(recs).config(), keypoint_names=older)}
        assert _run_settings(config)["record"].keypoint_names is None


def test_segmentation_ignore_label_and_label_map_are_checked():
    seg = SegRecord("i.png", "m.png", id="r1")
    # an ignore_label inside [0, C) left that class out of loss and metrics
    for bad in (0, 2, 2.0, "255", True):
        with pytest.raises(ValueError, match=r"SegmentationDataset: ignore_label must be an integer outside the "
                                             rf"classes \[0, 3\) .* Received: ignore_label={re.escape(repr(bad))}"):
            SegmentationDataset([seg], num_classes=3, ignore_label=bad)
    assert SegmentationDataset([seg], num_classes=3, ignore_label=np.int32(3)).ignore_label == 3
    # uint8 wrapped 300 -> 44 silently; a short table failed in NumPy's reshape without naming the record
    for table, what in ((np.r_[np.zeros(255), 300], "values 0.0..300.0"), (np.zeros(10, int), r"shape \(10,\)"),
                        (np.full(256, -1), "values -1..-1"), (np.full(256, 0.5), "values 0.5..0.5"),
                        (np.array(["a"] * 256), "dtype <U1")):
        with pytest.raises(AnnotationError, match=rf"SegRecord 'r1': label_map must be 256 integers in 0..255 .*{what}"):
            SegRecord("i.png", "m.png", id="r1", label_map=table)
    assert SegRecord("i.png", "m.png", label_map=np.arange(256)).label_map.dtype == np.uint8
    np.testing.assert_array_equal(SegRecord("i.png", "m.png", label_map=np.full(256, 255.0)).label_map, 255)


def test_cpm_background_and_center_map():
    ds = _pose(4, background=True, center_map_sigma=4.0)
    (img, cmap), y, w = ds[0]
    from training.targets import cpm_center_map

    assert cmap.shape == (4, 32, 32, 1)
    np.testing.assert_allclose(cmap[2], cpm_center_map((32, 32), (15.5, 15.5), 4.0))  # peak at the crop centre
    assert y.shape[-1] == 5 and w.shape[-1] == 5 and (w[..., 4] == 1).all()
    np.testing.assert_allclose(y[..., 4], np.clip(1 - y[..., :4].max(-1), 0, 1))


def test_normalization():
    n = Normalization(scale=1.0, mean=(1, 2, 3), std=(2, 2, 2), channel_order="BGR")
    out = n(np.array([[[[10, 20, 30]]]], np.uint8))
    np.testing.assert_allclose(out[0, 0, 0], [(30 - 1) / 2, (20 - 2) / 2, (10 - 3) / 2])
    # 'bgr' swaps on the host as the uint8 feed's layer does (it did not: the two feeds differed)
    assert Normalization(channel_order="bgr").channel_order == "BGR"
    with pytest.raises(ValueError, match="channel_order must be 'RGB' or 'BGR'"):
        Normalization(channel_order="RBG")
    with pytest.raises(ValueError, match="std non-zero"):
        Normalization(std=(1.0, 0.0, 1.0))


def test_seeds_and_negative_batch_indices():
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        _pose(4, seed=-1)
    ds = _pose(8)
    for a, b in zip(ds[-1], ds[len(ds) - 1]):  # same batch, same augmentation draws
        np.testing.assert_array_equal(a, b)


def test_segmentation_batches_letterbox_and_label_map(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    mask = np.zeros((20, 40), np.uint8)
    mask[:, 20:] = 7  # raw value 7 -> class 2 through the label map
    cv2.imwrite(str(tmp_path / "i.png"), img)
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    lut = np.full(256, 255, np.uint8)
    lut[0], lut[7] = 0, 2
    rec = SegRecord(str(tmp_path / "i.png"), str(tmp_path / "m.png"), id="r", label_map=lut)
    ds = SegmentationDataset([rec], batch_size=1, input_size=(40, 40), num_classes=3, shuffle=False)
    x, y = ds[0]
    assert x.shape == (1, 40, 40, 3) and y.shape == (1, 40, 40) and y.dtype == np.int32
    assert (y[0, :9] == 255).all() and (y[0, 31:] == 255).all()  # letterbox padding is ignored
    assert (y[0, 10:30, :20] == 0).all() and (y[0, 10:30, 20:] == 2).all()
    small = SegmentationDataset([rec], batch_size=1, input_size=(40, 40), num_classes=3, label_size=(10, 10))
    assert small[0][1].shape == (1, 10, 10)
    cv2.imwrite(str(tmp_path / "m2.png"), np.zeros((5, 5), np.uint8))
    bad = SegmentationDataset([SegRecord(str(tmp_path / "i.png"), str(tmp_path / "m2.png"), id="b")], batch_size=1,
                              input_size=(8, 8), num_classes=3)
    with pytest.raises(ImageReadError, match=r"sample 0 .*mask '.*m2.png' is 5x5 but image .* is 40x20"):
        bad[0]


def test_mask_values_that_are_no_class_warn_once_naming_the_file(tmp_path):
    """A mask saved for display (0/100/200) with num_classes=3 trained on background alone without a word: its other
    values became ignore_label. Now one warning names the file and the values; masks of classes and 255 say nothing."""
    import warnings

    img = np.zeros((8, 12, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "i.png"), img)
    shown = np.zeros((8, 12), np.uint8)
    shown[:, 4:8], shown[:, 8:] = 100, 200
    cv2.imwrite(str(tmp_path / "shown.png"), shown)
    voc = np.zeros((8, 12), np.uint8)
    voc[:, 4:], voc[0] = 2, 255
    cv2.imwrite(str(tmp_path / "voc.png"), voc)
    recs = [SegRecord(str(tmp_path / "i.png"), str(tmp_path / m), id=m) for m in ("voc.png", "shown.png", "shown.png")]
    ds = SegmentationDataset(recs, batch_size=1, input_size=(12, 8), num_classes=3, shuffle=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds[0]
        assert not caught
        ds[1], ds[2]
        list(ds.originals())
    said = [str(w.message) for w in caught]
    assert said == [f"SegmentationDataset: mask '{tmp_path / 'shown.png'}' has values 100, 200, neither classes [0, 3) "
                    f"nor ignore_label=255: they are ignored in the loss and the metrics, as ignore_label is. If they "
                    f"are classes (a mask saved for display as 0/100/200, say), map them to 0..2 with "
                    f"SegRecord(label_map=...) or raise num_classes. (Said once.)"], said
    assert (ds[1][1][0, :, 4:] == 255).all()  # what they still become
    # thread workers batch from copies of the dataset: each copy warned again (once per batch)
    threaded = SegmentationDataset(recs * 3, batch_size=1, input_size=(12, 8), num_classes=3, shuffle=False, workers=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for b in range(len(threaded)):
            threaded[b]
        list(threaded.originals())
    threaded.close_workers()
    assert len([w for w in caught if "neither classes" in str(w.message)]) == 1, [str(w.message) for w in caught]


def test_segmentation_augmentation_keeps_labels_aligned():
    recs = synthetic_segmentation(6, image_size=(48, 48), num_classes=4, seed=2)
    ds = SegmentationDataset(recs, batch_size=6, input_size=(32, 32), num_classes=4, augment=True, num_outputs=2,
                             normalization=Normalization(scale=1.0))
    x, (y, y2) = ds[0]
    assert y is y2 and set(np.unique(y)) <= {0, 1, 2, 3, 255}
    from training.datasets.synthetic import class_colors

    colors = class_colors(4).astype(np.float32)
    inside = (y > 0) & (y < 255)
    # interior labelled pixels carry (roughly) their class colour: image and mask moved together
    err = np.abs(x[inside] - colors[y[inside]]).max(-1)
    assert np.median(err) < 40


def test_segmentation_augmentation_pads_with_the_mean_and_centres_a_smaller_image(tmp_path):
    """semseg's ``Crop(crop_type='rand', padding=mean, ignore_label=255)`` pads an image smaller than the crop by
    ``pad // 2`` before and the rest after (then its random offset is 0), image with the ImageNet mean
    ``[0.485, 0.456, 0.406] * 255`` and labels with 255. Here: a 20x10 image at zoom 0.5 of its fit into 32x32
    is 16x8 px (semseg: ``RandScale`` 0.8), padded 8 + 8 columns and 12 + 12 rows. We padded black and put the
    image anywhere in the crop."""
    cv2.imwrite(str(tmp_path / "i.png"), np.full((10, 20, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "m.png"), np.ones((10, 20), np.uint8))
    mean = (0.485, 0.456, 0.406)
    norm = Normalization(mean=mean, std=(0.229, 0.224, 0.225))
    aug = Augmentation.segmentation(scale_range=(0.5, 0.5), rotation=0.0, flip_prob=0.0, blur_prob=0.0)
    ds = SegmentationDataset([SegRecord(str(tmp_path / "i.png"), str(tmp_path / "m.png"), id="s")], batch_size=1,
                             input_size=(32, 32), num_classes=2, feed="uint8", normalization=norm, augment=aug)
    expected = np.full((32, 32), 255, np.int32)
    expected[12:20, 8:24] = 1
    pad = np.rint(np.array(mean) * 255)  # (124, 116, 104): semseg pads its float image with the exact mean
    for epoch in range(5):
        ds.set_epoch(epoch)
        x, y = ds[0]
        np.testing.assert_array_equal(y[0], expected)
        np.testing.assert_array_equal(x[0][y[0] == 255], np.broadcast_to(pad, ((y[0] == 255).sum(), 3)))
        assert (x[0][y[0] == 1] == 200).all()
    # the letterbox without augmentation (validation, evaluate) pads alike: it was black while training padded the mean
    plain = SegmentationDataset(ds.records, batch_size=1, input_size=(32, 32), num_classes=2, feed="uint8",
                                normalization=norm)
    x, y = plain[0]
    assert (y[0][:8] == 255).all() and (y[0][24:] == 255).all() and (y[0][9:23] == 1).all()  # 20x10 fitted: 32x16
    outside = np.r_[x[0][:7], x[0][25:]].reshape(-1, 3)  # rows 7 and 24 blend the image's edge (bilinear)
    np.testing.assert_array_equal(outside, np.broadcast_to(pad, outside.shape))
    bgr = SegmentationDataset(ds.records, input_size=(32, 32), num_classes=2, augment=aug,
                              normalization=Normalization(mean=mean[::-1], channel_order="BGR"))
    np.testing.assert_allclose(bgr.pad_pixel(), np.array(mean) * 255)  # the RGB pixel, whatever the model's order


def test_pose_crops_are_padded_with_the_normalisations_mean_pixel():
    """CPM's data transformer pads with grey 128 (its BGR / 256 - 0.5 maps it to 0), pose-hg-train's crop with black
    (RGB / 255): the pixel the normalisation maps to 0. The pose crops were black for every convention."""
    rec = synthetic_pose(1, image_size=(32, 32), num_keypoints=3)[0]
    rec = rec.replace(scale=200.0)  # a 200 px box about a 32 px image: the crop's corners lie outside it
    cpm = Normalization(scale=1 / 256, mean=(0.5, 0.5, 0.5), channel_order="BGR")
    for norm, pixel in ((cpm, 128), (Normalization(), 0), (None, 0)):
        for feed in ("uint8", "float32"):
            ds = HeatmapDataset([rec], batch_size=1, input_size=(16, 16), heatmap_size=(4, 4), flip_pairs=(),
                                normalization=norm, feed=feed, shuffle=False)
            x = ds[0][0][0]
            corner = np.r_[x[:2, :2], x[-2:, -2:]].reshape(-1, 3)
            want = pixel if feed == "uint8" else (ds.normalization)(np.full((1, 1, 1, 3), pixel, np.uint8))[0, 0, 0]
            np.testing.assert_array_equal(corner, np.broadcast_to(want, corner.shape))
    assert tuple(HeatmapDataset([rec], normalization=cpm).pad_pixel()) == (128.0, 128.0, 128.0)


def test_mirroring_without_flip_pairs_warns_unless_they_are_given(recwarn):
    """A mirrored left wrist keeps the label 'left wrist' unless pairs swap it: say so when none were given."""
    with pytest.warns(UserWarning, match=r"flip_prob=0.5.*flip_pairs was not given.*flip_pairs=\(\)"):
        ds = _pose(augment=True, flip_pairs=None)
    assert ds.flip_pairs == () and not ds.flip_pairs_given
    recwarn.clear()
    assert _pose(augment=True, flip_pairs=()).flip_pairs_given  # none to swap, said so
    _pose(augment=True, flip_pairs=[(0, 1)])
    _pose(augment=None)  # never mirrors
    _pose(augment=Augmentation(flip_prob=0.0))
    HeatmapDataset(synthetic_pose(4, image_size=(48, 48), num_keypoints=1), input_size=(32, 32),
                   heatmap_size=(8, 8), augment=True)  # one keypoint has no side
    assert not [w for w in recwarn if "flip_pairs" in str(w.message)]


@pytest.mark.parametrize("image_hw", [(40, 40), (60, 20), (10, 50)])
def test_segmentation_letterbox_fits_the_whole_image_into_a_non_square_input(image_hw):
    """At zoom 1 every pixel of the image lands inside the input, and the fit touches two sides."""
    from training.transforms import transform_points

    ds = SegmentationDataset(synthetic_segmentation(1, image_size=(8, 8), num_classes=2), batch_size=1,
                             input_size=(32, 16), num_classes=2)  # (w, h): wide
    h_img, w_img = image_hw
    corners = np.array([[-0.5, -0.5], [w_img - 0.5, h_img - 0.5]])
    (x0, y0), (x1, y1) = transform_points(corners, ds.matrix(image_hw))
    assert x0 >= -0.5 - 1e-9 and y0 >= -0.5 - 1e-9 and x1 <= 31.5 + 1e-9 and y1 <= 15.5 + 1e-9
    assert np.isclose(x1 - x0, 32) or np.isclose(y1 - y0, 16)  # as large as fits: one axis spans the input


@pytest.mark.parametrize("image_hw, input_size, where", [((375, 500), (500, 500), (0, 62)),  # VOC in FCN's input
                                                          ((500, 375), (500, 500), (62, 0)),  # portrait
                                                          ((20, 40), (40, 40), (0, 10)),  # even padding: as before
                                                          ((300, 401), (401, 403), (0, 51))])
def test_segmentation_letterbox_copies_the_image_at_a_whole_pixel_offset(image_hw, input_size, where):
    # A copied image (zoom 1) sits int(pad / 2) px in, as semseg's Crop pads: centred at pad / 2 = 62.5, every input
    # row was the mean of two image rows and the labels 0.5 px away from them
    from training.datasets.base import SegRecord as Record
    from training.tta import canvas_matrix

    h_img, w_img = image_hw
    row, col = h_img // 3, w_img // 3
    img = np.zeros((h_img, w_img, 3), np.uint8)
    img[row, :] = 255
    img[:, col] = 255
    mask = np.zeros((h_img, w_img), np.uint8)
    mask[row, :] = 1
    rec = Record(image=_Array(img), mask=_Array(mask))
    ds = SegmentationDataset([rec], batch_size=1, input_size=input_size, num_classes=2, shuffle=False,
                             normalization=Normalization(mean=(0, 0, 0), std=(1, 1, 1), scale=1.0))
    mat = ds.matrix(image_hw)
    np.testing.assert_array_equal(mat, [[1, 0, where[0]], [0, 1, where[1]]])
    x, labels = ds._make_sample(rec, np.random.default_rng(0))
    column = x[:, where[0] + 3, 0]
    assert np.nonzero(column)[0].tolist() == [row + where[1]] and column[row + where[1]] == 255
    assert np.nonzero(x[where[1] + 3, :, 0])[0].tolist() == [col + where[0]]
    assert np.nonzero(labels[:, where[0] + 3] == 1)[0].tolist() == [row + where[1]]
    np.testing.assert_array_equal(canvas_matrix(image_hw, input_size, 1.0, input_size), mat)  # evaluate(scales=)
    scaled = ds.matrix((h_img // 2, w_img // 2))  # resampled anyway: still centred on the input's centre
    centre = transform_points(np.array([[(w_img // 2 - 1) / 2, (h_img // 2 - 1) / 2]]), scaled)[0]
    np.testing.assert_allclose(centre, [(input_size[0] - 1) / 2, (input_size[1] - 1) / 2], atol=1e-9)


class _Array:
    """An in-memory image or mask source (``load()``)."""

    def __init__(self, array):
        self.array = array

    def load(self):
        return self.array


@pytest.mark.parametrize("input_size", [(64, 64), (64, 32), (32, 64)])
def test_pose_crop_square_fits_a_non_square_input(tmp_path, input_size):
    """record.scale is the side of a square crop: all of it is in the input, whatever its aspect.

    The width alone was fitted to the square, so a wide input cut off the top and bottom of the person
    (head and feet outside the image but still trained, weight 1). Hand-computed: the square of side 50
    about (50, 50) is scaled by min(w, h) / 50 onto the input centre ((w-1)/2, (h-1)/2).
    """
    cv2.imwrite(str(tmp_path / "p.png"), np.full((100, 100, 3), 90, np.uint8))
    rec = PoseRecord(image=str(tmp_path / "p.png"), keypoints=[[50, 30], [50, 70], [25.5, 50]], visible=[1, 1, 1],
                     center=(50, 50), scale=50.0, id="p")
    w, h = input_size
    ds = HeatmapDataset([rec], batch_size=1, input_size=input_size, heatmap_size=(w // 4, h // 4), flip_pairs=())
    f = min(w, h) / 50.0
    expected = [[(w - 1) / 2, (h - 1) / 2 - 20 * f], [(w - 1) / 2, (h - 1) / 2 + 20 * f],
                [(w - 1) / 2 - 24.5 * f, (h - 1) / 2]]
    np.testing.assert_allclose(transform_points(rec.keypoints, ds.matrix(rec)), expected, atol=1e-9)
    corners = transform_points([[25, 25], [75, 75]], ds.matrix(rec))  # the square's outer pixel edges
    assert corners.min() >= -0.5 - 1e-9 and corners[1, 0] <= w - 0.5 + 1e-9 and corners[1, 1] <= h - 0.5 + 1e-9
    # augment's shift is a fraction of the square's side in the input, min(w, h) px, on both axes
    shifted = ds.matrix(rec, {"zoom": 1.0, "rotation": 0.0, "flip": False, "shift": np.array([0.1, -0.2])})
    np.testing.assert_allclose(transform_points(rec.center, shifted),
                               [(w - 1) / 2 + 0.1 * min(w, h), (h - 1) / 2 - 0.2 * min(w, h)], atol=1e-9)


def _centroid(img, around, radius=5):
    """Intensity centroid (x, y) of ``img`` (h, w) in a window about ``around``."""
    x0, y0 = np.round(around).astype(int)
    ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    m = np.where((np.abs(xs - x0) <= radius) & (np.abs(ys - y0) <= radius), img, 0).astype(np.float64)
    return np.array([(m * xs).sum(), (m * ys).sum()]) / m.sum()


def test_augmented_heatmaps_sit_on_the_warped_image_and_flips_swap_labels(tmp_path):
    """Each joint drawn as a blob in its own colour channel: after a random zoom/rotation/shift/flip the
    heatmap of joint k peaks on the blob of joint k, or of its flip partner exactly when the crop is
    mirrored (which the reversed orientation of the three blobs shows, independently of our code)."""
    kp = np.array([[40.3, 50.6], [71.8, 44.2], [57.1, 72.9]])  # left, right, centre
    ys, xs = np.mgrid[0:110, 0:121]
    rgb = np.stack([255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 2.5**2)) for x, y in kp], -1)
    cv2.imwrite(str(tmp_path / "b.png"), cv2.cvtColor(np.rint(rgb).astype(np.uint8), cv2.COLOR_RGB2BGR))
    rec = PoseRecord(image=str(tmp_path / "b.png"), keypoints=kp, visible=[1, 1, 1], center=(56, 58), scale=80.0, id="b")
    aug = Augmentation(scale_range=(0.8, 1.3), rotation=40.0, rotation_prob=1.0, flip_prob=0.5, translate=0.05,
                       brightness=0, contrast=0, saturation=0)
    ds = HeatmapDataset([rec], batch_size=1, input_size=(65, 49), heatmap_size=(65, 49), sigma=1.5, augment=aug,
                        flip_pairs=[(0, 1)], feed="uint8", seed=3)

    def orientation(p):
        return np.sign(np.cross(p[1] - p[0], p[2] - p[0]))

    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        x, y, w = ds[0]
        assert x.dtype == np.uint8 and w.ravel().tolist() == [1, 1, 1]
        blobs = np.array([_centroid(x[0, ..., c], np.unravel_index(x[0, ..., c].argmax(), x.shape[1:3])[::-1])
                          for c in range(3)])
        mirrored = orientation(blobs) != orientation(kp)
        seen.add(bool(mirrored))
        label_of = [1, 0, 2] if mirrored else [0, 1, 2]  # joint k's heatmap belongs on blob label_of[k]
        for k in range(3):
            peak = _centroid(y[0, ..., k], blobs[label_of[k]])
            assert np.abs(peak - blobs[label_of[k]]).max() < 0.15, (epoch, k, mirrored, peak, blobs)
    assert seen == {False, True}


def test_segmentation_image_and_mask_get_the_same_transform(tmp_path):
    """Image pixels are their label's colour: after random zoom/rotation/flip/crop, wherever the labels
    are locally uniform the (bilinear) image shows exactly that colour. A one-pixel offset between
    image and mask fails ~3% of those pixels, a flip of only one of them most."""
    rng = np.random.default_rng(0)
    palette = np.array([[0, 0, 0], [200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]], np.uint8)
    labels = np.kron(rng.integers(0, 5, (9, 12)), np.ones((8, 8), int)).astype(np.uint8)[:67, :93]  # odd size
    cv2.imwrite(str(tmp_path / "i.png"), cv2.cvtColor(palette[labels], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "m.png"), labels)
    aug = Augmentation.segmentation(rotation=30.0, rotation_prob=1.0, blur_prob=0.0)  # blur would mix the colours
    ds = SegmentationDataset([SegRecord(str(tmp_path / "i.png"), str(tmp_path / "m.png"), id="s")], batch_size=1,
                             input_size=(57, 41), num_classes=5, feed="uint8", augment=aug, seed=1)
    wrong = []
    for epoch in range(20):
        ds.set_epoch(epoch)
        x, y = ds[0]
        lab = y[0].astype(np.uint8)
        k = np.ones((3, 3), np.uint8)
        uniform = (cv2.dilate(lab, k) == cv2.erode(lab, k)) & (lab != 255)
        off = np.abs(x[0].astype(int) - palette[np.where(lab == 255, 0, lab)].astype(int)).max(-1) > 1
        wrong.append((off & uniform).sum() / uniform.sum())
        assert set(np.unique(y)) <= {0, 1, 2, 3, 4, 255}
    assert np.mean(wrong) < 0.01 and max(wrong) < 0.02, wrong


def test_cpm_center_map_follows_the_person_under_a_random_shift(tmp_path):
    """CPM's centre map marks the person to estimate: drawn at a blob on the record's centre, it peaks on
    the blob in every augmented crop (it stayed at the crop centre while translate moved the person)."""
    ys, xs = np.mgrid[0:90, 0:100]
    img = 255 * np.exp(-((xs - 47.3) ** 2 + (ys - 41.6) ** 2) / (2 * 2.5**2))
    cv2.imwrite(str(tmp_path / "c.png"), np.repeat(np.rint(img).astype(np.uint8)[..., None], 3, -1))
    rec = PoseRecord(image=str(tmp_path / "c.png"), keypoints=[[47.3, 41.6]], visible=[1], center=(47.3, 41.6),
                     scale=70.0, id="c")
    aug = Augmentation(translate=0.15, rotation=30.0, brightness=0, contrast=0, saturation=0)
    ds = HeatmapDataset([rec], batch_size=1, input_size=(48, 40), heatmap_size=(12, 10), center_map_sigma=3.0,
                        augment=aug, flip_pairs=(), feed="uint8", seed=2)
    moved = 0
    for epoch in range(8):
        ds.set_epoch(epoch)
        (x, cmap), _, _ = ds[0]
        blob = _centroid(x[0, ..., 0], np.unravel_index(x[0, ..., 0].argmax(), x.shape[1:3])[::-1])
        peak = _centroid(cmap[0, ..., 0], blob, radius=9)  # 3 sigma: the window's own bias stays < 0.1 px
        assert np.abs(peak - blob).max() < 0.2, (epoch, peak, blob)
        moved += np.abs(blob - [23.5, 19.5]).max() > 1
    assert moved >= 4  # the shift did move the person off the crop centre


@pytest.mark.parametrize("size, grid", [(500, 497), (512, 513)])
def test_segmentation_labels_on_pspnet_sized_grid_are_the_input_pixels(tmp_path, size, grid):
    """PSPNet's output pixel j is input pixel j (align-corners zoom 8 of stride-8 features, 8F - 7 pixels:
    zoo.models.pspnet.pspnet_output_size); corner-aligning its 497 pixels onto a 500 input put label
    column j at input column j * 499 / 496 (3 px off at the far edge)."""
    from zoo.models.pspnet import pspnet_output_size

    assert pspnet_output_size(size) == grid
    mask = np.zeros((size, size), np.uint8)
    mask[:, 300:] = 1
    mask[400:, :] = 2
    cv2.imwrite(str(tmp_path / "i.png"), np.zeros((size, size, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    ds = SegmentationDataset([SegRecord(str(tmp_path / "i.png"), str(tmp_path / "m.png"), id="p")], batch_size=1,
                             input_size=(size, size), label_size=(grid, grid), num_classes=3, shuffle=False)
    y = ds[0][1][0]
    n = min(size, grid)
    np.testing.assert_array_equal(y[:n, :n], mask[:n, :n])  # the image fills the input: labels unmoved
    assert (y[n:] == 255).all() and (y[:, n:] == 255).all()  # a grid pixel past the image is ignored


@pytest.mark.backend_agnostic
def test_normalization_of_the_release_records_is_the_original_preprocessing():
    import keras

    import zoo

    x = np.stack([np.arange(256), np.arange(256)[::-1], np.arange(256) // 2 + 64], -1).astype(np.uint8)[None, None]
    bgr = x[..., ::-1]
    originals = {  # written out from each release's own code
        ("hourglass", "mpii"): x.astype(np.float32) / np.float32(255),  # Torch image.load: byte:float():div(255)
        ("cpm", "mpii"): (bgr / 256.0 - 0.5).astype(np.float32),  # testing/python: cv2 BGR / 256 - 0.5, float blob
        ("pspnet50", "ade20k"): (x.astype(np.float32) - np.float32([123.68, 116.779, 103.939]))[..., ::-1],  # MATLAB
        # Kaiming's mean image averaged per channel (chainercv's _imagenet_mean, BGR); was VGG's 103.939, 116.779, 123.68
        ("resnet50", "imagenet"): bgr.astype(np.float32) - np.float32([103.0626238, 115.90288257, 123.15163084]),
    }
    for (arch, tag), want in originals.items():
        norm = Normalization.from_record(zoo.get_spec(arch).weights[tag])
        np.testing.assert_array_equal(norm(x), want, err_msg=f"{arch}.{tag}")  # hourglass: 1 ulp off in 126 of 256
        inside = keras.ops.convert_to_numpy(norm.layer()(x))  # the uint8 feed: the same to float32 precision
        np.testing.assert_allclose(inside, want, rtol=1.2e-7, atol=1e-7, err_msg=f"{arch}.{tag} in the model")


@pytest.mark.parametrize("kwargs", [dict(scale=float("nan")), dict(mean=(0.0, float("inf"), 0.0)),
                                    dict(std=(1.0, 1.0, float("nan")))])
def test_normalization_refuses_non_finite_constants(kwargs):
    with pytest.raises(ValueError, match="must be finite"):  # was accepted: every image NaN on the host
        Normalization(**kwargs)


def test_normalization_takes_rgb_only():
    grey = np.arange(12, dtype=np.uint8).reshape(4, 3)  # (H, W) with W = 3: was normalised with its columns reversed
    with pytest.raises(ValueError, match=r"3 channels last, \(..., H, W, 3\). Received shape \(4, 3\)"):
        Normalization(channel_order="BGR")(grey)
    np.testing.assert_array_equal(Normalization(scale=1.0)([[[1, 2, 3]]]), np.float32([[[1, 2, 3]]]))  # a list


def test_heatmap_offset_puts_the_targets_in_a_release_convention(tmp_path):
    # heatmap pixel g at input px 4g + 1.5 (centred cells): a joint the crop puts at input (13.5, 21.5) peaks with
    # value 1 on pixel (3, 5), neighbours exp(-1 / (2 sigma^2)) (hand-computed); offset 0 put it at (3.375, 5.375)
    cv2.imwrite(str(tmp_path / "p.png"), np.full((100, 100, 3), 90, np.uint8))
    rec = PoseRecord(image=str(tmp_path / "p.png"), keypoints=[[46.875, 59.375]], visible=[1], center=(50, 50),
                     scale=50.0, id="p")  # crop: (x - 50) * 32 / 50 + 15.5
    kw = dict(batch_size=1, input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, flip_pairs=())
    ds = HeatmapDataset([rec], heatmap_offset=1.5, **kw)
    np.testing.assert_allclose(transform_points(rec.keypoints, ds.matrix(rec)), [[13.5, 21.5]], atol=1e-9)
    y = ds[0][1][0, :, :, 0]
    assert y[5, 3] == pytest.approx(1.0)
    np.testing.assert_allclose([y[5, 2], y[5, 4], y[4, 3], y[6, 3]], math.exp(-0.5), rtol=1e-6)
    assert HeatmapDataset([rec], **kw)[0][1][0, 5, 3, 0] < 0.9
    assert ds.config()["heatmap_offset"] == 1.5 and HeatmapDataset([rec], **kw).config()["heatmap_offset"] == 0.0
    assert pickle.loads(pickle.dumps(ds)).codec.offset == 1.5
    with pytest.raises(ValueError, match=r"HeatmapDataset: `heatmap_offset` must be a finite number"):
        HeatmapDataset([rec], heatmap_offset=float("nan"), **kw)
