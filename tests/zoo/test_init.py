"""Fresh weights follow the originals' initialisation, checked against the formulas written out here.

- Stacked Hourglass (pose-hg-train, Torch7 ``nn``): ``SpatialConvolution:reset()`` draws weight and
  bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = kW * kH * nInputPlane;
  ``SpatialBatchNormalization:reset()`` draws gamma from U(0, 1) (``weight:uniform()``), beta 0.
- CPM (convolutional-pose-machines-release ``training/genProto.py``): every conv
  ``weight_filler {type: "gaussian" std: 0.01}`` (untruncated), ``bias_filler {type: "constant"}`` (0).
- ResNet-50/101/152 (He et al. 2016 sec. 3.4: "as in [13]", Delving Deep eq. 10): N(0, 2 / (k*k*C_in))
  for convs and fc1000, biases 0. ResNet-18/34 (torchvision): convs N(0, 2 / (k*k*C_out)), fc1000 weight
  and bias U(-1/sqrt(C), 1/sqrt(C)). ResNet v2 (fb.resnet.torch preresnet.lua): convs N(0, 2 / (k*k*C_out)),
  classifier weight U(-1/sqrt(C), 1/sqrt(C)), bias 0. BN gamma 1, beta 0 everywhere.

A U(-b, b) sample has standard deviation b / sqrt(3); its sample std has relative standard error
about 0.45 / sqrt(n) (fourth moment b^4 / 5). A N(0, s^2) sample's std has relative error 1 / sqrt(2n).
Tolerances are 5 standard errors.
"""

import math

import keras
import numpy as np
import pytest

from zoo.models.cpm import cpm
from zoo.models.hourglass import hourglass
from zoo.models.resnet import resnet18, resnet50
from zoo.models.resnet_v2 import resnet50v2

pytestmark = pytest.mark.backend_agnostic

# clear_session(free_memory=False) below: fresh name counters and seed generator, without gc.collect()
# (a full collection of the backend's heap, 0.3-1.5 s a call); the models here are small.
HG = dict(stacks=2, features=32, num_keypoints=5, input_shape=(64, 64, 3))
CPM = dict(stages=2, num_keypoints=4, input_shape=(64, 64, 3))


def _convs(model):
    return [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]


def _bns(model):
    return [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]


def _torch_bound(layer):
    kh, kw, c_in, _ = layer.kernel.shape
    return 1.0 / math.sqrt(kh * kw * c_in)


def _weights(model):
    return [np.asarray(w) for w in model.get_weights()]


@pytest.fixture(scope="module")
def hg():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    return hourglass(**HG)


def test_hourglass_conv_weights_and_biases_are_torch_uniform(hg):
    convs = _convs(hg)
    assert len(convs) > 50
    kernels, biases = [], []
    for layer in convs:
        b = _torch_bound(layer)
        w = np.asarray(layer.kernel).ravel()
        bias = np.asarray(layer.bias)
        assert np.abs(w).max() <= b * (1 + 1e-6), layer.name
        assert np.abs(bias).max() <= b * (1 + 1e-6), layer.name
        if w.size >= 1000:
            assert abs(w.std() / (b / math.sqrt(3)) - 1) <= 5 * 0.45 / math.sqrt(w.size), layer.name
            assert abs(w.mean()) <= 5 * (b / math.sqrt(3)) / math.sqrt(w.size), layer.name
        kernels.append(w / b)
        biases.append(bias / b)
    # Pooled in units of each layer's bound: U(-1, 1), reaching both ends; biases too (Torch draws
    # them like the weights, Keras' default is 0).
    k = np.concatenate(kernels)
    assert k.max() > 0.999 and k.min() < -0.999
    assert abs(np.mean(np.abs(k) < 0.5) - 0.5) <= 5 * 0.5 / math.sqrt(k.size)
    z = np.concatenate(biases)
    assert abs(z.std() * math.sqrt(3) - 1) <= 5 * 0.45 / math.sqrt(z.size)
    assert abs(np.mean(np.abs(z) < 0.5) - 0.5) <= 5 * 0.5 / math.sqrt(z.size)


def test_hourglass_stem_bound_is_one_over_sqrt_147(hg):
    # SpatialConvolution(3, 64, 7, 7, 2, 2, 3, 3): fan_in = 7 * 7 * 3 = 147.
    w = np.asarray(hg.get_layer("stem_conv").kernel)
    assert np.abs(w).max() <= 1 / math.sqrt(147) * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 / math.sqrt(147)  # 9408 draws fill the range


