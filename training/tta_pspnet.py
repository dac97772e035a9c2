"""PSPNet's own multi-scale test, as the release's MATLAB evaluation does it (``hszhao/PSPNet``, ``evaluation/``).

Per image (``eval_sub.m``): at scale ``s`` the long side becomes ``base_size * s + 1`` px and the short side
``round(long / long_orig * short_orig)`` (MATLAB's round, half away from zero, of a single-precision quotient);
the image is resized with MATLAB's ``imresize(..., 'bilinear')``: triangle weights, antialiased (the kernel
widened by ``1 / scale``) when shrinking, symmetric edges, each axis in turn (the one shrunk most first),
rounded to uint8 after each. ``scale_process.m``: a side shorter than the crop is padded at its end
(bottom/right) with the mean, i.e. 0 after the mean is subtracted (``pre_img.m``); crop-sized windows are slid
``ceil(2/3 crop)`` px apart, the last flush with the padded edge; each window's softmax probabilities
(``caffe_process.m``: with flip, the softmax of the window's logits plus the mirrored window's logits flipped
back) are averaged where windows overlap; the unpadded top-left part is resized to the image size with
``imresize`` again (antialiased when shrinking) and renormalised to sum 1 per pixel. The scales' probabilities
are averaged (``eval_sub.m``), the argmax is the label.

The releases' base sizes (``eval_all.m``): 512 for ADE20K and VOC2012 (crop 473), 2048 for Cityscapes (crop
713), scales ``(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)`` for the multi-scale numbers (``scale_array``; ``[1]``
single scale), always with the mirrored pass (``caffe_process.m`` runs it unconditionally). ``hszhao/semseg``'s
PyTorch ``tool/test.py`` differs: ``round(base_size * s)`` (no + 1) with Python's round, ``cv2.resize``
(no antialiasing), the padding split on both sides, mirrored softmax probabilities averaged rather than logits
summed.

Note:
    Sizes are ``(w, h)``, arrays ``(H, W, ...)``. The model's output may be smaller than its input (a
    stride): its logits are then resized to the crop with align-corners bilinear (Caffe's ``Interp``, as
    semseg's ``net_process`` does) before the softmax. The probabilities are computed in float32 (the release's
    arrays are MATLAB singles, its scores Caffe's), the image resize in float64 (MATLAB's, rounded to uint8).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import scipy.sparse

from training.tta import softmax

__all__ = ["check_base_size", "matlab_round", "scaled_size", "imresize", "pspnet_probabilities"]

_STRIDE_RATE = 2 / 3  # scale_process.m's window step: ceil(2/3 crop)


def check_base_size(base_size, who="evaluate"):
    """``base_size`` as an int, or ``None``; a ValueError naming it unless ``None`` or a whole number >= 1."""
    if base_size is None:
        return None
    ok = isinstance(base_size, (int, float, np.integer, np.floating)) and not isinstance(base_size, (bool, np.bool_))
    if not (ok and math.isfinite(base_size) and base_size >= 1 and float(base_size).is_integer()):
        raise ValueError(f"{who}: base_size must be a whole number of px >= 1 (PSPNet's test: the long side becomes "
                         f"base_size * scale + 1 px; 512 for ADE20K/VOC, 2048 for Cityscapes), or None for the "
                         f"letterboxed canvases. Received: base_size={base_size!r}")
    return int(base_size)


def matlab_round(x) -> int:
    """MATLAB's ``round``: half away from zero (Python's rounds half to even)."""
    return int(math.copysign(math.floor(abs(float(x)) + 0.5), float(x)))


def scaled_size(image_shape, base_size, scale) -> tuple[int, int]:
    """``(w, h)`` eval_sub.m resizes an image of ``image_shape`` ``(H, W, ...)`` to at ``scale``.

    The long side (the width when the image is square) is ``base_size * scale + 1`` px; the short side
    ``round(long / single(long_orig) * short_orig)``, computed in float32 as MATLAB does with a single divisor.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    long = base_size * scale + 1
    side = max(1, matlab_round(long))  # a non-integer base_size * scale: the nearest whole size
    short = max(1, matlab_round(np.float32(long) / np.float32(max(h, w)) * np.float32(min(h, w))))
    return (short, side) if h > w else (side, short)


