"""MPII Human Pose readers: the official ``.mat`` release and the common HRNet/MMPose json.

On-disk layout::

    <root>/images/<9 digits>.jpg                 e.g. 015601864.jpg
    mpii_human_pose_v1_u12_1.mat                 official release, MATLAB struct RELEASE:
        RELEASE.annolist(imgidx).image.name      file name
        RELEASE.annolist(imgidx).annorect(ridx)  people: x1 y1 x2 y2 (head box), scale (person
                                                 height / 200 px), objpos.x/.y, annopoints.point(p)
                                                 with x, y, id (0..15), is_visible
        RELEASE.img_train(imgidx)                1 train, 0 test
        RELEASE.single_person(imgidx)            ridx of well separated people
    train.json / valid.json                      HRNet/MMPose: [{"image", "center", "scale",
                                                 "joints" (16 x 2, 1-based, -1 missing), "joints_vis"}]
    gt_valid.mat (HRNet) / mpii_gt_val.mat       valid.json's head boxes, same order: headboxes_src
    (MMPose)                                     2 x 2 x N ((x1, y1), (x2, y2)), pos_gt_src 16 x 2 x N,
                                                 jnt_missing 16 x N

MATLAB coordinates are 1-based: both readers subtract 1. Missing/empty fields are normal in the
``.mat`` (no ``annopoints`` on test people, ``is_visible`` absent, empty or a string); the reader
skips people without keypoints (a warning counts them: the whole test split is such people) and
derives centre/scale from the keypoints when ``objpos`` or ``scale`` is missing. Every record
gets the standard adjustment ``c_y += 15 s; s *= 1.25`` and ``scale = 200 s`` pixels.
``visible`` = annotated (occluded but annotated joints are trained); the raw ``is_visible`` flags
are kept in ``meta["is_visible"]`` (-1 = not given).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from training.datasets.base import AnnotationError, PoseRecord, box_center_scale
from zoo.releases import MPII_FLIP, MPII_JOINTS  # one definition of the MPII conventions

__all__ = ["MPII_JOINTS", "MPII_FLIP_PAIRS", "read_mpii_mat", "read_mpii_json"]

MPII_FLIP_PAIRS = MPII_FLIP  # one definition: zoo.releases
_K = 16


def _items(v) -> list:
    """A MATLAB field (struct, struct array, cell, empty) as a Python list."""
    if v is None:
        return []
    if isinstance(v, np.ndarray):
        return [x for x in v.ravel() if not (isinstance(x, np.ndarray) and x.size == 0)]
    return [v]


def _num(v):
    """A scalar from a MATLAB field, or None when absent/empty/non-numeric."""
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        if v.size != 1:
            return None
        v = v.ravel()[0]
    if isinstance(v, (str, bytes)):
        try:
            return float(v)
        except ValueError:
            return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _adjust(center, s_200) -> tuple[np.ndarray, float]:
    """MPII's crop convention: move the centre down 15 s px and pad the scale by 1.25."""
    c = np.array(center, np.float64)
    c[1] += 15.0 * s_200
    return c, 200.0 * s_200 * 1.25


def _from_keypoints(kp, vis):
    """Crop around the annotated keypoints (used when objpos/scale are missing), or None."""
    pts = kp[vis > 0]
    if len(pts) == 0:
        return None, None
    box = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
    return box_center_scale(box, 1.25)