def test_hourglass_batchnorm_gamma_is_uniform_0_1_and_beta_0(hg):
    bns = _bns(hg)
    assert len(bns) > 50
    gammas = []
    for layer in bns:
        g = np.asarray(layer.gamma)
        assert g.min() >= 0.0 and g.max() < 1.0, layer.name
        np.testing.assert_array_equal(np.asarray(layer.beta), 0.0)
        np.testing.assert_array_equal(np.asarray(layer.moving_mean), 0.0)  # Torch running_mean:zero()
        np.testing.assert_array_equal(np.asarray(layer.moving_variance), 1.0)  # running_var:fill(1)
        gammas.append(g)
    g = np.concatenate(gammas)
    n = g.size
    assert abs(g.mean() - 0.5) <= 5 * math.sqrt(1 / 12 / n)
    assert abs(g.std() * math.sqrt(12) - 1) <= 5 * 0.45 / math.sqrt(n)


def test_hourglass_keras_initializer_gives_keras_defaults():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    model = hourglass(**HG, initializer="keras")
    for layer in _bns(model):
        np.testing.assert_array_equal(np.asarray(layer.gamma), 1.0)
    for layer in _convs(model):
        np.testing.assert_array_equal(np.asarray(layer.bias), 0.0)
        kh, kw, c_in, c_out = layer.kernel.shape
        glorot = math.sqrt(6 / (kh * kw * (c_in + c_out)))
        assert np.abs(np.asarray(layer.kernel)).max() <= glorot * (1 + 1e-6), layer.name


def test_hourglass_bad_initializer_is_refused():
    with pytest.raises(ValueError, match=r"`initializer` must be one of 'original', 'keras'.*'torch'"):
        hourglass(**HG, initializer="torch")


def test_hourglass_init_repeats_under_set_random_seed():
    keras.backend.clear_session(free_memory=False)
    runs = []
    for seed in (5, 5, 6):
        keras.utils.set_random_seed(seed)
        runs.append(_weights(hourglass(**HG)))
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], runs[2]) if a.std() > 0)


def test_hourglass_keras_file_loads_in_safe_mode_and_keeps_the_init(hg, tmp_path):
    path = tmp_path / "hg.keras"
    hg.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for a, b in zip(_weights(hg), _weights(loaded)):
        np.testing.assert_array_equal(a, b)
    # The config carries the initialisers: a clone draws fresh weights from the same formulas.
    keras.utils.set_random_seed(1)
    clone = keras.models.clone_model(loaded)
    g = np.concatenate([np.asarray(l.gamma) for l in _bns(clone)])
    assert g.min() >= 0 and g.max() < 1 and g.std() > 0.2
    conv = clone.get_layer("stack1_hg4_up1_res1_conv2")  # 3x3, 16 -> 16: fan_in 144
    assert np.abs(np.asarray(conv.kernel)).max() <= (1 / 12) * (1 + 1e-6)
    assert np.abs(np.asarray(conv.bias)).max() > 0


@pytest.fixture(scope="module")
def cpm_model():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    return cpm(**CPM)


def test_cpm_conv_kernels_are_gaussian_std_0_01_and_biases_0(cpm_model):
    convs = _convs(cpm_model)
    assert len(convs) == 7 + 4 + 5  # stage 1, stage 2's image branch, stage 2's Mconv1..5
    pooled = []
    for layer in convs:
        w = np.asarray(layer.kernel).ravel()
        np.testing.assert_array_equal(np.asarray(layer.bias), 0.0)
        if w.size >= 1000:
            assert abs(w.std() / 0.01 - 1) <= 5 / math.sqrt(2 * w.size), layer.name
            assert abs(w.mean()) <= 5 * 0.01 / math.sqrt(w.size), layer.name
        pooled.append(w / 0.01)
    z = np.concatenate(pooled)
    n = z.size
    # Normal, not truncated (Caffe's GaussianFiller): P(|z| < 1) = 0.6827, P(|z| < 2) = 0.9545, and
    # millions of draws go past 4.5 standard deviations (a truncated normal stops at 2).
    for k, p in ((1, math.erf(1 / math.sqrt(2))), (2, math.erf(2 / math.sqrt(2)))):
        assert abs(np.mean(np.abs(z) < k) - p) <= 5 * math.sqrt(p * (1 - p) / n)
    assert np.abs(z).max() > 4.5


def test_cpm_keras_initializer_and_bad_value():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    model = cpm(**CPM, initializer="keras")
    w = np.asarray(model.get_layer("conv1_stage1").kernel)  # Glorot: limit sqrt(6 / (81 * (3 + 128)))
    limit = math.sqrt(6 / (81 * 131))
    assert np.abs(w).max() <= limit * (1 + 1e-6)
    assert abs(w.std() / (limit / math.sqrt(3)) - 1) <= 5 * 0.45 / math.sqrt(w.size)  # 0.0137, not 0.01
    with pytest.raises(ValueError, match=r"`initializer` must be one of 'original', 'keras'"):
        cpm(**CPM, initializer="gaussian")