def _weights(n_in, n_out):
    """``(n_out, P)`` weights and 0-based source indices of MATLAB's bilinear imresize along one axis."""
    scale = n_out / n_in
    width = 2.0 / scale if scale < 1 else 2.0  # antialiasing: the triangle stretched by 1 / scale
    k = min(scale, 1.0)
    u = np.arange(1, n_out + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)  # 1-based source position
    left = np.floor(u - width / 2)
    ind = left[:, None] + np.arange(int(math.ceil(width)) + 2)[None]
    d = k * (u[:, None] - ind)
    w = k * np.clip(1 - np.abs(d), 0, None)
    w /= w.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])  # symmetric edges
    return w, mirror[np.mod(ind - 1, 2 * n_in).astype(np.intp)]


@functools.lru_cache(maxsize=64)
def _matrix(n_in, n_out):
    """``(n_out, n_in)`` float32 CSR matrix of :func:`_weights` (a mirrored tap's weight added to its pixel's)."""
    w, ind = _weights(n_in, n_out)
    m = scipy.sparse.csr_matrix((w.ravel(), (np.repeat(np.arange(n_out), w.shape[1]), ind.ravel())),
                                shape=(n_out, n_in))
    m.eliminate_zeros()  # the taps past the triangle's ends
    return m.astype(np.float32)


def _block_diagonal(m, k):
    """``k`` copies of the CSR matrix ``m`` along the diagonal, as a CSR matrix."""
    big = k * max(m.shape[1], m.nnz) >= 2 ** 31
    idx = np.int64 if big else np.int32
    ks = np.arange(k, dtype=idx)[:, None]
    indptr = np.append((m.indptr[:-1].astype(idx)[None] + ks * m.nnz).ravel(), idx(k * m.nnz))
    indices = (m.indices.astype(idx)[None] + ks * m.shape[1]).ravel()
    return scipy.sparse.csr_matrix((np.tile(m.data, k), indices, indptr), shape=(k * m.shape[0], k * m.shape[1]))


def imresize(array, size) -> np.ndarray:
    """MATLAB's ``imresize(array, [rows cols], 'bilinear')`` (antialiased when shrinking).

    Args:
        array: ``(H, W)`` or ``(H, W, C)`` uint8 (computed in float64 and rounded half up and clipped to uint8
            after each pass, as MATLAB's resize does for integer images) or float (computed in float32, MATLAB's
            single, with each pass one sparse matrix product over all channels; float32 out).
        size: ``(w, h)`` of the result.
    """
    a = np.asarray(array)
    new = {0: int(size[1]), 1: int(size[0])}
    scales = [new[d] / a.shape[d] for d in (0, 1)]
    order = sorted((0, 1), key=lambda d: scales[d])  # the axis shrunk most first (MATLAB: sort(scale), stable)
    if a.dtype != np.uint8:
        out = np.ascontiguousarray(a, np.float32).reshape(a.shape[0], a.shape[1], -1)
        for d in order:
            h, w, c = out.shape
            if new[d] == out.shape[d]:
                continue
            if d == 0:  # rows: (new h, h) @ (h, w * C)
                out = (_matrix(h, new[0]) @ out.reshape(h, w * c)).reshape(new[0], w, c)
            else:  # columns: one (new w, w) block per row, @ (h * w, C)
                out = (_block_diagonal(_matrix(w, new[1]), h) @ out.reshape(h * w, c)).reshape(h, new[1], c)
        out = out.reshape(new[0], new[1], *a.shape[2:])
        return out.copy() if np.shares_memory(out, a) else out  # a new array, as for uint8
    out = a.astype(np.float64)
    for d in order:
        if new[d] == out.shape[d]:
            continue
        w, ind = _weights(out.shape[d], new[d])
        moved = np.moveaxis(out, d, 0)
        res = np.einsum("op,op...->o...", w, moved[ind])
        out = np.moveaxis(res, 0, d)
        out = np.clip(np.floor(out + 0.5), 0, 255)
    return out.astype(np.uint8)


