"""``zoo.get(name, weights="file.caffemodel")``: port a Caffe release into a zoo builder.

Importing this module registers :func:`load_caffe_weights` for the ``.caffemodel`` suffix (``zoo.api``
imports it lazily the first time such a file is asked for).
"""

from __future__ import annotations

from pathlib import Path

from converters.caffe.port import FAMILY_MAPPINGS, port
from converters.caffe.reader import load
from zoo.api import register_weights_loader
from zoo.errors import WeightsFileError

__all__ = ["find_prototxt", "load_caffe_weights"]


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


def load_caffe_weights(spec, path, kwargs):
    """Loader for :func:`zoo.api.register_weights_loader`: build ``spec.builder(**kwargs)``, port ``path``.

    Args:
        spec: the :class:`zoo.registry.ModelSpec` asked for.
        path: the ``.caffemodel`` file.
        kwargs: the user's builder arguments (``input_shape``, ``classes``, ...).
    Returns:
        ``(model, None)``: the ported model; no weights record (the file carries no metadata).
    Raises:
        WeightsFileError: no deploy prototxt next to the file, or the file is missing.
        CaffeFormatError, WeightsMismatchError: unreadable files, or a net that does not fit the
            builder's layers (the message lists the differences on both sides).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{spec.name}: weights file not found: '{path}'.")
    net = load(find_prototxt(path), path)
    model = spec.builder(**kwargs)
    mapping = dict(FAMILY_MAPPINGS.get(spec.family) or {})
    file_only_ok, model_only_ok = spec.weights_fit(model)
    for layer in net.layers:  # include_top=False: the release's classifier has no place in the model
        if layer.blobs and file_only_ok(mapping.get(layer.name) or layer.name.replace("/", "_")):
            mapping[layer.name] = None
    port(net, model, mapping=mapping, optional=model_only_ok)
    return model, None


register_weights_loader(".caffemodel", load_caffe_weights)
