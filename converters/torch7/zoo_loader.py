"""``zoo.get("hourglass", weights="model.t7")``: port a Torch7 Stacked Hourglass release.

Importing this module registers :func:`load_torch7_weights` for the ``.t7`` suffix (``zoo.api``
imports it lazily the first time such a file is asked for).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from converters.torch7.errors import WeightsMismatchError
from converters.torch7.graph import load_graph
from converters.torch7.hourglass import infer_hourglass_config, port_hourglass
from zoo.api import refuse_other_architecture, register_weights_loader
from zoo.errors import WeightsFileError

__all__ = ["load_torch7_weights"]

def load_torch7_weights(spec, path, kwargs):
    """Loader for :func:`zoo.api.register_weights_loader`: read ``path``, build, port.

    The builder arguments ``stacks``, ``features``, ``modules``, ``post_residuals`` and ``num_keypoints`` come from the
    file; the user's ``kwargs`` (e.g. ``input_shape``) are added. Asking for another
    ``num_keypoints`` loads everything but the head layers, with a warning.

    Args:
        spec: the :class:`zoo.registry.ModelSpec` asked for; only the ``hourglass`` family has a Torch7 release.
        path: the ``.t7`` file (``torch.save`` binary mode, e.g. ``umich-stacked-hourglass.t7``).
        kwargs: the user's builder arguments.
    Returns:
        ``(model, None, cfg)``: the ported model; no weights record (the file carries no metadata); the
        builder arguments the file holds (``zoo.get`` records them, so a saved copy rebuilds this architecture).
    Raises:
        WeightsFileError: missing file; Torch7FormatError (a WeightsFileError) for unreadable files.
        WeightsMismatchError: another family, another architecture in the file, or ``stacks`` /
            ``features`` / ``modules`` / ``post_residuals`` in ``kwargs`` that differ from the file's
            (:func:`zoo.api.refuse_other_architecture`: both values and the file named).
    """
    path = Path(path)
    if spec.family != "hourglass":
        raise WeightsMismatchError(
            f"{spec.name}: Torch7 weights ('{path}') can only be ported into the 'hourglass' family (the Stacked "
            f"Hourglass release); '{spec.name}' is of family '{spec.family}'. Use its own weights format instead."
        )
    if not path.is_file():
        raise WeightsFileError(f"{spec.name}: weights file not found: '{path}'.")
    graph = load_graph(path)
    cfg = infer_hourglass_config(graph)
    refuse_other_architecture(spec, cfg, kwargs, f"'{path}'", WeightsMismatchError)
    head_changed = "num_keypoints" in kwargs and kwargs["num_keypoints"] != cfg["num_keypoints"]
    model = spec.builder(**{**cfg, **kwargs})
    report = port_hourglass(graph, model, skip_head=head_changed)
    if head_changed:
        warnings.warn(
            f"{spec.name}: weights '{path}' have num_keypoints={cfg['num_keypoints']} but "
            f"num_keypoints={kwargs['num_keypoints']} was asked for; loading everything but the head layers "
            f"({', '.join(report['skipped'])}), which keep their initial values.",
            stacklevel=4,
        )
    return model, None, cfg


register_weights_loader(".t7", load_torch7_weights)
