"""Segmentation scoring of :func:`training.evaluate`: one confusion matrix accumulated over the set, per-record
rows for ``predictions.csv``, the per-class IoU table.

Two passes: :func:`_evaluate_segmentation` (the model's raw scores, or the letterboxed scales and flip of
:mod:`training.tta` averaged, on the original masks or the network's label grid) and
:func:`_evaluate_segmentation_pspnet` (PSPNet's own test, ``base_size=``, :mod:`training.tta_pspnet`). Apart
from :mod:`training.evaluation` (argument checks, the pose path, the CSVs), as :mod:`training.tta_pspnet` is
from :mod:`training.tta`; what both use is in :mod:`training.evaluation_common`.
"""

from __future__ import annotations

import warnings

import numpy as np

from training.evaluation_common import EvalResult, _predict, _progress, _unread, _warn_left_out
from training.metrics import confusion_matrix, miou_from_confusion
from training.targets import encode_mask, labels_from_scores, scores_to_image
from training.transforms import grid_matrix, invert
from training.tta import segmentation_probabilities
from training.tta_pspnet import dataset_probabilities


def _class_scores_check(c):
    """A check of a segmentation model's raw output: ``(B, h, w, c)`` class scores, else ValueError naming both."""

    def check(scores):
        if scores.ndim != 4 or scores.shape[-1] != c:
            raise ValueError(f"evaluate: the model outputs {scores.shape[-1] if scores.ndim == 4 else 'no'} class "
                             f"scores per pixel (output shape {scores.shape}), but the dataset has num_classes={c}; "
                             f"expected (B, h, w, {c}).")

    return check


def _evaluate_segmentation(model, ds, views, flip, names, resolution, verbose=False):
    c = ds.num_classes
    cm = np.zeros((c, c), np.int64)
    rows, left_out = [], set()

    check = _class_scores_check(c)

    def predict(im):  # a model of any size: the canvases of other scales may be too small for it
        canvas = (im.shape[2], im.shape[1])
        try:
            out = _predict(model, im)[0]
        except Exception as e:
            if canvas == tuple(ds.input_size):
                raise
            from zoo.errors import backend_error_text

            first = backend_error_text(e)
            raise ValueError(f"evaluate: the model takes inputs of any size, but not the {canvas[0]}x{canvas[1]} "
                             f"canvas of scales={tuple(v.scale for v in views)} ({type(e).__name__}: {first}); "
                             f"choose other scales") from e
        if out.ndim == 4 and 0 in out.shape[1:3]:
            raise ValueError(f"evaluate: the model outputs {out.shape[2]}x{out.shape[1]} class scores (none) for the "
                             f"{canvas[0]}x{canvas[1]} canvas of scales={tuple(v.scale for v in views)}; choose "
                             f"larger scales")
        return out

    averaged = flip or len(views) > 1 or views[0].scale != 1.0
    for b in _progress(range(len(ds)), len(ds), verbose, "batch"):
        if averaged:  # every view's batch (scale 1's is the dataset's own), then the skips they all saw
            got = [v.dataset[b] for v in views]
            x, y = next((g for v, g in zip(views, got) if v.dataset is ds), None) or ds[b]
        else:
            x, y = ds[b]
        unread = _unread(ds)
        labels = y[0] if isinstance(y, tuple) else y
        ids = [int(r) for r in ds.batch_indices(b)]
        if averaged:
            targets = [None if rid in unread else _target(ds, rid, resolution) for rid in ids]
            probs = segmentation_probabilities(predict, views, [g[0] for g in got],
                                               [t and t[:3] for t in targets], flip=flip, check=check)
        else:
            scores = _predict(model, x)[0]
            check(scores)
            grid = (scores.shape[2], scores.shape[1])  # (w, h) of the model's output
            if resolution == "input" and grid != tuple(ds.label_size):
                raise ValueError(f"evaluate(resolution='input'): the model outputs {grid[0]}x{grid[1]} scores but "
                                 f"the dataset's labels are made at label_size {tuple(ds.label_size)}; make the "
                                 f"dataset with label_size={grid}, or score on the original masks "
                                 f"(resolution='original').")
        for i, rid in enumerate(ids):
            if rid in unread:  # a stand-in sample was scored in its place
                left_out.add(rid)
                continue
            if averaged:
                s, gt = probs[i], (targets[i][3] if resolution == "original" else labels[i])
            else:
                s, gt = scores[i], labels[i]
                if resolution == "original":
                    gt = encode_mask(ds.read_labels(ds.records[rid]), c, ds.ignore_label)  # unwarped
                    # read on the grid the model answers on, whatever label_size says (training's labels only)
                    s = scores_to_image(s, grid_matrix(ds.matrix(gt.shape), ds.input_size, grid), gt.shape)
            rows.append(_score_row(ds, rid, s, gt, cm))
    return _segmentation_result(ds, cm, rows, left_out, names, resolution)


def _score_row(ds, rid, probs, gt, cm):
    """Adds one record's confusion to ``cm`` and returns its predictions.csv row."""
    c = ds.num_classes
    one = confusion_matrix(labels_from_scores(probs), gt, c, ds.ignore_label)
    cm += one
    valid = int(one.sum())
    return {"id": ds.records[rid].id, "valid_pixels": valid,
            "pixel_accuracy": round(float(np.trace(one) / valid), 5) if valid else float("nan"),
            "mean_iou": round(miou_from_confusion(one)[1], 5)}


