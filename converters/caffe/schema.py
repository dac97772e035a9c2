"""Caffe's protobuf schema, built at run time with protobuf's descriptor API (no protoc, no .proto files).

Two independent descriptor pools, because forks reuse field numbers with other meanings:

* ``TEXT`` (package ``caffe``) parses deploy prototxts. It holds every BVLC field at its BVLC number plus
  the fork fields found in real deploy files: PSPNet/DeepLab ``bn_param`` (``BNParameter``, number 152 as
  in hszhao/PSPNet), ``interp_param`` (``InterpParameter``; 143 in the fork, but 143 is BVLC's
  ``input_param``, so it sits at 10143 here: text parsing only uses names), ``BatchNormParameter.
  update_global_stats``, OpenCV's ``PoolingParameter.ceil_mode`` (13 in OpenCV, BVLC's ``round_mode``
  there, so 1013 here) and DeepLab v1's / hszhao/PSPNet 88d0b3's ``ConvolutionParameter.hole``, ``hole_h``,
  ``hole_w`` (17-19 there, BVLC's ``force_nd_im2col`` and ``dilation``, so 1017-1019 here). The reader folds
  ``ceil_mode`` into ``round_mode`` and ``hole`` into ``dilation``.
* ``BVLC`` (package ``caffe_bvlc``) has exactly BVLC caffe.proto's numbering; binary caffemodels are read
  through its small ``*BlobsView`` messages (name, type and blobs only), so no fork field can break a parse.
  The full messages let tests write caffemodels that OpenCV's importer reads.

Field numbers follow BVLC/caffe ``src/caffe/proto/caffe.proto``.
"""

from __future__ import annotations

from types import SimpleNamespace

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["TEXT", "BVLC", "ROUND_CEIL", "ROUND_FLOOR", "V1_TYPE_NAMES", "V0_TYPE_NAMES"]

ROUND_CEIL, ROUND_FLOOR = 0, 1  # PoolingParameter.RoundMode

# Message specs: name -> (fields, enums). A field is (type, name, number[, default]); the type is a
# scalar, "repeated <t>", "packed <t>" (repeated, packed on the wire), an enum of the message or a
# top-level enum, or a message name. Enums: name -> [(value_name, number), ...].
_ENGINE = [("DEFAULT", 0), ("CAFFE", 1), ("CUDNN", 2)]
_POOL_METHOD = [("MAX", 0), ("AVE", 1), ("STOCHASTIC", 2)]
_TOP_ENUMS = {"Phase": [("TRAIN", 0), ("TEST", 1)]}

