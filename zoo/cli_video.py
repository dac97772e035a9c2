"""``kerazoo predict NAME VIDEO``: every frame through the model (:func:`training.video.predict_video`), written as
a video with the predictions drawn and a CSV of them, frame by frame."""

from __future__ import annotations

import os
from pathlib import Path

from kerazoo.cli import CLIError, blocked_by_file

__all__ = ["predict_video_command"]


def _video_target(args, video: Path) -> Path:
    """``--out`` as given (a .mp4 / .avi name), or VIDEO_STEM.pred.mp4 in the ``--out`` folder or beside the video
    (.avi for an .avi: the same Motion JPEG)."""
    from training.video import WRITTEN_SUFFIXES

    suffix = video.suffix.lower() if video.suffix.lower() in WRITTEN_SUFFIXES else ".mp4"
    if not args.out:
        out = video.with_name(f"{video.stem}.pred{suffix}")
    else:
        out = Path(args.out)
        if out.is_dir() or args.out.endswith(("/", os.sep)) or (not out.suffix and not os.path.lexists(out)):
            out = out / f"{video.stem}.pred{suffix}"  # a new name without a suffix: a folder, as for images
        elif out.suffix.lower() not in WRITTEN_SUFFIXES:
            raise CLIError(f"--out '{out}': a video's pictures go to a {' or '.join(WRITTEN_SUFFIXES)} file, or a "
                           f"folder")
    if os.path.abspath(out) == os.path.abspath(video):
        raise CLIError(f"--out '{out}' is the video being read; give another name")
    blocker = blocked_by_file(out)
    if blocker is not None:
        raise CLIError(f"--out '{out}': '{blocker}' is a file, expected a folder there")
    return out


def _rows(result, record) -> tuple[tuple, list]:
    """The CSV's header and rows: keypoints (frame, [person,] joint, name, x, y) or classes (frame, rank, label,
    probability); none for segmentation."""
    if result.keypoints is not None:
        from zoo.cli_predict import _keypoint_names

        names = _keypoint_names(record, result.keypoints.shape[-2])
        people = result.keypoints.ndim == 4
        rows = []
        for f, frame in enumerate(result.keypoints):
            for p, person in enumerate(frame if people else [frame], 1):
                rows += [(f, *((p,) if people else ()), j, names[j], f"{x:.2f}", f"{y:.2f}")
                         for j, (x, y) in enumerate(person)]
        return ("frame", *(("person",) if people else ()), "joint", "name", "x", "y"), rows
    if result.top:
        return ("frame", "rank", "label", "probability"), [
            (f, rank, label, f"{p:.6g}") for f, top in enumerate(result.top) for rank, (label, p) in enumerate(top, 1)]
    return (), []


def predict_video_command(args):
    """``kerazoo predict`` for one video: checked before the model loads, then one line per output file."""
    import zoo
    from training.video import predict_video
    from zoo.cli_predict import _load_predict_model, _option_error, _predict_csv
    from zoo.errors import ZooError, one_line

    if len(args.image) > 1:
        raise CLIError(f"a video is predicted alone: give one video, not it among {len(args.image)} images or videos")
    video = Path(args.image[0])
    if args.boxes:
        raise CLIError("--boxes FILE gives people per image; for a video give --box X1,Y1,X2,Y2 (repeatable: "
                       "people who stay in their boxes)")
    if args.min_score is not None:
        raise CLIError("--min-score is for --boxes FILE (its sixth column, the detector's score)")
    if args.masks:
        raise CLIError("--masks writes class-index PNGs per image; a video's masks are drawn into its frames")
    out = _video_target(args, video)
    csv_path = out.with_suffix(".csv")
    boxes = args.box or []
    kw = dict(name=args.name, heatmap_offset=args.heatmap_offset, scales=args.scales, flip=args.flip,
              base_size=args.base_size)
    if len(boxes) == 1:
        kw["box"] = boxes[0]
    # FFmpeg's own line ("[mov,mp4,...] moov atom not found") came before the command's one-line error; read when
    # FFmpeg is first used, so a user's own setting stays
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        model = _load_predict_model(args)
        record = zoo.weights_record(model)
        try:
            result = predict_video(model, video, out, boxes=boxes if len(boxes) > 1 else None, record=record,
                                   smooth=True if args.smooth else None, batch_size=args.batch_size, **kw)
        except ValueError as e:
            _option_error(e, args, boxes)
            raise
        print(f"{video}: {result.frames} frames, {result.size[0]}x{result.size[1]} at {result.fps:g} fps "
              f"({result.task}{', keypoints smoothed' if args.smooth else ''})")
        print(f"wrote {out}")
        header, rows = _rows(result, record)
        if rows:
            from training.evaluation import _write_csv

            print(f"wrote {_write_csv(csv_path, header, rows)}")
        elif _predict_csv(csv_path, "frame"):  # an earlier run's rows beside a video that no longer shows them
            csv_path.unlink()
            print(f"removed {csv_path} (an earlier run's: this one has no keypoints or classes to list)")
    except (ValueError, TypeError, OSError, KeyError, ZooError) as e:
        raise CLIError(one_line(e).removeprefix("predict_video: ")) from None  # the command's words, not the API's
