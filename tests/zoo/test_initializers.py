"""zoo.initializers: host (NumPy) draws with Keras' distributions, formulas written out here.

He normal: N(0, 2 / fan), fan = k * k * C_in or k * k * C_out (Dense: C_in / C_out). Glorot uniform:
U(-l, l), l = sqrt(6 / (fan_in + fan_out)). A U(-b, b) sample's std is b / sqrt(3), relative standard error
about 0.45 / sqrt(n); a normal sample's std has relative error 1 / sqrt(2n). Tolerances are 5 standard errors.
"""

import logging
import math

import keras
import numpy as np
import pytest

from zoo.initializers import HostGlorotUniform, HostHeNormal, HostNormal, HostUniform

pytestmark = pytest.mark.backend_agnostic


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("shape,mode,fan", [
    ((3, 3, 64, 128), "fan_in", 9 * 64), ((3, 3, 64, 128), "fan_out", 9 * 128), ((2048, 1000), "fan_in", 2048),
])
def test_he_normal_is_untruncated_with_std_sqrt_2_over_fan(shape, mode, fan):
    w = _np(HostHeNormal(mode, seed=1)(shape, "float32"))
    assert w.shape == shape and w.dtype == np.float32
    std = math.sqrt(2 / fan)
    assert abs(w.std() / std - 1) <= 5 / math.sqrt(2 * w.size)
    assert abs(w.mean()) <= 5 * std / math.sqrt(w.size)
    assert np.abs(w).max() / std > 4.0  # not truncated at 2 std (Keras' HeNormal is)


def test_glorot_uniform_and_uniform_and_normal_ranges():
    shape = (3, 3, 64, 128)
    limit = math.sqrt(6 / (9 * 64 + 9 * 128))
    w = _np(HostGlorotUniform(seed=2)(shape, "float32"))
    assert np.abs(w).max() <= limit * (1 + 1e-6) and np.abs(w).max() > 0.999 * limit
    assert abs(w.std() / (limit / math.sqrt(3)) - 1) <= 5 * 0.45 / math.sqrt(w.size)
    u = _np(HostUniform(0.0, 1.0, seed=3)((100_000,), "float32"))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) <= 5 * math.sqrt(1 / 12 / u.size)
    n = _np(HostNormal(2.0, 0.01, seed=4)((100_000,), "float32"))
    assert abs(n.mean() - 2.0) <= 5 * 0.01 / math.sqrt(n.size)
    assert abs(n.std() / 0.01 - 1) <= 5 / math.sqrt(2 * n.size)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])  # float64: JAX keeps float32 without x64
def test_draws_come_in_the_requested_dtype(dtype):
    w = HostUniform(-0.5, 0.5, seed=5)((64, 32), dtype)
    assert keras.backend.standardize_dtype(w.dtype) == dtype
    v = _np(keras.ops.cast(w, "float32"))
    assert np.abs(v).max() <= 0.5 and v.std() > 0.2


def test_seeds_repeat_under_set_random_seed_and_differ_between_instances():
    def draw():
        return [_np(init((16, 8), "float32")) for init in (HostUniform(-1, 1), HostNormal(0, 1), HostHeNormal())]

    keras.utils.set_random_seed(11)
    a, b = draw(), draw()
    keras.utils.set_random_seed(11)
    c = draw()
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, z)  # same seed: same weights
        assert not np.array_equal(x, y)  # two builds in one process differ
    init = HostUniform(-1, 1, seed=7)
    np.testing.assert_array_equal(_np(init((5,), "float32")), _np(HostUniform(-1, 1, seed=7)((5,), "float32")))


def test_config_round_trip_keeps_the_distribution_and_not_the_drawn_seed():
    for init in (HostUniform(-0.25, 0.5), HostNormal(1.0, 0.01), HostHeNormal("fan_out"), HostGlorotUniform()):
        config = keras.saving.serialize_keras_object(init)
        assert config["registered_name"] == f"zoo>{type(init).__name__}"
        assert config["config"]["seed"] is None  # a loaded or cloned model draws fresh weights
        again = keras.saving.deserialize_keras_object(config, safe_mode=True)
        assert type(again) is type(init) and again.get_config() == init.get_config()
    assert HostNormal(seed=3).get_config()["seed"] == 3


def _assert_glorot_uniform_kernels_and_zero_biases(model, skip=()):
    pooled = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.name not in skip:
            kh, kw, c_in, c_out = layer.kernel.shape
            limit = math.sqrt(6 / (kh * kw * (c_in + c_out)))
            w = _np(layer.kernel).ravel()
            assert np.abs(w).max() <= limit * (1 + 1e-6), layer.name
            if w.size >= 1000:
                assert abs(w.std() / (limit / math.sqrt(3)) - 1) <= 5 * 0.45 / math.sqrt(w.size), layer.name
            if layer.use_bias:
                np.testing.assert_array_equal(_np(layer.bias), 0.0)
            pooled.append(w[:200_000] / limit)
    z = np.concatenate(pooled)
    assert z.max() > 0.999 and z.min() < -0.999
    assert abs(np.mean(np.abs(z) < 0.5) - 0.5) <= 5 * 0.5 / math.sqrt(z.size)
    return len(pooled)


