"""Caffe deploy prototxt + caffemodel -> exact Keras 3 models, without Caffe or protoc.

    from converters import caffe
    net = caffe.load("deploy.prototxt", "weights.caffemodel")  # parsed, upgraded, shape-inferred IR
    model = caffe.to_keras(net, input_shape=(225, 231))       # any supported graph -> keras.Model
    caffe.port(net, zoo_model)                                 # fill a zoo builder's layers by name
"""

from converters.caffe.errors import (  # noqa: F401
    CaffeError,
    CaffeFormatError,
    GraphError,
    UnsupportedLayerError,
    WeightsMismatchError,
)
from converters.caffe.graph import Layer, Net  # noqa: F401
from converters.caffe.reader import load  # noqa: F401
from converters.caffe.keras import LAYER_HANDLERS, to_keras  # noqa: F401
from converters.caffe.port import port  # noqa: F401
