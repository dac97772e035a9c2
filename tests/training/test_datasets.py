"""Dataset readers against small fixtures written in each real on-disk format."""

import json
import pickle

import cv2
import numpy as np
import pytest
import scipy.io

from training.datasets import (AnnotationError, ImageReadError, UnsafePickleError, drop_people_seen_in, load,
                               read_image, read_mask)
from training.datasets.base import PoseRecord, write_palette_png
from training.datasets.lsp import read_lsp
from training.datasets.mpii import read_mpii_json, read_mpii_mat
from training.datasets.rhd import load_rhd_annotations, read_rhd, read_rhd_segmentation
from training.datasets.synthetic import figure_joint_colors, synthetic_pose, synthetic_segmentation
from training.datasets.voc import read_voc, voc_palette

# Parsers, NumPy and OpenCV only, nothing a Keras backend computes: ./dev test's TensorFlow pass runs these,
# its JAX pass (-m backend_agnostic) has nothing here that could differ.


# ------------------------------------------------------------------------------------ MATLAB structs
def _struct_array(items):
    """A MATLAB 1 x N struct array (numpy record array); fields missing in an item are [] as in MATLAB."""
    names = []
    for it in items:
        names += [k for k in it if k not in names]
    arr = np.zeros((1, len(items)), dtype=[(n, "O") for n in names])
    for i, it in enumerate(items):
        for n in names:
            arr[0, i][n] = it.get(n, np.zeros((0, 0)))
    return arr


def _point(x, y, j, vis=None):
    p = {"x": np.array([[x]], float), "y": np.array([[y]], float), "id": np.array([[j]], float)}
    if vis is not None:
        p["is_visible"] = vis
    return p


def _write_mpii(path, *, drop_name=False, single_person=((1,), (), ())):
    img1 = {"image": {"name": "000000001.jpg"}, "annorect": _struct_array([
        {"x1": 10.0, "y1": 20.0, "x2": 30.0, "y2": 50.0, "scale": 2.0, "objpos": {"x": 101.0, "y": 201.0},
         "annopoints": {"point": _struct_array([_point(11, 21, 0, 1.0), _point(31, 41, 9, np.zeros((0, 0))),
                                                _point(51, 61, 15, "0")])}},
        {"scale": 1.0, "objpos": {"x": 5.0, "y": 5.0}},  # a person without keypoints: skipped
    ])}
    img2 = {"image": {"name": "000000002.jpg"}, "annorect": _struct_array([
        {"annopoints": {"point": _struct_array([_point(101, 101, 3), _point(141, 181, 4, 1.0)])}},  # no scale/objpos
    ])}
    img3 = {"image": {"name": "000000003.jpg"}, "annorect": np.zeros((0, 0))}  # test image, no people
    if drop_name:
        img2["image"] = {"nonsense": 1.0}
    rel = {"annolist": _struct_array([img1, img2, img3]), "img_train": np.array([[1, 1, 0]]),
           "single_person": np.array([[np.array([list(c)]) if c else np.zeros((0, 0)) for c in single_person]],
                                     dtype=object)}
    scipy.io.savemat(str(path), {"RELEASE": rel})


def test_mpii_mat_layout_tolerant_fields(tmp_path):
    _write_mpii(tmp_path / "mpii.mat")
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 people of split 'train' without keypoints"):
        recs = read_mpii_mat(tmp_path / "mpii.mat", tmp_path / "images")
    assert [r.id for r in recs] == ["000000001.jpg#1", "000000002.jpg#1"]
    r = recs[0]
    assert r.image == str(tmp_path / "images" / "000000001.jpg")
    np.testing.assert_allclose(r.keypoints[[0, 9, 15]], [[10, 20], [30, 40], [50, 60]])  # 1-based -> 0-based
    np.testing.assert_array_equal(np.flatnonzero(r.visible), [0, 9, 15])  # annotated joints, occluded included
    np.testing.assert_array_equal(r.meta["is_visible"][[0, 9, 15]], [1, 1, 0])  # empty flag -> 1, "0" -> 0
    np.testing.assert_allclose(r.center, [100, 200 + 15 * 2.0])  # c_y += 15 s
    assert r.scale == pytest.approx(200 * 2.0 * 1.25)
    np.testing.assert_allclose(r.head_box, [9, 19, 29, 49])
    # missing objpos/scale: crop derived from the keypoints (box 100..140 x 100..180, x1.25)
    np.testing.assert_allclose(recs[1].center, [120, 140])
    assert recs[1].scale == pytest.approx(80 * 1.25)
    assert recs[1].head_box is None
    assert len(read_mpii_mat(tmp_path / "mpii.mat", "i", split="test")) == 0
    assert len(read_mpii_mat(tmp_path / "mpii.mat", "i", single_person_only=True)) == 1
    # single_person is indexed by image: an empty cell before a full one must not shift the others
    _write_mpii(tmp_path / "sp.mat", single_person=((), (1,), ()))
    assert [r.id for r in read_mpii_mat(tmp_path / "sp.mat", "i", single_person_only=True)] == ["000000002.jpg#1"]


