"""training.schedules: LR values against hand computations at step 0, the boundaries and the last step."""

import math

import keras
import numpy as np
import pytest

from training.schedules import LRSchedule, make_schedule

# test_step_milestone_must_be_positive is an argument check (nothing a Keras backend computes) and runs in ./dev
# test's TensorFlow pass alone; the tests that compute a rate are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic


def _lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


@agnostic
def test_poly_is_pspnet_power_0_9():
    # semseg / Caffe "poly": the step t (0-based) trains with base * (1 - t / max_iter) ** 0.9
    s = LRSchedule("poly", 0.01, total_steps=1000, power=0.9)
    expected = {0: 0.01, 1: 0.01 * 0.999 ** 0.9, 500: 0.01 * 0.535886731, 999: 0.01 * 0.001995262, 1000: 0.0,
                1500: 0.0}  # 0.5 ** 0.9 = 0.535886731, 0.001 ** 0.9 = 10 ** -2.7 = 0.001995262
    for step, value in expected.items():
        assert _lr(s, step) == pytest.approx(value, rel=1e-5, abs=1e-12), step
    long = LRSchedule("poly", 0.01, total_steps=90000, power=0.9)  # float32 step counts near the end
    assert _lr(long, 89999) == pytest.approx(0.01 * (1 / 90000) ** 0.9, rel=1e-5)
    end = LRSchedule("poly", 0.01, total_steps=1000, power=0.9, end_learning_rate=1e-4)
    assert _lr(end, 500) == pytest.approx(1e-4 + 0.0099 * 0.535886731, rel=1e-5)
    assert _lr(end, 1000) == pytest.approx(1e-4, rel=1e-5)


@agnostic
def test_step_milestones_in_epochs_and_fractions():
    # hg/bearpaw: x0.1 at epochs 60 and 90 of 100 (5 steps per epoch)
    s = make_schedule("step", 2.5e-4, epochs=100, steps_per_epoch=5, milestones=(60, 90), gamma=0.1)
    assert [_lr(s, t) for t in (0, 299, 300, 449, 450, 499)] == pytest.approx(
        [2.5e-4, 2.5e-4, 2.5e-5, 2.5e-5, 2.5e-6, 2.5e-6], rel=1e-5)
    frac = make_schedule("step", 1.0, epochs=100, steps_per_epoch=5, milestones=(0.6, 0.9), gamma=0.1)
    assert frac.milestones == (300, 450)


@agnostic
def test_step_milestone_at_a_fractional_epoch():
    # epoch 2.5 of 10-step epochs is step 25 (it was truncated to epoch 2: step 20)
    s = make_schedule("step", 1.0, epochs=4, steps_per_epoch=10, milestones=(2.5,), gamma=0.5)
    assert s.milestones == (25,)
    assert [_lr(s, t) for t in (24, 25)] == [1.0, 0.5]


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_step_milestone_must_be_positive(bad):
    with pytest.raises(ValueError, match="milestones"):
        make_schedule("step", 1.0, epochs=4, steps_per_epoch=10, milestones=(bad,))


@agnostic
def test_cosine_values():
    s = LRSchedule("cosine", 0.1, total_steps=100, end_learning_rate=0.001)
    expected = {0: 0.1, 25: 0.001 + 0.0495 * (1 + math.sqrt(0.5)), 50: 0.0505, 99: 0.001 + 0.0495 * (1 + math.cos(
        math.pi * 0.99)), 100: 0.001, 200: 0.001}
    for step, value in expected.items():
        assert _lr(s, step) == pytest.approx(value, rel=1e-5), step


@agnostic
def test_linear_warmup_multiplies_the_schedule():
    # mmcv/MMPose linear warm-up: lr(t) = schedule(t) * (f + (1 - f) * t / W) for t < W, then schedule(t)
    s = LRSchedule("poly", 0.01, total_steps=100, warmup_steps=10, warmup_factor=0.001)
    assert _lr(s, 0) == pytest.approx(1e-5, rel=1e-5)
    assert _lr(s, 5) == pytest.approx(0.01 * 0.95 ** 0.9 * (0.001 + 0.999 * 0.5), rel=1e-5)
    assert _lr(s, 10) == pytest.approx(0.01 * 0.9 ** 0.9, rel=1e-5)
    assert _lr(s, 99) == pytest.approx(0.01 * 0.01 ** 0.9, rel=1e-5)
    w = make_schedule("constant", 0.1, epochs=3, steps_per_epoch=4, warmup_epochs=0.5)  # 2 steps
    assert [_lr(w, t) for t in (0, 1, 2, 11)] == pytest.approx([1e-4, 0.1 * (0.001 + 0.999 / 2), 0.1, 0.1], rel=1e-5)


@agnostic
def test_schedule_in_an_optimizer_survives_save_and_load(tmp_path):
    sched = make_schedule("poly", 0.05, epochs=2, steps_per_epoch=4, warmup_epochs=0.5)
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(keras.optimizers.SGD(sched, momentum=0.9), "mse")
    model.fit(np.ones((12, 3), np.float32), np.zeros((12, 1), np.float32), batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(again.optimizer._learning_rate, LRSchedule)
    assert again.optimizer._learning_rate.get_config() == sched.get_config()
    assert int(keras.ops.convert_to_numpy(again.optimizer.iterations)) == 3
    # mid-run: the restored step count gives the value of step 3 (past the 2-step warm-up)
    assert float(keras.ops.convert_to_numpy(again.optimizer.learning_rate)) == pytest.approx(
        0.05 * (1 - 3 / 8) ** 0.9, rel=1e-5)
