"""Pose, segmentation or classification on every frame of a video: OpenCV reads it, each frame goes through
:func:`training.inference.predict` (or :func:`training.topdown.predict_people` for several boxes), and the pictures
are written as a new video at the source's frame rate, as MMPose's and OpenPose's demos do with a video.

The writer is OpenCV's: ``.mp4`` as MPEG-4 Part 2 (``mp4v``; the PyPI wheels have no H.264 encoder) and ``.avi`` as
Motion JPEG. The video is written under a temporary name beside the target and renamed into place once whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerazoo.cli import VIDEO_SUFFIXES  # the command line's (stdlib only): a video is told by its name
from zoo.errors import quiet_opencv

__all__ = ["VIDEO_SUFFIXES", "WRITTEN_SUFFIXES", "VideoPrediction", "predict_video", "is_video"]

# what the writer makes: FourCC by suffix
WRITTEN_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}
_DEFAULT_FPS = 25.0  # a stream that does not say its rate (some .webm, image sequences)


def is_video(path) -> bool:
    """Whether ``path``'s suffix is a video's (:data:`VIDEO_SUFFIXES`, case ignored)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class VideoPrediction:
    """What :func:`predict_video` found, frame by frame.

    ``keypoints``: pose, ``(F, K, 2)`` x, y in the frame's pixels (NaN: not found), or ``(F, P, K, 2)`` with several
    boxes; ``top``: classification, each frame's ``[(label, probability), ...]``; ``fps``: the frames per second the
    output was written at (the source's); ``size``: ``(width, height)`` of the frames; ``path``: the written video,
    or ``None`` when no ``out`` was given; ``task``: ``"pose"``, ``"segmentation"`` or ``"classification"``;
    ``raw_keypoints``: with ``smooth``, the keypoints before smoothing (``keypoints`` are the smoothed ones).
    """

    frames: int
    fps: float
    size: tuple
    task: str
    keypoints: np.ndarray | None = None
    top: list = field(default_factory=list)
    path: Path | None = None
    raw_keypoints: np.ndarray | None = None


def _check_out(out) -> Path:
    out = Path(out)
    if out.suffix.lower() not in WRITTEN_SUFFIXES:
        raise ValueError(f"predict_video: out must name a {' or '.join(WRITTEN_SUFFIXES)} file (MPEG-4 or Motion JPEG, "
                         f"what OpenCV writes everywhere). Received: out='{out}'")
    if out.is_dir():
        raise ValueError(f"predict_video: out '{out}' is a folder, expected a video file name")
    return out


def _open_writer(out: Path, fps: float, size):
    """A VideoWriter onto a new temporary file beside ``out`` with ``out``'s suffix (FFmpeg picks the container by
    name), and that file's path."""
    import cv2

    from zoo.files import atomic_target

    tmp = str(atomic_target(out, suffix=f".tmp{out.suffix}"))  # the usual permissions (mkstemp's are 0600)
    with quiet_opencv():
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*WRITTEN_SUFFIXES[out.suffix.lower()]), fps, size)
    if not writer.isOpened():
        os.unlink(tmp)
        raise ValueError(f"predict_video: OpenCV cannot write '{out}' ({WRITTEN_SUFFIXES[out.suffix.lower()]} "
                         f"encoder missing from this OpenCV build?); try a .avi name (Motion JPEG)")
    return writer, Path(tmp)


def _check_written(tmp: Path, out: Path, frames: int) -> None:
    """Refuse a written video that does not hold its ``frames`` frames to the last: OpenCV's writer fails without a
    word when the disk fills or a file-size limit is hit, and the cut file was renamed into place (an MP4 without
    its index that nothing opens, an AVI of 5 frames in 40) with the command reporting success."""
    import cv2

    with quiet_opencv():
        capture = cv2.VideoCapture(str(tmp))
        try:
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
            ok = count == frames and capture.set(cv2.CAP_PROP_POS_FRAMES, frames - 1) and capture.read()[0]
        finally:
            capture.release()
    if not ok:
        held = (f"holds none of its {frames} frames that OpenCV can read" if not count else
                f"holds {count} of its {frames} frames" if count != frames else
                f"has its last frame ({frames - 1}) cut short")
        raise OSError(f"predict_video: writing '{out}' failed: the file written {held} (a full disk, or a file-size "
                      f"limit?); nothing was written")


