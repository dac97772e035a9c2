"""kerazoo: Keras 3 models for pose estimation and segmentation, exact to their Caffe originals.

    import zoo
    zoo.list_models("resnet*")
    model = zoo.get("hourglass", stacks=2, num_keypoints=16, input_shape=(256, 256, 3))
"""

from zoo import layers  # noqa: F401  (registers the serializable layers)
from zoo.api import get, load_keras_model, preprocess, register_weights_loader, weights_record
from zoo.errors import InputShapeError, WeightsFileError, WeightsMismatchError, ZooError
from zoo.registry import ModelSpec, get_spec, info, list_models, register, register_weights
from zoo.records import WeightsRecord
from zoo.weights import load_weights, read_record, save_weights
from zoo.saving import save_model
from zoo.tensorflow_probe import set_random_seed
from zoo import models  # noqa: F401,E402  (registers the builders)
from zoo.models.cpm import cpm_center_map  # noqa: E402
from zoo import releases  # noqa: F401,E402  (registers the original releases as weights tags)
from zoo.winograd import optimize_for_inference  # noqa: E402  (also registers WinogradConv2D)
from zoo import export  # noqa: F401,E402  (zoo.export.export: SavedModel / LiteRT artifacts)

__all__ = [
    "get", "list_models", "info", "register", "register_weights", "get_spec", "ModelSpec",
    "preprocess", "weights_record", "register_weights_loader", "load_keras_model",
    "WeightsRecord", "save_weights", "load_weights", "read_record", "save_model",
    "ZooError", "WeightsFileError", "WeightsMismatchError", "InputShapeError",
    "cpm_center_map", "layers", "optimize_for_inference", "set_random_seed",
]
