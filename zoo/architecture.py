"""The builder arguments that make another network of a family (:data:`ARCHITECTURE_KWARGS`), and the one check
that a caller's agree with those a weights file holds (:func:`refuse_other_architecture`), for every format
:func:`zoo.get` loads; :func:`keras_file_architecture` reads them from a Keras ``.keras`` file's model config."""

from __future__ import annotations

import json
import re
import zipfile
from typing import Any

from zoo.errors import WeightsFileError, WeightsMismatchError
from zoo.registry import ModelSpec

__all__ = ["ARCHITECTURE_KWARGS", "SHAPE_FREE_KWARGS", "FIXED_SIZE_FAMILIES", "architecture_kwargs",
           "refuse_other_architecture", "keras_file_architecture"]

# Per family, the builder arguments that make another network of it (other layers, weight shapes or strides), which
# a weights file therefore fixes. The head size is not among them (another one loads all but the head), nor is
# input_shape (no family's weight shapes depend on it: PSPNet's pyramid pools change size, not weights).
ARCHITECTURE_KWARGS = {"cpm": ("stages",), "hourglass": ("stacks", "features", "modules", "post_residuals"),
                       "resnet": ("stride_in_3x3",)}
# Those of them that change no weight shape: a contradicting value would load without a word (the MSRA ResNet-50,
# strided on the 1x1 branch2a, into stride_in_3x3=True is another network), so records always hold them; each with
# what its values mean, for a file that does not say (a Keras .weights.h5).
SHAPE_FREE_KWARGS = {"stride_in_3x3": "stride_in_3x3=False (stride 2 of stages 3-5 on the 1x1 branch2a, Kaiming's "
                                      "release) or stride_in_3x3=True (on the 3x3 branch2b, v1.5)"}


def architecture_kwargs(spec: ModelSpec) -> tuple[str, ...]:
    """The builder arguments of ``spec`` that weights fix (:data:`ARCHITECTURE_KWARGS`), less those its builder
    declares to change nothing (``builder.inert_kwargs``: ResNet-18/34's ``stride_in_3x3``, no 1x1 to move from)."""
    inert = getattr(spec.builder, "inert_kwargs", ())
    return tuple(k for k in ARCHITECTURE_KWARGS.get(spec.family, ()) if k in spec.defaults and k not in inert)


def shape_free_defaults(spec: ModelSpec) -> dict[str, Any]:
    """The builder's defaults of the architecture arguments no weight shape reveals (``{"stride_in_3x3": False}``)."""
    return {k: spec.defaults[k] for k in architecture_kwargs(spec) if k in SHAPE_FREE_KWARGS}


def weights_given_kwargs(spec: ModelSpec) -> tuple[str, ...]:
    """The builder arguments that weights give when the caller does not: the head size and the architecture, an
    inert one too (ResNet-18's ``stride_in_3x3``: ``None`` is "not given" there as for ResNet-50's)."""
    return tuple(k for k in (spec.head_kwarg, *ARCHITECTURE_KWARGS.get(spec.family, ())) if k in spec.defaults)


def settings(values: dict[str, Any], keys) -> str:
    return ", ".join(f"{k}={values[k]!r}" for k in keys)


def refuse_other_architecture(spec: ModelSpec, held: dict[str, Any], asked: dict[str, Any], source: str,
                              error: type[WeightsMismatchError] = WeightsMismatchError) -> None:
    """The one check, for every weights format, that the caller's architecture arguments agree with the weights.

    Every loader calls it before it builds or fetches anything (a tag's record, a zoo ``.h5``'s weights record,
    a ``.caffemodel``'s deploy prototxt, a ``.t7``): else a model built with the caller's value is refused with
    a list of every layer that does not fit, or loads into another network where the shapes agree.

    Args:
        spec: the :class:`ModelSpec` asked for; its :data:`ARCHITECTURE_KWARGS` are checked.
        held: the builder arguments the weights hold (an argument missing here is not checked).
        asked: the caller's builder arguments; ``None`` is "not given".
        source: where ``held`` was read, as it goes into the message: ``"'x.h5' (its weights record)"``,
            ``"the release cpm:lsp (pose_iter_395000.caffemodel)"``.
        error: the class raised, a loader's own subclass (``converters.caffe.errors.WeightsMismatchError``).
    Raises:
        WeightsMismatchError (``error``): one line naming each contradicting argument, both values, ``source``
            and what to do: ``cpm: {source} holds stages=6, but stages=3 was asked for; leave out stages (the
            weights give it) or pass stages=6.``
    """
    wrong = [k for k in architecture_kwargs(spec)
             if asked.get(k) is not None and k in held and asked[k] != held[k]]
    if wrong:
        it = "it" if len(wrong) == 1 else "them"
        raise error(
            f"{spec.name}: {source} holds {settings(held, wrong)}, but {settings(asked, wrong)} was asked for; "
            f"leave out {', '.join(wrong)} (the weights give {it}) or pass {settings(held, wrong)}.")


# Families whose layers depend on the input size (PSPNet's pyramid pooling windows and Interp sizes are fixed to it):
# a file's input size is its architecture where the caller gives none (as a deploy prototxt's is).
FIXED_SIZE_FAMILIES = ("pspnet",)
# The first bottleneck of stages 3-5 (Kaiming's names, the zoo's layer names): its 1x1 branch2a or 3x3 branch2b strides.
STRIDED_BRANCH = re.compile(r"res([345])a_branch2([ab])")