def _evaluate_segmentation_pspnet(model, ds, scales, flip, names, base_size, verbose=False):
    """PSPNet's test (:func:`training.tta_pspnet.pspnet_probabilities`) on each record at its own size: every image
    gets its own canvases, so the windows of one image make the model's batches."""
    c = ds.num_classes
    cm = np.zeros((c, c), np.int64)
    rows, left_out = [], set()

    check = _class_scores_check(c)

    records = dataset_probabilities(lambda x: _predict(model, x)[0], ds, scales, flip, base_size, check)
    for rid, probs, gt in _progress(records, len(ds.records), verbose, "image"):
        if probs is None:  # unreadable, on_error="skip"
            left_out.add(rid)
        else:
            rows.append(_score_row(ds, rid, probs, gt, cm))
    return _segmentation_result(ds, cm, rows, left_out, names, "original")


def _evaluate_segmentation_native(model, ds, flip, names, verbose=False):
    """FCN's test (``score.py``): each record's image alone at its own size, batch of one, no letterbox; the scores
    compared with the original mask (resampled to it bilinearly where the model's output is smaller, as the letterbox
    path does). ``flip``: the mirrored pass's softmax probabilities, flipped back, averaged with the plain pass's."""
    from training.tta import probabilities

    c = ds.num_classes
    cm = np.zeros((c, c), np.int64)
    rows, left_out = [], set()
    check = _class_scores_check(c)

    def scores_of(x, rid):
        try:
            out = _predict(model, x)[0]
        except Exception as e:
            from zoo.errors import backend_error_text

            raise ValueError(f"evaluate(native=True): the model does not take {ds._describe(rid)}'s "
                             f"{x.shape[2]}x{x.shape[1]} image at its own size ({type(e).__name__}: "
                             f"{backend_error_text(e)}); evaluate it letterboxed (native=False)") from e
        check(out)
        if 0 in out.shape[1:3]:
            raise ValueError(f"evaluate(native=True): the model outputs no scores for {ds._describe(rid)}'s "
                             f"{x.shape[2]}x{x.shape[1]} image (smaller than its total stride); evaluate it "
                             f"letterboxed (native=False)")
        return out[0]

    for rid, image, gt in _progress(ds.originals(), len(ds.records), verbose, "image"):
        if image is None:  # unreadable, on_error="skip"
            left_out.add(rid)
            continue
        x = image[None] if ds.feed == "uint8" else ds.normalization(image[None])
        s = scores_of(x, rid)
        if flip:
            s = (probabilities(s) + probabilities(scores_of(np.ascontiguousarray(x[:, :, ::-1]), rid))[:, ::-1]) / 2.0
        if s.shape[:2] != gt.shape:  # an output stride > 1: the scores' grid laid over the image, corner-aligned
            s = scores_to_image(s, grid_matrix(np.eye(3)[:2], (gt.shape[1], gt.shape[0]), (s.shape[1], s.shape[0])),
                                gt.shape)
        rows.append(_score_row(ds, rid, s, gt, cm))
    return _segmentation_result(ds, cm, rows, left_out, names, "original")


def _segmentation_result(ds, cm, rows, left_out, names, resolution):
    c = ds.num_classes
    _warn_left_out(ds, left_out)
    iou, miou = miou_from_confusion(cm)
    names = tuple(names) if names is not None else (ds.class_names or tuple(f"class{i}" for i in range(c)))
    if not cm.sum():
        warnings.warn(f"evaluate: no pixel with a label in [0, {c}) in {len(ds.records)} records (all "
                      f"ignore_label={ds.ignore_label} or out of range): every score is NaN. Check the masks and "
                      f"num_classes.", stacklevel=3)
    absent = [n for n, v in zip(names, iou) if np.isnan(v)]
    if cm.sum() and absent:  # PSPNet's eval_acc.m / semseg's test.py would report another mean: say which
        warnings.warn(f"evaluate: {len(absent)} of {c} classes occur in neither the labels nor the predictions "
                      f"({', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''}): their IoU is NaN and the "
                      f"mean IoU {miou:.6f} is over the other {c - len(absent)} (FCN's score.py, Keras' MeanIoU); "
                      f"PSPNet's eval_acc.m and semseg's test.py count them as 0: "
                      f"{float(np.nansum(iou)) / c:.6f} over all {c}.", stacklevel=3)
    table = {"iou": {n: float(v) for n, v in zip(names, iou)}, "mean": miou,
             # no valid pixel: NaN like the IoUs (it read 0.0)
             "pixel_accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan"), "confusion": cm.tolist()}
    where = "original image size" if resolution == "original" else "network label size"
    return EvalResult("segmentation", f"IoU per class ({where})", table, rows)


def _target(ds, rid, resolution):
    """Where record ``rid``'s averaged probabilities are scored: ``(image (H, W), target (h, w), target px ->
    image px, original labels)``; the original mask, or the scale-1 label grid (``resolution="input"``)."""
    gt = encode_mask(ds.read_labels(ds.records[rid]), ds.num_classes, ds.ignore_label)
    if resolution == "original":
        return gt.shape, gt.shape, np.eye(3)[:2], gt
    lw, lh = ds.label_size
    return gt.shape, (lh, lw), invert(ds.label_matrix(gt.shape)), None