def test_cpm_init_repeats_under_set_random_seed():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(3)
    a = np.asarray(cpm(**CPM).get_layer("Mconv1_stage2").kernel)
    keras.utils.set_random_seed(3)
    b = np.asarray(cpm(**CPM).get_layer("Mconv1_stage2").kernel)
    np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def resnets():
    """ResNet-50, ResNet-18 and ResNet-50 v2 with 1000 classes, each freshly built after set_random_seed(0);
    the conv and the classifier tests only read them. 1000 classes: fc1000's 2M draws reach 4 std."""
    built = {}
    for builder in (resnet50, resnet18, resnet50v2):
        keras.backend.clear_session(free_memory=False)
        keras.utils.set_random_seed(0)
        built[builder.__name__] = builder(classes=1000)
    yield built
    built.clear()
    keras.backend.clear_session()  # frees them (reference cycles) for later tests


def _check_normal(z, name):
    """``z``: weights divided by their expected std; a standard normal, untruncated."""
    n = z.size
    for k in (1, 2):
        p = math.erf(k / math.sqrt(2))
        assert abs(np.mean(np.abs(z) < k) - p) <= 5 * math.sqrt(p * (1 - p) / n), name
    assert np.abs(z).max() > 4.0, name  # a truncated normal (Keras' HeNormal) stops at 2


@pytest.mark.parametrize("builder,fan", [(resnet50, "in"), (resnet18, "out"), (resnet50v2, "out")])
def test_resnet_convs_are_he_normal(builder, fan, resnets):
    model = resnets[builder.__name__]
    pooled = []
    for layer in _convs(model):
        kh, kw, c_in, c_out = layer.kernel.shape
        std = math.sqrt(2 / (kh * kw * (c_in if fan == "in" else c_out)))
        w = np.asarray(layer.kernel).ravel()
        if w.size >= 1000:
            assert abs(w.std() / std - 1) <= 5 / math.sqrt(2 * w.size), layer.name
        if layer.use_bias:  # ResNet-50's conv1
            np.testing.assert_array_equal(np.asarray(layer.bias), 0.0)
        pooled.append(w / std)
    _check_normal(np.concatenate(pooled), builder.__name__)
    for layer in _bns(model):
        np.testing.assert_array_equal(np.asarray(layer.gamma), 1.0)
        np.testing.assert_array_equal(np.asarray(layer.beta), 0.0)


def test_resnet_classifiers_as_the_originals(resnets):
    # ResNet-50: fc1000 by [13]'s rule too, N(0, 2 / 2048), bias 0.
    fc = resnets["resnet50"].get_layer("fc1000")
    w = np.asarray(fc.kernel)
    _check_normal(w / math.sqrt(2 / 2048), "fc1000")
    np.testing.assert_array_equal(np.asarray(fc.bias), 0.0)
    # ResNet-18 (torchvision nn.Linear(512, K)): weight and bias ~ U(-1/sqrt(512), 1/sqrt(512)).
    b = 1 / math.sqrt(512)
    fc = resnets["resnet18"].get_layer("fc1000")
    for v in (np.asarray(fc.kernel).ravel(), np.asarray(fc.bias)):
        assert np.abs(v).max() <= b * (1 + 1e-6)
        assert abs(v.std() / (b / math.sqrt(3)) - 1) <= 5 * 0.45 / math.sqrt(v.size)
    # ResNet-50 v2 (preresnet.lua): nn.Linear(2048, K) weight, bias zeroed.
    b = 1 / math.sqrt(2048)
    fc = resnets["resnet50v2"].get_layer("classifier")
    w = np.asarray(fc.kernel).ravel()
    assert np.abs(w).max() <= b * (1 + 1e-6) and abs(w.std() / (b / math.sqrt(3)) - 1) <= 5 * 0.45 / math.sqrt(w.size)
    np.testing.assert_array_equal(np.asarray(fc.bias), 0.0)


def test_resnet_keras_initializer_and_bad_value():
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    model = resnet18(classes=10, initializer="keras")
    conv = model.get_layer("res5a_branch2b")  # 3x3, 512 -> 512: Glorot limit sqrt(6 / (9 * 1024))
    assert np.abs(np.asarray(conv.kernel)).max() <= math.sqrt(6 / (9 * 1024)) * (1 + 1e-6)
    np.testing.assert_array_equal(np.asarray(model.get_layer("fc1000").bias), 0.0)
    for builder in (resnet18, resnet50v2):
        with pytest.raises(ValueError, match=rf"{builder.__name__}\(\): `initializer` must be one of 'original', 'keras'"):
            builder(initializer="he")


@pytest.mark.tf_pass_only
def test_resnet_keras_file_loads_in_safe_mode(tmp_path):
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    model = resnet50v2(classes=10, input_shape=(64, 64, 3))
    model.save(tmp_path / "r.keras")
    loaded = keras.saving.load_model(tmp_path / "r.keras", safe_mode=True)
    for a, b in zip(_weights(model), _weights(loaded)):
        np.testing.assert_array_equal(a, b)
