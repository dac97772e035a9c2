"""What the pose and the segmentation scoring of :func:`training.evaluate` share: the result type and the
per-batch helpers (the model's outputs as arrays, the records a pass could not read and the warning naming them).

Separate so that :mod:`training.evaluation` (``evaluate``, pose) and :mod:`training.evaluation_seg`
(segmentation) both import it without importing each other.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["EvalResult"]


@dataclass
class EvalResult:
    """Tables and per-sample rows of one evaluation (``rows`` are also written to CSV when asked).

    Pose: ``curve_path`` / ``curve_plot_path`` are ``pck_curve.csv`` / ``pck_curve.png`` when written."""

    task: str
    metric: str
    table: dict
    rows: list = field(default_factory=list)
    table_path: Path | None = None
    predictions_path: Path | None = None
    curve_path: Path | None = None
    curve_plot_path: Path | None = None

    @property
    def mean(self) -> float:
        return float(self.table["mean"])


def _unread(ds) -> set:
    """Indices of the records the evaluation copy ``ds`` could not read so far (none with on_error="raise")."""
    return set(ds.skipped()) if ds.on_error == "skip" else set()


def _warn_left_out(ds, left_out) -> None:
    if left_out:
        ids = [repr(ds.records[i].id) for i in sorted(left_out)]
        warnings.warn(f"evaluate: {len(ids)} of {len(ds.records)} records could not be read (on_error='skip') and "
                      f"are left out of the scores: {', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}.",
                      stacklevel=4)


def _progress(iterable, total, verbose, unit):
    """``iterable`` with a progress bar on stderr when ``verbose`` and stderr is a terminal (a validation set at the
    papers' scales and flip takes minutes on a GPU, hours on a CPU); the bar is removed when done."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, unit=unit, desc="evaluate", disable=None if verbose else True, leave=False)


def _predict(model, x):
    out = model.predict_on_batch(x)
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]
