"""``zoo.get(name, weights="file.caffemodel")``: port a Caffe release into a zoo builder.

Importing this module registers :func:`load_caffe_weights` for the ``.caffemodel`` suffix (``zoo.api``
imports it lazily the first time such a file is asked for).
"""

from __future__ import annotations

import warnings
from glob import escape as glob_escape
from pathlib import Path

from converters.caffe.context import keras_name
from converters.caffe.errors import WeightsMismatchError
from converters.caffe.params import conv_geometry, opt, sub
from converters.caffe.port import FAMILY_MAPPINGS, port
from converters.caffe.reader import load
from zoo.api import architecture_kwargs, refuse_other_architecture, register_weights_loader
from zoo.architecture import STRIDED_BRANCH, stride_placement
from zoo.errors import WeightsFileError
from zoo.registry import get_spec

__all__ = ["find_prototxt", "load_caffe_weights", "release_builder_kwargs"]


def find_prototxt(caffemodel) -> Path:
    """The deploy prototxt of ``caffemodel``, looked for beside it, in this order:

    ``<stem>.prototxt``; the stem with ``model`` replaced by ``deploy`` (Kaiming's
    ``ResNet-50-model.caffemodel`` -> ``ResNet-50-deploy.prototxt``); ``deploy.prototxt``; the only
    ``<stem>_*.prototxt`` of the folder (PSPNet's ``pspnet50_ADE20K_473.prototxt`` for
    ``pspnet50_ADE20K.caffemodel``); the only ``*deploy*.prototxt`` of the folder (CPM's
    ``pose_deploy_centerMap.prototxt``).

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
    # PSPNet's releases: pspnet50_ADE20K.caffemodel beside pspnet50_ADE20K_473.prototxt (the input size added)
    sized = sorted(folder.glob(f"{glob_escape(caffemodel.stem)}_*.prototxt"))
    if len(sized) == 1:
        return sized[0]
    deploys = sorted(folder.glob("*deploy*.prototxt"))
    if len(deploys) == 1:
        return deploys[0]
    looked = ", ".join(repr(str(c)) for c in candidates) + \
        f", the only '{folder / (caffemodel.stem + '_*.prototxt')}', the only '{folder / '*deploy*.prototxt'}'"
    found = f" (found {len(deploys)}: {', '.join(d.name for d in deploys)})" if deploys else ""
    raise WeightsFileError(
        f"No deploy prototxt found for '{caffemodel}': looked for {looked}{found}. Put the net's deploy "
        f"prototxt at one of these paths (Caffe weights hold no architecture)."
    )


# Outputs of a family's head layers beyond the head size: a CPM's belief maps add one for the background.
_EXTRA_OUTPUTS = {"cpm": 1}
_OUTPUT_PARAMS = {"Convolution": "convolution_param", "InnerProduct": "inner_product_param"}
# Families whose layers depend on the input size (PSPNet's pyramid pooling): the prototxt's input size is architecture.
_FIXED_SIZE = ("pspnet",)
# The first bottleneck of stages 3-5 (Kaiming's names): its 1x1 branch2a or its 3x3 branch2b has the stride 2.


def _stride_in_3x3(net, mapping) -> bool | dict | None:
    """Where the deploy prototxt ``net`` puts the stride of a ResNet's stages 3-5: ``False`` on the 1x1
    ``res{3,4,5}a_branch2a`` (Kaiming's MSRA release), ``True`` on the 3x3 ``res{3,4,5}a_branch2b`` (v1.5,
    torchvision); ``None`` when the net has none of these layers; else (stages that disagree, or a stage strided
    on both or neither) ``{stage: (branch2a stride, branch2b stride)}``, which no zoo ResNet builds."""
    strides: dict[str, dict[str, int]] = {}
    for layer in net.layers:
        target = mapping.get(layer.name, keras_name(layer.name))
        match = STRIDED_BRANCH.fullmatch(target) if target else None
        if layer.type == "Convolution" and match:
            _, (sh, sw), _, _ = conv_geometry(sub(layer.param, "convolution_param"), layer)
            strides.setdefault(match[1], {})[match[2]] = max(sh, sw)
    return stride_placement(strides)


def release_builder_kwargs(spec, caffemodel, asked=None, *, net=None) -> dict:
    """The zoo builder arguments the Caffe release ``caffemodel`` holds, read from its deploy prototxt
    (:func:`find_prototxt`; the weights file holds no architecture, the prototxt does):

    - the head size ``spec.head_kwarg``: the last head layer (``spec.is_head_layer``) that is a
      Convolution/InnerProduct gives it as its ``num_output`` (a CPM's ``Mconv5_stage{T}``: keypoints
      + 1 background map; FCN's ``score_pool3``, PSPNet's ``conv6``, ResNet's ``fc1000``: classes);
    - ``stages`` of a CPM: stage 1 plus one per ``Mconv1_stage2``, ``Mconv1_stage3``, ...
    - ``stride_in_3x3`` of a ResNet-50/101/152: ``False`` when ``res{3,4,5}a_branch2a`` (1x1) has the stride 2
      (Kaiming's release), ``True`` when ``res{3,4,5}a_branch2b`` (3x3) has it; no weight shape shows it.
    - ``input_shape`` of a PSPNet, ``(H, W, 3)`` of the prototxt's input, unless ``asked`` gives ``input_shape`` or
      ``input_tensor``: its pyramid pooling kernels and Interp sizes are fixed to it (``pspnet101_cityscapes_713``
      pools a 90 px map with 90/45/30/15 px windows, the 473 px releases a 60 px map with 60/30/20/10 px ones).

    Args:
        spec: a :class:`zoo.registry.ModelSpec` or registered name (``"cpm"``).
        caffemodel: the ``.caffemodel`` path.
        asked: the caller's builder arguments; an architecture argument other than the head size
            (``stages``, ``stride_in_3x3``) that contradicts the file is refused
            (:func:`zoo.api.refuse_other_architecture`).
            (Another head size loads all but the head.)
        net: the net already loaded from the prototxt, to save reading it again.
    Returns:
        ``{name: value}``, e.g. ``{"stages": 3, "num_keypoints": 14}`` or ``{"classes": 19, "input_shape": (713,
        713, 3)}``; no head size for a net without a head layer (a headless deploy).
    Raises:
        WeightsFileError: no deploy prototxt beside ``caffemodel``.
        CaffeFormatError: an unreadable prototxt.
        WeightsMismatchError: a CPM asked for and a prototxt that is not one (no ``conv7_stage1``), or a
            ``stages`` / ``stride_in_3x3`` in ``asked`` other than the file's (the message names both values
            and both files).
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    proto = find_prototxt(caffemodel)
    net = net if net is not None else load(proto)
    held, names = {}, {layer.name for layer in net.layers}
    if spec.family == "cpm":
        if "conv7_stage1" not in names:
            raise WeightsMismatchError(f"{spec.name}: '{proto}' (the deploy prototxt of '{caffemodel}') is not a "
                                       f"Convolutional Pose Machine: it has no layer 'conv7_stage1' (stage 1's "
                                       f"belief maps).")
        stages = 1
        while f"Mconv1_stage{stages + 1}" in names:
            stages += 1
        held["stages"] = stages
    mapping = FAMILY_MAPPINGS.get(spec.family) or {}
    if "stride_in_3x3" in architecture_kwargs(spec):
        placement = _stride_in_3x3(net, mapping)
        if isinstance(placement, dict):  # ported by name, it would be built strided as one placement, silently
            said = ", ".join(f"{k} branch2a/branch2b {a}/{b}" for k, (a, b) in placement.items())
            raise WeightsMismatchError(f"{spec.name}: '{proto}' (the deploy prototxt of '{caffemodel}') strides its "
                                       f"stages 3-5 in a way no {spec.name} builds ({said}): each of res3a, res4a and "
                                       f"res5a must have stride 2 on branch2a only (Kaiming's release) or on branch2b "
                                       f"only (stride_in_3x3=True). Convert it with converters.caffe.to_keras instead")
        if placement is not None:
            held["stride_in_3x3"] = placement
    if spec.family in _FIXED_SIZE and not {"input_shape", "input_tensor"} & set(asked or {}):
        shape = next(iter(net.inputs.values()), ())
        if len(shape) == 4 and min(shape[2:]) > 0:  # (N, C, H, W)
            held["input_shape"] = (int(shape[2]), int(shape[3]), 3)
    outputs = None
    for layer in net.layers:
        target = mapping.get(layer.name, keras_name(layer.name))
        if layer.type in _OUTPUT_PARAMS and target is not None and spec.is_head_layer(target):
            outputs = opt(sub(layer.param, _OUTPUT_PARAMS[layer.type]), "num_output", outputs)
    if spec.head_kwarg and outputs is not None:
        held[spec.head_kwarg] = int(outputs) - _EXTRA_OUTPUTS.get(spec.family, 0)
    refuse_other_architecture(spec, held, asked or {}, f"'{caffemodel}' (its deploy prototxt '{proto}')",
                              WeightsMismatchError)
    return held


def load_caffe_weights(spec, path, kwargs):
    """Loader for :func:`zoo.api.register_weights_loader`: build the architecture ``path`` holds, port it.

    The builder arguments the deploy prototxt gives (:func:`release_builder_kwargs`: the head size, a
    CPM's ``stages``, a ResNet's ``stride_in_3x3``) are used where ``kwargs`` has none. Asking for another
    head size (``classes`` / ``num_keypoints``) than the file's loads everything but the head layers
    (``spec.is_head_layer``), which keep their initial values, with a warning that names them, as for a zoo
    ``.h5`` or a ``.t7``.

    Args:
        spec: the :class:`zoo.registry.ModelSpec` asked for.
        path: the ``.caffemodel`` file.
        kwargs: the user's builder arguments (``input_shape``, ``classes``, ...).
    Returns:
        ``(model, None, held)``: the ported model; no weights record (the file carries no metadata);
        the builder arguments the file holds (``zoo.get`` records them, so a saved copy rebuilds).
    Raises:
        WeightsFileError: no deploy prototxt next to the file, or the file is missing.
        CaffeFormatError, WeightsMismatchError: unreadable files, a ``stages`` or ``stride_in_3x3`` other than
            the file's (both values named), an architecture read from the prototxt that the builder cannot make
            (a 1-stage CPM: the file and the values named), or a net that does not fit the builder's layers
            outside the head (the message lists the differences on both sides).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{spec.name}: weights file not found: '{path}'.")
    proto = find_prototxt(path)
    # What the prototxt alone decides (an architecture the caller contradicts, one the builder cannot make) is refused
    # before the weights are read (ResNet-152's are 230 MB): the graph first, the weights once the model is built
    held = release_builder_kwargs(spec, path, kwargs, net=load(proto))
    try:
        model = spec.builder(**{**held, **kwargs})
    except ValueError as e:  # e.g. a 1-stage CPM: "stages must be >= 2. Received: stages=1", which nobody asked for
        read = {k: v for k, v in held.items() if k not in kwargs}
        if not any(k in str(e) for k in read):  # the caller's own argument: the builder's message says it
            raise
        raise WeightsMismatchError(
            f"{spec.name}: '{path}' holds {', '.join(f'{k}={v!r}' for k, v in read.items())} (read from its deploy "
            f"prototxt '{proto}'), which the zoo's {spec.name} cannot build: {e}") from None
    net = load(proto, path)
    mapping = dict(FAMILY_MAPPINGS.get(spec.family) or {})
    file_only_ok, model_only_ok = spec.weights_fit(model)
    for layer in net.layers:  # include_top=False: the release's classifier has no place in the model
        if layer.blobs and file_only_ok(mapping.get(layer.name) or keras_name(layer.name)):
            mapping[layer.name] = None
    head = spec.head_kwarg
    stored = held.get(head)
    optional, skipped = model_only_ok, []
    if head in kwargs and stored not in (None, kwargs[head]):  # a new head: the file's head layers have no place
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
    return model, None, held


register_weights_loader(".caffemodel", load_caffe_weights)
