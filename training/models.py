"""Small FCN- and PSPNet-style segmentation models for CPU-sized experiments and tests.

The zoo's FCN (VGG-16, 134 M parameters) and PSPNet (dilated ResNet-50) are far too heavy to
train from scratch on a laptop CPU; these keep the *structure* -- FCN-8s skip fusion of stride
8/16/32 scores, PSPNet's pyramid pooling on a stride-8 dilated encoder with an auxiliary head --
at a width of a few thousand to a few hundred thousand parameters. :func:`training.fit` accepts
their names like zoo names (``fit("tiny_fcn", ...)``); both use the ``"default"`` preset (Adam).

Note:
    Inputs are ``(B, H, W, 3)`` images; outputs are logits ``(B, H, W, C)`` at input resolution.
    ``tiny_fcn`` needs H, W divisible by 32, ``tiny_pspnet`` by 8 * lcm(bins) (32 for its default bins).
"""

from __future__ import annotations

import inspect
import math

import keras
from keras import layers

__all__ = ["tiny_fcn", "tiny_pspnet", "MODELS", "defaults", "build_model"]


def _conv(x, filters, name, dilation=1):
    x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _check(model_name, input_shape, multiple):
    if len(tuple(input_shape)) != 3:  # was "not enough values to unpack"
        raise ValueError(f"{model_name}: input_shape must be (H, W, 3). Received: input_shape={input_shape!r}")
    h, w, c = input_shape
    # None (any size) failed with "unsupported operand type(s) for %": these small nets are built for one size
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)) or c != 3 \
            or h % multiple or w % multiple:
        raise ValueError(f"{model_name}: input_shape must be (H, W, 3) with H and W divisible by {multiple}. "
                         f"Received: input_shape={input_shape!r}")


def tiny_fcn(*, input_shape=(128, 128, 3), classes=21, width=16, name="tiny_fcn"):
    """FCN-8s-shaped network: 5 conv/pool stages, scores at stride 32, 16 and 8 fused, x8 bilinear.

    Args:
        input_shape: ``(H, W, 3)``, H and W divisible by 32.
        classes: C output classes.
        width: channels of the first stage (doubling up to 8x).
        name: model name.
    Returns:
        ``keras.Model`` image -> logits ``(B, H, W, C)``.
    """
    _check(name, input_shape, 32)
    inputs = keras.Input(shape=input_shape, name="image")
    x, feats = inputs, []
    for i, mult in enumerate((1, 2, 4, 8, 8), start=1):
        x = _conv(x, width * mult, f"stage{i}a")
        x = _conv(x, width * mult, f"stage{i}b")
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        feats.append(x)
    score = layers.Conv2D(classes, 1, name="score_fr")(_conv(feats[4], width * 8, "fc"))
    for i, stride in ((3, 16), (2, 8)):  # pool4 then pool3, as FCN-16s/8s
        up = layers.UpSampling2D(2, interpolation="bilinear", name=f"upscore_to{stride}")(score)
        skip = layers.Conv2D(classes, 1, kernel_initializer="zeros", name=f"score_pool{i + 1}")(feats[i])
        score = layers.Add(name=f"fuse_{stride}")([up, skip])
    out = layers.UpSampling2D(8, interpolation="bilinear", name="upscore8")(score)
    return keras.Model(inputs, out, name=name)


