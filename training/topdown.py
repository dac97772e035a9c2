"""Top-down multi-person pose: each person's box cropped and decoded as :func:`training.inference.predict` does with
``box=`` (the datasets' crop of that person), and everyone drawn on one picture, as MMPose's top-down inference
does with a detector's boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["People", "predict_people", "people_steps"]


@dataclass
class People:
    """What :func:`predict_people` found: one row per box, in the image's pixels.

    ``keypoints``: ``(P, K, 2)`` x, y (NaN: no keypoint found); ``boxes``: ``(P, 4)`` x1, y1, x2, y2 as given;
    ``outputs``: each person's heatmaps (``Prediction.output`` of :func:`training.inference.predict`);
    ``picture``: ``(H, W, 3)`` uint8 RGB, the image with every person's keypoints, limbs and box drawn.
    """

    picture: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray
    outputs: list = field(default_factory=list)


def predict_people(model, image_rgb, boxes, *, name=None, record=None, box_padding=1.25, batch_size=None,
                   **kwargs) -> People:
    """Keypoints of each person in ``boxes`` (``[(x1, y1, x2, y2), ...]`` image px, e.g. a person detector's).

    Each box is :func:`training.inference.predict` with ``box=`` (its crop: the box's longer side x ``box_padding``
    about its centre, as training crops a person), with the other arguments (``scales``, ``flip``,
    ``heatmap_offset``, ...) passed on. The people's crops go through the model together, ``batch_size`` per call
    (:mod:`training.batching`; ``None``: 8 on an accelerator, 1 on a CPU; with several ``scales`` or ``flip``, each
    box's passes one call each). Pose models of a fixed input size only.

    Raises:
        ValueError: ``boxes`` empty or not a list of boxes, or one that ``predict`` refuses, named by its place
            (``box 2 of 3 lies outside the 640x480 image ...``); ``batch_size`` not an integer >= 1.
    """
    from training.batching import check_batch_size, drive

    batch_size = check_batch_size(batch_size, "predict_people")
    return drive(model, people_steps(model, image_rgb, boxes, name=name, record=record, box_padding=box_padding,
                                     **kwargs), batch_size)


def people_steps(model, image_rgb, boxes, *, name=None, record=None, box_padding=1.25, **kwargs):
    """:func:`predict_people` as a generator of model calls (:mod:`training.batching`): all boxes' crops at once."""
    import zoo
    from training.batching import gather
    from training.inference import _draw_box, _skeleton, predict_steps
    from training.visualize import _rgb_uint8, draw_keypoints

    try:
        rows = [tuple(b) for b in boxes]
    except TypeError:
        rows = None
    if not rows:
        raise ValueError(f"predict_people: boxes must be a list of (x1, y1, x2, y2) image px, one per person; "
                         f"Received: boxes={boxes!r:.80}")
    record = record or zoo.weights_record(model)
    preds = yield from gather(_numbered_box(predict_steps(model, image_rgb, name=name, record=record, box=box,
                                                          box_padding=box_padding, **kwargs), i, len(rows))
                              for i, box in enumerate(rows, 1))
    picture = _rgb_uint8(image_rgb)
    for box, pred in zip(rows, preds):  # each person's limbs in the same joint colours, then the box
        picture = _draw_box(draw_keypoints(picture, pred.keypoints, skeleton=_skeleton(record, len(pred.keypoints))),
                            box)
    return People(picture, np.stack([p.keypoints for p in preds]), np.array(rows, dtype=np.float64),
                  [p.output for p in preds])


def _numbered_box(steps, number, count):
    """``steps`` of one box, whose refusal of the box says which of ``count`` it was."""
    from training.batching import reworded

    said = "predict: box "
    return reworded(steps, lambda message: f"predict_people: box {number} of {count} {message[len(said):]}"
                    if message.startswith(said) else None)


def read_boxes(path, min_score=None) -> dict[str, list[tuple[float, float, float, float]]]:
    """Person boxes per image from a CSV file, as a detector's output is often kept: one row ``image,x1,y1,x2,y2``
    per person (image px, x1 < x2, y1 < y2), in file order. A first row whose first cell is ``image`` is a header.
    ``min_score``: keep the rows whose sixth column (the detector's score) is at least this; ``None`` (default):
    every row, the columns after the fifth ignored.

    Returns:
        ``{image as written: [(x1, y1, x2, y2), ...]}`` (empty when ``min_score`` leaves no row).

    Raises:
        ValueError: a row that is not an image and four such numbers (and, with ``min_score``, a score), or a file
            without rows, naming the file and the row.
    """
    import csv
    import math

    out: dict[str, list] = {}
    read = 0  # box rows, kept or below min_score
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise ValueError(f"'{path}': not a text (CSV) file of boxes: expected rows image,x1,y1,x2,y2") from None
    for n, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells) or (n == 1 and cells[0].lower() == "image"):
            continue
        try:
            box = tuple(float(c) for c in cells[1:5])
        except ValueError:
            box = ()
        if len(box) != 4 or not cells[0] or not all(map(math.isfinite, box)) or box[0] >= box[2] or box[1] >= box[3]:
            raise ValueError(f"'{path}' row {n}: expected image,x1,y1,x2,y2 with image px x1 < x2 and y1 < y2, "
                             f"got {','.join(row)!r}")
        read += 1
        if min_score is not None:
            try:
                score = float(cells[5])
            except (IndexError, ValueError):
                score = math.nan
            if not math.isfinite(score):
                raise ValueError(f"'{path}' row {n}: a minimum score needs the detector's score in the sixth column "
                                 f"(image,x1,y1,x2,y2,score), got {','.join(row)!r}")
            if score < min_score:
                continue
        out.setdefault(cells[0], []).append(box)
    if not read:
        raise ValueError(f"'{path}': no boxes (expected rows image,x1,y1,x2,y2)")
    return out


def boxes_for_images(boxes: dict, images, source="boxes") -> list[list]:
    """``boxes`` (:func:`read_boxes`) matched to ``images`` (paths): each image's by its path as written, else by its
    file name; one list per image, empty where the file has none. A key matching no image, or several by name, is a
    ValueError naming ``source`` (the file) and the key: its boxes would otherwise be dropped without a word."""
    from pathlib import Path

    images = [Path(p) for p in images]
    by_path = {str(p): i for i, p in enumerate(images)} | {p.as_posix(): i for i, p in enumerate(images)}
    by_name: dict[str, list[int]] = {}
    for i, p in enumerate(images):
        by_name.setdefault(p.name, []).append(i)
    out: list[list] = [[] for _ in images]
    for key, rows in boxes.items():
        at = by_path.get(key, by_path.get(Path(key).as_posix()))
        if at is None:
            named = by_name.get(Path(key).name, [])
            if len(named) != 1:
                why = "is none of the images given" if not named else \
                    f"names {len(named)} of the images given ({', '.join(str(images[i]) for i in named[:3])}); " \
                    f"write its folder too"
                raise ValueError(f"'{source}': image '{key}' {why}")
            at = named[0]
        out[at] += rows
    return out