def test_mpii_mat_missing_field_names_record_and_field(tmp_path):
    _write_mpii(tmp_path / "bad.mat", drop_name=True)
    with pytest.raises(AnnotationError, match=r"annolist\(2\).*'image.name'"):
        read_mpii_mat(tmp_path / "bad.mat", tmp_path)
    # a NaN objpos made a record error that named neither the file nor the field
    person = {"scale": 1.0, "objpos": {"x": np.nan, "y": 5.0},
              "annopoints": {"point": _struct_array([_point(5, 6, 7)])}}
    img = {"image": {"name": "a.jpg"}, "annorect": _struct_array([person])}
    scipy.io.savemat(str(tmp_path / "nan.mat"), {"RELEASE": {"annolist": _struct_array([img])}})
    with pytest.raises(AnnotationError, match=r"nan.mat': annolist\(1\), annorect\(1\) \('objpos'/'scale'\): .*centre"):
        read_mpii_mat(tmp_path / "nan.mat", tmp_path)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(AnnotationError, match="junk.mat"):
        read_mpii_mat(tmp_path / "junk.mat", tmp_path)


def test_mpii_json(tmp_path):
    rec = {"image": "a.jpg", "center": [101.0, 201.0], "scale": 2.0, "joints": [[11, 21]] + [[-1, -1]] * 15,
           "joints_vis": [1] + [0] * 15}
    (tmp_path / "train.json").write_text(json.dumps([rec]))
    (r,) = read_mpii_json(tmp_path / "train.json", tmp_path)
    np.testing.assert_allclose(r.keypoints[0], [10, 20])
    assert r.visible.tolist() == [1] + [0] * 15
    np.testing.assert_allclose(r.center, [100, 230])
    bad = dict(rec)
    del bad["center"]
    (tmp_path / "bad.json").write_text(json.dumps([rec, bad]))
    with pytest.raises(AnnotationError, match=r"record 1 \(image 'a.jpg'\): missing field 'center'"):
        read_mpii_json(tmp_path / "bad.json", tmp_path)
    # values that used to pass the reader and stop training when the sample was drawn
    for field, value, match in (("scale", 0, r"scale 0.0 must be finite, with scale > 0"),
                                ("scale", float("nan"), "scale nan"), ("center", [float("nan"), 3.0], "crop centre"),
                                ("image", 5, "field 'image' must be a file name; found 5")):
        (tmp_path / "bad.json").write_text(json.dumps([rec, {**rec, field: value}]))
        with pytest.raises(AnnotationError, match=r"bad.json': record 1 .*" + match):
            read_mpii_json(tmp_path / "bad.json", tmp_path)


def test_pose_record_fields_of_the_wrong_shape_are_named():
    # keypoints were reshape(-1, 2)'d: a transposed (2, K) array became K scrambled points, silently (x0, x1 read as
    # a point), a COCO-style (K, 3) was 3K/2 points or NumPy's "cannot reshape"; centre/box/scale NumPy's errors
    kp = np.array([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]])
    ok = dict(image="a.png", keypoints=kp, visible=np.ones(3), center=(40, 40), scale=60, id="p7")
    assert PoseRecord(**ok).keypoints.tolist() == kp.tolist()
    for field, value, match in (("keypoints", kp.T, r"'keypoints' has shape \(2, 3\); expected \(K, 2\)"),
                                ("keypoints", np.ones((3, 3)), r"'keypoints' has shape \(3, 3\); expected \(K, 2\)"),
                                ("keypoints", "abc", r"'keypoints' must hold numbers"),
                                ("center", (1, 2, 3), r"'center' has shape \(3,\); expected \(2,\) x, y"),
                                ("box", (1, 2, 3), r"'box' has shape \(3,\); expected \(4,\) x1, y1, x2, y2"),
                                # x2 < x1: the PCK normaliser (its longer side) was negative, every PCK NaN unsaid
                                ("box", (80, 70, 20, 20), r"'box' is \[80.0, 70.0, 20.0, 20.0\]; expected x1, y1, "
                                                          r"x2, y2 with x1 <= x2 and y1 <= y2"),
                                ("head_box", [[1, 2]], r"'head_box' has shape \(1, 2\); expected \(4,\)"),
                                ("scale", "big", r"'scale' must hold numbers, a number of pixels")):
        with pytest.raises(AnnotationError, match=r"record 'p7': " + match):
            PoseRecord(**{**ok, field: value})


