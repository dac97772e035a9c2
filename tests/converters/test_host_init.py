"""converters.caffe builds weights on the host: numpy zeros/ones on JAX (no XLA compile per shape), configs
unchanged, kernels transposed tile by tile into aligned arrays the conversion owns."""

import keras
import numpy as np
import pytest

from converters.caffe.context import host_constant_initializers
from converters.caffe.keras import to_keras
from converters.caffe.reader import loads
from tests.caffe_files import caffemodel_bytes, random_blobs_for

# The blob-reordering and signature-cache tests are NumPy/inspect only (nothing a Keras backend computes) and run in
# ./dev test's TensorFlow pass alone; those that convert a net are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic

NET = """input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
"""


@agnostic
def test_conversion_keeps_zeros_initializers_and_restores_them():
    calls = {cls: cls.__dict__["__call__"] for cls in (keras.initializers.Zeros, keras.initializers.Ones)}
    blobs = random_blobs_for(NET, np.random.default_rng(0))
    model = to_keras(loads(NET, caffemodel_bytes(NET, blobs)))
    conv, bn = model.get_layer("conv"), model.get_layer("bn")
    assert type(conv.kernel_initializer) is keras.initializers.Zeros
    assert keras.saving.serialize_keras_object(bn.gamma_initializer)["class_name"] == "Ones"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(conv.kernel),
                                  blobs["conv"][0].transpose(2, 3, 1, 0))  # blobs, not zeros
    assert all(cls.__dict__["__call__"] is call for cls, call in calls.items())  # patched only while converting
    with host_constant_initializers():
        assert (keras.initializers.Zeros.__dict__["__call__"] is calls[keras.initializers.Zeros]) == \
            (keras.backend.backend() != "jax")
        z, o = keras.initializers.Zeros()((2, 3), "float32"), keras.initializers.Ones()((3,), "float32")
        np.testing.assert_array_equal(np.asarray(z), np.zeros((2, 3)))
        np.testing.assert_array_equal(np.asarray(o), np.ones(3))
    assert all(cls.__dict__["__call__"] is call for cls, call in calls.items())


@pytest.mark.parametrize("shape", [(130, 70, 3, 3), (64, 64, 1, 1), (3, 200, 5, 7), (1, 1, 1, 1), (2048, 65, 1, 1),
                                   (17, 2100, 1, 1), (40, 300, 3, 3)])  # partial tiles along both axes
def test_conv_kernel_tiles_equal_numpy_transpose(shape):
    from converters.caffe import blobs as B

    w = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    for src in (w, np.asfortranarray(w), w.astype(np.float64)):  # any layout and dtype of blob
        k = B.conv_kernel(src)
        np.testing.assert_array_equal(k, w.transpose(2, 3, 1, 0).astype(np.float32))
        assert k.dtype == np.float32 and k.flags.c_contiguous and k.ctypes.data % 64 == 0
        assert not np.shares_memory(k, src)


@pytest.mark.parametrize("n, chw", [(70, (130, 3, 5)), (5, (1, 1, 1)), (130, (3, 1, 1)), (2, (65, 2, 1)), (3, None)])
@pytest.mark.parametrize("transpose", [False, True])
def test_dense_kernel_equals_numpy_reorder(n, chw, transpose):
    """Caffe flattens (C, H, W), Keras (H, W, C): kernel row (h, w, c) is Caffe's column (c, h, w)."""
    from converters.caffe import blobs as B

    c, h, w = chw or (17, 1, 1)
    caffe = np.random.default_rng(3).standard_normal((n, c, h, w)).astype(np.float32)  # (N, C, H, W)
    expected = caffe.transpose(2, 3, 1, 0).reshape(h * w * c, n)
    stored = caffe.reshape(n, -1).T.copy() if transpose else caffe.reshape(n, -1)  # (K, N) or (N, K)
    four_d = stored.reshape(c, h, w, n) if transpose else caffe  # some files keep the bottom's axes
    for src in (stored, np.asfortranarray(stored), four_d):
        k = B.dense_kernel(src, transpose=transpose, chw=chw)
        np.testing.assert_array_equal(k, expected)
        assert k.dtype == np.float32 and k.flags.c_contiguous and k.ctypes.data % 64 == 0
        assert not np.shares_memory(k, src)
    with pytest.raises(B.WeightsMismatchError, match=r"\(C, H, W\) = \(4, 5, 6\)"):
        B.dense_kernel(stored, transpose=transpose, chw=(4, 5, 6))


