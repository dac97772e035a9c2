"""zoo.winograd: Winograd F(4x4, 3x3) against Keras' own convolution and, inside a converted FCN-8s,
against OpenCV's Caffe engine (Winograd off there); swap rule, sharing, save/load, converter flag."""

import io
import json
import re
import zipfile

import h5py
import keras
import numpy as np
import pytest

from converters import caffe
from converters.cli import main as convert_main
from tests.caffe_files import caffemodel_bytes, random_blobs_for, write_net
from tests.converters import nets
from tests.oracle import opencv_forward
from zoo.winograd import WinogradConv2D, optimize_for_inference, winograd_eligible, winograd_kernel

pytestmark = pytest.mark.backend_agnostic


def _conv(c, k, padding="same", **kwargs):
    """A built Conv2D (random kernel and bias unless ``kwargs`` say), called once in a functional graph of unknown
    size."""
    conv = keras.layers.Conv2D(k, 3, padding=padding, **{"bias_initializer": "random_normal", **kwargs})
    inp = keras.Input((None, None, c))
    keras.Model(inp, conv(inp))
    return conv


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _run(f, x):
    """``f(x)`` (a layer or model) as NumPy, for one input shape a test computes once. On JAX through a jitted
    stateless call: eagerly, JAX compiles each op anew for each input shape (~25 per WinogradConv2D, ~1,500 in
    this file), jitted the whole call once. Same ``call()``, same weights; TensorFlow runs its ops eagerly."""
    if keras.backend.backend() != "jax":
        return keras.tree.map_structure(_np, f(x))
    import jax

    def stateless(trainable, non_trainable, x):
        return f.stateless_call(trainable, non_trainable, x)[0]

    out = jax.jit(stateless)([v.value for v in f.trainable_variables], [v.value for v in f.non_trainable_variables], x)
    return keras.tree.map_structure(_np, out)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("h,w,d", [(3, 3, 1), (7, 11, 1), (13, 5, 1), (17, 17, 1), (9, 14, 2), (13, 23, 4), (5, 5, 2)])
def test_matches_keras_conv2d_at_odd_sizes(rng, padding, h, w, d):
    # 3x3 'valid' is a single output pixel in one mostly-padded tile; 13 and 17 leave partial tiles;
    # dilated: sizes that are not multiples of d, and 5x5 'valid' at d=2 a single pixel again.
    conv = _conv(5, 7, padding, activation="relu", dilation_rate=d)
    fast = WinogradConv2D.from_conv2d(conv)
    x = rng.normal(size=(2, h, w, 5)).astype(np.float32)
    ref, got = _run(conv, x), _run(fast, x)
    assert got.shape == ref.shape == ((2, h, w, 7) if padding == "same" else (2, h - 2 * d, w - 2 * d, 7))
    np.testing.assert_allclose(got, ref, atol=1e-5 * np.abs(ref).max())
    assert fast.compute_output_shape((2, h, w, 5)) == ref.shape


@pytest.mark.parametrize("d", [1, 2])
def test_unknown_sizes_in_a_compiled_predict(rng, d):
    # A second size makes TensorFlow's predict function retrace with unknown (None) height and width:
    # every size is then a tensor inside the layer.
    conv = _conv(4, 6, "same", dilation_rate=d)
    inp = keras.Input((None, None, 4))
    model = keras.Model(inp, WinogradConv2D.from_conv2d(conv)(inp))
    for shape in ((2, 13, 17, 4), (1, 9, 6, 4), (3, 20, 11, 4)):
        x = rng.normal(size=shape).astype(np.float32)
        ref = _np(conv(x))
        np.testing.assert_allclose(model.predict(x, verbose=0), ref, atol=1e-5 * np.abs(ref).max())


def test_kernel_transform_is_exact_on_a_delta():
    # Y = A^T[(G g G^T) . (B^T d B)]A with a single 1 in the kernel is a shifted copy of the input.
    g = np.zeros((3, 3, 1, 1), np.float32)
    g[0, 2, 0, 0] = 1.0
    layer = WinogradConv2D(1, padding="valid", use_bias=False)
    layer.build((None, None, None, 1))
    layer.kernel.assign(winograd_kernel(g))
    x = np.arange(9 * 10, dtype=np.float32).reshape(1, 9, 10, 1)
    np.testing.assert_allclose(_np(layer(x))[0, :, :, 0], x[0, :7, 2:, 0], atol=1e-4)
    with pytest.raises(ValueError, match=r"expected a \(3, 3, C, K\) kernel. Received shape \(1, 1, 4, 4\)"):
        winograd_kernel(np.zeros((1, 1, 4, 4)))