def test_mpii_json_joint_count_and_joints_outside_the_image(tmp_path):
    # an annotated joint left of / above the image (MPII has some) is trained, as HRNet and the .mat
    # reader do: only joints_vis = 0 or [-1, -1] mean missing (was: any coordinate <= 0 dropped it)
    joints = [[11, 21]] * 16
    joints[3], joints[4], joints[5] = [-5, 300], [40, 0], [-1, -1]
    rec = {"image": "a.jpg", "center": [101.0, 201.0], "scale": 2.0, "joints": joints, "joints_vis": [1] * 16}
    (tmp_path / "a.json").write_text(json.dumps([rec, {k: v for k, v in rec.items() if k != "joints_vis"}]))
    for r in read_mpii_json(tmp_path / "a.json", tmp_path):
        assert r.visible.tolist() == [1] * 5 + [0] + [1] * 10
        np.testing.assert_allclose(r.keypoints[[3, 4]], [[-6, 299], [39, -1]])
    # MPII has 16 joints: a 14-joint record was accepted and broke batching/flip pairs later
    (tmp_path / "k.json").write_text(json.dumps([rec, {**rec, "joints": joints[:14], "joints_vis": [1] * 14}]))
    with pytest.raises(AnnotationError, match=r"k.json': record 1 .*'joints' has 14 rows; expected 16"):
        read_mpii_json(tmp_path / "k.json", tmp_path)


def test_training_people_who_are_validation_people_are_left_out(tmp_path):
    # MPII's .mat marks valid.json's people as training people (img_train 1): training on the one and
    # validating on the other scored people the model was fit on
    _write_mpii(tmp_path / "mpii.mat")
    with pytest.warns(UserWarning, match="skipped 1 of 3 people"):
        train = read_mpii_mat(tmp_path / "mpii.mat", tmp_path)
    joints = [[-1, -1]] * 16
    joints[0], joints[9], joints[15] = [11, 21], [31, 41], [51, 61]  # 1-based, as the .mat's person #1
    other = [[-1, -1]] * 16
    other[0] = [300, 300]  # another person on the same image
    vis = [int(j[0] != -1) for j in joints]
    (tmp_path / "valid.json").write_text(json.dumps([
        {"image": "000000001.jpg", "center": [101, 201], "scale": 2.0, "joints": joints, "joints_vis": vis},
        {"image": "000000001.jpg", "center": [301, 301], "scale": 1.0, "joints": other,
         "joints_vis": [int(j[0] != -1) for j in other]}]))
    val = read_mpii_json(tmp_path / "valid.json", tmp_path)
    kept, dropped = drop_people_seen_in(train, val)
    assert dropped == 1 and [r.id for r in kept] == ["000000002.jpg#1"]
    moved = [r.replace(keypoints=r.keypoints + 2.5) for r in val]  # > 2 px: not the same annotation
    assert drop_people_seen_in(train, moved) == (train, 0)
    elsewhere = [r.replace(image=str(tmp_path / "other" / "000000001.jpg")) for r in val]
    assert drop_people_seen_in(train, elsewhere)[1] == 0
    generated = synthetic_pose(2, image_size=(32, 32), num_keypoints=16)
    assert drop_people_seen_in(generated, generated)[1] == 0  # no image files: nothing to compare