_MESSAGES = {
    "BlobShape": ([("packed int64", "dim", 1)], {}),
    "BlobProto": ([
        ("BlobShape", "shape", 7), ("packed float", "data", 5), ("packed float", "diff", 6),
        ("packed double", "double_data", 8), ("packed double", "double_diff", 9),
        ("int32", "num", 1, 0), ("int32", "channels", 2, 0), ("int32", "height", 3, 0),
        ("int32", "width", 4, 0),
    ], {}),
    "FillerParameter": ([
        ("string", "type", 1, "constant"), ("float", "value", 2, 0.0), ("float", "min", 3, 0.0),
        ("float", "max", 4, 1.0), ("float", "mean", 5, 0.0), ("float", "std", 6, 1.0),
        ("int32", "sparse", 7, -1), ("VarianceNorm", "variance_norm", 8, "FAN_IN"),
    ], {"VarianceNorm": [("FAN_IN", 0), ("FAN_OUT", 1), ("AVERAGE", 2)]}),
    "NetParameter": ([
        ("string", "name", 1), ("repeated string", "input", 3), ("repeated BlobShape", "input_shape", 8),
        ("repeated int32", "input_dim", 4), ("bool", "force_backward", 5, False),
        ("NetState", "state", 6), ("bool", "debug_info", 7, False),
        ("repeated LayerParameter", "layer", 100), ("repeated V1LayerParameter", "layers", 2),
    ], {}),
    "NetState": ([("Phase", "phase", 1, "TEST"), ("int32", "level", 2, 0), ("repeated string", "stage", 3)], {}),
    "NetStateRule": ([
        ("Phase", "phase", 1), ("int32", "min_level", 2), ("int32", "max_level", 3),
        ("repeated string", "stage", 4), ("repeated string", "not_stage", 5),
    ], {}),
    "ParamSpec": ([
        ("string", "name", 1), ("DimCheckMode", "share_mode", 2), ("float", "lr_mult", 3, 1.0),
        ("float", "decay_mult", 4, 1.0),
    ], {"DimCheckMode": [("STRICT", 0), ("PERMISSIVE", 1)]}),
    "LayerParameter": ([
        ("string", "name", 1), ("string", "type", 2), ("repeated string", "bottom", 3),
        ("repeated string", "top", 4), ("Phase", "phase", 10), ("repeated float", "loss_weight", 5),
        ("repeated ParamSpec", "param", 6), ("repeated BlobProto", "blobs", 7),
        ("repeated bool", "propagate_down", 11), ("repeated NetStateRule", "include", 8),
        ("repeated NetStateRule", "exclude", 9),
        ("TransformationParameter", "transform_param", 100), ("LossParameter", "loss_param", 101),
        ("AccuracyParameter", "accuracy_param", 102), ("ArgMaxParameter", "argmax_param", 103),
        ("BatchNormParameter", "batch_norm_param", 139), ("BiasParameter", "bias_param", 141),
        ("ClipParameter", "clip_param", 148), ("ConcatParameter", "concat_param", 104),
        ("ContrastiveLossParameter", "contrastive_loss_param", 105),
        ("ConvolutionParameter", "convolution_param", 106), ("CropParameter", "crop_param", 144),
        ("DataParameter", "data_param", 107), ("DropoutParameter", "dropout_param", 108),
        ("DummyDataParameter", "dummy_data_param", 109), ("EltwiseParameter", "eltwise_param", 110),
        ("ELUParameter", "elu_param", 140), ("EmbedParameter", "embed_param", 137),
        ("ExpParameter", "exp_param", 111), ("FlattenParameter", "flatten_param", 135),
        ("HDF5DataParameter", "hdf5_data_param", 112), ("HDF5OutputParameter", "hdf5_output_param", 113),
        ("HingeLossParameter", "hinge_loss_param", 114), ("ImageDataParameter", "image_data_param", 115),
        ("InfogainLossParameter", "infogain_loss_param", 116),
        ("InnerProductParameter", "inner_product_param", 117), ("InputParameter", "input_param", 143),
        ("LogParameter", "log_param", 134), ("LRNParameter", "lrn_param", 118),
        ("MemoryDataParameter", "memory_data_param", 119), ("MVNParameter", "mvn_param", 120),
        ("ParameterParameter", "parameter_param", 145), ("PoolingParameter", "pooling_param", 121),
        ("PowerParameter", "power_param", 122), ("PReLUParameter", "prelu_param", 131),
        ("PythonParameter", "python_param", 130), ("RecurrentParameter", "recurrent_param", 146),
        ("ReductionParameter", "reduction_param", 136), ("ReLUParameter", "relu_param", 123),
        ("ReshapeParameter", "reshape_param", 133), ("ScaleParameter", "scale_param", 142),
        ("SigmoidParameter", "sigmoid_param", 124), ("SoftmaxParameter", "softmax_param", 125),
        ("SPPParameter", "spp_param", 132), ("SliceParameter", "slice_param", 126),
        ("SwishParameter", "swish_param", 147), ("TanHParameter", "tanh_param", 127),
        ("ThresholdParameter", "threshold_param", 128), ("TileParameter", "tile_param", 138),
        ("WindowDataParameter", "window_data_param", 129),
    ], {}),
    "TransformationParameter": ([
        ("float", "scale", 1, 1.0), ("bool", "mirror", 2, False), ("uint32", "crop_size", 3, 0),
        ("string", "mean_file", 4), ("repeated float", "mean_value", 5), ("bool", "force_color", 6, False),
        ("bool", "force_gray", 7, False),
    ], {}),
    "LossParameter": ([
        ("int32", "ignore_label", 1), ("NormalizationMode", "normalization", 3, "VALID"),
        ("bool", "normalize", 2),
    ], {"NormalizationMode": [("FULL", 0), ("VALID", 1), ("BATCH_SIZE", 2), ("NONE", 3)]}),
    "AccuracyParameter": ([("uint32", "top_k", 1, 1), ("int32", "axis", 2, 1), ("int32", "ignore_label", 3)], {}),
    "ArgMaxParameter": ([("bool", "out_max_val", 1, False), ("uint32", "top_k", 2, 1), ("int32", "axis", 3)], {}),
    "BatchNormParameter": ([
        ("bool", "use_global_stats", 1), ("float", "moving_average_fraction", 2, 0.999),
        ("float", "eps", 3, 1e-5),
    ], {}),
    "BiasParameter": ([("int32", "axis", 1, 1), ("int32", "num_axes", 2, 1), ("FillerParameter", "filler", 3)], {}),
    "ClipParameter": ([("float", "min", 1), ("float", "max", 2)], {}),
    "ConcatParameter": ([("int32", "axis", 2, 1), ("uint32", "concat_dim", 1, 1)], {}),
    "ContrastiveLossParameter": ([("float", "margin", 1, 1.0), ("bool", "legacy_version", 2, False)], {}),
    "ConvolutionParameter": ([
        ("uint32", "num_output", 1), ("bool", "bias_term", 2, True), ("repeated uint32", "pad", 3),
        ("repeated uint32", "kernel_size", 4), ("repeated uint32", "stride", 6),
        ("repeated uint32", "dilation", 18), ("uint32", "pad_h", 9, 0), ("uint32", "pad_w", 10, 0),
        ("uint32", "kernel_h", 11), ("uint32", "kernel_w", 12), ("uint32", "stride_h", 13),
        ("uint32", "stride_w", 14), ("uint32", "group", 5, 1), ("FillerParameter", "weight_filler", 7),
        ("FillerParameter", "bias_filler", 8), ("Engine", "engine", 15, "DEFAULT"),
        ("int32", "axis", 16, 1), ("bool", "force_nd_im2col", 17, False),
    ], {"Engine": _ENGINE}),
    "CropParameter": ([("int32", "axis", 1, 2), ("repeated uint32", "offset", 2)], {}),
    "DataParameter": ([
        ("string", "source", 1), ("uint32", "batch_size", 4), ("uint32", "rand_skip", 7, 0),
        ("DB", "backend", 8, "LEVELDB"), ("float", "scale", 2, 1.0), ("string", "mean_file", 3),
        ("uint32", "crop_size", 5, 0), ("bool", "mirror", 6, False),
        ("bool", "force_encoded_color", 9, False), ("uint32", "prefetch", 10, 4),
    ], {"DB": [("LEVELDB", 0), ("LMDB", 1)]}),
    "DropoutParameter": ([("float", "dropout_ratio", 1, 0.5)], {}),
    "DummyDataParameter": ([
        ("repeated FillerParameter", "data_filler", 1), ("repeated BlobShape", "shape", 6),
        ("repeated uint32", "num", 2), ("repeated uint32", "channels", 3),
        ("repeated uint32", "height", 4), ("repeated uint32", "width", 5),
    ], {}),
    "EltwiseParameter": ([
        ("EltwiseOp", "operation", 1, "SUM"), ("repeated float", "coeff", 2),
        ("bool", "stable_prod_grad", 3, True),
    ], {"EltwiseOp": [("PROD", 0), ("SUM", 1), ("MAX", 2)]}),
    "ELUParameter": ([("float", "alpha", 1, 1.0)], {}),
    "EmbedParameter": ([
        ("uint32", "num_output", 1), ("uint32", "input_dim", 2), ("bool", "bias_term", 3, True),
        ("FillerParameter", "weight_filler", 4), ("FillerParameter", "bias_filler", 5),
    ], {}),
    "ExpParameter": ([("float", "base", 1, -1.0), ("float", "scale", 2, 1.0), ("float", "shift", 3, 0.0)], {}),
    "FlattenParameter": ([("int32", "axis", 1, 1), ("int32", "end_axis", 2, -1)], {}),
    "HDF5DataParameter": ([("string", "source", 1), ("uint32", "batch_size", 2), ("bool", "shuffle", 3, False)], {}),
    "HDF5OutputParameter": ([("string", "file_name", 1)], {}),
    "HingeLossParameter": ([("Norm", "norm", 1, "L1")], {"Norm": [("L1", 1), ("L2", 2)]}),
    "ImageDataParameter": ([
        ("string", "source", 1), ("uint32", "batch_size", 4, 1), ("uint32", "rand_skip", 7, 0),
        ("bool", "shuffle", 8, False), ("uint32", "new_height", 9, 0), ("uint32", "new_width", 10, 0),
        ("bool", "is_color", 11, True), ("float", "scale", 2, 1.0), ("string", "mean_file", 3),
        ("uint32", "crop_size", 5, 0), ("bool", "mirror", 6, False), ("string", "root_folder", 12, ""),
    ], {}),
    "InfogainLossParameter": ([("string", "source", 1), ("int32", "axis", 2, 1)], {}),
    "InnerProductParameter": ([
        ("uint32", "num_output", 1), ("bool", "bias_term", 2, True),
        ("FillerParameter", "weight_filler", 3), ("FillerParameter", "bias_filler", 4),
        ("int32", "axis", 5, 1), ("bool", "transpose", 6, False),
    ], {}),
    "InputParameter": ([("repeated BlobShape", "shape", 1)], {}),
    "LogParameter": ([("float", "base", 1, -1.0), ("float", "scale", 2, 1.0), ("float", "shift", 3, 0.0)], {}),
    "LRNParameter": ([
        ("uint32", "local_size", 1, 5), ("float", "alpha", 2, 1.0), ("float", "beta", 3, 0.75),
        ("NormRegion", "norm_region", 4, "ACROSS_CHANNELS"), ("float", "k", 5, 1.0),
        ("Engine", "engine", 6, "DEFAULT"),
    ], {"NormRegion": [("ACROSS_CHANNELS", 0), ("WITHIN_CHANNEL", 1)], "Engine": _ENGINE}),
    "MemoryDataParameter": ([
        ("uint32", "batch_size", 1), ("uint32", "channels", 2), ("uint32", "height", 3), ("uint32", "width", 4),
    ], {}),
    "MVNParameter": ([
        ("bool", "normalize_variance", 1, True), ("bool", "across_channels", 2, False), ("float", "eps", 3, 1e-9),
    ], {}),
    "ParameterParameter": ([("BlobShape", "shape", 1)], {}),
    "PoolingParameter": ([
        ("PoolMethod", "pool", 1, "MAX"), ("uint32", "pad", 4, 0), ("uint32", "pad_h", 9, 0),
        ("uint32", "pad_w", 10, 0), ("uint32", "kernel_size", 2), ("uint32", "kernel_h", 5),
        ("uint32", "kernel_w", 6), ("uint32", "stride", 3, 1), ("uint32", "stride_h", 7),
        ("uint32", "stride_w", 8), ("Engine", "engine", 11, "DEFAULT"),
        ("bool", "global_pooling", 12, False), ("RoundMode", "round_mode", 13, "CEIL"),
    ], {"PoolMethod": _POOL_METHOD, "Engine": _ENGINE, "RoundMode": [("CEIL", 0), ("FLOOR", 1)]}),
    "PowerParameter": ([("float", "power", 1, 1.0), ("float", "scale", 2, 1.0), ("float", "shift", 3, 0.0)], {}),
    "PReLUParameter": ([("FillerParameter", "filler", 1), ("bool", "channel_shared", 2, False)], {}),
    "PythonParameter": ([
        ("string", "module", 1), ("string", "layer", 2), ("string", "param_str", 3, ""),
        ("bool", "share_in_parallel", 4, False),
    ], {}),
    "RecurrentParameter": ([
        ("uint32", "num_output", 1, 0), ("FillerParameter", "weight_filler", 2),
        ("FillerParameter", "bias_filler", 3), ("bool", "debug_info", 4, False),
        ("bool", "expose_hidden", 5, False),
    ], {}),
    "ReductionParameter": ([
        ("ReductionOp", "operation", 1, "SUM"), ("int32", "axis", 2, 0), ("float", "coeff", 3, 1.0),
    ], {"ReductionOp": [("SUM", 1), ("ASUM", 2), ("SUMSQ", 3), ("MEAN", 4)]}),
    "ReLUParameter": ([("float", "negative_slope", 1, 0.0), ("Engine", "engine", 2, "DEFAULT")], {"Engine": _ENGINE}),
    "ReshapeParameter": ([("BlobShape", "shape", 1), ("int32", "axis", 2, 0), ("int32", "num_axes", 3, -1)], {}),
    "ScaleParameter": ([
        ("int32", "axis", 1, 1), ("int32", "num_axes", 2, 1), ("FillerParameter", "filler", 3),
        ("bool", "bias_term", 4, False), ("FillerParameter", "bias_filler", 5),
    ], {}),
    "SigmoidParameter": ([("Engine", "engine", 1, "DEFAULT")], {"Engine": _ENGINE}),
    "SoftmaxParameter": ([("Engine", "engine", 1, "DEFAULT"), ("int32", "axis", 2, 1)], {"Engine": _ENGINE}),
    "SPPParameter": ([
        ("uint32", "pyramid_height", 1), ("PoolMethod", "pool", 2, "MAX"), ("Engine", "engine", 6, "DEFAULT"),
    ], {"PoolMethod": _POOL_METHOD, "Engine": _ENGINE}),
    "SliceParameter": ([
        ("int32", "axis", 3, 1), ("repeated uint32", "slice_point", 2), ("uint32", "slice_dim", 1, 1),
    ], {}),
    "SwishParameter": ([("float", "beta", 1, 1.0)], {}),
    "TanHParameter": ([("Engine", "engine", 1, "DEFAULT")], {"Engine": _ENGINE}),
    "ThresholdParameter": ([("float", "threshold", 1, 0.0)], {}),
    "TileParameter": ([("int32", "axis", 1, 1), ("int32", "tiles", 2)], {}),
    "WindowDataParameter": ([
        ("string", "source", 1), ("float", "scale", 2, 1.0), ("string", "mean_file", 3),
        ("uint32", "batch_size", 4), ("uint32", "crop_size", 5, 0), ("bool", "mirror", 6, False),
        ("float", "fg_threshold", 7, 0.5), ("float", "bg_threshold", 8, 0.5), ("float", "fg_fraction", 9, 0.25),
        ("uint32", "context_pad", 10, 0), ("string", "crop_mode", 11, "warp"),
        ("bool", "cache_images", 12, False), ("string", "root_folder", 13, ""),
    ], {}),
    "V1LayerParameter": ([
        ("repeated string", "bottom", 2), ("repeated string", "top", 3), ("string", "name", 4),
        ("repeated NetStateRule", "include", 32), ("repeated NetStateRule", "exclude", 33),
        ("LayerType", "type", 5), ("repeated BlobProto", "blobs", 6), ("repeated string", "param", 1001),
        ("repeated DimCheckMode", "blob_share_mode", 1002), ("repeated float", "blobs_lr", 7),
        ("repeated float", "weight_decay", 8), ("repeated float", "loss_weight", 35),
        ("AccuracyParameter", "accuracy_param", 27), ("ArgMaxParameter", "argmax_param", 23),
        ("ConcatParameter", "concat_param", 9), ("ContrastiveLossParameter", "contrastive_loss_param", 40),
        ("ConvolutionParameter", "convolution_param", 10), ("DataParameter", "data_param", 11),
        ("DropoutParameter", "dropout_param", 12), ("DummyDataParameter", "dummy_data_param", 26),
        ("EltwiseParameter", "eltwise_param", 24), ("ExpParameter", "exp_param", 41),
        ("HDF5DataParameter", "hdf5_data_param", 13), ("HDF5OutputParameter", "hdf5_output_param", 14),
        ("HingeLossParameter", "hinge_loss_param", 29), ("ImageDataParameter", "image_data_param", 15),
        ("InfogainLossParameter", "infogain_loss_param", 16),
        ("InnerProductParameter", "inner_product_param", 17), ("LRNParameter", "lrn_param", 18),
        ("MemoryDataParameter", "memory_data_param", 22), ("MVNParameter", "mvn_param", 34),
        ("PoolingParameter", "pooling_param", 19), ("PowerParameter", "power_param", 21),
        ("ReLUParameter", "relu_param", 30), ("SigmoidParameter", "sigmoid_param", 38),
        ("SoftmaxParameter", "softmax_param", 39), ("SliceParameter", "slice_param", 31),
        ("TanHParameter", "tanh_param", 37), ("ThresholdParameter", "threshold_param", 25),
        ("WindowDataParameter", "window_data_param", 20),
        ("TransformationParameter", "transform_param", 36), ("LossParameter", "loss_param", 42),
        ("V0LayerParameter", "layer", 1),
    ], {"LayerType": [
        ("NONE", 0), ("ABSVAL", 35), ("ACCURACY", 1), ("ARGMAX", 30), ("BNLL", 2), ("CONCAT", 3),
        ("CONTRASTIVE_LOSS", 37), ("CONVOLUTION", 4), ("DATA", 5), ("DECONVOLUTION", 39), ("DROPOUT", 6),
        ("DUMMY_DATA", 32), ("EUCLIDEAN_LOSS", 7), ("ELTWISE", 25), ("EXP", 38), ("FLATTEN", 8),
        ("HDF5_DATA", 9), ("HDF5_OUTPUT", 10), ("HINGE_LOSS", 28), ("IM2COL", 11), ("IMAGE_DATA", 12),
        ("INFOGAIN_LOSS", 13), ("INNER_PRODUCT", 14), ("LRN", 15), ("MEMORY_DATA", 29),
        ("MULTINOMIAL_LOGISTIC_LOSS", 16), ("MVN", 34), ("POOLING", 17), ("POWER", 26), ("RELU", 18),
        ("SIGMOID", 19), ("SIGMOID_CROSS_ENTROPY_LOSS", 27), ("SILENCE", 36), ("SOFTMAX", 20),
        ("SOFTMAX_LOSS", 21), ("SPLIT", 22), ("SLICE", 33), ("TANH", 23), ("WINDOW_DATA", 24),
        ("THRESHOLD", 31),
    ], "DimCheckMode": [("STRICT", 0), ("PERMISSIVE", 1)]}),
    "V0LayerParameter": ([
        ("string", "name", 1), ("string", "type", 2), ("uint32", "num_output", 3), ("bool", "biasterm", 4, True),
        ("FillerParameter", "weight_filler", 5), ("FillerParameter", "bias_filler", 6), ("uint32", "pad", 7, 0),
        ("uint32", "kernelsize", 8), ("uint32", "group", 9, 1), ("uint32", "stride", 10, 1),
        ("PoolMethod", "pool", 11, "MAX"), ("float", "dropout_ratio", 12, 0.5), ("uint32", "local_size", 13, 5),
        ("float", "alpha", 14, 1.0), ("float", "beta", 15, 0.75), ("float", "k", 22, 1.0),
        ("string", "source", 16), ("float", "scale", 17, 1.0), ("string", "meanfile", 18),
        ("uint32", "batchsize", 19), ("uint32", "cropsize", 20, 0), ("bool", "mirror", 21, False),
        ("repeated BlobProto", "blobs", 50), ("repeated float", "blobs_lr", 51),
        ("repeated float", "weight_decay", 52), ("uint32", "rand_skip", 53, 0),
        ("float", "det_fg_threshold", 54, 0.5), ("float", "det_bg_threshold", 55, 0.5),
        ("float", "det_fg_fraction", 56, 0.25), ("uint32", "det_context_pad", 58, 0),
        ("string", "det_crop_mode", 59, "warp"), ("int32", "new_num", 60, 0), ("int32", "new_channels", 61, 0),
        ("int32", "new_height", 62, 0), ("int32", "new_width", 63, 0), ("bool", "shuffle_images", 64, False),
        ("uint32", "concat_dim", 65, 1), ("HDF5OutputParameter", "hdf5_output_param", 1001),
    ], {"PoolMethod": _POOL_METHOD}),
}