def read_mpii_mat(path, image_dir, *, split: str = "train", single_person_only: bool = False) -> list[PoseRecord]:
    """Person records from the official ``mpii_human_pose_v1_u12_1.mat``.

    Args:
        path: the ``.mat`` file.
        image_dir: folder holding the images.
        split: ``"train"`` (``img_train == 1``), ``"test"`` or ``"all"``.
        single_person_only: keep only people listed in ``single_person``.
    Returns:
        :class:`PoseRecord` list (16 keypoints, MPII order); ``id = "<image>#<ridx>"``;
        ``head_box`` from ``x1 y1 x2 y2`` when present.
    Raises:
        AnnotationError: unreadable file, no ``RELEASE.annolist``, bad ``split``, an image without
            ``image.name``, or a point without numeric ``x``/``y``/``id`` (names image index, person
            and field).
    Warns:
        UserWarning: counting people skipped for want of keypoints (all of them on ``"test"``).
    """
    import scipy.io

    if split not in ("train", "test", "all"):
        raise AnnotationError(f"read_mpii_mat: split must be 'train', 'test' or 'all'; received {split!r}.")
    try:
        mat = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=True)
    except Exception as e:  # scipy raises ValueError/OSError/TypeError variants
        raise AnnotationError(f"cannot read MPII annotation file '{path}': {e}") from None
    rel = mat.get("RELEASE")
    annolist = _items(getattr(rel, "annolist", None))
    if rel is None or not annolist:
        raise AnnotationError(f"'{path}': no RELEASE.annolist field; is this mpii_human_pose_v1_u12_1.mat?")
    train_flags = np.atleast_1d(getattr(rel, "img_train", np.ones(len(annolist))))
    singles = None
    if single_person_only:  # one cell per image, empty ones included: it is indexed by image
        sp = getattr(rel, "single_person", None)
        singles = [] if sp is None else list(sp.ravel()) if isinstance(sp, np.ndarray) and sp.dtype == object else [sp]
    records, no_points = [], 0
    for imgidx, ann in enumerate(annolist):
        if split != "all" and imgidx < len(train_flags):
            if (split == "train") != (int(train_flags[imgidx]) == 1):
                continue
        where = f"'{path}': annolist({imgidx + 1})"
        name = getattr(getattr(ann, "image", None), "name", None)
        if not isinstance(name, str) or not name:
            raise AnnotationError(f"{where}: missing field 'image.name'.")
        keep = None
        if singles is not None:
            cell = np.atleast_1d(singles[imgidx]) if imgidx < len(singles) else np.zeros(0)
            keep = {int(v) for v in cell.ravel()}
        for ridx, rect in enumerate(_items(getattr(ann, "annorect", None))):
            if keep is not None and ridx + 1 not in keep:
                continue
            points = _items(getattr(getattr(rect, "annopoints", None), "point", None))
            if not points:
                no_points += 1  # person without keypoints (every test person: the release withholds them)
                continue
            kp = np.zeros((_K, 2))
            vis = np.zeros(_K)
            raw_vis = np.full(_K, -1.0)
            for p_i, pt in enumerate(points):
                fields = {f: _num(getattr(pt, f, None)) for f in ("x", "y", "id")}
                for f, v in fields.items():
                    if v is None:
                        raise AnnotationError(
                            f"{where} ('{name}'), annorect({ridx + 1}): point {p_i + 1} has no numeric field '{f}'."
                        )
                j = int(fields["id"])
                if not 0 <= j < _K:
                    raise AnnotationError(f"{where} ('{name}'), annorect({ridx + 1}): point id {j} outside 0..15.")
                kp[j] = (fields["x"] - 1.0, fields["y"] - 1.0)
                vis[j] = 1.0
                flag = _num(getattr(pt, "is_visible", None))
                raw_vis[j] = 1.0 if flag is None else flag  # hg-train defaults a missing flag to 1
            s = _num(getattr(rect, "scale", None))
            obj = getattr(rect, "objpos", None)
            ox, oy = _num(getattr(obj, "x", None)), _num(getattr(obj, "y", None))
            if s is not None and ox is not None and oy is not None and s > 0:
                center, side = _adjust((ox - 1.0, oy - 1.0), s)
            else:
                center, side = _from_keypoints(kp, vis)
            head = [_num(getattr(rect, f, None)) for f in ("x1", "y1", "x2", "y2")]
            head_box = None if None in head else np.array(head) - 1.0
            try:
                records.append(PoseRecord(
                    image=str(Path(image_dir) / name), keypoints=kp, visible=vis, center=center, scale=side,
                    head_box=head_box, id=f"{name}#{ridx + 1}", meta={"is_visible": raw_vis, "imgidx": imgidx},
                ))
            except AnnotationError as e:
                raise AnnotationError(f"{where}, annorect({ridx + 1}) ('objpos'/'scale'): {e}") from None
    if no_points:
        hint = (" The release has no keypoints for test images (img_train == 0): validate on the HRNet/MMPose "
                "valid.json instead." if split == "test" else "")
        warnings.warn(f"'{path}': skipped {no_points} of {no_points + len(records)} people of split '{split}' "
                      f"without keypoints (no annopoints.point).{hint}", stacklevel=2)
    return records