@agnostic
def test_converted_weights_never_share_memory_with_the_nets_blobs():
    """JAX on the CPU aliases aligned numpy arrays: a Net's blobs, edited later, must not edit the model."""
    from converters.caffe import blobs as B

    rng = np.random.default_rng(2)
    one = rng.standard_normal((1, 8, 1, 1)).astype(np.float32)  # transposes to a contiguous view
    assert not np.shares_memory(B.conv_kernel(one), one)
    v = rng.standard_normal(16).astype(np.float32)
    assert not np.shares_memory(B.vector(v), v)
    d = rng.standard_normal((4, 6)).astype(np.float32)
    assert not np.shares_memory(B.dense_kernel(d, transpose=True), d)
    assert not any(np.shares_memory(a, b) for a in B.psp_bn_weights([v, v, v, v]) for b in (v,))
    net = loads(NET, caffemodel_bytes(NET, random_blobs_for(NET, rng)))
    model = to_keras(net)
    kept = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    for layer in net.layers:  # PyTorch's tensors share a numpy array's memory; JAX's aligned ones too
        for blob in layer.blobs:
            blob[...] = 0.0
    for w, k in zip(model.weights, kept):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), k, err_msg=w.path)


@agnostic
def test_converted_model_trains_and_saves_with_weights_taken_without_copy(tmp_path):
    """JAX and TensorFlow variables keep the conversion's aligned arrays; they must stay trainable and
    independent of the Net, and save and load like any weights."""
    rng = np.random.default_rng(4)
    net = loads(NET, caffemodel_bytes(NET, random_blobs_for(NET, rng)))
    before = [b.copy() for layer in net.layers for b in layer.blobs]
    model = to_keras(net)
    start = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = rng.standard_normal((4, 8, 8, 3)).astype(np.float32)
    model.fit(x, np.zeros((4, 6, 6, 4), np.float32), epochs=2, verbose=0)
    moved = {w.path: not np.array_equal(keras.ops.convert_to_numpy(w), s) for w, s in zip(model.trainable_weights, start)}
    # conv/bias is trainable but gets no gradient: the BatchNormalization after it subtracts the batch mean in
    # training, which cancels it (it moved only by round-off, and a fresh-clone JAX run saw it not move at all)
    assert "conv/bias" in moved
    del moved["conv/bias"]
    assert all(moved.values()), [p for p, m in moved.items() if not m]
    after = [b for layer in net.layers for b in layer.blobs]
    assert all(np.array_equal(a, b) for a, b in zip(after, before))  # training wrote the model's own arrays
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again(x)), keras.ops.convert_to_numpy(model(x)))


@agnostic
@pytest.mark.parametrize("policy", ["bfloat16", "float16"])
def test_conversion_under_a_16_bit_policy_keeps_the_blobs_values(policy):
    """TensorFlow takes the arrays through DLPack, which has no bfloat16: such weights are converted as numpy."""
    from converters.caffe.blobs import aligned_empty

    blobs = random_blobs_for(NET, np.random.default_rng(5))
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = to_keras(loads(NET, caffemodel_bytes(NET, blobs)))
        import converters.caffe.context as C

        take = C._backend_array_taker()
        a = aligned_empty((64,), keras.backend.standardize_dtype(policy))  # aligned: the DLPack branch
        a[...] = 1.5
        np.testing.assert_array_equal(np.asarray(keras.ops.convert_to_numpy(take(a)), np.float32), 1.5)
    finally:
        keras.config.set_dtype_policy(before)
    kernel = model.get_layer("conv").kernel
    assert keras.backend.standardize_dtype(kernel.dtype) == policy
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(kernel, "float32")),
                                  blobs["conv"][0].transpose(2, 3, 1, 0).astype(policy).astype(np.float32))


def test_cached_signatures_equal_inspects_and_are_restored():
    """The signature cache that conversion puts in Keras' layer modules answers as ``inspect`` does."""
    import functools
    import inspect

    from converters.caffe.context import _CachedInspect, cached_signatures
    from keras.src.layers import layer as keras_layer_module
    from keras.src.ops import operation as keras_operation_module

    class Widget:
        def build(self, input_shape, *, extra=None):
            pass

    def plain(a, b=2, *args, c, **kwargs):
        pass

    w = Widget()

    @functools.wraps(w.build)
    def wrapper(*args, **kwargs):  # as Keras wraps each layer's build
        pass

    def overridden(x):
        pass

    overridden.__signature__ = inspect.Signature([inspect.Parameter("y", inspect.Parameter.POSITIONAL_ONLY)])
    cached = _CachedInspect()
    for obj in (plain, w.build, Widget.build, wrapper, overridden, functools.partial(plain, 1), Widget, len):
        for _ in range(2):  # computed, then from the cache
            assert cached.signature(obj) == inspect.signature(obj), obj
    for func in (plain, Widget.build, w.build, overridden):
        for _ in range(2):
            assert cached.getfullargspec(func) == inspect.getfullargspec(func), func
    assert str(cached.signature(wrapper)) == "(input_shape, *, extra=None)"  # bound: no self
    assert cached.Parameter is inspect.Parameter  # everything else is inspect's

    with cached_signatures():
        assert isinstance(keras_operation_module.inspect, _CachedInspect)
        assert isinstance(keras_layer_module.inspect, _CachedInspect)
        inside = keras.layers.BatchNormalization(axis=1, epsilon=1e-3, name="bn").get_config()
    assert keras_operation_module.inspect is inspect and keras_layer_module.inspect is inspect
    assert inside == keras.layers.BatchNormalization(axis=1, epsilon=1e-3, name="bn").get_config()