def test_mpii_json_head_boxes_from_gt_valid_mat(tmp_path):
    # valid.json holds no head boxes: records had head_box None, so the standard MPII validation was
    # scored as PCK of the keypoint box at 0.2 instead of PCKh@0.5 (head boxes from gt_valid.mat)
    joints = [[[11 + 10 * k, 21] for k in range(16)], [[-1, -1]] + [[300 + k, 40] for k in range(15)]]
    recs = [{"image": f"{i}.jpg", "center": [100.0, 100.0], "scale": 1.0, "joints": joints[i],
             "joints_vis": [int(j[0] != -1) for j in joints[i]]} for i in range(2)]
    (tmp_path / "valid.json").write_text(json.dumps(recs))
    (tmp_path / "train.json").write_text(json.dumps(recs + recs[:1]))
    # 16 x 2 x N, 1-based, as HRNet's gt_valid.mat (its evaluator: np.transpose(preds, [1, 2, 0]) - pos_gt_src); read
    # as 2 x 16 x N the real file matched no json, so its head boxes were dropped (PCK@0.2 instead of PCKh@0.5)
    pos = np.stack([np.array(j, float) for j in joints], -1)
    pos[0, :, 1] = 0  # a missing joint's row holds anything
    boxes = np.zeros((2, 2, 2))
    boxes[:, :, 0], boxes[:, :, 1] = [[11, 21], [41, 61]], [[301, 5], [331, 45]]  # ((x1, y1), (x2, y2))
    scipy.io.savemat(str(tmp_path / "gt_valid.mat"), {"headboxes_src": boxes, "pos_gt_src": pos,
                                                      "jnt_missing": np.zeros((16, 2))})
    a, b = read_mpii_json(tmp_path / "valid.json", tmp_path)
    np.testing.assert_allclose(a.head_box, [10, 20, 40, 60])
    np.testing.assert_allclose(b.head_box, [300, 4, 330, 44])
    assert [r.head_box for r in read_mpii_json(tmp_path / "valid.json", tmp_path, head_boxes=None)] == [None, None]
    # train.json lies beside valid.json's file: not its boxes, so none (and no error)
    assert all(r.head_box is None for r in read_mpii_json(tmp_path / "train.json", tmp_path))
    with pytest.raises(AnnotationError, match=r"gt_valid.mat' does not describe .*train.json': it has 2 head boxes "
                                              r"and .* 3 records"):
        read_mpii_json(tmp_path / "train.json", tmp_path, head_boxes=tmp_path / "gt_valid.mat")
    (tmp_path / "swapped.json").write_text(json.dumps(recs[::-1]))
    with pytest.raises(AnnotationError, match=r"pos_gt_src column 1 is not the joints of record 0"):
        read_mpii_json(tmp_path / "swapped.json", tmp_path, head_boxes=tmp_path / "gt_valid.mat")
    # found beside it ("auto"), the same count but other joints: not used, and said (was silent: PCK@0.2 instead)
    with pytest.warns(UserWarning, match=r"swapped.json': '.*gt_valid.mat' beside it has as many head boxes but not "
                                         r"its joints \(its pos_gt_src column 1 is not the joints of record 0\); not "
                                         r"used, so the records have no head boxes \(no PCKh\)"):
        assert all(r.head_box is None for r in read_mpii_json(tmp_path / "swapped.json", tmp_path))
    scipy.io.savemat(str(tmp_path / "gt_valid.mat"), {"headboxes_src": boxes, "pos_gt_src": pos.transpose(1, 0, 2),
                                                      "jnt_missing": np.zeros((16, 2))})  # 2 x 16 x N read too
    np.testing.assert_allclose(read_mpii_json(tmp_path / "valid.json", tmp_path)[1].head_box, [300, 4, 330, 44])


def test_lsp_occluded_joints_are_annotated_and_lspet_uses_its_visibility_flag(tmp_path):
    j = np.zeros((3, 14, 3))
    j[0], j[1] = np.arange(1, 15)[:, None] * [1, 2, 3], 50.0
    j[2, 4, 1] = 1  # joint 4 of image 2 occluded: still placed, trained and scored (official LSP PCK: all 14)
    j[:2, 7, 2] = -1  # joint 7 of image 3 has no position
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": j})
    recs = read_lsp(tmp_path / "joints.mat", tmp_path)
    assert [r.id for r in recs] == ["im0001.jpg", "im0002.jpg", "im0003.jpg"]
    assert recs[1].visible.sum() == 14 and recs[1].meta["occluded"][4] == 1 and sum(recs[1].meta["occluded"]) == 1
    assert recs[2].visible[7] == 0 and recs[2].visible.sum() == 13
    np.testing.assert_allclose(recs[1].keypoints[0], [1, 49])  # (2 - 1, 50 - 1)
    et = np.ones((14, 3, 3))
    et[:, 0, :] = np.arange(2, 16)[:, None]
    et[:, 2, 0] = 0  # LSPet: third column = visible; image 1 has none, so no record
    et[3, 2, 2], et[13, 0, 2] = 0, 100.0  # image 3: joint 3 not visible; joint 13 far right
    scipy.io.savemat(str(tmp_path / "et.mat"), {"joints": et})
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 images of split 'all'"):
        recs = read_lsp(tmp_path / "et.mat", tmp_path)
    assert [r.id for r in recs] == ["im00002.jpg", "im00003.jpg"] and recs[0].visible.sum() == 14
    assert recs[1].visible[3] == 0 and recs[1].visible.sum() == 13 and recs[1].meta["visible_flag"][3] == 0
    assert recs[1].box[2] == 99.0  # the box spans the visible joints
    scipy.io.savemat(str(tmp_path / "odd.mat"), {"joints": np.zeros((5, 5, 2))})
    with pytest.raises(AnnotationError, match=r"'joints' has shape \(5, 5, 2\)"):
        read_lsp(tmp_path / "odd.mat", tmp_path)
    scipy.io.savemat(str(tmp_path / "text.mat"), {"joints": np.array(["abc", "def"])})
    with pytest.raises(AnnotationError, match=r"text.mat': variable 'joints' is not numeric"):
        read_lsp(tmp_path / "text.mat", tmp_path)


