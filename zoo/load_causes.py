"""Why a weights file does not fit the model :func:`zoo.get` built: the causes a user can act on, said before the
list of layers that differ (which names the symptom, not the cause)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from zoo.errors import WeightsMismatchError


def winograd_layers(path) -> list[str]:
    """Names of the ``WinogradConv2D`` layers (``zoo.optimize_for_inference``) a ``.keras`` archive's config or a
    zoo ``.h5`` holds; ``[]`` for any other file or one that cannot be read."""
    path = Path(path)
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
            found = []

            def walk(node):
                if isinstance(node, dict):
                    if node.get("class_name") == "WinogradConv2D" and isinstance(node.get("config"), dict):
                        found.append(str(node["config"].get("name")))
                    for v in node.values():
                        walk(v)
                elif isinstance(node, list):
                    for v in node:
                        walk(v)

            walk(config)
            return found
        import h5py

        with h5py.File(path, "r") as f:
            layers = f.get("layers")
            if layers is None:
                return []
            return [name for name, g in layers.items()
                    if any(n.endswith("input_transform") for n in json.loads(g.attrs.get("names", "[]")))]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
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
