"""One registry for every model family: ``register``, ``list_models``, ``info``, ``get``.

Model names map to a :class:`ModelSpec`: the builder function, its defaults, the names of the
layers that form its head (so weights for another number of classes/keypoints can still load
the backbone), and the known pretrained weights records (tags).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from zoo.records import WeightsRecord

__all__ = ["ModelSpec", "register", "register_weights", "list_models", "info", "get_spec", "parse_name"]

_MODELS: dict[str, "ModelSpec"] = {}  # model name -> spec
# What a family's output is, for tools that draw or decode it (``kerazoo predict``).
FAMILY_TASKS = {"resnet": "classification", "resnet_v2": "classification", "fcn": "segmentation",
                "pspnet": "segmentation", "hourglass": "pose", "cpm": "pose"}


@dataclass
class ModelSpec:
    """What the registry knows about one model name.

    Attributes:
        name: registry name, e.g. ``"resnet50"``.
        builder: function returning a ``keras.Model``; keyword arguments only.
        family: family name (``"resnet"``, ``"fcn"``, ...), used for presets.
        head_layers: fnmatch patterns of the layer names whose shapes depend on ``head_kwarg``.
        head_kwarg: the builder argument that sets the head size (``"classes"`` or
            ``"num_keypoints"``), or ``None``.
        optional_layers: fnmatch patterns of layers that released weights do not have (PSPNet's
            ``aux_*`` training head): loading leaves them at their initial values and says so.
        weights: tag -> :class:`WeightsRecord`; the first tag is the default.
        task: ``"classification"``, ``"segmentation"``, ``"pose"`` or ``""`` (unknown); defaults to
            the family's (:data:`FAMILY_TASKS`).
    """

    name: str
    builder: Callable[..., Any]
    family: str = ""
    head_layers: tuple[str, ...] = ()
    head_kwarg: str | None = None
    weights: dict[str, WeightsRecord] = field(default_factory=dict)
    task: str = ""
    optional_layers: tuple[str, ...] = ()

    def __post_init__(self):
        self.task = self.task or FAMILY_TASKS.get(self.family, "")

    @property
    def defaults(self) -> dict[str, Any]:
        """Builder keyword arguments and their default values."""
        out = {}
        for p in inspect.signature(self.builder).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                out[p.name] = None if p.default is inspect.Parameter.empty else p.default
        return out

    def is_head_layer(self, layer_name: str) -> bool:
        return any(fnmatch.fnmatchcase(layer_name, pat) for pat in self.head_layers)

    def is_optional_layer(self, layer_name: str) -> bool:
        return any(fnmatch.fnmatchcase(layer_name, pat) for pat in self.optional_layers)

    def weights_fit(self, model):
        """``(file_only_ok, model_only_ok)`` predicates on layer names for loading released weights
        into ``model``: without a head (``include_top=False``) the file's head layers have no place;
        optional layers (an ``aux=True`` head) have no weights in a release, nor do the caller's
        layers in front of an ``input_tensor`` (``model._zoo_upstream_layers``)."""
        has_head = any(self.is_head_layer(l.name) for l in model.layers)
        upstream = set(getattr(model, "_zoo_upstream_layers", ()))
        return ((lambda n: not has_head and self.is_head_layer(n)),
                (lambda n: n in upstream or self.is_optional_layer(n)))


def register(name: str | None = None, *, family: str = "", head_layers=(), head_kwarg=None, task: str = "",
             optional_layers=()):
    """Decorator adding a builder to the registry under ``name`` (default: the function name).

    Example:
        >>> @zoo.register("my_net", head_layers=("logits",), head_kwarg="classes")
        ... def my_net(*, weights=None, input_shape=None, classes=10, name="my_net"): ...

    Raises:
        ValueError: if the name is already registered (case ignored: :func:`list_models` ignores it), is
            not a non-empty string, or holds ``.`` or ``:`` (they separate a weights tag, ``"arch.tag"``,
            so :func:`get_spec` could never find such a name).
    """
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"A model name is a non-empty string (or None: the function's name). Received: {name!r}")

    def wrap(fn):
        key = name or fn.__name__
        if re.search(r"[.:]", key):
            raise ValueError(f"Model name {key!r} cannot contain '.' or ':': they separate a weights tag "
                             f"('arch.tag', 'arch:tag'), so zoo.get would never find it. Use '_' or '-'.")
        same = next((k for k in _MODELS if k.lower() == key.lower()), None)
        if same is not None:
            also = "" if same == key else f" ('{same}': names differing only in case are one name to list_models)"
            raise ValueError(f"A model is already registered under the name '{key}'{also}.")
        _MODELS[key] = ModelSpec(key, fn, family or key, tuple(head_layers), head_kwarg, task=task,
                                 optional_layers=tuple(optional_layers))
        return fn

    return wrap


def register_weights(model_name: str, tag: str, record: WeightsRecord) -> None:
    """Attach a pretrained weights record to a registered model as ``model_name.tag``.

    Raises:
        ValueError: unknown model, an empty tag, or a tag the model already has (a second record
            would silently replace the first for every caller).
    """
    spec = get_spec(model_name)
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"{spec.name}: a weights tag is a non-empty string, got {tag!r}.")
    if tag in spec.weights:
        raise ValueError(f"{spec.name} already has weights tagged '{tag}'; register these under another tag.")
    spec.weights[tag] = record


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def parse_name(name: str) -> tuple[str, str | None]:
    """``"arch:tag"`` or ``"arch.tag"`` -> ``("arch", "tag")``; ``"arch"`` -> ``("arch", None)``.

    Both spellings are accepted everywhere: ``kerazoo list --pretrained`` prints ``arch:tag``,
    Python code tends to write ``arch.tag``.
    """
    if not isinstance(name, str):  # re.split failed with "expected string or bytes-like object"
        raise TypeError(f"A model name must be a string such as 'hourglass' or 'cpm:mpii' (zoo.list_models() lists "
                        f"them). Received: {type(name).__name__} {name!r:.80}")
    parts = re.split(r"[:.]", name, maxsplit=1)
    return parts[0], (parts[1] if len(parts) == 2 else None)


def list_models(pattern: str | list[str] = "*", *, pretrained: bool = False) -> list[str]:
    """Registered model names matching fnmatch ``pattern`` (a string or a list), naturally sorted.

    Matching ignores case (``"ResNet*"`` finds ``resnet50``; timm's ``fnmatch.filter`` does so only
    on Windows). With ``pretrained=True`` only models with weights are
    listed, as ``name.tag`` entries.
    """
    given = [pattern] if isinstance(pattern, str) else pattern
    if not isinstance(given, (list, tuple)) or not all(isinstance(p, str) for p in given):
        raise TypeError(f"list_models: pattern must be a string such as 'resnet*' or a list of them. "
                        f"Received: {pattern!r:.80}")
    patterns = [p.lower().replace(":", ".") for p in given]
    names = []
    for key, spec in _MODELS.items():
        candidates = [f"{key}.{t}" for t in spec.weights] if pretrained else [key]
        for c in candidates:
            if any(fnmatch.fnmatchcase(c.lower(), p) or fnmatch.fnmatchcase(key.lower(), p) for p in patterns):
                names.append(c)
    return sorted(set(names), key=_natural_key)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name`` (``"arch"``, ``"arch.tag"`` or ``"arch:tag"``).

    Raises:
        ValueError: for an unknown name; the message lists the closest registered names.
    """
    arch = parse_name(name)[0]
    if arch not in _MODELS:
        lower = {k.lower(): k for k in _MODELS}  # "ResNet50" -> resnet50, as list_models ignores case
        close = [lower[c] for c in difflib.get_close_matches(arch.lower(), list(lower), n=5, cutoff=0.5)]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model '{name}'.{hint} Registered models: {', '.join(list_models())}."
        )
    return _MODELS[arch]


