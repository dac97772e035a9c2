"""converters.caffe builds weights with numpy zeros/ones on JAX (no XLA compile per shape), configs unchanged."""

import keras
import numpy as np
import pytest

from converters.caffe.context import host_constant_initializers
from converters.caffe.keras import to_keras
from converters.caffe.reader import loads
from tests.caffe_files import caffemodel_bytes, random_blobs_for

pytestmark = pytest.mark.backend_agnostic

NET = """input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
"""


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