def _smoother(smooth, fps):
    """A :class:`training.smoothing.OneEuroFilter` for ``smooth`` (``True``: its defaults; a dict: its settings), or
    ``None`` (``None`` / ``False``)."""
    from training.smoothing import OneEuroFilter

    if smooth is None or smooth is False:
        return None
    if smooth is True:
        return OneEuroFilter(fps)
    if isinstance(smooth, dict) and set(smooth) <= {"min_cutoff", "beta", "d_cutoff"}:
        return OneEuroFilter(fps, **smooth)
    raise ValueError(f"predict_video: smooth must be True, False, None or a dict of the One Euro filter's settings "
                     f"(min_cutoff, beta, d_cutoff). Received: smooth={smooth!r}")


def _redraw(frame, keypoints, record, boxes):
    """The frame with ``keypoints`` ((K, 2), or (P, K, 2) with ``boxes``) and the boxes drawn, as predict draws them."""
    from training.inference import _draw_box, _skeleton
    from training.visualize import draw_keypoints

    people = keypoints if keypoints.ndim == 3 else keypoints[None]
    picture = frame
    for i, person in enumerate(people):
        picture = draw_keypoints(picture, person, skeleton=_skeleton(record, len(person)))
        if boxes[i] is not None:
            picture = _draw_box(picture, boxes[i])
    return picture