def info(name: str) -> dict[str, Any]:
    """Builder, defaults, head and known weights (with their metadata) of a registered model.

    ``name`` may carry a weights tag (``"cpm:lsp"``), which must be one of the model's (it was ignored).
    """
    spec = get_spec(name)
    tag = parse_name(name)[1]
    if tag is not None and tag not in spec.weights:
        raise ValueError(f"{spec.name}: unknown weights tag {tag!r} (in {name!r}). Known tags: "
                         f"{', '.join(spec.weights) or 'none registered yet'}.")
    return {
        "name": spec.name,
        "family": spec.family,
        "task": spec.task,
        "builder": f"{spec.builder.__module__}.{spec.builder.__qualname__}",
        "doc": (inspect.getdoc(spec.builder) or "").split("\n\n")[0],
        "defaults": spec.defaults,
        "head_kwarg": spec.head_kwarg,
        "head_layers": list(spec.head_layers),
        "weights": {tag: _weights_info(spec.name, tag, rec) for tag, rec in spec.weights.items()},
    }


def _weights_info(name: str, tag: str, rec: WeightsRecord) -> dict[str, Any]:
    """The record, with where each release file's sha256 comes from (pinned, recorded locally, unknown)."""
    from zoo import pretrained  # imports this module

    d = rec.to_dict()
    for src, row in zip(d.get("sources", ()), pretrained.status(name, tag)["sources"] if rec.sources else ()):
        src["sha256_status"] = row["sha256"]
    return d
