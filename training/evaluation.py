"""``training.evaluate``: per-joint PCK/PCKh or per-class IoU tables, with per-sample CSVs.

Pose models are evaluated in *original image* pixels: heatmaps are decoded (quarter-pixel
refinement), mapped back through the inverse crop matrix, and compared with the records'
keypoints. The normaliser is the MPII head size (PCKh@0.5) when every record has a head box,
else LSP's torso (left shoulder to right hip, PCK@0.2) for LSP's 14 joints, else the instance
box's longer side (PCK@0.2). Segmentation is scored from one confusion matrix accumulated over
the set, by default on every pixel of the original masks (the scores resampled bilinearly to
each image, as PSPNet evaluates; an image the letterbox copies unscaled maps back pixel for pixel, as FCN's
``score.py`` scores it at its own size; ``native=True`` runs each image at its own size, as ``score.py`` does,
for a model of any input size); ``resolution="input"`` scores the letterboxed labels at
the network input resolution (padding ignored), as training's ``mean_iou`` does. ``scales=`` and
``flip=`` average several scales and the mirrored pass (:mod:`training.tta`: CPM's and PSPNet's tests).
Pose tables also give the PCK curve from 0 to alpha, its AUC and the end-point error in px.

This module checks the arguments, scores pose and writes the CSVs; the segmentation scoring is in
:mod:`training.evaluation_seg`, the result type in :mod:`training.evaluation_common`.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from training.data import HeatmapDataset, SegmentationDataset
from training.data.base import check_model_input, check_model_task, model_center_map_sigma, model_output_size
from training.datasets.lsp import LSP_FLIP_PAIRS, LSP_JOINTS
from training.evaluation_common import EvalResult, _predict, _progress, _unread, _warn_left_out
from training.evaluation_seg import _evaluate_segmentation, _evaluate_segmentation_native, _evaluate_segmentation_pspnet
from training.metrics import _hits, end_point_error, head_size_from_box, pck_curve, pck_thresholds, pckh, torso_size
from training.targets import HeatmapCodec, keypoints_to_image
from training.tta import check_scales, pose_heatmaps, pose_views, segmentation_views
from training.tta_pspnet import check_base_size
from zoo.files import check_folder, write_text

__all__ = ["EvalResult", "evaluate", "format_table"]


def _write_csv(path: Path, header, rows) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    # beside it, synced, renamed; a failed write (a full disk) leaves no half-written temporary file, and names path
    return write_text(path, buf.getvalue())


def _eval_copy(ds):
    d = copy.copy(ds)
    # every record once, in order: no augmentation, no shuffle, and no dropped last partial batch
    d.augment, d.shuffle, d.epoch, d._order_cache, d.drop_remainder = None, False, 0, None, False
    # on_error="skip" fills an unreadable record's place with another record's sample: this pass's own skips
    # say which records those are (left out of the scores); worker processes report them through the log only
    d._skipped, d.skip_log = {}, None
    if d.on_error == "skip" and d.processes:
        fd, d.skip_log = tempfile.mkstemp(prefix="kerazoo-eval-skips-", suffix=".tsv")
        os.close(fd)
    return d


def evaluate(model, dataset, *, out_dir=None, flip=False, alpha=None, names=None, resolution="original",
             heatmap_offset=None, scales=(1.0,), base_size=None, native=False, verbose=True) -> EvalResult:
    """Evaluate ``model`` on every sample of ``dataset`` (no augmentation, fixed order).

    Args:
        model: a compiled or uncompiled ``keras.Model`` matching the dataset. One taking (image, centre map)
            (CPM) gets the centre map ``fit`` gives where the dataset has no ``center_map_sigma`` (the run's, else 21).
        dataset: :class:`HeatmapDataset` or :class:`SegmentationDataset`.
        out_dir: where to write ``table.csv`` and ``predictions.csv``, and for pose ``pck_curve.csv``
            (threshold, PCK per joint, per MPII joint group, mean) and ``pck_curve.png`` (its plot,
            :func:`training.visualize.pck_curve_plot`) (``None``: nothing written).
        flip: average with the mirrored prediction. Pose: needs ``dataset.flip_pairs`` for left/right
            data (warns if the dataset was made without them); the mirrored maps are moved right by
            ``(stride - 1 - 2 heatmap_offset) / stride`` px (:func:`training.targets.flip_test`).
            Segmentation: the mirrored pass's class probabilities, flipped back, are averaged with the
            plain pass's (softmax probabilities, as ``scales``).
        alpha: PCK threshold; default 0.5 for PCKh (records with head boxes: MPII), 0.2 for PCK
            normalised by the torso (LSP's 14 joints: left shoulder to right hip, as the official
            LSP evaluation; a sample without both joints is left out) or by the box otherwise.
        names: joint or class names for the table; ``None``: the dataset's ``keypoint_names`` / ``class_names``
            (MPII's and LSP's own tables for their joints), else "joint0", "class0", ...
        resolution: segmentation only: ``"original"`` scores every pixel of the original masks, the
            scores resampled bilinearly from the network's output grid (its own size, placed as
            :func:`training.transforms.grid_matrix` says) as PSPNet evaluates (papers' mIoU);
            ``"input"`` scores the letterboxed labels the network sees (what training's ``mean_iou``
            measures; faster; the output must be ``label_size``, else a ValueError).
        heatmap_offset: pose only: input px where the model's heatmap pixel 0 lies (pixel g at
            ``g * stride + heatmap_offset``). ``None`` (default): the model's weights record's
            (``zoo.weights_record(model).heatmap_offset``: 3.5 for the CPM releases, 1.5 for
            hourglass:mpii), else 0.0, training's convention (the dataset's ``heatmap_offset`` only
            places its training targets).
        scales: test-time scale search (:mod:`training.tta`), a non-empty sequence of numbers > 0;
            ``(1.0,)`` (default): none. Pose (CPM's ``applyModel.m``, e.g. ``(0.7, 0.8, ..., 1.3)``): at
            scale ``s`` the crop box is divided by ``s`` (the person ``s`` times larger in the model's input,
            whose size stays), and the heatmaps are warped back into the scale-1 crop's heatmap frame and
            averaged (per pixel over the scales whose crop covers it) before decoding. Segmentation
            (PSPNet, e.g. ``(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)`` with ``flip``): the image letterboxed at
            ``s`` times its scale-1 fit into ``input_size`` (``round(s w) x round(s h)`` px); a model of a
            fixed input size slides input-sized windows with 2/3 overlap over a larger canvas (a smaller one
            is padded); softmax probabilities are resampled onto the target (original image, or the scale-1
            label grid with ``resolution="input"``), averaged, then argmax. With more than one scale or
            ``flip``, segmentation averages probabilities (scale 1 alone without flip: the raw scores, as
            before); host memory grows with ``batch_size x canvas x classes``.
        base_size: segmentation only: PSPNet's own test (:mod:`training.tta_pspnet`, the release's
            ``eval_sub.m`` / ``scale_process.m``) instead of the letterboxed canvases: each image resized so its
            long side is ``base_size * s + 1`` px (MATLAB's antialiased bilinear ``imresize``), padded at the
            bottom/right with the mean (0 once normalised) up to ``input_size`` where smaller, ``input_size``
            windows ``ceil(2/3)`` apart, probabilities resized back to the image and averaged over ``scales``;
            ``flip`` sums each window's logits with its mirror's before the softmax (``caffe_process.m``). The
            releases' (``zoo.weights_record(model).eval_base_size``): 512 for ADE20K and VOC (473 px input),
            2048 for Cityscapes (713 px). Scores the original masks only. ``None`` (default): ``scales`` as above.
        native: segmentation only: FCN's own test (``score.py``): each image alone at its own size (a batch of
            one, no letterbox, the dataset's normalisation), scored on its original mask; for models that take
            any input size (``zoo.get("fcn8s", input_shape=(None, None, 3))``), else a ValueError. On JAX and
            TensorFlow each new image size compiles the model again (seconds each on a CPU). With ``flip``, the
            mirrored pass's probabilities are averaged in. Not with ``scales``, ``base_size`` or
            ``resolution="input"``.
        verbose: print the table, and show a progress bar (on a terminal) while the model runs.
    Returns:
        :class:`EvalResult`; ``table["mean"]`` is the headline number (PCK or mean IoU). Pose tables also
        hold ``curve`` (:func:`training.metrics.pck_curve` at :func:`training.metrics.pck_thresholds`
        ``(alpha)``: 0 to alpha in steps of 0.01, or in equal steps under 0.01 ending at alpha when alpha is
        not a multiple of 0.01), ``auc`` (the mean of the "mean" PCK over those thresholds, the same joints
        as "mean"; not MPII's trapezoid, see pck_curve), ``epe_px`` (mean end-point error in original
        image px over the visible joints with a prediction, every joint) and ``epe_count`` (those joints).
        Segmentation tables hold ``iou`` {class: IoU of the confusion matrix summed over the set, NaN for a
        class in neither the labels nor the predictions}, ``mean`` (the mean of the IoUs that are not NaN:
        FCN's ``score.py`` and Keras' ``MeanIoU``; PSPNet's ``eval_acc.m`` and semseg's ``test.py`` count those
        classes as 0, and a warning gives that mean when one occurs), ``pixel_accuracy`` (correct / labelled
        pixels: FCN's overall accuracy, semseg's allAcc) and ``confusion`` (C x C counts, rows = labels).
        A set with nothing to score (no annotated joint, no pixel with a valid label) warns and scores NaN.
        Records a dataset made with ``on_error="skip"`` cannot read are left out, with a warning
        naming them (the dataset puts another record's sample in their place).
    """
    if not isinstance(dataset, (HeatmapDataset, SegmentationDataset)):
        raise TypeError(f"evaluate: dataset must be a HeatmapDataset or SegmentationDataset. "
                        f"Received: {type(dataset).__name__}")
    if alpha is not None:  # 0 must not read as "not given" (the default threshold, silently)
        a = math.nan if isinstance(alpha, (bool, np.bool_, str, bytes)) else alpha
        try:
            a = float(a)
        except (TypeError, ValueError):
            a = math.nan
        if not (math.isfinite(a) and a > 0):
            raise ValueError(f"evaluate: alpha must be a number > 0 (a fraction of the head size, torso or box), or "
                             f"None for the metric's own. Received: alpha={alpha!r}")
        alpha = a
        try:  # the curve's thresholds: an alpha too large for them is refused before the model runs, not after
            pck_thresholds(alpha)
        except ValueError as e:
            raise ValueError(f"evaluate: alpha={alpha!r} is too large for the PCK curve ({e})") from None
    scales = check_scales(scales)
    base_size = check_base_size(base_size)
    if base_size is not None and not isinstance(dataset, SegmentationDataset):
        raise ValueError(f"evaluate: base_size is PSPNet's segmentation test; the dataset is a "
                         f"{type(dataset).__name__}. Received: base_size={base_size!r}")
    if base_size is not None and resolution != "original":
        raise ValueError(f"evaluate: base_size (PSPNet's test) scores the original masks; resolution must be "
                         f"'original'. Received: resolution={resolution!r}")
    if not isinstance(native, (bool, np.bool_)):
        raise ValueError(f"evaluate: native must be True or False (each image at its own size, as FCN's score.py). "
                         f"Received: native={native!r}")
    if native:
        if not isinstance(dataset, SegmentationDataset):
            raise ValueError(f"evaluate: native=True is FCN's segmentation test (each image at its own size); the "
                             f"dataset is a {type(dataset).__name__}")
        clash = [f"{k}={v!r}" for k, v, plain in (("scales", scales, (1.0,)), ("base_size", base_size, None),
                                                   ("resolution", resolution, "original")) if v != plain]
        if clash:
            raise ValueError(f"evaluate: native=True runs each image once at its own size and scores its original "
                             f"mask; it does not take {', '.join(clash)}")
        free = [d is None for d in getattr(model, "inputs", [None])[0].shape[1:3]] \
            if getattr(model, "inputs", None) else [True, True]
        if not all(free):
            raise ValueError(f"evaluate: native=True runs each image at its own size, but the model takes inputs of "
                             f"{tuple(model.inputs[0].shape[1:])} only; build it for any size (e.g. zoo.get(NAME, "
                             f"input_shape=(None, None, 3))) or evaluate it letterboxed (native=False)")
    if heatmap_offset is None:
        import zoo

        rec = zoo.weights_record(model)
        heatmap_offset = rec.heatmap_offset if rec is not None else 0.0
    ok = isinstance(heatmap_offset, (int, float, np.integer, np.floating)) and not isinstance(heatmap_offset, bool)
    if not (ok and math.isfinite(heatmap_offset)):
        raise ValueError(f"evaluate: heatmap_offset must be a finite number of input px (where heatmap pixel 0 lies), "
                         f"or None for the model's weights record's. Received: heatmap_offset={heatmap_offset!r}")
    if resolution not in ("original", "input"):  # a pose set ignored any value, a misspelt one too
        raise ValueError(f"evaluate: resolution must be 'original' or 'input' (segmentation; pose is scored in "
                         f"original image px). Received: {resolution!r}")
    if out_dir is not None:  # before the model runs (the CSVs were written after it, failing with "File exists")
        check_folder(out_dir, "evaluate", "for table.csv, predictions.csv and a pose model's pck_curve.csv/.png")
    check_model_input(model, dataset, "evaluate")  # before any batch is read
    check_model_task(model, "pose" if isinstance(dataset, HeatmapDataset) else "segmentation", "evaluate")
    import keras

    if isinstance(model, keras.Model):  # a stand-in with only predict() has no shapes to infer
        try:  # an any-size model at crops it cannot take: named here, not by Keras' shape error in the first batch
            model_output_size(model, -1 if isinstance(dataset, HeatmapDataset) else 0, dataset.input_size)
        except ValueError as e:
            hint = f"; make the {type(dataset).__name__} with an input_size it takes" \
                if str(e).startswith("the model does not take") else ""
            raise ValueError(f"evaluate: {e}{hint}.") from None
    ds = _eval_copy(dataset)
    if isinstance(ds, HeatmapDataset) and len(getattr(model, "inputs", None) or ()) == 2 \
            and ds.center_map_sigma is None:
        # CPM's (image, centre map) fed the image alone failed inside Keras; the map fit() gives: a run's sigma
        # (its config.json), else the release's 21
        ds.center_map_sigma = model_center_map_sigma(model)
    views = []  # the dataset at each scale (scaled copies share its skip bookkeeping)
    try:
        if isinstance(ds, HeatmapDataset):
            views = pose_views(ds, scales)
            res = _evaluate_pose(model, ds, views, flip, alpha, names, float(heatmap_offset), verbose)
        else:
            if native:
                res = _evaluate_segmentation_native(model, ds, flip, names, verbose)
            elif base_size is not None:
                res = _evaluate_segmentation_pspnet(model, ds, scales, flip, names, base_size, verbose)
            else:
                views = segmentation_views(model, ds, scales)
                res = _evaluate_segmentation(model, ds, views, flip, names, resolution, verbose)
    finally:
        for d in [ds] + [v[1] if isinstance(v, tuple) else v.dataset for v in views]:
            d.close_workers()
        if ds.skip_log:
            os.remove(ds.skip_log)
    if out_dir is not None:
        out = Path(out_dir)
        res.table_path = _write_csv(out / "table.csv", ["name", "value", "count"], _table_rows(res))
        res.predictions_path = _write_csv(out / "predictions.csv", list(res.rows[0].keys()) if res.rows else [],
                                          [list(r.values()) for r in res.rows])
        if "curve" in res.table:
            _write_curve(res, out)
    if verbose:
        print(format_table(res))
    return res


def _write_curve(res, out: Path) -> None:
    """``pck_curve.csv`` (one row per threshold: PCK per joint, per group, mean; fractions) and its plot."""
    from training.visualize import pck_curve_plot, write_png

    curve = res.table["curve"]
    series = {**curve["per_joint"], **curve.get("groups", {}), "mean": curve["mean"]}
    rows = [[f"{t:.6g}"] + [f"{v[i]:.6f}" for v in series.values()] for i, t in enumerate(curve["thresholds"])]
    res.curve_path = _write_csv(out / "pck_curve.csv", ["threshold", *series], rows)
    title = f"{res.metric.split('@')[0]} curve, 0 to {curve['thresholds'][-1]:g}"
    xlabel = f"threshold (fraction of the {curve.get('normaliser', 'normaliser')})"
    res.curve_plot_path = write_png(out / "pck_curve.png", pck_curve_plot(curve, title=title, xlabel=xlabel))


_SUMMARY = ("mean", "mean_all", "mean@0.1", "auc", "epe_px", "pixel_accuracy")


def _table_rows(res):
    key = "per_joint" if res.task == "pose" else "iou"
    counts = res.table.get("counts", {})
    rows = [[n, f"{v:.6f}", counts.get(n, "")] for n, v in res.table[key].items()]
    rows += [[g, f"{v:.6f}", ""] for g, v in res.table.get("groups", {}).items()]
    rows += [[k, f"{res.table[k]:.6f}", res.table.get("epe_count", "") if k == "epe_px" else ""] for k in _SUMMARY
             if k in res.table]
    return rows


def format_table(res: EvalResult) -> str:
    """The per-joint / per-class table as aligned text."""
    key = "per_joint" if res.task == "pose" else "iou"
    lines = [f"{res.metric}", "-" * 32]
    for n, v in res.table[key].items():
        cnt = res.table.get("counts", {}).get(n)
        lines.append(f"{n:<20} {100 * v:6.2f}" + (f"  (n={cnt})" if cnt is not None else ""))
    for g, v in res.table.get("groups", {}).items():
        lines.append(f"{g:<20} {100 * v:6.2f}")
    lines.append("-" * 32)
    for k in _SUMMARY:
        if k == "epe_px" and k in res.table:  # px, not a fraction
            lines.append(f"{k:<20} {res.table[k]:6.2f}  (n={res.table.get('epe_count')}, original image px)")
        elif k in res.table:
            t = res.table.get("curve", {}).get("thresholds", [0])
            note = f"  (mean PCK over {len(t)} thresholds 0..{t[-1]:g})" if k == "auc" else ""
            lines.append(f"{k:<20} {100 * res.table[k]:6.2f}{note}")
    return "\n".join(lines)


def _evaluate_pose(model, ds, views, flip, alpha, names, offset, verbose=False):
    k = ds.num_keypoints
    if names is not None:  # before the model runs; table.csv and pck_curve.csv have rows/columns of these names too
        given = tuple(str(n) for n in names)
        clash = sorted({n for n in given if given.count(n) > 1 or n in ("threshold", *_SUMMARY)})
        if len(given) != k or clash:
            raise ValueError(f"evaluate: `names` must be {k} distinct joint names (the dataset's keypoints), none of "
                             f"'threshold', {', '.join(map(repr, _SUMMARY))}. Received {len(given)}: {given}"
                             + (f" ({clash} repeated or reserved)" if clash else ""))
    if flip and not getattr(ds, "flip_pairs_given", True) and k > 1:
        warnings.warn("evaluate(flip=True): the dataset was made without flip_pairs, so the mirrored prediction's "
                      "left/right keypoints are averaged with the wrong ones on data with left/right joints. Pass "
                      "flip_pairs to HeatmapDataset (flip_pairs=() if there are none).", stacklevel=3)
    def check(hm):
        if hm.ndim != 4 or hm.shape[-1] not in (k, k + 1):  # K + 1: CPM's background map, never scored
            raise ValueError(f"evaluate: the model outputs {hm.shape[-1] if hm.ndim == 4 else 'no'} heatmaps "
                             f"(output shape {hm.shape}), but the dataset has {k} keypoints; expected (B, h, w, {k}) "
                             f"or (B, h, w, {k + 1}) with a background map.")
        _codec(ds, hm, offset)  # one stride on both axes, before any warp reads them

    preds, scores, left_out = [], [], set()
    for b in _progress(range(len(ds)), len(ds), verbose, "batch"):
        hm = pose_heatmaps(lambda x: _predict(model, x), views, b, flip=flip, flip_pairs=ds.flip_pairs,
                           offset=offset, check=check)
        unread = _unread(ds)  # after every view read the batch: a scaled copy's skips are the dataset's
        kp_in, sc = _codec(ds, hm, offset).decode(hm[..., :k])
        for i, rid in enumerate(ds.batch_indices(b)):
            rec = ds.records[int(rid)]
            if int(rid) in unread:  # the prediction is of a stand-in sample: no prediction for this record
                left_out.add(int(rid))
                preds.append(np.full((k, 2), np.nan))
                scores.append(np.zeros(k, np.float32))
                continue
            kp = keypoints_to_image(kp_in[i], ds.matrix(rec))
            # no positive maximum: no prediction (by the score: with a negative offset a real one can be (-1, -1))
            kp[~(sc[i] > 0)] = np.nan
            preds.append(kp)
            scores.append(sc[i])
    recs = ds.records
    gt = np.stack([r.keypoints for r in recs])
    vis = np.stack([r.visible for r in recs]) > 0
    vis[sorted(left_out)] = False
    _warn_left_out(ds, left_out)
    pred = np.stack(preds)
    lsp = k == 14 and set(map(tuple, ds.flip_pairs or ())) == set(LSP_FLIP_PAIRS)
    if all(r.head_box is not None for r in recs):
        norm, metric = head_size_from_box(np.stack([r.head_box for r in recs])), "PCKh"
        alpha = 0.5 if alpha is None else alpha
    elif lsp:  # the official LSP PCK (evalLSP, CPM's run_benchmark.m): left shoulder to right hip
        norm, metric, alpha = torso_size(gt, vis, 9, 2), "PCK (torso)", 0.2 if alpha is None else alpha
        names = LSP_JOINTS if names is None else names
    else:
        boxes = [r.box if r.box is not None else _kp_box(r) for r in recs]
        norm = np.array([max(b[2] - b[0], b[3] - b[1]) for b in boxes])
        metric, alpha = "PCK (box)", 0.2 if alpha is None else alpha
    if names is None:  # MPII gets its official names and table; anything else the dataset's, else generic ones
        from training.datasets.mpii import MPII_FLIP_PAIRS

        mpii = k == 16 and set(map(tuple, ds.flip_pairs)) == set(MPII_FLIP_PAIRS)
        names = None if mpii else (ds.keypoint_names or tuple(f"joint{j}" for j in range(k)))
    names = tuple(names) if names is not None else None
    table = pckh(pred, gt, vis, norm, alpha=alpha, joint_names=names)
    # the curve over the same joints, normaliser and hit rule: its last point is table["mean"]
    table["curve"] = pck_curve(pred, gt, vis, norm, pck_thresholds(alpha), joint_names=names)
    table["curve"]["normaliser"] = {"PCKh": "head size", "PCK (torso)": "torso"}.get(metric, "box side")
    table["auc"] = table["curve"]["auc"]
    table["epe_px"], table["epe_count"] = end_point_error(pred, gt, vis)
    if not sum(table["counts"].values()):
        warnings.warn(f"evaluate: no annotated joint in {len(recs)} records has a usable normaliser ({metric}): "
                      f"every score is NaN. Check the records' visible flags and boxes.", stacklevel=3)
    rows = _pose_rows([rec.id for rec in recs], left_out, pred, gt, vis, norm, scores, alpha,
                      list(table["per_joint"]))
    return EvalResult("pose", f"{metric}@{alpha:g}", table, rows)


def _pose_rows(ids, left_out, pred, gt, vis, norm, scores, alpha, joint_names) -> list[dict]:
    """predictions.csv's rows, one per sample and joint: ``error`` is the distance over the sample's normaliser (NaN
    where that is not a finite number > 0) and ``correct`` the table's own hit (``dist <= alpha * norm``: a row's
    ``error <= alpha`` differs from it at the threshold by round-off), so the rows add up to the table."""
    hit, _ = _hits(pred, gt, vis, norm, alpha)
    rows = []
    for n, sample in enumerate(ids):
        if n in left_out:
            continue
        usable = math.isfinite(norm[n]) and norm[n] > 0  # an infinite one gave error 0 and correct 1
        for j in range(pred.shape[1]):
            dist = float(np.linalg.norm(pred[n, j] - gt[n, j])) if np.all(np.isfinite(pred[n, j])) else float("nan")
            err = dist / norm[n] if usable else float("nan")
            rows.append({"id": sample, "joint": j, "name": joint_names[j], "pred_x": round(float(pred[n, j, 0]), 3),
                         "pred_y": round(float(pred[n, j, 1]), 3), "score": round(float(scores[n][j]), 5),
                         "gt_x": round(float(gt[n, j, 0]), 3), "gt_y": round(float(gt[n, j, 1]), 3),
                         "visible": int(vis[n, j]), "norm": round(float(norm[n]), 3), "error": round(err, 5),
                         "correct": int(hit[n, j])})
    return rows


def _codec(ds, hm, offset):
    """The decoder for the model's own (B, h, w, K) output: its stride is input / output and its offset the
    model's, whatever the dataset's ``heatmap_size`` and ``heatmap_offset`` (only its training targets) say."""
    (w, h), (hw, hh) = ds.input_size, (hm.shape[2], hm.shape[1])
    if not math.isclose(w / hw, h / hh, rel_tol=1e-9):
        raise ValueError(f"evaluate: the model outputs {hw}x{hh} heatmaps for {w}x{h} inputs (the dataset's "
                         f"heatmap_size is {ds.heatmap_size[0]}x{ds.heatmap_size[1]}): strides {w / hw:g} and "
                         f"{h / hh:g} differ; expected the same stride on both axes.")
    return HeatmapCodec(ds.input_size, (hw, hh), ds.sigma, offset=offset)


def _kp_box(rec):
    pts = rec.keypoints[rec.visible > 0] if (rec.visible > 0).any() else rec.keypoints
    return (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