def _direct_conv(x, kernel, bias, pad):
    """float64 3x3 stride-1 cross-correlation written out: x (N, H, W, C) zero-padded by ``pad``, HWIO kernel."""
    x = np.pad(x.astype(np.float64), [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    h, w = x.shape[1] - 2, x.shape[2] - 2
    out = sum(np.einsum("nhwc,ck->nhwk", x[:, i:i + h, j:j + w], kernel[i, j].astype(np.float64), optimize=True)
              for i in range(3) for j in range(3))
    return out + bias


def test_transform_matrices_compute_a_1d_correlation():
    # The F(4, 3) identity the layer rests on, in float64: y_i = sum_k g_k d_(i+k), i = 0..3.
    from zoo.winograd import _TRANSFORMS

    rng = np.random.default_rng(0)
    for bt, g_mat, at in _TRANSFORMS.values():
        for _ in range(10):
            g, d = rng.normal(size=3), rng.normal(size=6)
            np.testing.assert_allclose(at @ ((g_mat @ g) * (bt @ d)), [g @ d[i:i + 3] for i in range(4)], atol=1e-13)


_LAVIN_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                     [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])  # Lavin & Gray's G, written out


def _winograd_model(points, name="w", c=4, k=5):
    inp = keras.Input((None, None, c))
    layer = WinogradConv2D(k, padding="same", points=points, name=name)
    return keras.Model(inp, layer(inp)), layer


def _drop_transforms(h5):
    """Rewrite an open ``.weights.h5`` as the layer wrote it before B^T and A^T were weights: kernel, bias."""
    groups = []
    h5.visititems(lambda name, obj: groups.append(obj) if name.endswith("/vars") and "3" in obj else None)
    assert groups
    for vars_ in groups:
        assert vars_["2"].shape == (6, 6) and vars_["3"].shape == (4, 6)
        del vars_["2"], vars_["3"]


def _save_as_before_points(model, path):
    """``model.save(path)`` as it was written before the points setting: no "points" in the config, kernel
    and bias only in the weights."""
    model.save(path.with_suffix(".new.keras"))
    with zipfile.ZipFile(path.with_suffix(".new.keras")) as src, zipfile.ZipFile(path, "w") as dst:
        config = json.loads(src.read("config.json"))
        config["config"]["layers"][1]["config"].pop("points")
        weights = io.BytesIO(src.read("model.weights.h5"))
        with h5py.File(weights, "a") as h5:
            _drop_transforms(h5)
        for item in src.infolist():
            data = {"config.json": json.dumps(config).encode(), "model.weights.h5": weights.getvalue()}
            dst.writestr(item, data.get(item.filename) or src.read(item.filename))


@pytest.mark.parametrize("saved,loaded", [("0,1,-1,2,-2", "0,-1,1,1/2,-2"), ("0,-1,1,1/2,-2", "0,1,-1,2,-2")])
def test_weights_only_file_loads_into_a_layer_with_other_points(rng, tmp_path, saved, loaded):
    # The stored kernel is G g G^T for the saving layer's points; a weights-only file loaded into a layer
    # made with the other points ran its kernel through the wrong B^T and A^T: 4.6x (JAX) and 7.8x
    # (TensorFlow) the output's range off, without a word.
    kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    conv = keras.layers.Conv2D(5, 3, padding="same")
    conv.build((None, None, None, 4))
    conv.set_weights([kernel, bias])
    model, layer = _winograd_model(saved)
    layer.set_from_conv2d(conv)
    model.save_weights(tmp_path / "w.weights.h5")
    x = rng.normal(size=(2, 11, 9, 4)).astype(np.float32)
    ref = _direct_conv(x, kernel, bias, 1)
    for route in ("load_weights", "set_weights"):
        other, other_layer = _winograd_model(loaded)
        if route == "load_weights":
            other.load_weights(tmp_path / "w.weights.h5")
        else:
            other.set_weights(model.get_weights())
        np.testing.assert_allclose(_np(other(x)), ref, atol=1e-5 * np.abs(ref).max(), err_msg=route)
    assert other_layer.points == loaded  # set_weights cannot say; load_weights can:
    other, other_layer = _winograd_model(loaded)
    other.load_weights(tmp_path / "w.weights.h5")
    assert other_layer.points == saved and other_layer.get_config()["points"] == saved


def test_files_written_before_the_transforms_were_weights_still_load(rng, tmp_path):
    # Before, a layer saved its kernel and bias only: a .keras file written before the points setting
    # holds Lavin's G g G^T and no "points" in its config; weights-only files (either points) name none.
    # The kernel itself tells which G made it.
    kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    lavin = np.einsum("ar,rsck,bs->abck", _LAVIN_G, kernel, _LAVIN_G).reshape(36, 4, 5).astype(np.float32)
    x = rng.normal(size=(2, 11, 9, 4)).astype(np.float32)
    ref = _direct_conv(x, kernel, bias, 1)
    tol = 1e-5 * np.abs(ref).max()

    model, layer = _winograd_model("0,1,-1,2,-2")
    layer.set_weights([lavin, bias, *layer.get_weights()[2:]])
    _save_as_before_points(model, tmp_path / "old.keras")
    loaded = keras.models.load_model(tmp_path / "old.keras", safe_mode=True)
    np.testing.assert_allclose(_np(loaded(x)), ref, atol=tol)
    assert loaded.get_layer("w").points == "0,1,-1,2,-2"

    for points, saved_kernel in (("0,1,-1,2,-2", lavin), ("0,-1,1,1/2,-2", winograd_kernel(kernel))):
        model, layer = _winograd_model(points)
        layer.set_weights([saved_kernel, bias, *layer.get_weights()[2:]])
        model.save_weights(tmp_path / "old.weights.h5")
        with h5py.File(tmp_path / "old.weights.h5", "a") as h5:
            _drop_transforms(h5)
        for into in ("0,1,-1,2,-2", "0,-1,1,1/2,-2"):
            other, other_layer = _winograd_model(into)
            other.load_weights(tmp_path / "old.weights.h5")
            np.testing.assert_allclose(_np(other(x)), ref, atol=tol, err_msg=f"{points} into {into}")
            assert other_layer.points == points
    with pytest.raises(ValueError, match=r"WinogradConv2D: points must be one of .*Received: '0,1,2'"):
        WinogradConv2D(4, points="0,1,2")


def test_a_trained_kernel_in_a_keras_file_written_before_loads_with_the_points_its_config_names(rng, tmp_path):
    # A .keras file's config names the points its kernel goes with (none: Lavin's), so a kernel that no G
    # explains (the transformed kernel fine-tuned: trainable stays on after optimize_for_inference) loaded as
    # it was before the transforms were weights; it was refused as "not G g G^T for any known points".
    lavin_bt = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])
    lavin_at = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])
    kernel = np.einsum("ar,rsck,bs->abck", _LAVIN_G, rng.normal(size=(3, 3, 4, 5)), _LAVIN_G).reshape(36, 4, 5)
    trained = (kernel + 0.1 * np.abs(kernel).mean() * rng.normal(size=kernel.shape)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    model, layer = _winograd_model("0,1,-1,2,-2")
    layer.set_weights([trained, bias, *layer.get_weights()[2:]])
    _save_as_before_points(model, tmp_path / "old.keras")
    loaded = keras.models.load_model(tmp_path / "old.keras", safe_mode=True).get_layer("w")
    for got, want in zip(loaded.get_weights(), [trained, bias, lavin_bt, lavin_at]):
        np.testing.assert_array_equal(got, want)
    assert loaded.points == "0,1,-1,2,-2"
    # A weights-only file names no points: there such a kernel is still refused (test below).


@pytest.mark.parametrize("dtype,c,k", [("float16", 16, 16), ("bfloat16", 16, 16), ("float16", 1, 1)])
def test_a_16_bit_kernel_written_before_the_transforms_were_weights_still_loads(rng, tmp_path, dtype, c, k):
    # From 2026-11-26 to 12-03 a layer under a pure float16/bfloat16 policy stored its kernel (Lavin's
    # G g G^T) in that dtype: rounded by up to 2^-11 / 2^-8 of each value, ~3e-4 / ~3e-3 of its norm away from
    # G's subspace, which a 1e-4 tolerance refused as "not G g G^T" (the other points are >= 18% away).
    import ml_dtypes

    kernel = rng.normal(size=(3, 3, c, k)).astype(np.float32)
    bias = rng.normal(size=k).astype(np.float32)
    lavin = np.einsum("ar,rsck,bs->abck", _LAVIN_G, kernel, _LAVIN_G).reshape(36, c, k)
    model, layer = _winograd_model("0,1,-1,2,-2", c=c, k=k)
    model.save_weights(tmp_path / "old.weights.h5")
    with h5py.File(tmp_path / "old.weights.h5", "a") as h5:
        _drop_transforms(h5)
        groups = []
        h5.visititems(lambda name, obj: groups.append(obj) if name.endswith("/vars") and "1" in obj else None)
        (group,) = groups
        del group["0"], group["1"]
        if dtype == "float16":
            group["0"], group["1"] = lavin.astype(np.float16), bias.astype(np.float16)
        else:  # as Keras writes bfloat16: the dtype in an attribute
            for key, value in (("0", lavin), ("1", bias)):
                group.create_dataset(key, data=value.astype(ml_dtypes.bfloat16)).attrs["dtype"] = "bfloat16"
    other, other_layer = _winograd_model("0,-1,1,1/2,-2", c=c, k=k)
    other.load_weights(tmp_path / "old.weights.h5")
    assert other_layer.points == "0,1,-1,2,-2"
    x = rng.normal(size=(2, 11, 9, c)).astype(np.float32)
    ref = _direct_conv(x, kernel, bias, 1)
    np.testing.assert_allclose(_np(other(x)), ref, atol=(1e-2 if dtype == "float16" else 0.1) * np.abs(ref).max())


def test_zoo_files_written_before_the_transforms_were_weights_load(rng, tmp_path):
    # zoo.save_weights stored a layer's kernel and bias only before B^T and A^T were weights; zoo.load_weights refused
    # such a file as "weight shapes differ: file [(36, 4, 5), (5,)] vs model [..., (6, 6), (4, 6)]", without the cause.
    # The kernel tells its points, as for Keras' files; a kernel no G explains is refused saying so, nothing assigned.
    import zoo

    kernel = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    lavin = np.einsum("ar,rsck,bs->abck", _LAVIN_G, kernel, _LAVIN_G).reshape(36, 4, 5).astype(np.float32)
    model, layer = _winograd_model("0,1,-1,2,-2")
    layer.set_weights([lavin, bias, *layer.get_weights()[2:]])
    path = zoo.save_weights(model, tmp_path / "old.h5")
    with h5py.File(path, "a") as f:
        group = f["layers"]["w"]
        del group["2"], group["3"]
        group.attrs["names"] = json.dumps(json.loads(group.attrs["names"])[:2])
    other, other_layer = _winograd_model("0,-1,1,1/2,-2")
    assert zoo.load_weights(other, path).loaded == ["w"]
    x = rng.normal(size=(2, 11, 9, 4)).astype(np.float32)
    ref = _direct_conv(x, kernel, bias, 1)
    np.testing.assert_allclose(_np(other(x)), ref, atol=1e-5 * np.abs(ref).max())
    assert other_layer.points == "0,1,-1,2,-2"

    with h5py.File(path, "a") as f:  # the transformed kernel trained: no G explains it
        f["layers"]["w"]["0"][...] = rng.normal(size=(36, 4, 5))
    fresh, _ = _winograd_model("0,-1,1,1/2,-2")
    before = fresh.get_weights()
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.load_weights(fresh, path)
    assert f"  - w: WinogradConv2D 'w': the file holds a kernel and bias only (written before the layer saved its " \
           f"transforms), and the kernel is not G g G^T for any known points" in str(e.value)
    for got, want in zip(fresh.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_a_file_that_cannot_tell_its_transforms_is_refused(rng, tmp_path):
    # A kernel-and-bias file whose kernel is no G g G^T (the transformed kernel trained, or not a
    # Winograd kernel at all), or a file with transforms of no known points: refused naming the layer,
    # nothing assigned.
    model, layer = _winograd_model("0,-1,1,1/2,-2")
    layer.set_weights([rng.normal(size=(36, 4, 5)).astype(np.float32), *layer.get_weights()[1:]])
    model.save_weights(tmp_path / "trained.weights.h5")
    with h5py.File(tmp_path / "trained.weights.h5", "a") as h5:
        _drop_transforms(h5)
    model.save_weights(tmp_path / "scaled.weights.h5")
    with h5py.File(tmp_path / "scaled.weights.h5", "a") as h5:
        groups = []
        h5.visititems(lambda name, obj: groups.append(obj) if name.endswith("/vars") and "3" in obj else None)
        groups[0]["2"][...] = 2 * groups[0]["2"][...]  # B^T
    other, other_layer = _winograd_model("0,-1,1,1/2,-2")
    before = other.get_weights()
    with pytest.raises(ValueError, match=r"WinogradConv2D 'w': the file holds a kernel and bias only .* the kernel "
                                         r"is not G g G\^T for any known points"):
        other.load_weights(tmp_path / "trained.weights.h5")
    with pytest.raises(ValueError, match=r"WinogradConv2D 'w': the file's input/output transforms .* are not those "
                                         r"of any known points"):
        other.load_weights(tmp_path / "scaled.weights.h5")
    for got, want in zip(other.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_wide_layer_error_is_within_1e_5_of_the_range(rng):
    # The documented bound, on a realistic layer: 512 -> 512 (conv4/conv5 of VGG), He-initialised, on
    # large non-negative (post-ReLU) activations, against a float64 direct convolution. Lavin's points
    # 0, +-1, +-2 gave 1.3-2.0e-5 on TensorFlow and JAX; 0, -1, 1, 1/2, -2 give 5-8e-6.
    kernel = (rng.normal(size=(3, 3, 512, 512)) * np.sqrt(2 / (9 * 512))).astype(np.float32)
    bias = (rng.normal(size=512) * 0.1).astype(np.float32)
    x = np.maximum(rng.normal(size=(1, 28, 28, 512)) * 50, 0).astype(np.float32)
    conv = keras.layers.Conv2D(512, 3, padding="same")
    conv.build((None, None, None, 512))
    conv.set_weights([kernel, bias])
    ref = _direct_conv(x, kernel, bias, 1)
    got = _run(WinogradConv2D.from_conv2d(conv), x)
    assert np.abs(got - ref).max() / np.abs(ref).max() <= 1e-5


def _zero_conv(c, k, **kwargs):
    """``_conv`` with zero weights, where only the settings and shapes matter: on JAX, drawing a random kernel
    compiles the draw for each new shape (~0.2 s each, 256 -> 256 more)."""
    return _conv(c, k, kernel_initializer="zeros", bias_initializer="zeros", **kwargs)


def test_swap_rule():
    assert winograd_eligible(_zero_conv(256, 256)) and winograd_eligible(_zero_conv(128, 256), min_channels=160)
    # the transforms cost more than they save (on JAX also 128->256)
    assert not winograd_eligible(_zero_conv(128, 128))
    assert winograd_eligible(_zero_conv(128, 256)) == (keras.backend.backend() == "tensorflow")
    assert winograd_eligible(_zero_conv(128, 128), min_channels=128)
    assert not winograd_eligible(_zero_conv(256, 256, strides=2))
    assert winograd_eligible(_zero_conv(256, 256, dilation_rate=4))
    assert not winograd_eligible(_zero_conv(256, 256, dilation_rate=(2, 1)))
    inp = keras.Input((7, 7, 256))
    small = keras.layers.Conv2D(256, 3, padding="same", kernel_initializer="zeros")
    small(inp)
    assert not winograd_eligible(small)  # a 7x7 map pads to 8x8 tiles and the fixed costs dominate
    one = keras.layers.Conv2D(4, 1)
    one(keras.Input((None, None, 4)))
    with pytest.raises(ValueError, match="layer '.*' is not a 3x3, stride-1 convolution"):
        WinogradConv2D.from_conv2d(one)
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'. Received: 'causal'"):
        WinogradConv2D(4, padding="causal")


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.conv = keras.layers.Conv2D(4, 3)

    def call(self, x):
        return self.conv(x)


@pytest.mark.tf_pass_only
def test_sequential_swaps_and_subclassed_is_refused(rng):
    seq = keras.Sequential([keras.Input((24, 24, 8)), keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                            keras.layers.Conv2D(4, 3)])
    fast = optimize_for_inference(seq, min_channels=1)
    assert [type(layer).__name__ for layer in fast.layers] == ["WinogradConv2D"] * 2
    x = rng.normal(size=(2, 24, 24, 8)).astype(np.float32)
    ref = _run(seq, x)
    np.testing.assert_allclose(_run(fast, x), ref, atol=1e-5 * np.abs(ref).max())
    sub = _Subclassed()
    sub(x)
    with pytest.raises(TypeError, match="expected a functional or Sequential Keras model .* Received 'sub' of type "
                                        "_Subclassed"):
        optimize_for_inference(sub)


def test_bad_arguments_are_named():
    # Were AttributeError "'str' object has no attribute 'name'" for a path, a TypeError from a comparison of
    # int and str, and min_channels=nan swapped every 3x3 convolution (every comparison with NaN is False).
    seq = keras.Sequential([keras.Input((24, 24, 8)), keras.layers.Conv2D(8, 3)])
    with pytest.raises(TypeError, match="expected a functional or Sequential Keras model .*Received str 'model.keras'"):
        optimize_for_inference("model.keras")
    for kwargs, text in (({"min_channels": "160"}, "min_channels must be a non-negative number or None. Received: "
                                                   "'160'"),
                         ({"min_channels": float("nan")}, "min_channels must be .* Received: nan"),
                         ({"min_size": None}, "min_size must be a non-negative number. Received: None"),
                         ({"min_size": -1}, "min_size must be .* Received: -1")):
        with pytest.raises(ValueError, match=f"optimize_for_inference: {text}"):
            optimize_for_inference(seq, **kwargs)
        with pytest.raises(ValueError, match=f"winograd_eligible: {text}"):
            winograd_eligible(seq.layers[0], **kwargs)
    assert [type(layer).__name__ for layer in optimize_for_inference(seq, min_channels=np.int64(8)).layers] == \
        ["WinogradConv2D"]


def test_converted_fcn8s_against_opencv_shares_weights_and_reloads(tmp_path, rng):
    # Every 3x3 conv of a narrow FCN-8s (pad 100 on conv1_1, odd size, any-size model) swapped.
    proto = nets.fcn8s(27, 35, widths=(3, 4, 4, 6, 6), fc=8, classes=3)
    blobs = random_blobs_for(proto, rng)
    net = caffe.load(*write_net(tmp_path, proto, blobs))
    model = caffe.to_keras(net, input_shape=(None, None), progress=False)
    fast = optimize_for_inference(model, min_channels=1)
    swapped = [layer.name for layer in fast.layers if isinstance(layer, WinogradConv2D)]
    assert len(swapped) == 13 and "conv1_1" in swapped and "conv5_3" in swapped
    assert [layer.name for layer in fast.layers] == [layer.name for layer in model.layers]
    assert fast.get_layer("fc6") is model.get_layer("fc6")  # not swapped: shared, no copy
    x = rng.normal(size=(1, 27, 35, 3)).astype(np.float32)
    ref = opencv_forward(proto, {"data": x}, caffemodel_bytes(proto, blobs), ["score"])["score"]
    got = _np(fast.predict(x, verbose=0))
    # 1e-5 of the largest score: 1.8-2.7e-7 on TF, JAX and torch (3 seeds); the narrow net attenuates a layer's error
    # (every Winograd output x 1.001 moves the score by 7.8e-5 of it, which 1e-4 let pass)
    np.testing.assert_allclose(got, ref, atol=1e-5 * np.abs(ref).max())
    y = rng.normal(size=(2, 31, 24, 3)).astype(np.float32)  # another size through the same model
    ref = _run(model, y)
    np.testing.assert_allclose(_run(fast, y), ref, atol=1e-5 * np.abs(ref).max())
    fast.save(tmp_path / "fast.keras")
    loaded = keras.models.load_model(tmp_path / "fast.keras", safe_mode=True)
    np.testing.assert_array_equal(_np(loaded.predict(x, verbose=0)), got)


def test_converter_flag(tmp_path, rng, capsys):
    proto = nets.fcn8s(29, 23, widths=(4, 4, 8, 256, 256), fc=8, classes=3)
    files = write_net(tmp_path, proto, random_blobs_for(proto, rng))
    out = tmp_path / "fcn.keras"
    assert convert_main(["caffe", *files, "-o", str(out), "--winograd", "--verify", "--no-progress"]) == 0
    text = capsys.readouterr().out
    # conv4_1 (8->256) is too narrow; conv5 runs on 14x15 maps, under MIN_SIZE.
    assert "Winograd: 2 Conv2D layers swapped (conv4_2, conv4_3)" in text
    assert float(text.split("score: max relative difference ")[1].split()[0]) <= 1e-4
    loaded = keras.models.load_model(out, safe_mode=True)
    assert sum(isinstance(layer, WinogradConv2D) for layer in loaded.layers) == 2


@pytest.mark.tf_pass_only
def test_pspnet_dilated_trunk_and_pyramid_head(rng):
    # Dilation 2 (conv4_x) and 4 (conv5_x) 3x3 convs with 'same' padding, and conv5_4 (4096 -> 512).
    from zoo.models.pspnet import pspnet50

    model = pspnet50(input_shape=(105, 97, 3), classes=5)
    fast = optimize_for_inference(model, min_size=0)
    swapped = {layer.name: layer.dilation_rate for layer in fast.layers if isinstance(layer, WinogradConv2D)}
    assert swapped["conv4_1_3x3"] == 2 and swapped["conv5_3_3x3"] == 4 and swapped["conv5_4"] == 1
    assert "conv1_1_3x3_s2" not in swapped and "conv3_1_3x3" not in swapped  # stride 2; 128 -> 128
    x = rng.uniform(-100, 100, size=(1, 105, 97, 3)).astype(np.float32)
    ref = _run(model, x)
    np.testing.assert_allclose(_run(fast, x), ref, atol=1e-4 * np.abs(ref).max())


@pytest.mark.tf_pass_only
def test_hourglass_every_stack_output(rng):
    # Two outputs (intermediate supervision) and residual modules; every 3x3 conv swapped.
    import zoo

    model = zoo.get("hourglass", stacks=2, num_keypoints=5, features=32, input_shape=(64, 64, 3))
    fast = optimize_for_inference(model, min_channels=1, min_size=0)
    assert sum(isinstance(layer, WinogradConv2D) for layer in fast.layers) > 20
    x = rng.uniform(0, 255, size=(2, 64, 64, 3)).astype(np.float32)
    refs, gots = _run(model, x), _run(fast, x)
    assert len(refs) == len(gots) == 2
    # what zoo.get remembered goes with it: preprocess (kerazoo predict --winograd) needs the record
    from zoo.api import build_info

    assert build_info(fast) == build_info(model) and build_info(fast)[0] == "hourglass"
    model._zoo_record = zoo.WeightsRecord(channel_order="BGR", mean=(1.0, 2.0, 3.0))
    assert zoo.weights_record(optimize_for_inference(model, min_channels=1, min_size=0)) is model._zoo_record
    for ref, got in zip(refs, gots):
        np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "bfloat16", "float16"])
def test_mixed_precision_computes_the_transforms_in_float32(rng, policy):
    # Under the pure 16-bit policies the transformed kernel was stored in 16 bits: 10x the direct conv's error.
    conv = _conv(64, 64)
    direct = keras.layers.Conv2D(64, 3, padding="same", dtype=policy)
    direct.build((None, None, None, 64))
    direct.set_weights(conv.get_weights())
    layer = WinogradConv2D.from_conv2d(direct)
    assert keras.backend.standardize_dtype(layer.kernel.dtype) == "float32"
    x = rng.normal(size=(1, 21, 19, 64)).astype(np.float32)
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == policy.split("_")[-1]
    ref = _np(conv(x))

    def err(out):
        return np.abs(_np(keras.ops.cast(out, "float32")) - ref).max() / np.abs(ref).max()

    # bf16 rounding of the input and output only, as the direct conv: not a bf16 transformed kernel
    # (5% of the range) nor bf16 transforms (10%)
    assert err(y) <= 2 * err(direct(x)) + 1e-3, (err(y), err(direct(x)))


def test_too_small_input_is_refused_like_conv2d(rng):
    # 'valid' needs 2d + 1 pixels a side; was a ZeroDivisionError (JAX), a reshape error (PyTorch) or, on
    # TensorFlow, an empty output with the wrong batch size (16 for 1).
    for d, shape in ((1, (1, 2, 2, 3)), (2, (1, 4, 9, 3)), (2, (1, 9, 3, 3))):
        fast = WinogradConv2D.from_conv2d(_conv(3, 4, "valid", dilation_rate=d))
        with pytest.raises(ValueError, match=r"'valid' needs at least \d+x\d+ pixels"):
            fast(np.zeros(shape, np.float32))
        with pytest.raises(ValueError, match=r"'valid' needs at least \d+x\d+ pixels"):
            fast(keras.Input(shape[1:]))
    # Sizes known only when run (TensorFlow's retraced predict): an empty map, the batch kept.
    conv = _conv(3, 4, "valid", dilation_rate=2)
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, WinogradConv2D.from_conv2d(conv)(inp))
    x = rng.normal(size=(2, 11, 9, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), _np(conv(x)), atol=1e-5 * np.abs(_np(conv(x))).max())
    small = np.zeros((3, 3, 8, 3), np.float32)
    if keras.backend.backend() == "tensorflow":
        assert model.predict(small, verbose=0).shape == (3, 0, 4, 4)
    else:
        with pytest.raises(ValueError, match="'valid' needs at least 5x5 pixels"):
            model.predict(small, verbose=0)