def test_lsp_and_lspet_train_together_and_validate_on_lsps_test_half(tmp_path):
    # the standard LSP protocol: LSP's 1,000 training images + LSPet's 10,000, scored on LSP 1001-2000
    lsp = np.zeros((3, 14, 1003))
    lsp[:2] = np.arange(1, 15)[None, :, None] * 3.0
    scipy.io.savemat(str(tmp_path / "lsp.mat"), {"joints": lsp})
    et = np.ones((14, 3, 4))
    et[:, :2] = 20.0
    scipy.io.savemat(str(tmp_path / "lspet.mat"), {"joints": et})
    anns = [str(tmp_path / f) for f in ("lsp.mat", "lspet.mat")]
    dirs = [str(tmp_path / d) for d in ("lsp_images", "lspet_images")]
    train, info = load("lsp", "train", annotations=anns, images=dirs)
    assert len(train) == 1000 + 4 and info.num_keypoints == 14
    assert train[0].image == str(tmp_path / "lsp_images" / "im0001.jpg")
    assert train[-1].image == str(tmp_path / "lspet_images" / "im00004.jpg")
    val, _ = load("lsp", "val", annotations=[tmp_path / "lsp.mat", tmp_path / "lspet.mat"],
                  images=[tmp_path / "lsp_images", tmp_path / "lspet_images"])
    assert [r.id for r in val] == ["im1001.jpg", "im1002.jpg", "im1003.jpg"]
    # LSPet's file first: the first file's test split was taken (LSPet has none: no validation, one warning)
    val, _ = load("lsp", "val", annotations=anns[::-1], images=dirs[::-1])
    assert [r.image for r in val] == [str(tmp_path / "lsp_images" / f"im100{i}.jpg") for i in (1, 2, 3)]
    with pytest.raises(ValueError, match=r"'lsp': 2 annotation file\(s\) but 1 image folder"):
        load("lsp", "train", annotations=anns, images=tmp_path)
    with pytest.raises(ValueError, match=r"dataset 'mpii' takes one 'annotations' path; received 2"):
        load("mpii", "train", annotations=anns, images=tmp_path)
    with pytest.raises(AnnotationError, match=r"a:b.mat"):  # one path, ':' and all (was split in two)
        load("lsp", "train", annotations=str(tmp_path / "a:b.mat"), images=tmp_path)


def _write_rhd(root, split="training"):
    base = root / split
    (base / "color").mkdir(parents=True)
    (base / "mask").mkdir()
    rng = np.random.default_rng(0)
    anns = {}
    for sid in (0, 7):
        uv = np.concatenate([rng.uniform(40, 280, (42, 2)), np.ones((42, 1))], 1)
        uv[21:, 2] = 0 if sid == 7 else 1  # sample 7: right hand not visible
        anns[sid] = {"uv_vis": uv, "xyz": rng.normal(size=(42, 3)), "K": np.eye(3)}
        cv2.imwrite(str(base / "color" / f"{sid:05d}.png"), rng.integers(0, 255, (320, 320, 3), dtype=np.uint8))
        mask = np.zeros((320, 320), np.uint8)
        mask[10:20, 10:20], mask[30:40, 30:40], mask[50:60, 50:60] = 1, 5, 20
        cv2.imwrite(str(base / "mask" / f"{sid:05d}.png"), mask)
    (base / f"anno_{split}.pickle").write_bytes(pickle.dumps(anns, protocol=2))
    return anns