# Fork fields, TEXT schema only (see module doc for the numbers).
_TEXT_EXTRA_FIELDS = {
    "LayerParameter": [("BNParameter", "bn_param", 152), ("InterpParameter", "interp_param", 10143)],
    "BatchNormParameter": [("bool", "update_global_stats", 4, False)],
    "PoolingParameter": [("bool", "ceil_mode", 1013, True)],
    "ConvolutionParameter": [("uint32", "hole", 1017, 1), ("uint32", "hole_h", 1018, 1), ("uint32", "hole_w", 1019, 1)],
}
_TEXT_EXTRA_MESSAGES = {
    "BNParameter": ([  # yjxiong/caffe, hszhao/PSPNet master
        ("FillerParameter", "slope_filler", 1), ("FillerParameter", "bias_filler", 2),
        ("float", "momentum", 3, 0.9), ("float", "eps", 4, 1e-5), ("bool", "frozen", 5, False),
        ("Engine", "engine", 6, "DEFAULT"),
        # hszhao/PSPNet's earlier BNParameter (commit 88d0b3's deploy files use these names; text parsing goes
        # by name, so the numbers here only need to be unique): var_eps default 1e-10, statistics used only
        # with moving_average: true (bn_layer.cpp).
        ("FillerParameter", "scale_filler", 101), ("FillerParameter", "shift_filler", 102),
        ("float", "var_eps", 103, 1e-10), ("bool", "moving_average", 104, False),
        ("float", "decay", 105, 0.05), ("int32", "axis", 106, 1),
    ], {"Engine": _ENGINE}),
    "InterpParameter": ([  # hszhao/PSPNet, DeepLab-v2
        ("int32", "height", 1, 0), ("int32", "width", 2, 0), ("int32", "zoom_factor", 3, 1),
        ("int32", "shrink_factor", 4, 1), ("int32", "pad_beg", 5, 0), ("int32", "pad_end", 6, 0),
        ("string", "interp_type", 7, "bilinear"),
    ], {}),
}
# Binary views: only what a caffemodel contributes (names, types, blobs). V1 ``type`` is read as a plain
# int32 so that fork enum values stay readable.
# Binary views: only what a caffemodel contributes (names, types, blobs); every other field (fork params
# included) is skipped as unknown. V1 ``type`` is a plain int32 so that fork enum values stay readable.
_BVLC_EXTRA_MESSAGES = {
    "LayerBlobsView": ([("string", "name", 1), ("string", "type", 2), ("repeated BlobProto", "blobs", 7)], {}),
    "V1LayerBlobsView": ([
        ("string", "name", 4), ("int32", "type", 5), ("repeated BlobProto", "blobs", 6),
        ("V0LayerBlobsView", "layer", 1),
    ], {}),
    "V0LayerBlobsView": ([("string", "name", 1), ("string", "type", 2), ("repeated BlobProto", "blobs", 50)], {}),
}

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _FDP.TYPE_DOUBLE, "float": _FDP.TYPE_FLOAT, "int64": _FDP.TYPE_INT64,
    "uint64": _FDP.TYPE_UINT64, "int32": _FDP.TYPE_INT32, "uint32": _FDP.TYPE_UINT32,
    "bool": _FDP.TYPE_BOOL, "string": _FDP.TYPE_STRING, "bytes": _FDP.TYPE_BYTES,
}