def test_integer_images(rng):
    # A uint8 image straight into the layer: the transforms' negative coefficients wrapped around in uint8
    # (relative error 1.0 on JAX, where Conv2D promotes to float32).
    conv = _conv(3, 4, "same")
    x = rng.integers(0, 256, size=(1, 9, 7, 3)).astype(np.uint8)
    ref = _np(conv(x.astype(np.float32)))
    got = WinogradConv2D.from_conv2d(conv)(x)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_allclose(_np(got), ref, atol=1e-5 * np.abs(ref).max())


def _times_three(t):  # a plain, unregistered function
    return t * 3.0


@pytest.mark.tf_pass_only
def test_plain_function_activation_frozen_layer_and_activity_regularizer(rng):
    # The activation was serialized and looked up again: a function that is not registered (or a lambda)
    # made optimize_for_inference fail. trainable=False and the activity regularizer (model.losses, so
    # evaluate's loss) were dropped.
    inp = keras.Input((12, 10, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", activation=_times_three, activity_regularizer="l2")
    lam = keras.layers.Conv2D(2, 3, activation=lambda t: t - 1.0, bias_initializer="random_normal")
    model = keras.Model(inp, lam(conv(inp)))
    conv.trainable = False
    fast = optimize_for_inference(model, min_channels=1, min_size=0)
    assert [type(layer).__name__ for layer in fast.layers[1:]] == ["WinogradConv2D"] * 2
    x = rng.normal(size=(2, 12, 10, 3)).astype(np.float32)
    ref, got = _np(model(x)), _np(fast(x))
    np.testing.assert_allclose(got, ref, atol=1e-5 * np.abs(ref).max())
    assert not fast.get_layer(conv.name).trainable and len(fast.trainable_weights) == len(model.trainable_weights)
    assert len(fast.losses) == len(model.losses) == 1
    np.testing.assert_allclose(_np(fast.losses[0]), _np(model.losses[0]), rtol=1e-5)


def test_filters_and_dilation_must_be_positive_integers():
    # 2.7 filters and a 1.5 dilation were truncated to 2 and 1 without a word; 0 and -1 failed in call()
    # (division by zero, a negative pad, a negative shape).
    for kwargs in ({"filters": 2.7}, {"filters": 0}, {"filters": -1}, {"filters": True},
                   {"dilation_rate": 1.5}, {"dilation_rate": 0}, {"dilation_rate": (-1, -1)}, {"dilation_rate": "2"}):
        name, value = next(iter(kwargs.items()))
        with pytest.raises(ValueError, match=rf"WinogradConv2D: {name} must be a positive integer. Received: "
                                             rf"{re.escape(repr(value[0] if isinstance(value, tuple) else value))}"):
            WinogradConv2D(**{"filters": 4, **kwargs})
    layer = WinogradConv2D(np.int64(4), dilation_rate=[2, 2])
    assert (layer.filters, layer.dilation_rate) == (4, 2)


def test_refusals_say_why():
    first = keras.layers.Conv2D(4, 3, data_format="channels_first", kernel_initializer="zeros")
    first.build((None, 4, 9, 9))
    with pytest.raises(ValueError, match="is channels_first: WinogradConv2D takes channels_last"):
        WinogradConv2D.from_conv2d(first)
    grouped = keras.layers.Conv2D(4, 3, groups=2, kernel_initializer="zeros")
    grouped.build((None, 9, 9, 4))
    with pytest.raises(ValueError, match="has groups=2"):
        WinogradConv2D.from_conv2d(grouped)


def test_input_rank_and_channels_are_checked():
    # Were a pad or unpack error, a dot_general error, and a symbolic call on 5 channels that built a model.
    fast = WinogradConv2D.from_conv2d(_conv(3, 4))
    with pytest.raises(ValueError, match="expected ndim=4, found ndim=3"):
        fast(np.zeros((9, 9, 3), np.float32))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 3"):
        fast(np.zeros((1, 9, 9, 5), np.float32))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 3"):
        fast(keras.Input((9, 9, 5)))
    with pytest.raises(ValueError, match="expected ndim=4, found ndim=5"):
        WinogradConv2D(4)(keras.Input((2, 9, 9, 3)))