def test_rhd_records_and_masks(tmp_path):
    anns = _write_rhd(tmp_path)
    both = read_rhd(tmp_path)
    assert [r.id for r in both] == ["00000", "00007"] and both[0].num_keypoints == 42
    np.testing.assert_allclose(both[0].keypoints, anns[0]["uv_vis"][:, :2])
    with pytest.warns(UserWarning, match=r"skipped 1 of 4 hands with fewer than 3 visible keypoints"):
        per = read_rhd(tmp_path, hands="per_hand")
    assert [r.id for r in per] == ["00000_left", "00000_right", "00007_left"]
    assert per[1].num_keypoints == 21 and per[1].meta["hand"] == "right"
    np.testing.assert_allclose(per[1].keypoints, anns[0]["uv_vis"][21:, :2])
    seg = read_rhd_segmentation(tmp_path)
    m = seg[0].label_map[read_mask(seg[0].mask)]
    assert m[15, 15] == 0 and m[35, 35] == 1 and m[55, 55] == 2  # person -> bg, 5 -> left, 20 -> right


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_rhd_restricted_unpickler_rejects_code(tmp_path):
    good = tmp_path / "good.pickle"
    good.write_bytes(pickle.dumps({1: {"uv_vis": np.zeros((42, 3), np.float32)}}, protocol=2))
    assert load_rhd_annotations(good)[1]["uv_vis"].dtype == np.float32
    # protocol 5 (pickle.HIGHEST_PROTOCOL) stores arrays through numpy's _frombuffer: it was refused as unsafe
    uv = np.arange(126.0).reshape(42, 3)
    good.write_bytes(pickle.dumps({1: {"uv_vis": uv, "xyz": uv[:, ::2].T}}, protocol=5))
    got = load_rhd_annotations(good)[1]
    np.testing.assert_array_equal(got["uv_vis"], uv)
    np.testing.assert_array_equal(got["xyz"], uv[:, ::2].T)
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps({1: {"uv_vis": _Evil()}}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"evil.pickle.*'(posix|os|nt)\.system'"):
        load_rhd_annotations(evil)
    bad = tmp_path / "bad.pickle"
    bad.write_bytes(pickle.dumps({3: {"xyz": np.zeros(3)}}, protocol=2))
    with pytest.raises(AnnotationError, match=r"sample 3 has no field 'uv_vis'"):
        load_rhd_annotations(bad)
    uv = np.zeros((42, 3))
    for content, match in (({"abc": {"uv_vis": uv}}, "sample id 'abc' is not a non-negative integer"),
                           ({-3: {"uv_vis": uv}}, "sample id -3 is not"),
                           ({1: {"uv_vis": [["a"] * 3] * 42}}, "sample 1 field 'uv_vis' is not numeric")):
        bad.write_bytes(pickle.dumps(content, protocol=2))
        with pytest.raises(AnnotationError, match=match):
            load_rhd_annotations(bad)


def test_readers_warn_with_a_count_of_what_they_skip(tmp_path):
    # each reader dropped instances without a word: MPII's whole test split (the release has no test
    # keypoints) came back empty, as did LSPet's 'test', and the trainer then ran without validation
    _write_mpii(tmp_path / "mpii.mat")
    with pytest.warns(UserWarning, match=r"mpii.mat': skipped 1 of 3 people of split 'train' without keypoints"):
        read_mpii_mat(tmp_path / "mpii.mat", tmp_path)
    test_img = {"image": {"name": "000000009.jpg"}, "annorect": _struct_array([
        {"scale": 1.0, "objpos": {"x": 5.0, "y": 5.0}}, {"scale": 2.0, "objpos": {"x": 9.0, "y": 9.0}}])}
    scipy.io.savemat(str(tmp_path / "t.mat"), {"RELEASE": {"annolist": _struct_array([test_img]),
                                                           "img_train": np.array([[0]])}})
    with pytest.warns(UserWarning, match=r"skipped 2 of 2 people of split 'test' .* valid.json"):
        assert read_mpii_mat(tmp_path / "t.mat", tmp_path, split="test") == []
    rec = {"image": "a.jpg", "center": [-1, -1], "scale": -1, "joints": [[-1, -1]] * 16, "joints_vis": [0] * 16}
    (tmp_path / "v.json").write_text(json.dumps([rec, {**rec, "center": [50, 50], "scale": 1.0}]))
    with pytest.warns(UserWarning, match=r"v.json': skipped 1 of 2 records with no centre"):
        assert len(read_mpii_json(tmp_path / "v.json", tmp_path)) == 1
    j = np.full((3, 14, 3), 20.0)
    j[:2, :, 1] = -1  # image 2: no joint placed
    scipy.io.savemat(str(tmp_path / "lsp.mat"), {"joints": j})
    with pytest.warns(UserWarning, match=r"lsp.mat': skipped 1 of 3 images of split 'all' with no placed joint"):
        assert [r.id for r in read_lsp(tmp_path / "lsp.mat", tmp_path)] == ["im0001.jpg", "im0003.jpg"]
    scipy.io.savemat(str(tmp_path / "et.mat"), {"joints": np.ones((14, 3, 2))})
    with pytest.warns(UserWarning, match=r"LSPet has no test split \(all 2 images are training\)"):
        assert read_lsp(tmp_path / "et.mat", tmp_path, split="test", variant="lspet") == []
    _write_rhd(tmp_path / "rhd")
    with pytest.warns(UserWarning, match=r"skipped 1 of 4 hands with fewer than 3 visible keypoints"):
        assert len(read_rhd(tmp_path / "rhd", hands="per_hand")) == 3