def _default_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _build(package, messages, extra_fields):
    """FileDescriptorProto for ``messages`` -> (pool, {name: message class})."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name=f"kerazoo/{package}.proto", package=package, syntax="proto2"
    )
    for enum_name, values in _TOP_ENUMS.items():
        e = fdp.enum_type.add(name=enum_name)
        for vname, num in values:
            e.value.add(name=vname, number=num)
    for msg_name, (fields, enums) in messages.items():
        m = fdp.message_type.add(name=msg_name)
        for enum_name, values in enums.items():
            e = m.enum_type.add(name=enum_name)
            for vname, num in values:
                e.value.add(name=vname, number=num)
        for spec in list(fields) + extra_fields.get(msg_name, []):
            type_str, name, number = spec[:3]
            label, packed = _FDP.LABEL_OPTIONAL, False
            if " " in type_str:
                mode, type_str = type_str.split(" ")
                label, packed = _FDP.LABEL_REPEATED, mode == "packed"
            f = m.field.add(name=name, number=number, label=label)
            if type_str in _SCALARS:
                f.type = _SCALARS[type_str]
            elif type_str in enums:
                f.type, f.type_name = _FDP.TYPE_ENUM, f".{package}.{msg_name}.{type_str}"
            elif type_str in _TOP_ENUMS:
                f.type, f.type_name = _FDP.TYPE_ENUM, f".{package}.{type_str}"
            else:
                f.type, f.type_name = _FDP.TYPE_MESSAGE, f".{package}.{type_str}"
            if packed:
                f.options.packed = True
            if len(spec) > 3:
                f.default_value = _default_text(spec[3])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    classes = {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in messages
    }
    return pool, classes


def _namespace(package, messages, extra_fields):
    pool, classes = _build(package, messages, extra_fields)
    return SimpleNamespace(pool=pool, package=package, **classes)


#: Message classes for prototxt text (BVLC + fork fields), e.g. ``TEXT.NetParameter``.
TEXT = _namespace("caffe", {**_MESSAGES, **_TEXT_EXTRA_MESSAGES}, _TEXT_EXTRA_FIELDS)
#: Message classes with BVLC's exact numbering, e.g. ``BVLC.NetParameter``, plus the blob views.
BVLC = _namespace("caffe_bvlc", {**_MESSAGES, **_BVLC_EXTRA_MESSAGES}, {})

#: V1 enum value -> V2 type string (Caffe's ``UpgradeV1LayerType``).
V1_TYPE_NAMES = {
    0: "", 35: "AbsVal", 1: "Accuracy", 30: "ArgMax", 2: "BNLL", 3: "Concat", 37: "ContrastiveLoss",
    4: "Convolution", 39: "Deconvolution", 5: "Data", 6: "Dropout", 32: "DummyData", 7: "EuclideanLoss",
    25: "Eltwise", 38: "Exp", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 28: "HingeLoss", 11: "Im2col",
    12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 29: "MemoryData",
    16: "MultinomialLogisticLoss", 34: "MVN", 17: "Pooling", 26: "Power", 18: "ReLU", 19: "Sigmoid",
    27: "SigmoidCrossEntropyLoss", 36: "Silence", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split",
    33: "Slice", 23: "TanH", 24: "WindowData", 31: "Threshold",
}

#: V0 type string -> V2 type string (Caffe's ``UpgradeV0LayerType`` then ``UpgradeV1LayerType``).
V0_TYPE_NAMES = {
    "accuracy": "Accuracy", "bnll": "BNLL", "concat": "Concat", "conv": "Convolution", "data": "Data",
    "dropout": "Dropout", "euclidean_loss": "EuclideanLoss", "flatten": "Flatten", "hdf5_data": "HDF5Data",
    "hdf5_output": "HDF5Output", "im2col": "Im2col", "images": "ImageData", "infogain_loss": "InfogainLoss",
    "innerproduct": "InnerProduct", "lrn": "LRN", "multinomial_logistic_loss": "MultinomialLogisticLoss",
    "pool": "Pooling", "relu": "ReLU", "sigmoid": "Sigmoid", "softmax": "Softmax",
    "softmax_loss": "SoftmaxWithLoss", "split": "Split", "tanh": "TanH", "window_data": "WindowData",
}
