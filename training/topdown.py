"""Top-down multi-person pose: each person's box cropped and decoded as :func:`training.inference.predict` does with
``box=`` (the datasets' crop of that person), and everyone drawn on one picture, as MMPose's top-down inference
does with a detector's boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["People", "predict_people"]


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


def predict_people(model, image_rgb, boxes, *, name=None, record=None, box_padding=1.25, **kwargs) -> People:
    """Keypoints of each person in ``boxes`` (``[(x1, y1, x2, y2), ...]`` image px, e.g. a person detector's).

    Each box is :func:`training.inference.predict` with ``box=`` (its crop: the box's longer side x ``box_padding``
    about its centre, as training crops a person), with the other arguments (``scales``, ``flip``,
    ``heatmap_offset``, ...) passed on; one model call per box and scale. Pose models of a fixed input size only.

    Raises:
        ValueError: ``boxes`` empty or not a list of boxes, or one that ``predict`` refuses, named by its place
            (``box 2 of 3 lies outside the 640x480 image ...``).
    """
    import zoo
    from training.inference import _draw_box, _skeleton, predict
    from training.visualize import _rgb_uint8, draw_keypoints

    try:
        rows = [tuple(b) for b in boxes]
    except TypeError:
        rows = None
    if not rows:
        raise ValueError(f"predict_people: boxes must be a list of (x1, y1, x2, y2) image px, one per person; "
                         f"Received: boxes={boxes!r:.80}")
    record = record or zoo.weights_record(model)
    preds = []
    for i, box in enumerate(rows, 1):
        try:
            preds.append(predict(model, image_rgb, name=name, record=record, box=box, box_padding=box_padding,
                                 **kwargs))
        except ValueError as e:
            if not str(e).startswith("predict: box "):
                raise
            raise ValueError(f"predict_people: box {i} of {len(rows)} {str(e)[len('predict: box '):]}") from None
    picture = _rgb_uint8(image_rgb)
    for box, pred in zip(rows, preds):  # each person's limbs in the same joint colours, then the box
        picture = _draw_box(draw_keypoints(picture, pred.keypoints, skeleton=_skeleton(record, len(pred.keypoints))),
                            box)
    return People(picture, np.stack([p.keypoints for p in preds]), np.array(rows, dtype=np.float64),
                  [p.output for p in preds])