def _palette_png(mask, palette, bits):
    """A palette PNG written by hand: ``bits`` per pixel (1/2/4/8), filter 0, the given PLTE."""
    import struct
    import zlib

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    h, w = mask.shape
    per = 8 // bits
    rows = []
    for r in range(h):
        vals = np.concatenate([mask[r], np.zeros(-w % per, np.uint8)]).reshape(-1, per)
        packed = sum(vals[:, i].astype(np.uint16) << (8 - bits * (i + 1)) for i in range(per)).astype(np.uint8)
        rows.append(b"\x00" + packed.tobytes())
    ihdr = struct.pack(">IIBBBBB", w, h, bits, 3, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_palette_masks_of_any_bit_depth_and_repeated_colours(tmp_path, bits):
    # Pillow pads palettes with black (repeated colours) and writes small ones at 1/2/4 bits: both were
    # refused ("3-channel image without a palette", "indices are ambiguous").
    n = min(2 ** bits, 6)
    mask = (np.arange(7 * 9).reshape(7, 9) % n).astype(np.uint8)
    palette = [[0, 0, 0], [128, 0, 0], [0, 128, 0]] + [[0, 0, 0]] * (n - 3) if n > 3 else [[0, 0, 0], [9, 9, 9]][:n]
    (tmp_path / "m.png").write_bytes(_palette_png(mask, palette, bits))
    assert cv2.imread(str(tmp_path / "m.png")) is not None  # a valid PNG: OpenCV expands it to colour
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


@pytest.mark.parametrize("bits", [4, 8])
def test_palette_mask_indices_past_a_short_palette_keep_their_value(tmp_path, bits):
    # Pillow writes only the palette it holds: VOC's 21 colours (or 3 at 4 bits) with 255 = void
    # pixels, whose index has no PLTE entry. They were read as 0 (background) instead of 255 (ignore).
    top = 2 ** bits - 1
    mask = np.array([[0, 1, 2, top], [top, 2, 1, 0]], np.uint8)
    palette = [[0, 0, 0], [128, 0, 0], [0, 128, 0]] + ([[0, 0, 128]] * 18 if bits == 8 else [])
    (tmp_path / "m.png").write_bytes(_palette_png(mask, palette, bits))
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


def test_voc_palette_masks_roundtrip(tmp_path):
    root = tmp_path / "VOC2012"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "JPEGImages").mkdir()
    mask = np.zeros((12, 10), np.uint8)
    mask[2:6, 3:7], mask[6, :] = 15, 255
    write_palette_png(root / "SegmentationClass" / "2007_000032.png", mask)
    raw = (root / "SegmentationClass" / "2007_000032.png").read_bytes()
    assert raw[25] == 3  # IHDR colour type 3 = palette, as the VOC files
    bgr = cv2.imread(str(root / "SegmentationClass" / "2007_000032.png"))  # OpenCV expands the palette
    np.testing.assert_array_equal(bgr[3, 4, ::-1], voc_palette()[15])
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n")
    (rec,) = read_voc(root, "train")
    np.testing.assert_array_equal(read_mask(rec.mask), mask)
    with pytest.raises(AnnotationError, match="Available splits: train"):
        read_voc(root, "val")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000099\n")
    with pytest.raises(AnnotationError, match=r"line 1: image id '2007_000099' has no mask file"):
        read_voc(root, "val")


@pytest.mark.parametrize("ext, params", [(".jpg", [cv2.IMWRITE_JPEG_QUALITY, 100]),
                                         (".webp", [cv2.IMWRITE_WEBP_QUALITY, 95])])
def test_lossy_masks_are_refused_by_name(tmp_path, ext, params):
    # read as they decode, a JPEG's class ids 0/1/15 came back with 2, 14, 16 at their edges (even at quality 100)
    mask = np.zeros((48, 64), np.uint8)
    mask[5:30, 7:40], mask[20:40, 30:60], mask[0, :] = 1, 15, 255
    ok, data = cv2.imencode(ext, mask, params)
    path = tmp_path / f"m{ext}"
    path.write_bytes(data.tobytes())
    kind = "a JPEG" if ext == ".jpg" else "a lossy WebP"
    with pytest.raises(ImageReadError, match=f"mask file '.*m{ext}' is {kind}: lossy compression changes class ids; "
                                             f"save masks as PNG"):
        read_mask(path)


