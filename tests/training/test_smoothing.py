"""The One Euro filter (training.smoothing) against the paper's algorithm written out for one scalar signal."""

import math

import numpy as np
import pytest

from training.smoothing import OneEuroFilter, one_euro


def _paper(xs, rate, mincutoff, beta, dcutoff):
    """Casiez et al. 2012, Fig. 5's pseudo-code, one scalar at a time: LowPassFilter objects and all."""

    class LowPass:
        def __init__(self):
            self.first, self.hatx = True, None

        def filter(self, x, alpha):
            self.hatx = x if self.first else alpha * x + (1 - alpha) * self.hatx
            self.first = False
            return self.hatx

    def alpha(rate, cutoff):
        tau, te = 1.0 / (2 * math.pi * cutoff), 1.0 / rate
        return 1.0 / (1.0 + tau / te)

    xfilt, dxfilt, out = LowPass(), LowPass(), []
    for x in xs:
        dx = 0.0 if xfilt.first else (x - xfilt.hatx) * rate
        edx = dxfilt.filter(dx, alpha(rate, dcutoff))
        out.append(xfilt.filter(x, alpha(rate, mincutoff + beta * abs(edx))))
    return np.array(out)


def test_matches_the_papers_algorithm_coordinate_by_coordinate():
    rng = np.random.default_rng(0)
    t = np.arange(90) / 30.0
    # (F, K, 2): a joint at rest, one swinging fast, one walking; each with a few px of jitter
    truth = np.stack([np.stack([100 + 0 * t, 50 + 0 * t], -1), np.stack([200 + 80 * np.sin(6 * t), 90 + 0 * t], -1),
                      np.stack([20 + 150 * t, 140 - 30 * t], -1)], 1)
    noisy = truth + rng.normal(0, 2.0, truth.shape)
    for kw in (dict(min_cutoff=1.0, beta=0.007, d_cutoff=1.0), dict(min_cutoff=0.3, beta=0.05, d_cutoff=2.0)):
        ours = one_euro(noisy, 30.0, **kw)
        assert ours.shape == noisy.shape
        for k in range(3):
            for c in range(2):
                want = _paper(noisy[:, k, c], 30.0, kw["min_cutoff"], kw["beta"], kw["d_cutoff"])
                np.testing.assert_allclose(ours[:, k, c], want, rtol=0, atol=1e-9)
    # what it is for: the resting joint's jitter mostly gone, the walking one followed (beta raises the cutoff)
    still = one_euro(noisy, 30.0)
    assert np.std(still[30:, 0] - truth[30:, 0]) < 0.3 * np.std(noisy[30:, 0] - truth[30:, 0])
    lag = lambda beta: np.abs(one_euro(noisy, 30.0, beta=beta)[45:, 2] - truth[45:, 2]).mean()  # noqa: E731
    assert lag(0.05) < 0.5 * lag(0.0)


def test_a_constant_stays_and_a_lost_keypoint_restarts_where_it_is_found():
    steady = np.tile([[3.5, 7.25]], (10, 1, 1))
    np.testing.assert_array_equal(one_euro(steady, 25.0), steady)
    track = np.array([[0.0, 0.0], [10.0, 0.0], [np.nan, np.nan], [np.nan, np.nan], [50.0, 5.0], [52.0, 5.0]])[:, None]
    out = one_euro(track, 10.0)
    assert np.isnan(out[2:4]).all()  # not found: not invented
    np.testing.assert_array_equal(out[4], track[4])  # afresh, not pulled from where it was lost
    np.testing.assert_allclose(out[5, 0], _paper_pair(track[4:, 0], 10.0)[1], atol=1e-12)
    # several people, frame by frame as a video is drawn: the same as the whole array at once
    people = np.random.default_rng(1).normal(100, 5, (12, 2, 4, 2))
    f = OneEuroFilter(30.0)
    np.testing.assert_allclose(np.stack([f(frame) for frame in people]), one_euro(people, 30.0), atol=0)


def _paper_pair(xy, rate):
    return np.stack([_paper(xy[:, c], rate, 1.0, 0.007, 1.0) for c in range(2)], -1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(fps=0), r"fps must be a number > 0 \(frames per second\). Received: fps=0"),
    (dict(fps=30, min_cutoff=-1), r"min_cutoff must be a number > 0 \(Hz\)"),
    (dict(fps=30, beta=float("nan")), r"beta must be a number >= 0 \(per px/s of speed\)"),
    (dict(fps=True), r"fps must be a number > 0"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        one_euro(np.zeros((3, 2, 2)), **kwargs)


def test_frames_of_another_shape_and_no_frames_are_refused():
    f = OneEuroFilter(30.0)
    f(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"each frame must have the first frame's shape \(4, 2\). Received shape "
                                         r"\(5, 2\)"):
        f(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"at least one frame. Received shape \(0, 4, 2\)"):
        one_euro(np.zeros((0, 4, 2)), 30.0)