def _layer_configs(node):
    """Every ``(class_name, config)`` of a layer in a Keras model config (nested models included)."""
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str) and isinstance(node.get("config"), dict):
            yield node["class_name"], node["config"]
        for value in node.values():
            yield from _layer_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _layer_configs(value)


def _stride_in_3x3(config) -> bool | dict | None:
    """Where a ResNet's model config strides stages 3-5 (as ``converters.caffe.zoo_loader`` reads a deploy
    prototxt): ``False`` on ``res{3,4,5}a_branch2a``, ``True`` on ``res{3,4,5}a_branch2b``, ``None`` without these
    layers, else ``{stage: (branch2a stride, branch2b stride)}`` (a network no zoo ResNet is)."""
    strides: dict[str, dict[str, int]] = {}
    for _, layer in _layer_configs(config):
        match = STRIDED_BRANCH.fullmatch(str(layer.get("name")))
        if match:
            s = layer.get("strides", 1)  # none: a layer without strides (a WinogradConv2D) is stride 1
            strides.setdefault(match[1], {})[match[2]] = max(s) if isinstance(s, (list, tuple)) else s
    return stride_placement(strides)


def stride_placement(strides: dict[str, dict[str, int]]) -> bool | dict | None:
    """``stride_in_3x3`` from ``{stage: {"a": branch2a stride, "b": branch2b stride}}`` (stages "3".."5", a
    missing branch is stride 1): ``True``/``False`` when every stage agrees, ``None`` for no stage, else
    ``{"res{stage}a": (a, b)}``. Shared by a ``.keras`` config's and a deploy prototxt's reading."""
    placements = {(s.get("a", 1), s.get("b", 1)) for s in strides.values()}
    if placements == {(1, 2)}:
        return True
    if placements == {(2, 1)}:
        return False
    return {f"res{k}a": (s.get("a", 1), s.get("b", 1)) for k, s in sorted(strides.items())} or None


def keras_file_architecture(spec: ModelSpec, path, asked: dict[str, Any]) -> dict[str, Any]:
    """What a Keras file given to :func:`zoo.get` fixes that no weight shape shows (:data:`SHAPE_FREE_KWARGS`, a
    PSPNet's input size), checked against ``asked``: Keras loads such weights into either network without an error.

    A ``.keras`` file's model config says: the strides of ``res{3,4,5}a_branch2a/2b`` give a ResNet's
    ``stride_in_3x3``, its input a PSPNet's ``input_shape`` (:data:`FIXED_SIZE_FAMILIES`; built unless ``asked``
    gives ``input_shape`` or ``input_tensor``, as for a deploy prototxt). A ``.weights.h5`` file holds weights only,
    so the caller must give ``stride_in_3x3``.

    Args:
        spec: the :class:`ModelSpec` asked for.
        path: the ``.keras`` (a readable archive: ``zoo.api._check_keras_archive``) or ``.weights.h5`` file.
        asked: the caller's builder arguments (``None`` already dropped: not given).
    Returns:
        ``{name: value}`` the file holds (``{"stride_in_3x3": True}``, ``{"input_shape": (713, 713, 3)}``), to build
        with where ``asked`` has none; ``{}`` for a family without such arguments or a config without the layers.
    Raises:
        WeightsMismatchError: a value in ``asked`` other than the ``.keras`` file's (both named, as
            :func:`refuse_other_architecture` says it), a config strided as no zoo ResNet is, or a ``.weights.h5``
            for which ``asked`` lacks one of them (the message says what each value means).
        WeightsFileError: a ``.keras`` file whose ``config.json`` is not JSON.
    """
    shape_free = [k for k in architecture_kwargs(spec) if k in SHAPE_FREE_KWARGS]
    sized = spec.family in FIXED_SIZE_FAMILIES and asked.get("input_shape") is None and asked.get("input_tensor") is None
    if not (shape_free or sized):
        return {}
    if not str(path).endswith(".keras"):
        unsaid = [k for k in shape_free if asked.get(k) is None]
        if unsaid:
            raise WeightsMismatchError(
                f"{spec.name}: '{path}' is a Keras weights-only file: it does not hold {', '.join(unsaid)}, which "
                f"changes no weight shape (weights of one network load into the other without an error). Pass "
                f"{'; '.join(SHAPE_FREE_KWARGS[k] for k in unsaid)}, as the model that saved it was built; a .keras "
                f"file (model.save) or zoo.save_weights keeps it.")
        return {}
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as e:
        raise WeightsFileError(f"'{path}' is not a readable .keras archive (config.json: {e}).") from None
    held: dict[str, Any] = {}
    shape = next((layer.get("batch_shape") or layer.get("batch_input_shape") for name, layer in _layer_configs(config)
                  if name == "InputLayer"), None) if sized else None
    if shape and len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
        held["input_shape"] = tuple(shape[1:])
    placement = _stride_in_3x3(config) if "stride_in_3x3" in shape_free else None
    if isinstance(placement, dict):
        said = ", ".join(f"{k} branch2a/branch2b {a}/{b}" for k, (a, b) in placement.items())
        raise WeightsMismatchError(f"{spec.name}: '{path}' (its model config) strides its stages 3-5 in a way no "
                                   f"{spec.name} builds ({said}); load it whole with zoo.load_keras_model instead.")
    if placement is not None:
        held["stride_in_3x3"] = placement
    refuse_other_architecture(spec, held, asked, f"'{path}' (its model config)")
    return held