_HEAD_BOX_FILES = ("gt_valid.mat", "mpii_gt_val.mat")  # HRNet's and MMPose's names


def _json_head_boxes(head_boxes, path, data) -> np.ndarray | None:
    """``(N, 4)`` 0-based head boxes of the json's N records from a ``gt_valid.mat``, or None.

    ``"auto"`` takes a file of :data:`_HEAD_BOX_FILES` beside the json only when it describes these
    records (same count, ``pos_gt_src`` = the json joints): train.json lies beside valid.json's file.
    """
    import scipy.io

    auto = isinstance(head_boxes, str) and head_boxes == "auto"
    if auto:
        found = [Path(path).with_name(n) for n in _HEAD_BOX_FILES if Path(path).with_name(n).is_file()]
        if not found:
            return None
        head_boxes = found[0]
    try:
        mat = scipy.io.loadmat(str(head_boxes))
        boxes = np.asarray(mat["headboxes_src"], np.float64)
        pos = np.asarray(mat["pos_gt_src"], np.float64) if "pos_gt_src" in mat else None
    except KeyError:
        raise AnnotationError(f"'{head_boxes}': missing variable 'headboxes_src' (MPII gt_valid.mat).") from None
    except Exception as e:  # scipy raises ValueError/OSError/TypeError variants
        raise AnnotationError(f"cannot read MPII head boxes '{head_boxes}': {e}") from None
    if boxes.ndim == 2:  # MATLAB drops a trailing singleton: one person
        boxes = boxes[..., None]
    if boxes.shape[:2] != (2, 2):
        raise AnnotationError(f"'{head_boxes}': field 'headboxes_src' has shape {boxes.shape}; expected 2 x 2 x N.")
    n = boxes.shape[2]
    mismatch = None
    if n != len(data):
        mismatch = f"it has {n} head boxes and '{path}' {len(data)} records"
    elif pos is not None and pos.shape in ((_K, 2, n), (2, _K, n)):
        # the releases' 16 x 2 x N (HRNet's evaluator: np.transpose(preds, [1, 2, 0]) - pos_gt_src); it was read as
        # 2 x 16 x N, so the real file never matched: PCKh fell back to PCK@0.2 without a word
        pos = pos if pos.shape == (_K, 2, n) else pos.transpose(1, 0, 2)
        for i, rec in enumerate(data):
            try:
                j = np.asarray(rec["joints"], np.float64)
                v = np.asarray(rec.get("joints_vis", np.ones(len(j))), np.float64).reshape(-1) > 0
            except (TypeError, ValueError, KeyError):
                continue  # the record's own check names the problem
            if j.ndim == 2 and j.shape[0] == _K and j.shape[1] >= 2 and v.shape == (_K,):
                # a few px of slack: the test is for another person or order, not rounding
                far = np.abs(j[:, :2] - pos[:, :, i]).max(axis=1) > 2.0
                if np.any(far & v & ~np.all(j[:, :2] == -1, axis=1)):
                    mismatch = f"its pos_gt_src column {i + 1} is not the joints of record {i}"
                    break
    if mismatch:
        if auto:  # a head-box file for another json (train.json beside gt_valid.mat): said only when the counts
            # agree, where a reordered or edited valid.json would otherwise be scored as PCK of the box at 0.2
            if n == len(data):
                warnings.warn(f"'{path}': '{head_boxes}' beside it has as many head boxes but not its joints "
                              f"({mismatch}); not used, so the records have no head boxes (no PCKh)", stacklevel=3)
            return None
        raise AnnotationError(f"'{head_boxes}' does not describe '{path}': {mismatch}; expected valid.json's "
                              f"gt_valid.mat in the same order.")
    return np.concatenate([boxes[0], boxes[1]], axis=0).T - 1.0  # (x1, y1, x2, y2), 1-based -> 0-based


