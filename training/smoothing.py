"""Keypoints smoothed across video frames with the One Euro filter (Casiez, Roussel & Vogel, CHI 2012), as video
pose demos smooth them (MMPose's ``OneEuroFilter`` smoother): a per-frame argmax on a 4-px heatmap grid jitters
by a few pixels from frame to frame, and the filter removes most of it while following fast moves with little lag.

Each coordinate is its own signal ``x(t)``. With ``alpha(f) = 1 / (1 + fps / (2 pi f))`` (an exponential
smoother whose cutoff frequency is ``f`` Hz at ``fps`` frames per second):

    dx_hat[t] = dx_hat[t-1] + alpha(d_cutoff) * ((x[t] - x_hat[t-1]) * fps - dx_hat[t-1])      (speed, px / s)
    cutoff    = min_cutoff + beta * |dx_hat[t]|
    x_hat[t]  = x_hat[t-1] + alpha(cutoff) * (x[t] - x_hat[t-1])

starting from ``x_hat = x`` and ``dx_hat = 0`` at a coordinate's first frame. Slow motion gets the low
``min_cutoff`` (little jitter); fast motion raises the cutoff by ``beta`` per px/s (little lag). A keypoint that
is not found (NaN) stays NaN, and its filter starts afresh where it is found again.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["OneEuroFilter", "one_euro"]


def _alpha(cutoff, fps):
    return 1.0 / (1.0 + fps / (2.0 * math.pi * cutoff))


_UNITS = {"fps": "frames per second", "min_cutoff": "Hz", "beta": "per px/s of speed", "d_cutoff": "Hz"}


def _check(**values):
    for name, value in values.items():
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        positive = name != "beta"
        if not (ok and math.isfinite(value) and (value > 0 if positive else value >= 0)):
            raise ValueError(f"one_euro: {name} must be a number {'> 0' if positive else '>= 0'} ({_UNITS[name]}). "
                             f"Received: {name}={value!r}")


class OneEuroFilter:
    """The One Euro filter over a stream of arrays of one shape, frame by frame (causal: each output depends on the
    frames so far only, so a video can be drawn as it is read).

    Args:
        fps: frames per second of the stream (the time step is ``1 / fps``).
        min_cutoff: cutoff frequency (Hz) at rest; lower: less jitter, more lag. Defaults to `1.0`.
        beta: how much the cutoff rises per px/s of speed; higher: less lag on fast moves. Defaults to `0.007`.
        d_cutoff: cutoff frequency (Hz) of the speed's own smoothing. Defaults to `1.0`.
    """

    def __init__(self, fps, *, min_cutoff=1.0, beta=0.007, d_cutoff=1.0):
        _check(fps=fps, min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        self.fps, self.min_cutoff = float(fps), float(min_cutoff)
        self.beta, self.d_cutoff = float(beta), float(d_cutoff)
        self.x_hat = self.dx_hat = None

    def __call__(self, x) -> np.ndarray:
        """The filtered value of the next frame's ``x`` (any shape, the same every frame; NaN: no value)."""
        x = np.asarray(x, np.float64)
        if self.x_hat is None:
            self.x_hat, self.dx_hat = x.copy(), np.zeros_like(x)
            return self.x_hat.copy()
        if x.shape != self.x_hat.shape:
            raise ValueError(f"OneEuroFilter: each frame must have the first frame's shape {self.x_hat.shape}. "
                             f"Received shape {x.shape}")
        fresh = np.isnan(self.x_hat) & ~np.isnan(x)  # found again (or for the first time): start from here
        self.x_hat[fresh], self.dx_hat[fresh] = x[fresh], 0.0
        dx = (x - self.x_hat) * self.fps
        self.dx_hat = self.dx_hat + _alpha(self.d_cutoff, self.fps) * (dx - self.dx_hat)
        a = _alpha(self.min_cutoff + self.beta * np.abs(self.dx_hat), self.fps)
        self.x_hat = self.x_hat + a * (x - self.x_hat)  # NaN where x is NaN: lost, restarted when found
        self.dx_hat[np.isnan(x)] = 0.0
        return self.x_hat.copy()


def one_euro(keypoints, fps, *, min_cutoff=1.0, beta=0.007, d_cutoff=1.0) -> np.ndarray:
    """``keypoints`` ``(F, ..., 2)`` (frames first, e.g. ``(F, K, 2)`` or ``(F, P, K, 2)``, px) filtered frame by
    frame with :class:`OneEuroFilter`; same shape, float64."""
    k = np.asarray(keypoints, np.float64)
    if k.ndim < 2 or k.shape[0] == 0:
        raise ValueError(f"one_euro: keypoints must be (F, ..., 2) with at least one frame. Received shape {k.shape}")
    f = OneEuroFilter(fps, min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
    return np.stack([f(frame) for frame in k])