def test_pspnet_kernels_are_glorot_uniform_and_biases_zero():
    from zoo.models.pspnet import pspnet50

    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    assert _assert_glorot_uniform_kernels_and_zero_biases(
        pspnet50(classes=3, input_shape=(64, 64, 3), aux=True)) == 63
    keras.backend.clear_session(free_memory=False)


def test_fcn_vgg_kernels_are_glorot_uniform_and_biases_zero():
    """conv1_1 .. fc7 (Caffe copies them from VGG16); the score layers start at 0 (checked in test_fcn)."""
    from zoo.models.fcn import fcn32s

    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    model = fcn32s(classes=3, input_shape=(37, 41, 3))
    assert _assert_glorot_uniform_kernels_and_zero_biases(model, skip=("score_fr", "upscore")) == 15
    keras.backend.clear_session(free_memory=False)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"HostUniform: `seed` must be an int or None. Received: seed='1'"):
        HostUniform(seed="1")
    with pytest.raises(ValueError, match=r"HostHeNormal: `mode` must be 'fan_in' or 'fan_out'. Received: mode='fan_avg'"):
        HostHeNormal("fan_avg")


if keras.backend.backend() == "jax":  # only JAX compiles a program per drawn shape; defined for its pass alone

    def test_zoo_builds_compile_no_random_programs_on_jax():
        """Keras' RandomUniform / RandomNormal / VarianceScaling run jax.random eagerly: one XLA compile of
        ``_uniform`` / ``_normal`` per weight shape (most of a first hourglass build). JAX's in-process caches
        are cleared first: FCN's VGG kernels have fixed shapes that another test may have drawn already."""
        import jax

        from zoo.models.cpm import cpm
        from zoo.models.fcn import fcn32s
        from zoo.models.hourglass import hourglass
        from zoo.models.pspnet import pspnet50
        from zoo.models.resnet import resnet18

        compiled = []

        class Record(logging.Handler):
            def emit(self, record):
                compiled.append(record.getMessage())

        logger, handler = logging.getLogger("jax"), Record(logging.WARNING)
        logger.addHandler(handler)
        before = jax.config.jax_log_compiles
        jax.config.update("jax_log_compiles", True)
        jax.clear_caches()
        try:
            keras.utils.set_random_seed(0)
            hourglass(stacks=1, features=22, num_keypoints=7, input_shape=(64, 64, 3))
            cpm(stages=2, num_keypoints=5, input_shape=(64, 64, 3))
            resnet18(classes=13, input_shape=(64, 64, 3))
            pspnet50(classes=11, input_shape=(64, 64, 3))
            fcn32s(classes=9, input_shape=(33, 35, 3))
        finally:
            jax.config.update("jax_log_compiles", before)
            logger.removeHandler(handler)
        keras.backend.clear_session(free_memory=False)
        assert not [m for m in compiled if "_uniform" in m or "_normal" in m]


def test_built_models_save_keras_own_initializers():
    """Drawn on the host, recorded as Keras' built-ins: a saved hourglass (built-in layers only) loads with plain
    keras.saving.load_model, no `import zoo`, as before the host initialisers (its config named zoo>HostUniform)."""
    import json
    import re

    import zoo
    from tests.zoo.helpers import structure_only

    for name, kwargs, expected in [("hourglass", dict(stacks=1, features=16, input_shape=(64, 64, 3)),
                                    ["RandomUniform"]),
                                   ("resnet18", dict(input_shape=(32, 32, 3), classes=3),
                                    ["RandomUniform", "VarianceScaling"]),
                                   ("cpm", dict(input_shape=(96, 96, 3)), ["RandomNormal"]),
                                   ("pspnet50", dict(input_shape=(97, 97, 3), classes=3), ["GlorotUniform"]),
                                   ("fcn8s", dict(input_shape=(33, 35, 3), classes=3), ["GlorotUniform"])]:
        with structure_only():
            config = json.dumps(keras.saving.serialize_keras_object(zoo.get(name, **kwargs)))
        assert "Host" not in config, name
        assert sorted(set(re.findall(r'"class_name": "(\w+(?:Uniform|Normal|Scaling))"', config))) == expected, name
        if name == "hourglass":
            assert not re.findall(r'zoo>\w+', config)  # nothing of ours: keras alone loads it
