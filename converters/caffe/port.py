"""Fill a zoo model's layers with a Caffe net's blobs, matched by layer name.

The zoo builders name their layers after the Caffe releases (``conv1``, ``bn_conv1``,
``res2a_branch2a``, ``conv1_1_3x3_s2_bn`` for PSPNet's ``conv1_1_3x3_s2/bn`` ...), so porting is a
name lookup plus the layout changes of :mod:`converters.caffe.blobs`:

- Convolution -> ``Conv2D`` kernel ``(kh, kw, I/g, O)``; Deconvolution -> ``Conv2DTranspose``;
  InnerProduct -> ``Dense`` (rows reordered when its bottom is a spatial blob);
- BatchNorm + its Scale -> one ``BatchNormalization`` named after the BatchNorm layer; PSPNet
  ``BN`` -> ``BatchNormalization``; a lone Scale -> ``ChannelScale``; PReLU -> ``PReLU``.

Strict: every Caffe blob must land in the zoo model and every zoo weight must be filled, else
:class:`WeightsMismatchError` lists what is missing on each side, and nothing is changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from converters.caffe import blobs as B
from converters.caffe.errors import WeightsMismatchError
from converters.caffe.graph import Layer, Net
from converters.caffe.context import bn_epsilon, bn_scale_pairs, keras_name
from converters.caffe.params import conv_geometry, opt, sub

__all__ = ["port", "PortReport", "FAMILY_MAPPINGS"]

#: Zoo family -> {Caffe layer name: zoo layer name (or None to leave that Caffe layer out)}, for
#: layers whose zoo name is not the Caffe name with ``/`` replaced by ``_``. Every family's builder
#: uses the names of its Caffe release, so these are empty; ``hourglass`` has no Caffe release.
FAMILY_MAPPINGS: dict[str, dict[str, str | None]] = {
    "resnet": {},  # KaimingHe/deep-residual-networks ResNet-50/101/152 deploy names
    "resnet_v2": {},  # soeaver/caffe-model pre-activation ResNet names
    "fcn": {},  # shelhamer/fcn.berkeleyvision.org voc-fcn*s names
    "cpm": {},  # shihenw/convolutional-pose-machines-release names (input Slice excepted)
    "pspnet": {},  # hszhao/PSPNet names, "/" -> "_"
}


@dataclass
class PortReport:
    """What :func:`port` did.

    Attributes:
        filled: zoo layer names that received weights.
        caffe_layers: Caffe layer names whose blobs were used (Scale layers folded included).
        folded_bn_scale: BatchNorm + Scale pairs folded into one BatchNormalization.
        dropped: Caffe layers left out on purpose (mapped to ``None``).
        epsilon_changed: ``"layer: old -> new"`` for zoo BatchNormalization layers whose epsilon was
            set to the Caffe layer's (e.g. an earlier PSPNet deploy's BN adds ``var_eps`` = 1e-10, not 1e-5).
    """

    filled: list[str] = field(default_factory=list)
    caffe_layers: list[str] = field(default_factory=list)
    folded_bn_scale: int = 0
    dropped: list[str] = field(default_factory=list)
    epsilon_changed: list[str] = field(default_factory=list)


def _zoo_layers(model):
    """name -> layer for every leaf layer with weights (nested models included)."""
    out = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.weights and not getattr(layer, "layers", None):
            out[layer.name] = layer
    return out


def _bias(layer: Layer, p, default=True):
    return [B.vector(layer.blobs[1])] if bool(opt(p, "bias_term", default)) and len(layer.blobs) > 1 else []


def _bn_arrays(zoo_layer, gamma, beta, mean, var):
    arrays = ([gamma] if zoo_layer.scale else []) + ([beta] if zoo_layer.center else []) + [mean, var]
    dropped = (not zoo_layer.scale and np.any(gamma != 1)) or (not zoo_layer.center and np.any(beta != 0))
    if dropped:
        raise WeightsMismatchError(
            f"zoo layer '{zoo_layer.name}' has scale={zoo_layer.scale}, center={zoo_layer.center} but the Caffe "
            f"layer has a non-trivial gamma/beta"
        )
    return arrays


def _arrays_for(layer: Layer, scale: Layer | None, zoo_layer, net: Net):
    """Keras weights of ``zoo_layer`` from the blobs of ``layer`` (and a folded ``scale``)."""
    kind = type(zoo_layer).__name__
    t = layer.type
    if t == "Convolution" and kind in ("Conv2D", "GroupedConv2D"):
        cp = sub(layer.param, "convolution_param")
        return [B.conv_kernel(layer.blobs[0])] + _bias(layer, cp)
    if t == "Convolution" and kind == "DepthwiseConv2D":
        k = B.conv_kernel(layer.blobs[0])  # (kh, kw, 1, O) -> (kh, kw, C, m)
        k = k.reshape(k.shape[0], k.shape[1], -1, zoo_layer.depth_multiplier)
        return [k] + _bias(layer, sub(layer.param, "convolution_param"))
    if t == "Deconvolution" and kind == "Conv2DTranspose":
        cp = sub(layer.param, "convolution_param")
        _, _, _, dilation = conv_geometry(cp, layer)
        return [B.deconv_kernel(layer.blobs[0], int(opt(cp, "group", 1)), dilation)] + _bias(layer, cp)
    if t == "InnerProduct" and kind == "Dense":
        ip = sub(layer.param, "inner_product_param")
        shape = net.shapes.get(layer.bottoms[0])
        chw = tuple(shape[1:]) if shape is not None and len(shape) == 4 else None
        k = B.dense_kernel(layer.blobs[0], transpose=bool(opt(ip, "transpose", False)), chw=chw)
        return [k] + _bias(layer, ip)
    if t == "BatchNorm" and kind == "BatchNormalization":
        return _bn_arrays(zoo_layer, *B.bn_weights(layer.blobs, scale.blobs if scale else None,
                                                   what=f"Caffe layer '{layer.name}'"))
    if t == "BN" and kind == "BatchNormalization":
        return _bn_arrays(zoo_layer, *B.psp_bn_weights(layer.blobs, what=f"Caffe layer '{layer.name}'"))
    if t == "Scale" and kind in ("ChannelScale", "CaffeScale"):
        shapes = [tuple(w.shape) for w in zoo_layer.weights]
        return [B._f32(b).reshape(s) for b, s in zip(layer.blobs, shapes)]
    if t == "PReLU" and kind == "PReLU":
        shape = tuple(zoo_layer.weights[0].shape)
        alpha = B.vector(layer.blobs[0])
        if alpha.size == int(np.prod(shape)):
            return [alpha.reshape(shape)]
        return [np.full(shape, alpha[0], np.float32)] if alpha.size == 1 else [alpha]
    raise WeightsMismatchError(f"Caffe {t} layer '{layer.name}' cannot fill zoo layer '{zoo_layer.name}' ({kind})")


def port(net: Net, zoo_model, *, mapping: dict[str, str | None] | None = None, optional=None) -> PortReport:
    """Copy the blobs of ``net`` into ``zoo_model``'s layers of the same names.

    Args:
        net: a loaded Caffe net with blobs (:func:`converters.caffe.load` with a caffemodel).
        zoo_model: a model from a zoo builder (e.g. ``zoo.get("resnet50")``).
        mapping: Caffe layer name -> zoo layer name, for names that differ (see
            :data:`FAMILY_MAPPINGS`); ``None`` as a value leaves that Caffe layer out on purpose.
            Other names map to themselves with ``/`` replaced by ``_``.
        optional: ``name -> bool``: zoo layers the net may leave unfilled (PSPNet's ``aux_*``
            training head); they keep their values.
    Each zoo ``BatchNormalization`` takes the epsilon its Caffe layer uses (listed in
    ``PortReport.epsilon_changed`` when it differs from the builder's), so outputs stay exact.

    Returns:
        A :class:`PortReport`.
    Raises:
        UnsupportedLayerError: a BatchNorm/BN layer that uses batch statistics at test time.
        WeightsMismatchError: Caffe layers with blobs that found no zoo layer, zoo layers with
            weights that got none, or shapes that differ; the message lists each, and the model is
            left unchanged.
    """
    mapping = dict(mapping or {})
    folds = bn_scale_pairs(net)
    folded_scales = {s.name: bn for bn, s in folds.items()}
    zoo = _zoo_layers(zoo_model)
    report = PortReport()
    plan, missing_in_zoo, mismatched, sources = [], [], [], {}
    for layer in net.layers:
        if not layer.blobs or layer.name in folded_scales:
            continue
        target = mapping.get(layer.name, keras_name(layer.name))
        scale = folds.get(layer.name)
        if target is None:
            report.dropped.append(layer.name)
            continue
        label = f"'{layer.name}' ({layer.type}{' + Scale ' + repr(scale.name) if scale else ''})"
        if target not in zoo:
            missing_in_zoo.append(f"{label} -> no zoo layer '{target}'")
            continue
        if target in sources:
            mismatched.append(f"zoo layer '{target}' is the target of both {sources[target]} and {label}")
            continue
        sources[target] = label
        zoo_layer = zoo[target]
        try:
            arrays = _arrays_for(layer, scale, zoo_layer, net)
        except WeightsMismatchError as e:
            mismatched.append(str(e))
            continue
        want = [tuple(w.shape) for w in zoo_layer.weights]
        have = [tuple(a.shape) for a in arrays]
        if want != have:
            mismatched.append(f"{label} -> zoo layer '{target}': Caffe gives {have}, the zoo layer needs {want}")
            continue
        eps = bn_epsilon(layer) if layer.type in ("BatchNorm", "BN") else None
        plan.append((zoo_layer, arrays, eps))
        report.caffe_layers += [layer.name] + ([scale.name] if scale else [])
        report.folded_bn_scale += scale is not None
    missing_in_caffe = [f"'{n}' ({type(l).__name__}, {[tuple(w.shape) for w in l.weights]})"
                        for n, l in zoo.items() if n not in sources and not (optional is not None and optional(n))]
    if missing_in_zoo or missing_in_caffe or mismatched:
        lines = [f"Caffe net '{net.name}' does not fit zoo model '{zoo_model.name}':"]
        for title, items in (("Caffe layers with blobs the zoo model lacks", missing_in_zoo),
                             ("zoo layers with weights the Caffe net does not fill", missing_in_caffe),
                             ("layers that do not fit", mismatched)):
            if items:
                lines.append(f"{len(items)} {title}:")
                lines.extend(f"  - {x}" for x in items)
        raise WeightsMismatchError("\n".join(lines))
    for zoo_layer, arrays, eps in plan:
        zoo_layer.set_weights(arrays)
        report.filled.append(zoo_layer.name)
        if eps is not None and not np.isclose(zoo_layer.epsilon, eps, rtol=1e-6, atol=0):
            # Caffe's epsilon is part of the trained model: keep the outputs exact.
            report.epsilon_changed.append(f"{zoo_layer.name}: {zoo_layer.epsilon:g} -> {eps:g}")
            zoo_layer.epsilon = eps
    if report.epsilon_changed:
        for attr in ("predict_function", "test_function", "train_function"):
            if getattr(zoo_model, attr, None) is not None:
                setattr(zoo_model, attr, None)  # compiled with the old epsilon
    return report