def predict_video(model, video, out=None, *, boxes=None, smooth=None, max_frames=None, batch_size=None, progress=True,
                  **predict_kwargs):
    """Predict every frame of ``video`` with ``model``; write the pictures to ``out`` if given.

    Args:
        model: a Keras model, as :func:`training.inference.predict` takes it.
        video: path of a video file OpenCV reads (its FFmpeg: ``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ``.webm``, ...).
        out: ``None``, or the video to write (``.mp4`` or ``.avi``): each frame with its keypoints, mask or classes
            drawn, at the source's size and frame rate.
        boxes: pose only: ``None`` (each frame letterboxed whole, or ``box=`` in ``predict_kwargs``), or several
            ``(x1, y1, x2, y2)`` frame px, people who stay in their boxes (top-down, :func:`predict_people`).
        smooth: pose only: ``True`` smooths each keypoint across frames with the One Euro filter
            (:mod:`training.smoothing`: less jitter, a little lag on fast moves), a dict sets its ``min_cutoff``
            (Hz), ``beta`` (per px/s) and ``d_cutoff`` (Hz); the pictures show the smoothed keypoints.
            ``None`` (default) or ``False``: each frame's own.
        max_frames: stop after this many frames (``None``: all).
        batch_size: frames (with ``boxes``: people's crops) per model call (:mod:`training.batching`). ``None``:
            8 on an accelerator (a GPU predicts 8 frames in about the time of one), 1 on a CPU (where a large model
            gains nothing from it). With several ``scales``, ``flip`` or ``base_size`` each frame's passes run one
            call each.
        progress: a progress bar on stderr (frames; shown on a terminal only).
        **predict_kwargs: passed on to :func:`training.inference.predict` (``name``, ``record``, ``scales``,
            ``flip``, ``heatmap_offset``, ``box``, ...).
    Returns:
        A :class:`VideoPrediction`.
    Raises:
        ValueError: ``video`` unreadable or without frames, ``out`` not a ``.mp4`` / ``.avi`` name, or a frame the
            model refuses (an any-size model and the frame's size): nothing is left at ``out`` then.
    """
    import cv2
    from tqdm.auto import tqdm

    from training.batching import check_batch_size, drive, gather
    from training.inference import predict_steps
    from training.topdown import people_steps

    video = Path(video)
    batch_size = check_batch_size(batch_size, "predict_video")
    out = _check_out(out) if out is not None else None
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer))
                                   or max_frames < 1):
        raise ValueError(f"predict_video: max_frames must be an integer >= 1 or None. "
                         f"Received: max_frames={max_frames!r}")
    if boxes is not None and "box" in predict_kwargs:
        raise ValueError("predict_video: give box= (one person) or boxes= (several), not both")
    _smoother(smooth, _DEFAULT_FPS)  # its settings checked before the video is opened
    if not video.is_file():
        raise ValueError(f"predict_video: no video file '{video}'")
    with quiet_opencv():
        capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise ValueError(f"predict_video: OpenCV cannot read '{video}' as a video")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if np.isfinite(fps) and 0 < fps < 1000 else _DEFAULT_FPS
    count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)  # the container's word (an estimate; -1: none)
    total = min(count, max_frames) if count > 0 and max_frames else (count or max_frames or None)
    smoother = _smoother(smooth, fps)
    record = predict_kwargs.get("record")
    if smoother is not None and record is None:  # the skeleton the pictures are redrawn with, as predict's
        import zoo

        record = zoo.weights_record(model)
    drawn_boxes = list(boxes) if boxes is not None else [predict_kwargs.get("box")]
    writer = tmp = written = None
    keypoints, raw, top, task, size, n = [], [], [], None, None, 0
    try:
        with tqdm(total=total, unit="frame", desc=video.name, disable=None if progress else True) as bar:
            while max_frames is None or n < max_frames:
                chunk = []  # the next batch_size frames, RGB, predicted in one go
                while len(chunk) < batch_size and (max_frames is None or n + len(chunk) < max_frames):
                    with quiet_opencv():
                        ok, frame = capture.read()
                    if not ok:
                        break
                    chunk.append(np.ascontiguousarray(frame[..., ::-1]))
                if not chunk:
                    break
                if boxes is not None:
                    steps = [people_steps(model, rgb, boxes, **predict_kwargs) for rgb in chunk]
                else:
                    steps = [predict_steps(model, rgb, **predict_kwargs) for rgb in chunk]
                preds = drive(model, gather(steps), batch_size)
                for rgb, pred in zip(chunk, preds):
                    task = "pose" if boxes is not None else pred.task  # several boxes: People (keypoints)
                    if boxes is None and pred.top:
                        top.append(list(pred.top))
                    picture = pred.picture
                    if smoother is not None:
                        if task != "pose":
                            raise ValueError(f"predict_video: smooth is for pose models (keypoints across frames); "
                                             f"{predict_kwargs.get('name') or model.name} gives {task}")
                        raw.append(pred.keypoints)
                        smoothed = smoother(pred.keypoints)
                        picture = _redraw(rgb, smoothed, record, drawn_boxes)
                        keypoints.append(smoothed)
                    elif pred.keypoints is not None:
                        keypoints.append(pred.keypoints)
                    if out is not None:
                        shape = (picture.shape[1], picture.shape[0])
                        if writer is None:
                            writer, tmp = _open_writer(out, fps, shape)
                            written = shape
                        elif shape != written:  # OpenCV's writer drops a frame of another size without a word
                            raise ValueError(f"predict_video: frame {n} of '{video}' is {shape[0]}x{shape[1]}, but "
                                             f"the video's first frame {written[0]}x{written[1]}; a writer takes one "
                                             f"size")
                        writer.write(np.ascontiguousarray(picture[..., ::-1]))
                    size = (rgb.shape[1], rgb.shape[0])
                    n += 1
                    bar.update(1)
        if n == 0:
            raise ValueError(f"predict_video: '{video}' has no frames OpenCV can decode")
        if writer is not None:
            writer.release()
            writer = None
            _check_written(tmp, out, n)
            from zoo.files import replace_durably

            replace_durably(tmp, out)
            tmp = None
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return VideoPrediction(frames=n, fps=fps, size=size, task=task,
                           keypoints=np.stack(keypoints) if keypoints else None, top=top, path=out,
                           raw_keypoints=np.stack(raw) if raw else None)