def _log_softmax(scores, probabilities=None) -> np.ndarray:
    """``(..., C)`` log-probabilities of logits, or of scores that already are probabilities (>= 0, summing to 1;
    ``probabilities``: whether they are, when already known, e.g. for the whole output of which these are rows)."""
    s = np.asarray(scores, np.float64)
    if probabilities is None:
        probabilities = s.size and np.all(s >= 0) and np.all(np.abs(s.sum(-1) - 1) < 1e-3)
    if probabilities:
        with np.errstate(divide="ignore"):
            return np.log(s)
    s = np.nan_to_num(s, nan=-np.inf, posinf=np.finfo(np.float64).max)  # NaN never wins
    top = s.max(-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return s - top - np.log(np.exp(s - top).sum(-1, keepdims=True))


def _to_crop(scores, crop):
    """``(gh, gw, C)`` scores resized to the ``(w, h)`` crop with align-corners bilinear (Caffe's Interp)."""
    gh, gw = scores.shape[:2]
    if (gw, gh) == tuple(crop):
        return scores
    w, h = crop
    m = np.array([[(gw - 1) / max(w - 1, 1), 0, 0], [0, (gh - 1) / max(h - 1, 1), 0]])
    out = cv2.warpAffine(np.asarray(scores, np.float32), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(h, w, -1)


def _are_probabilities(scores) -> bool:
    """``_log_softmax``'s test for ``(h, w, C)`` scores: >= 0 and summing to 1 per pixel (the minimum first, so
    logits cost one pass)."""
    if not (scores.size and scores.min() >= 0):  # NaN: False, as in _log_softmax
        return False
    return bool(np.all(np.abs(np.sum(scores, -1, dtype=np.float64) - 1) < 1e-3))


_CHUNK = 1 << 19  # values of a window processed at a time: ~2 MB of float32, within the caches


def _add_window_probabilities(total, out, corners, crop, flip) -> None:
    """Adds to the ``(ph, pw, C)`` float32 canvas ``total`` the softmax probabilities of the windows whose top-left
    corners are ``corners``, from the model's ``out`` (their ``2n`` outputs with ``flip``, the mirrored ones after
    them), as ``caffe_process.m``: ``exp`` of the logits (with ``flip``: plus the mirrored window's logits flipped
    back), normalised to sum 1 per pixel; window after window, as ``scale_process.m``.

    In float32, as MATLAB computes on Caffe's single-precision scores, a few rows at a time (``_CHUNK``) through
    one reused buffer, so the six passes (sum, maximum, minus, exp, sum, divide) run in cache and no window-sized
    array is made; each pixel's maximum is subtracted first (the same softmax, no overflow). The classes are
    reduced with ``cv2.reduce`` (NumPy's last-axis reductions of 21 values take ~5-7 ns per value, OpenCV's
    0.1-0.7). Outputs that are probabilities already are logged (``_log_softmax``'s test, per output). Scores with
    a NaN or an infinity (or a flipped sum that overflows) make a pixel's sum non-finite: those rows then take the
    float64 ``_log_softmax`` / ``softmax`` instead, which keep their meaning (NaN never wins, +inf does).
    """
    cw, ch = crop
    n = len(corners)
    crops = [_to_crop(o, crop) for o in out]
    logged = [_are_probabilities(c) for c in crops]
    with np.errstate(divide="ignore"):
        scores = [np.log(c, dtype=np.float32) if lg else c for c, lg in zip(crops, logged)]
    classes = total.shape[-1]
    rows = max(1, min(ch, _CHUNK // (cw * classes)))
    buf = np.empty((rows * cw, classes), np.float32)
    top, sums = np.empty((rows * cw, 1), np.float32), np.empty((rows * cw, 1), np.float32)
    for i, (x0, y0) in enumerate(corners):
        for r0 in range(0, ch, rows):
            r1 = min(r0 + rows, ch)
            k = (r1 - r0) * cw
            flat, t, m = buf[:k], sums[:k], top[:k]
            z = flat.reshape(r1 - r0, cw, classes)
            if flip:  # caffe_process.m: score + score_flip(end:-1:1), then exp and normalise
                np.add(scores[i][r0:r1], scores[n + i][r0:r1, ::-1], out=z, dtype=np.float32)
            else:
                np.copyto(z, scores[i][r0:r1], casting="unsafe")
            cv2.reduce(flat, 1, cv2.REDUCE_MAX, dst=m)
            np.subtract(flat, m, out=flat)
            cv2.exp(flat, flat)
            cv2.reduce(flat, 1, cv2.REDUCE_SUM, dst=t)
            if np.all(np.isfinite(t)):
                np.divide(flat, t, out=flat)
            else:  # NaN or inf among the scores (or the flipped sum overflowed)
                ls = _log_softmax(crops[i][r0:r1], logged[i])
                if flip:
                    ls = ls + _log_softmax(crops[n + i][r0:r1, ::-1], logged[n + i])
                z[...] = softmax(ls)
            dst = total[y0 + r0:y0 + r1, x0:x0 + cw]
            np.add(dst, z, out=dst)


def _coverage(starts, size, n) -> np.ndarray:
    """``(n,)`` how many of the windows starting at ``starts``, ``size`` px long, cover each px."""
    count = np.zeros(n + 1, np.int64)
    np.add.at(count, np.asarray(starts), 1)
    np.add.at(count, np.asarray(starts) + size, -1)
    return np.cumsum(count[:n])


def pspnet_probabilities(predict, prep, image, crop, base_size, scales, flip=True, pad=0.0, batch=8,
                         check=None, classes=1, who="evaluate") -> np.ndarray:
    """One image's class probabilities by PSPNet's multi-scale test (see the module docstring).

    Args:
        predict: ``(N, ch, cw, 3)`` model input -> ``(N, gh, gw, C)`` scores (logits or probabilities).
        prep: ``(1, h, w, 3)`` uint8 RGB -> model input of the same size.
        image: ``(H, W, 3)`` uint8 RGB.
        crop: ``(cw, ch)`` the model takes.
        base_size: px; the long side at scale ``s`` is ``base_size * s + 1``.
        scales: the scales, e.g. ``(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)``.
        flip: with the mirrored window (logits summed before the softmax, ``caffe_process.m``).
        pad: value of the padding in model-input space (0: the mean after normalisation), scalar or per channel.
        batch: windows per model call (the windows of one image are batched, mirrored ones with them).
        check: called with each raw output (raises on a wrong shape).
        classes: the model's class count, for the memory check; who: the caller named in errors.
    Returns:
        ``(H, W, C)`` float32 mean probabilities.

    Raises:
        ValueError: scales whose canvases (input, window counts and class probabilities) would need more than
            this machine's memory (refused before any is made).
    """
    from training.tta import check_canvas_memory

    H, W = image.shape[:2]
    cw, ch = (int(v) for v in crop)
    canvases = [(max(nw, cw), max(nh, ch)) for nw, nh in (scaled_size(image.shape, base_size, s) for s in scales)]
    # per canvas pixel: the float32 input; its probabilities (float32 sums, then resized): 8 * classes bytes
    check_canvas_memory(canvases, 1, classes, 4 * 3, scales, who)
    step_x, step_y = math.ceil(cw * _STRIDE_RATE), math.ceil(ch * _STRIDE_RATE)
    acc = None
    for s in scales:
        nw, nh = scaled_size(image.shape, base_size, s)
        x = np.asarray(prep(imresize(image, (nw, nh))[None]))[0]
        pw, ph = max(nw, cw), max(nh, ch)
        if (pw, ph) != (nw, nh):  # pre_img.m: padded at the end with the mean (0 once it is subtracted)
            padded = np.empty((ph, pw, x.shape[-1]), x.dtype)
            padded[...] = np.asarray(pad, x.dtype)
            padded[:nh, :nw] = x
            x = padded
        xs = [min(i * step_x + cw, pw) - cw for i in range(math.ceil((pw - cw) / step_x) + 1)]
        ys = [min(i * step_y + ch, ph) - ch for i in range(math.ceil((ph - ch) / step_y) + 1)]
        corners = [(x0, y0) for y0 in ys for x0 in xs]
        total = None
        for i in range(0, len(corners), batch):
            part = corners[i:i + batch]
            wins = np.stack([x[y0:y0 + ch, x0:x0 + cw] for x0, y0 in part])
            feed = np.concatenate([wins, wins[:, :, ::-1]]) if flip else wins
            out = np.asarray(predict(np.ascontiguousarray(feed)))
            if check is not None:
                check(out)
            if total is None:  # single, as scale_process.m's data_scale
                total = np.zeros((ph, pw, out.shape[-1]), np.float32)
            _add_window_probabilities(total, out, part, (cw, ch), flip)
        # windows per pixel: the windows over its column times those over its row (they form a grid)
        count = np.outer(_coverage(ys, ch, ph), _coverage(xs, cw, pw)).astype(np.float32)
        score = total[:nh, :nw] / count[:nh, :nw, None]
        out = imresize(score, (W, H))  # single, as scale_process.m's and eval_sub.m's arrays
        flat = out.reshape(-1, out.shape[-1])
        np.divide(flat, cv2.reduce(flat, 1, cv2.REDUCE_SUM), out=flat)  # scale_process.m renormalises after it
        acc = out if acc is None else np.add(acc, out, out=acc)
    return acc / np.float32(len(scales))


def dataset_probabilities(predict, ds, scales, flip, base_size, check=None):
    """Yields ``(record index, (H, W, C) probabilities, (H, W) encoded labels)`` for every record of a
    :class:`~training.data.SegmentationDataset` in order, by :func:`pspnet_probabilities` on the original image
    (``ds.input_size`` the crop; ``ds``'s normalisation; windows batched ``ds.batch_size`` at a time). A record
    that cannot be read raises (``on_error="raise"``) or yields ``(index, None, None)`` (``"skip"``, reported)."""
    norm = ds.normalization
    if ds.feed == "uint8":  # normalised inside the model: pad with the pixel nearest the mean (mean / scale, RGB)
        mean_px = np.asarray(norm.mean, np.float64) / norm.scale
        pad, prep = np.clip(np.round(mean_px[::-1] if norm.channel_order == "BGR" else mean_px), 0, 255), None
    else:
        pad, prep = 0.0, norm  # the mean is 0 once subtracted
    # read one at a time, without the dataset's workers: a VOC image and mask take 1-3 ms, 0.2-0.6% of this test's
    # ~0.5 s per image at the releases' settings with 21 classes (its window softmaxes and resizes), 1-3% of one
    # scale's ~0.1 s, for a 1x1 conv (measured 2026-12-06, 2 cores); a thread pool reading ahead was within noise
    # (0.78-1.06x, measured when this test took 8 s per image)
    for rid, image, gt in ds.originals():
        if image is None:  # unreadable, on_error="skip"
            yield rid, None, None
            continue
        yield rid, pspnet_probabilities(predict, prep or (lambda b: b), image, ds.input_size, base_size, scales,
                                        flip=flip, pad=pad, batch=ds.batch_size, check=check,
                                        classes=ds.num_classes), gt
