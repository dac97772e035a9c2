"""``zoo.get(name, weights="file.caffemodel")``: port a Caffe release into a zoo builder.

Importing this module registers :func:`load_caffe_weights` for the ``.caffemodel`` suffix (``zoo.api``
imports it lazily the first time such a file is asked for).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from converters.caffe.context import keras_name
from converters.caffe.errors import WeightsMismatchError
from converters.caffe.params import opt, sub
from converters.caffe.port import FAMILY_MAPPINGS, port
from converters.caffe.reader import load
from zoo.api import register_weights_loader
from zoo.errors import WeightsFileError

__all__ = ["find_prototxt", "load_caffe_weights", "cpm_stages"]


def find_prototxt(caffemodel) -> Path:
    """The deploy prototxt of ``caffemodel``, looked for beside it, in this order:

    ``<stem>.prototxt``; the stem with ``model`` replaced by ``deploy`` (Kaiming's
    ``ResNet-50-model.caffemodel`` -> ``ResNet-50-deploy.prototxt``); ``deploy.prototxt``; the only
    ``*deploy*.prototxt`` of the folder (CPM's ``pose_deploy_centerMap.prototxt``).

    Raises:
        WeightsFileError: none found (the message lists where it looked).
    """
    caffemodel = Path(caffemodel)
    folder = caffemodel.parent
    candidates = [caffemodel.with_suffix(".prototxt")]
    if "model" in caffemodel.stem:
        candidates.append(folder / (caffemodel.stem.replace("model", "deploy") + ".prototxt"))
    candidates.append(folder / "deploy.prototxt")
    for c in candidates:
        if c.is_file():
            return c
    deploys = sorted(folder.glob("*deploy*.prototxt"))
    if len(deploys) == 1:
        return deploys[0]
    looked = ", ".join(repr(str(c)) for c in candidates) + f", '{folder / '*deploy*.prototxt'}'"
    found = f" (found {len(deploys)}: {', '.join(d.name for d in deploys)})" if deploys else ""
    raise WeightsFileError(
        f"No deploy prototxt found for '{caffemodel}': looked for {looked}{found}. Put the net's deploy "
        f"prototxt at one of these paths (Caffe weights hold no architecture)."
    )


def cpm_stages(caffemodel) -> tuple[int, Path]:
    """How many stages the Convolutional Pose Machine of ``caffemodel`` has: the ``stages`` to build
    the zoo ``cpm`` with, read from its deploy prototxt (:func:`find_prototxt`; the weights file holds
    no architecture). Stage 1 plus one per refinement stage ``Mconv1_stage2``, ``Mconv1_stage3``, ...

    Returns:
        ``(stages, prototxt path)``.
    Raises:
        WeightsFileError: no deploy prototxt beside ``caffemodel``.
        CaffeFormatError: an unreadable prototxt.
        WeightsMismatchError: a prototxt that is not a CPM's (no layer ``conv7_stage1``).
    """
    proto = find_prototxt(caffemodel)
    names = {layer.name for layer in load(proto).layers}
    if "conv7_stage1" not in names:
        raise WeightsMismatchError(f"'{proto}' (the deploy prototxt of '{caffemodel}') is not a Convolutional Pose "
                                   f"Machine: it has no layer 'conv7_stage1' (stage 1's belief maps).")
    stages = 1
    while f"Mconv1_stage{stages + 1}" in names:
        stages += 1
    return stages, proto


def _head_size(spec, net, model, asked, mapping):
    """The head size (``spec.head_kwarg``) of the Caffe ``net``, for a ``model`` built with ``asked``.

    The first head layer (net order) that is a Convolution/InnerProduct with another number of outputs
    than the model's says how many more or fewer the file has (a CPM's belief maps are K + 1 wide, an FCN's
    scores ``classes``): ``asked + caffe outputs - model outputs``. ``asked`` when every one agrees or the
    model has no head (``include_top=False``).
    """
    zoo = {layer.name: layer for layer in model.layers}
    kinds = {"Convolution": ("Conv2D", "convolution_param"), "InnerProduct": ("Dense", "inner_product_param")}
    for layer in net.layers:
        target = mapping.get(layer.name, keras_name(layer.name))
        if not layer.blobs or layer.type not in kinds or target is None or not spec.is_head_layer(target):
            continue
        kind, param = kinds[layer.type]
        if target not in zoo or type(zoo[target]).__name__ != kind:
            continue
        ours = int(zoo[target].weights[0].shape[-1])  # Conv2D (kh, kw, I, O), Dense (I, O)
        theirs = int(opt(sub(layer.param, param), "num_output", ours))
        if theirs != ours:
            return asked + theirs - ours
    return asked


def load_caffe_weights(spec, path, kwargs):
    """Loader for :func:`zoo.api.register_weights_loader`: build ``spec.builder(**kwargs)``, port ``path``.

    Asking for another head size (``classes`` / ``num_keypoints``) than the file's loads everything
    but the head layers (``spec.is_head_layer``), which keep their initial values, with a warning that
    names them, as for a zoo ``.h5`` or a ``.t7``.

    Args:
        spec: the :class:`zoo.registry.ModelSpec` asked for.
        path: the ``.caffemodel`` file.
        kwargs: the user's builder arguments (``input_shape``, ``classes``, ...).
    Returns:
        ``(model, None)``: the ported model; no weights record (the file carries no metadata).
    Raises:
        WeightsFileError: no deploy prototxt next to the file, or the file is missing.
        CaffeFormatError, WeightsMismatchError: unreadable files, or a net that does not fit the
            builder's layers outside the head (the message lists the differences on both sides), or
            a head of another size when the head size was not asked for.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{spec.name}: weights file not found: '{path}'.")
    net = load(find_prototxt(path), path)
    model = spec.builder(**kwargs)
    mapping = dict(FAMILY_MAPPINGS.get(spec.family) or {})
    file_only_ok, model_only_ok = spec.weights_fit(model)
    for layer in net.layers:  # include_top=False: the release's classifier has no place in the model
        if layer.blobs and file_only_ok(mapping.get(layer.name) or keras_name(layer.name)):
            mapping[layer.name] = None
    head = spec.head_kwarg
    stored = _head_size(spec, net, model, kwargs[head], mapping) if head in kwargs else None
    optional, skipped = model_only_ok, []
    if stored is not None and stored != kwargs[head]:  # a new head: the file's head layers have no place
        skipped = [layer.name for layer in model.layers if spec.is_head_layer(layer.name)]
        for layer in net.layers:
            if layer.blobs and spec.is_head_layer(mapping.get(layer.name) or keras_name(layer.name)):
                mapping[layer.name] = None
        optional = lambda name: model_only_ok(name) or spec.is_head_layer(name)  # noqa: E731
    port(net, model, mapping=mapping, optional=optional)
    if skipped:  # after the port: a refused file warns of nothing
        warnings.warn(
            f"{spec.name}: weights '{path}' have {head}={stored} but {head}={kwargs[head]} was asked for; "
            f"loading everything but the head layers ({', '.join(skipped)}), which keep their initial values.",
            stacklevel=4,
        )
    return model, None


register_weights_loader(".caffemodel", load_caffe_weights)
