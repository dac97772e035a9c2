"""Why a weights file does not fit the model :func:`zoo.get` built: the causes a user can act on, said before the
list of layers that differ (which names the symptom, not the cause)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from zoo import weights as _w
from zoo.architecture import _layer_configs
from zoo.errors import WeightsMismatchError
from zoo.registry import ModelSpec, list_models


def _keras_config(path):
    """A ``.keras`` archive's model config, or ``None`` when it cannot be read (the load's own error says why)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def winograd_layers(path) -> list[str]:
    """Names of the ``WinogradConv2D`` layers (``zoo.optimize_for_inference``) a ``.keras`` archive's config or a
    zoo ``.h5`` holds; ``[]`` for any other file or one that cannot be read."""
    path = Path(path)
    if path.suffix == ".keras":
        config = _keras_config(path)
        return [] if config is None else [str(c.get("name")) for cls, c in _layer_configs(config)
                                          if cls == "WinogradConv2D"]
    try:
        import h5py

        with h5py.File(path, "r") as f:
            layers = f.get("layers")
            if layers is None:
                return []
            return [name for name, g in layers.items()
                    if any(n.endswith("input_transform") for n in json.loads(g.attrs.get("names", "[]")))]
    except (OSError, KeyError, ValueError):
        return []


def optimised_copy_error(model_name: str, path, layers: list[str]) -> WeightsMismatchError:
    """The error for a file saved from ``zoo.optimize_for_inference``'s copy: its 3x3 kernels are stored
    transformed (36 x C x K), which the built model's ``Conv2D`` layers cannot take."""
    shown = ", ".join(layers[:3]) + (f" and {len(layers) - 3} more" if len(layers) > 3 else "")
    how = (f"zoo.load_keras_model('{path}') loads it whole" if Path(path).suffix == ".keras" else
           f"save the model before optimising it, or optimise a model built the same way with the same "
           f"settings and zoo.load_weights(fast, '{path}')")
    return WeightsMismatchError(
        f"{model_name}: '{path}' was saved from a copy optimised for inference (zoo.optimize_for_inference: "
        f"{len(layers)} Conv2D layers as WinogradConv2D, {shown}), whose transformed kernels a freshly built "
        f"{model_name} cannot take; {how}.")


def refuse_by_cause(spec: ModelSpec, path, saved_name, model=None) -> None:
    """Raise, for a file that did not load into ``model``, the cause to act on: another registered model's
    ``.keras`` (its metadata names it), a copy ``zoo.optimize_for_inference`` made (Keras' message listed 47
    objects), or a ``.keras`` whose head has another size (Keras' message named one variable's shapes)."""
    if saved_name and saved_name != spec.name and saved_name in list_models():
        raise WeightsMismatchError(f"{spec.name}: '{path}' holds weights of '{saved_name}' (its "
                                   f"{_w.KERAS_METADATA}); zoo.get('{saved_name}', weights=...) or "
                                   f"zoo.load_keras_model('{path}') loads it.")
    optimised = winograd_layers(path)
    if optimised:
        raise optimised_copy_error(spec.name, path, optimised)
    if model is not None and spec.head_kwarg and Path(path).suffix == ".keras":
        for name, saved, built in _head_widths(spec, model, path):
            if saved != built:
                raise WeightsMismatchError(
                    f"{spec.name}: '{path}' was saved with another head: its {name} has {saved} outputs, this "
                    f"model's {built}; pass the {spec.head_kwarg}= the model that saved it was built with "
                    f"(zoo.save_model records it), or zoo.load_keras_model('{path}') loads it as saved.")


def head_widths_differ(spec: ModelSpec, model, path) -> bool:
    """Whether a head layer of the ``.keras`` at ``path`` has another number of outputs than ``model``'s."""
    return any(saved != built for _, saved, built in _head_widths(spec, model, path))


def _head_widths(spec: ModelSpec, model, path):
    """``(layer name, outputs in the .keras config, outputs in model)`` of each head layer both have."""
    config = _keras_config(path)
    if config is None:
        return []
    saved = {c.get("name"): c.get("units", c.get("filters")) for _, c in _layer_configs(config)}
    built = {l.name: getattr(l, "units", getattr(l, "filters", None)) for l in model.layers if spec.is_head_layer(l.name)}
    return [(n, saved[n], w) for n, w in built.items() if n in saved and saved[n] is not None and w is not None]


def head_layers_missing_from_file(spec: ModelSpec, model, path) -> list[str]:
    """The head layers of ``model`` (``spec.is_head_layer``, with weights) when the zoo file ``path`` holds none
    of them but every other layer with weights, else ``[]`` (another network's file lacks more than a head)."""
    head = [l.name for l in model.layers if l.weights and spec.is_head_layer(l.name)]
    body = {l.name for l in model.layers if l.weights and not spec.is_head_layer(l.name)}
    body -= set(getattr(model, "_zoo_upstream_layers", ()))  # the caller's layers before an input_tensor
    with _w._open_zoo_file(path) as f:
        stored = set(f["layers"])
    if not body <= stored:
        return []
    return [] if any(spec.is_head_layer(n) for n in stored) else head