def read_mpii_json(path, image_dir, *, head_boxes="auto") -> list[PoseRecord]:
    """Person records from an HRNet/MMPose MPII json (``train.json``, ``valid.json``).

    The json holds no head boxes, so PCKh needs valid.json's ``gt_valid.mat`` (HRNet; MMPose:
    ``mpii_gt_val.mat``): ``headboxes_src`` 2 x 2 x N in the json's order, 1-based MATLAB pixels.

    Args:
        path: json file: a list of ``{"image", "center", "scale", "joints", "joints_vis"}``.
        image_dir: folder holding the images.
        head_boxes: path of that ``.mat``; ``"auto"``: ``gt_valid.mat`` or ``mpii_gt_val.mat`` beside
            the json when it has one head box per record and its ``pos_gt_src`` are the json's joints
            (so train.json ignores valid.json's file); ``None``: no head boxes (``head_box = None``).
    Raises:
        AnnotationError: unreadable json, not a list, or a record lacking a field or with a field
            of the wrong shape or joint count (names record index, image and field); a
            ``head_boxes`` file given by path that is unreadable or does not match the records.
    Warns:
        UserWarning: counting records skipped with neither a centre nor an annotated joint.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise AnnotationError(f"cannot read MPII json '{path}': {e}") from None
    if not isinstance(data, list):
        raise AnnotationError(f"'{path}': expected a json list of person records; found {type(data).__name__}.")
    heads = None if head_boxes is None else _json_head_boxes(head_boxes, path, data)
    records, skipped = [], 0
    for i, rec in enumerate(data):
        where = f"'{path}': record {i}"
        if not isinstance(rec, dict):
            raise AnnotationError(f"{where}: expected an object; found {type(rec).__name__}.")
        where += f" (image {rec.get('image', '?')!r})"
        for f in ("image", "center", "scale", "joints"):
            if f not in rec:
                raise AnnotationError(f"{where}: missing field '{f}'.")
        try:
            joints = np.asarray(rec["joints"], np.float64)
            center = np.asarray(rec["center"], np.float64).reshape(2)
            s = float(rec["scale"])
            vis = np.asarray(rec.get("joints_vis", np.ones(len(joints))), np.float64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise AnnotationError(f"{where}: bad value in 'center'/'scale'/'joints'/'joints_vis': {e}") from None
        if joints.ndim != 2 or joints.shape[1] not in (2, 3) or len(vis) != len(joints):
            raise AnnotationError(
                f"{where}: field 'joints' has shape {joints.shape} and 'joints_vis' {len(vis)} entries; expected "
                f"(K, 2) joints and K flags."
            )
        if len(joints) != _K:
            raise AnnotationError(f"{where}: field 'joints' has {len(joints)} rows; expected {_K} (MPII joints).")
        kp = joints[:, :2] - 1.0
        # [-1, -1] marks a missing joint; other coordinates <= 0 are annotated joints just outside the
        # image (MPII has some), trained as HRNet does and as the .mat reader keeps them
        vis = (vis > 0) & ~np.all(joints[:, :2] == -1, axis=1)
        c, side = _adjust(center - 1.0, s) if center[0] != -1 else _from_keypoints(kp, vis.astype(float))
        if c is None:
            skipped += 1  # no centre and no annotated joint: nothing to train on
            continue
        if not isinstance(rec["image"], str) or not rec["image"]:
            raise AnnotationError(f"{where}: field 'image' must be a file name; found {rec['image']!r}.")
        try:
            records.append(PoseRecord(image=str(Path(image_dir) / rec["image"]), keypoints=kp, visible=vis,
                                      center=c, scale=side, id=f"{rec['image']}#{i}",
                                      head_box=None if heads is None else heads[i]))
        except AnnotationError as e:
            raise AnnotationError(f"{where}: {e}") from None
    if skipped:
        warnings.warn(f"'{path}': skipped {skipped} of {len(data)} records with no centre (center [-1, -1]) and "
                      f"no annotated joint.", stacklevel=2)
    return records
