"""V0 / V1 prototxt layers -> V2 ``LayerParameter`` (TEXT schema), following Caffe's ``upgrade_proto.cpp``.

V0 (``layers { layer { type: "conv" ... } bottom: ... }``): "padding" layers are folded into the pad of the
conv/pool that reads them (``UpgradeV0PaddingLayers``), inline params move to their ``*_param`` messages
(``UpgradeV0LayerParameter``), type strings map through ``UpgradeV0LayerType``. V1 (``layers { type:
CONVOLUTION ... }``): enum -> type string (``UpgradeV1LayerType``), ``*_param`` copied, ``blobs_lr`` /
``weight_decay`` / ``param`` -> ``ParamSpec``, and data-layer transform fields -> ``transform_param``.
"""

from __future__ import annotations

from converters.caffe.errors import CaffeFormatError, GraphError, UnsupportedLayerError
from converters.caffe.schema import TEXT, V0_TYPE_NAMES, V1_TYPE_NAMES

__all__ = ["upgrade_layers"]

# V0 inline field -> {v0 type: (param message, field)}; repeated targets are appended.
_V0_FIELDS = {
    "num_output": {"conv": ("convolution_param", "num_output"), "innerproduct": ("inner_product_param", "num_output")},
    "biasterm": {"conv": ("convolution_param", "bias_term"), "innerproduct": ("inner_product_param", "bias_term")},
    "pad": {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")},
    "kernelsize": {"conv": ("convolution_param", "kernel_size"), "pool": ("pooling_param", "kernel_size")},
    "stride": {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")},
    "group": {"conv": ("convolution_param", "group")},
    "pool": {"pool": ("pooling_param", "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": {
        "data": ("data_param", "source"), "hdf5_data": ("hdf5_data_param", "source"),
        "images": ("image_data_param", "source"), "window_data": ("window_data_param", "source"),
        "infogain_loss": ("infogain_loss_param", "source"),
    },
    "batchsize": {
        "data": ("data_param", "batch_size"), "hdf5_data": ("hdf5_data_param", "batch_size"),
        "images": ("image_data_param", "batch_size"), "window_data": ("window_data_param", "batch_size"),
    },
    "rand_skip": {"data": ("data_param", "rand_skip"), "images": ("image_data_param", "rand_skip")},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
}
# Fields every V0 layer may carry (transformation), as in Caffe.
_V0_TRANSFORM = {"scale": "scale", "meanfile": "mean_file", "cropsize": "crop_size", "mirror": "mirror"}
_V1_ENUM = {name: num for num, name in V1_TYPE_NAMES.items()}
_V1_DATA_TRANSFORM = {"Data": "data_param", "ImageData": "image_data_param", "WindowData": "window_data_param"}


def _fold_v0_padding(v1_layers, lines, where):
    """Drop V0 "padding" layers, moving their pad into the conv/pool that reads them."""
    out, out_lines = [], []
    producer = {}  # blob -> index in v1_layers of its latest producer
    for i, conn in enumerate(v1_layers):
        v0 = conn.layer
        if v0.type != "padding":
            conn = TEXT.V1LayerParameter.FromString(conn.SerializeToString())  # private copy
            for j, blob in enumerate(conn.bottom):
                src = producer.get(blob)
                if src is None or v1_layers[src].layer.type != "padding":
                    continue
                pad_layer = v1_layers[src]
                if conn.layer.type not in ("conv", "pool") or len(conn.bottom) != 1:
                    raise GraphError(
                        f"{where(i)}: V0 padding layer '{pad_layer.layer.name}' feeds a "
                        f"'{conn.layer.type}' layer; Caffe only folds padding into a single-input conv or pool"
                    )
                if len(pad_layer.bottom) != 1 or len(pad_layer.top) != 1:
                    raise GraphError(f"{where(src)}: V0 padding layer must have one bottom and one top")
                conn.layer.pad = pad_layer.layer.pad
                conn.bottom[j] = pad_layer.bottom[0]
            out.append(conn)
            out_lines.append(lines[i])
        for blob in v1_layers[i].top:
            producer[blob] = i
    return out, out_lines


def _v0_to_v1(conn):
    """One V0 layer (wrapped in V1 ``layers``) -> V1LayerParameter, as ``UpgradeV0LayerParameter``."""
    v0 = conn.layer
    v1 = TEXT.V1LayerParameter(bottom=conn.bottom, top=conn.top, name=v0.name)
    if not v0.HasField("type") or v0.type not in V0_TYPE_NAMES:
        return v1, v0.type
    v1.type = _V1_ENUM[V0_TYPE_NAMES[v0.type]]
    for field, targets in _V0_FIELDS.items():
        if not v0.HasField(field) or v0.type not in targets:
            continue  # Caffe logs and ignores a field the type does not take
        msg_name, target = targets[v0.type]
        msg = getattr(v1, msg_name)
        value = getattr(v0, field)
        if not isinstance(getattr(msg, target), (bool, int, float, str)):  # repeated (conv pad/kernel/stride)
            getattr(msg, target).append(value)
        else:
            setattr(msg, target, value)
    for field, target in _V0_TRANSFORM.items():
        if v0.HasField(field):
            setattr(v1.transform_param, target, getattr(v0, field))
    if v0.HasField("hdf5_output_param") and v0.type == "hdf5_output":
        v1.hdf5_output_param.CopyFrom(v0.hdf5_output_param)
    return v1, None


def _v1_to_v2(v1):
    """V1LayerParameter -> LayerParameter, as ``UpgradeV1LayerParameter``."""
    layer = TEXT.LayerParameter(name=v1.name, type=V1_TYPE_NAMES.get(v1.type, ""))
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    layer.loss_weight.extend(v1.loss_weight)
    specs = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(specs):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    for fd, value in v1.ListFields():
        if fd.name.endswith("_param"):
            getattr(layer, fd.name).CopyFrom(value)
    data_param = _V1_DATA_TRANSFORM.get(layer.type)
    if data_param is not None:  # UpgradeNetDataTransformation
        src = getattr(layer, data_param)
        for field in ("scale", "mean_file", "crop_size", "mirror"):
            if src.HasField(field):
                setattr(layer.transform_param, field, getattr(src, field))
                src.ClearField(field)
    return layer


def upgrade_layers(net, layer_lines, layers_lines, path):
    """All layers of a parsed text ``NetParameter`` as V2 ``LayerParameter`` messages.

    Args:
        net: ``TEXT.NetParameter``.
        layer_lines, layers_lines: 1-based prototxt lines of each ``layer`` / ``layers`` entry.
        path: file name for error messages.

    Returns:
        (layers, lines): lists of ``TEXT.LayerParameter`` and their lines (``None`` where unknown).

    Raises:
        CaffeFormatError: the file mixes ``layer`` and ``layers``.
        UnsupportedLayerError: a V0 type Caffe does not know.
    """
    if len(net.layer) and len(net.layers):
        raise CaffeFormatError(
            f"{path}: mixes V2 'layer {{...}}' ({len(net.layer)}) and V1 'layers {{...}}' ({len(net.layers)}) "
            "entries; Caffe accepts one format per file"
        )
    if not len(net.layers):
        return list(net.layer), list(layer_lines)

    def where(i):
        line = layers_lines[i] if i < len(layers_lines) else None
        return f"{path}:{line}" if line else path

    v1_layers, lines = list(net.layers), list(layers_lines)
    if any(conn.HasField("layer") for conn in v1_layers):
        v1_layers, lines = _fold_v0_padding(v1_layers, lines, where)
        upgraded = []
        for i, conn in enumerate(v1_layers):
            v1, bad_type = _v0_to_v1(conn)
            if bad_type is not None:
                line = f"{path}:{lines[i]}" if lines[i] else path
                raise UnsupportedLayerError(
                    f"{line}: V0 layer '{conn.layer.name}' has unknown type '{bad_type}'; V0 types: "
                    f"{', '.join(sorted(V0_TYPE_NAMES))}"
                )
            upgraded.append(v1)
        v1_layers = upgraded
    return [_v1_to_v2(v1) for v1 in v1_layers], lines