def test_a_folder_given_as_an_image_or_mask_is_named_as_such(tmp_path):
    (tmp_path / "x.png").mkdir()  # was "image file not found"
    with pytest.raises(ImageReadError, match=r"image path '.*x.png' is a folder; expected a file"):
        read_image(tmp_path / "x.png")
    with pytest.raises(ImageReadError, match=r"mask path '.*x.png' is a folder; expected a file"):
        read_mask(tmp_path / "x.png")
    with pytest.raises(ImageReadError, match=r"mask file not found: '.*y.png'"):
        read_mask(tmp_path / "y.png")


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 EXIF segment holding only the Orientation tag (0x0112)."""
    import struct

    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_read_image_keeps_stored_pixels_despite_exif_orientation(tmp_path):
    # Annotations and masks are in stored pixels; cv2 would rotate the image by its EXIF tag.
    img = np.zeros((8, 16, 3), np.uint8)
    img[:, :8, 2] = 255  # left half red (BGR)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    (tmp_path / "rot.jpg").write_bytes(_with_exif_orientation(buf.tobytes(), 6))
    assert cv2.imread(str(tmp_path / "rot.jpg")).shape == (16, 8, 3)  # the tag is there and cv2 honours it
    rgb = read_image(tmp_path / "rot.jpg")
    assert rgb.shape == (8, 16, 3) and rgb[:, :8, 0].mean() > 200 and rgb[:, 8:, 0].mean() < 50


def test_read_image_converts_other_depths_as_predict_does(tmp_path):
    # 16 bits / 257 rounded, as kerazoo predict and training.inference.predict convert them (IMREAD_COLOR kept the
    # high byte: 0xFF00 -> 255 where predict gives 254, 0x00FF -> 0 where it gives 1); a float TIFF was "corrupt"
    from training.visualize import _rgb_uint8

    rng = np.random.default_rng(0)
    u16 = rng.integers(0, 65536, (9, 7, 3)).astype(np.uint16)
    u16[0, 0] = (0x00FF, 0xFF00, 0xFFFF)  # B, G, R
    f32 = rng.uniform(0, 1, (9, 7, 3)).astype(np.float32)
    bgra = rng.integers(0, 256, (9, 7, 4)).astype(np.uint8)
    grey16 = rng.integers(0, 65536, (9, 7)).astype(np.uint16)
    for name, stored in {"u16.png": u16, "f32.tiff": f32, "bgra.png": bgra, "grey16.png": grey16}.items():
        assert cv2.imwrite(str(tmp_path / name), stored)
        rgb = stored[..., 2::-1] if stored.ndim == 3 else stored
        np.testing.assert_array_equal(read_image(tmp_path / name), _rgb_uint8(rgb), err_msg=name)
    np.testing.assert_array_equal(read_image(tmp_path / "u16.png")[0, 0], [255, 254, 1])


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="not found: '.*missing.jpg'"):
        read_image(tmp_path / "missing.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(ImageReadError, match="cannot decode image file '.*corrupt.jpg'"):
        read_image(tmp_path / "corrupt.jpg")


def test_synthetic_pose_keypoints_sit_on_their_colours():
    recs = synthetic_pose(6, image_size=(96, 96), num_keypoints=16, seed=3)
    again = synthetic_pose(6, image_size=(96, 96), num_keypoints=16, seed=3)
    np.testing.assert_array_equal(recs[2].keypoints, again[2].keypoints)
    colors = figure_joint_colors(16).astype(int)
    hits = total = 0
    for r in recs:
        img = r.image.load()
        np.testing.assert_array_equal(img, again[recs.index(r)].image.load())  # deterministic render
        for j in np.flatnonzero(r.visible):
            x, y = np.round(r.keypoints[j]).astype(int)
            total += 1
            hits += np.abs(img[y, x].astype(int) - colors[j]).max() < 40 or \
                np.abs(img[y, x].astype(int) - colors[j]).sum() < 90  # later discs may cover earlier ones
        assert (r.visible == ((r.keypoints >= 0) & (r.keypoints <= 95)).all(1)).all()
    assert hits / total > 0.85


def test_synthetic_segmentation_masks_match_pixels():
    (rec,) = synthetic_segmentation(1, image_size=(64, 64), num_classes=4, seed=1)
    img, mask = rec.image.load(), rec.mask.load()
    assert img.shape == (64, 64, 3) and mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 1, 2, 3}
    assert (mask > 0).any()
    edge = synthetic_segmentation(1, image_size=(64, 64), seed=1, ignore_border=1)[0].mask.load()
    assert (edge == 255).any() and ((edge == 255) <= ((mask > 0) | (edge == 255))).all()


def test_load_by_name():
    recs, info = load("synthetic", "val", num_samples=3, num_keypoints=5, image_size=(32, 32))
    assert len(recs) == 3 and info.task == "pose" and info.num_keypoints == 5 and recs[0].id.startswith("synth10000")
    with pytest.raises(ValueError, match="Known datasets: synthetic"):
        load("coco")
    with pytest.raises(ValueError, match="needs the option 'annotations'"):
        load("mpii")