def tiny_pspnet(*, input_shape=(128, 128, 3), classes=21, width=16, bins=(1, 2, 4), aux=True, name="tiny_pspnet"):
    """PSPNet-shaped network: stride-8 encoder (dilated last stage), pyramid pooling, optional aux head.

    Args:
        input_shape: ``(H, W, 3)``, H and W divisible by 8 * lcm(bins) (32 for the default bins, 48 for 1, 2, 3, 6).
        classes: C.
        width: channels of the first stage.
        bins: pyramid pooling grid sizes (PSPNet: 1, 2, 3, 6 on 60x60 features).
        aux: add the auxiliary head on stage 3 (trained with loss weight 0.4) as a second output.
        name: model name.
    Returns:
        ``keras.Model`` image -> logits ``(B, H, W, C)`` (and the aux logits when ``aux``).
    """
    # every bin must split the stride-8 map evenly (pool h // b, upsample back to h): 8 * lcm, not 8 * max
    _check(name, input_shape, 8 * math.lcm(*bins))
    h, w = input_shape[0] // 8, input_shape[1] // 8
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, mult in enumerate((1, 2, 4), start=1):
        x = _conv(x, width * mult, f"stage{i}a")
        x = _conv(x, width * mult, f"stage{i}b")
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    stage3 = x
    x = _conv(x, width * 8, "stage4a", dilation=2)
    x = _conv(x, width * 8, "stage4b", dilation=4)
    branches = [x]
    for b in bins:
        p = layers.AveragePooling2D((h // b, w // b), name=f"ppm{b}_pool")(x)
        p = layers.Conv2D(width * 2, 1, use_bias=False, name=f"ppm{b}_conv")(p)
        p = layers.BatchNormalization(momentum=0.9, name=f"ppm{b}_bn")(p)
        p = layers.ReLU(name=f"ppm{b}_relu")(p)
        branches.append(layers.UpSampling2D((h // b, w // b), interpolation="bilinear", name=f"ppm{b}_up")(p))
    x = layers.Concatenate(name="ppm_concat")(branches)
    x = _conv(x, width * 4, "head")
    x = layers.Dropout(0.1, name="head_dropout")(x)
    out = layers.UpSampling2D(8, interpolation="bilinear", name="logits")(layers.Conv2D(classes, 1, name="cls")(x))
    if not aux:
        return keras.Model(inputs, out, name=name)
    a = _conv(stage3, width * 2, "aux")
    a = layers.UpSampling2D(8, interpolation="bilinear", name="aux_logits")(layers.Conv2D(classes, 1, name="aux_cls")(a))
    return keras.Model(inputs, [out, a], name=name)


MODELS = {"tiny_fcn": (tiny_fcn, "default"), "tiny_pspnet": (tiny_pspnet, "default")}


def defaults(name: str) -> dict:
    """Keyword arguments (and defaults) of the builder ``name``."""
    return {p.name: p.default for p in inspect.signature(MODELS[name][0]).parameters.values()}


# ------------------------------------------------------------------ any model, for training.fit
def _family(model, name=None) -> str:
    if name is not None:
        import zoo

        try:
            return zoo.get_spec(name).family
        except ValueError:
            pass
    zname = getattr(model, "_zoo_name", None)
    if zname:
        import zoo

        return zoo.get_spec(zname).family
    return getattr(model, "_kerazoo_family", "default")


_TASKS = ("pose", "segmentation")  # what training.fit trains


def _run_metadata(model, path) -> None:
    """Give a model loaded from a training run's ``.keras`` the run's family, task, background map (``predict``
    drops it), CPM centre map sigma (``HeatmapDataset.center_map_sigma``, input px: what ``predict`` and the
    evaluate command feed), input convention, heatmap offset (``HeatmapDataset.heatmap_offset``, read by
    ``evaluate`` and ``predict`` through the record) and flip pairs (``predict(flip=True)``).

    Runs written before their ``.keras`` files held these (:func:`_saved_metadata`) have them in ``config.json``
    only: without them fine-tuning ``runs/hg/best.keras`` used the default preset (Adam) and a CPM checkpoint got
    pixels / 255 instead of its BGR / 256 - 0.5. A file that holds them (``zoo.load_keras_model`` gave them) keeps
    its own: a run's file put into another run's folder took that run's family and background map.
    """
    import json
    import zipfile
    from pathlib import Path

    from zoo.weights import KERAS_METADATA

    try:
        with zipfile.ZipFile(path) as z:
            if KERAS_METADATA in z.namelist():
                return
    except (OSError, zipfile.BadZipFile):
        pass  # not an archive: zoo.load_keras_model says so
    try:
        config = json.loads((Path(path).parent / "config.json").read_text())
        config["family"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # not a run folder (a converted net, a copied file)
    settings = _run_settings(config)
    for key in ("family", "task", "background", "center_map_sigma"):
        if settings[key] is not None:
            setattr(model, f"_kerazoo_{key}", settings[key])
    if settings["record"] is not None and getattr(model, "_zoo_record", None) is None:
        model._zoo_record = settings["record"]


def _run_settings(config: dict) -> dict:
    """What a run's ``config.json`` content says about its model: ``family``, ``task``, ``background``,
    ``center_map_sigma`` and ``record`` (its input convention, heatmap offset and sigma, and flip pairs), ``None``
    where it says nothing readable."""
    import zoo
    from training.normalization import Normalization

    family = config.get("family")
    out = {"family": family if isinstance(family, str) and family else None,
           # predict: a coarse segmentation output is not heatmaps
           "task": config["task"] if config.get("task") in ("pose", "segmentation") else None,
           "background": None, "center_map_sigma": None, "record": None}
    train_data = config.get("train_data")
    background = train_data.get("background") if isinstance(train_data, dict) else None
    if isinstance(background, bool):  # predict: the last map is CPM's background (whatever name the model is given)
        out["background"] = background
    sigma = train_data.get("center_map_sigma") if isinstance(train_data, dict) else None
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and math.isfinite(sigma) and sigma > 0:
        # a run fitted in Python may have fed another Gaussian than the training command's 21
        out["center_map_sigma"] = float(sigma)
    n = Normalization.of_config(config)
    if n is not None:
        try:  # where the run's targets put heatmap pixel 0 (a release fine-tuned in its own convention)
            offset = float((config.get("train_data") or {}).get("heatmap_offset", 0.0))
        except (AttributeError, TypeError, ValueError):
            offset = 0.0
        sigma = train_data.get("sigma") if isinstance(train_data, dict) else None
        ok = isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and math.isfinite(sigma) and sigma > 0
        out["record"] = zoo.WeightsRecord(scale=n.scale, mean=n.mean, std=n.std, channel_order=n.channel_order,
                                          heatmap_offset=offset if math.isfinite(offset) else 0.0,
                                          # the run's targets' Gaussians, which fine-tuning its .keras keeps
                                          heatmap_sigma=float(sigma) if ok and config.get("task") == "pose" else None,
                                          flip_pairs=_run_flip_pairs(config), **_run_names(config))
    return out


def _run_names(config) -> dict:
    """``{"keypoint_names": ...}`` or ``{"class_names": ...}`` as the run's data named its outputs (``predict`` and
    ``evaluate`` use them), ``{}`` when it did not (older runs, unnamed data) or the entry is unreadable."""
    data = config.get("train_data") if isinstance(config.get("train_data"), dict) else {}
    for key in ("keypoint_names", "class_names"):
        names = data.get(key)
        if isinstance(names, list) and names and all(isinstance(n, str) and n for n in names):
            return {key: tuple(names)}
    return {}


def _saved_metadata(model, config: dict) -> dict:
    """What a run writes into its ``.keras`` files (``zoo.weights.write_keras_metadata``), so that
    ``zoo.load_keras_model`` and ``zoo.get(name, weights=...)`` give the model what :func:`_run_metadata` gives it
    from ``config.json``: the run's settings (:func:`_run_settings` of ``config`` as ``config.json`` reads back),
    and the registry name and builder arguments ``zoo.get`` rebuilds it with (none for a model not built by it)."""
    import json

    from zoo.saving import model_metadata

    built = model_metadata(model)  # a run's .keras fine-tuned: the builder of the run before; JSON-able arguments
    return {**_run_settings(json.loads(json.dumps(config, default=float))), "model_name": built["model_name"],
            "builder_kwargs": built["builder_kwargs"]}


def _run_flip_pairs(config):
    """The run's left/right keypoint pairs (``predict --flip`` needs them): ``()`` when its data had no
    left/right joints, ``None`` when the run did not say (segmentation, flip_pairs not given, older runs)."""
    pairs = (config.get("train_data") or {}).get("flip_pairs")
    try:
        return tuple((int(a), int(b)) for a, b in pairs)
    except (TypeError, ValueError):  # absent or unreadable: no pairs rather than wrong ones
        return None


def build_model(name_or_path, task, dataset, model_kwargs=None):
    """Build a model for ``dataset``: a zoo name, a :mod:`training.models` name, or a ``.keras`` path.

    Builder arguments ``input_shape``, ``num_keypoints`` (pose) and ``classes`` (segmentation)
    default to what ``dataset`` provides; PSPNet gets ``aux=True`` for training. A ``.keras`` file
    of a training run (``config.json`` beside it) gets the run's family (its preset) and input
    normalisation; other ``.keras`` files the ``"default"`` family.

    Raises:
        ValueError: ``task`` is not ``"pose"``/``"segmentation"``, the named model is made for another
            task (a classifier, a pose model for masks), the name is unknown, or builder arguments
            are given with a ``.keras`` file.
    """
    import zoo

    if task not in _TASKS:
        raise ValueError(f"build_model: task must be one of {_TASKS}. Received: task={task!r}")
    kwargs = dict(model_kwargs or {})
    if str(name_or_path).endswith(".keras"):
        if kwargs:  # a saved model is not rebuilt: builder arguments would be ignored without a word
            raise ValueError(f"build_model: '{name_or_path}' is a saved model, which takes no builder arguments "
                             f"(--model-arg / model_kwargs). Received: {sorted(kwargs)}")
        model = zoo.load_keras_model(name_or_path)
        _run_metadata(model, name_or_path)
        return model, getattr(model, "_kerazoo_family", "default")
    if name_or_path in MODELS:
        builder, family = MODELS[name_or_path]
        known, made_for = defaults(name_or_path), "segmentation"  # both tiny models segment
    else:
        spec = zoo.get_spec(name_or_path)
        builder, family, known = (lambda **kw: zoo.get(name_or_path, **kw)), spec.family, spec.defaults
        made_for = spec.task
    if made_for and made_for != task:  # a ResNet classifier raised IndexError on masks; hourglass could train on them
        raise ValueError(f"build_model: '{name_or_path}' is a {made_for} model; the dataset is for {task}. "
                         f"Pick a {task} model (zoo.get_spec(name).task says what each one is for).")
    w, h = dataset.input_size
    if "input_shape" in known:
        kwargs.setdefault("input_shape", (h, w, 3))
    if task == "pose" and "num_keypoints" in known:
        kwargs.setdefault("num_keypoints", dataset.num_keypoints)
    if task == "segmentation" and "classes" in known:
        kwargs.setdefault("classes", dataset.num_classes)
    if task == "segmentation" and "aux" in known:
        kwargs.setdefault("aux", True)
    model = builder(**kwargs)
    model._kerazoo_family = family
    return model, family
