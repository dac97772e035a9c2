"""Make a model and its datasets agree before :func:`training.fit` trains: dtype policy, output geometry,
input normalisation and feed, and the heatmap sigma/offset convention of the model's weights."""

from __future__ import annotations

import contextlib

import keras

from training.data import HeatmapDataset, Normalization, model_feed
from training.data.base import check_model_input, check_model_task, model_center_map_sigma, model_output_size
from training.distribute import Placement
from training.models import _family, build_model
from zoo.api import carry_metadata, weights_record
from zoo.initializers import host_drawn_copy, record_as_keras

__all__ = ["with_normalization"]


@contextlib.contextmanager
def _dtype_policy(policy):
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _with_policy(model, policy):
    """Clone ``model`` with every layer, nested ones included, in dtype ``policy`` (outputs stay float32)
    and copy the weights."""
    outputs = {id(t._keras_history[0]) for t in model.outputs}

    def clone(layer):  # its weights drawn with NumPy (Keras' draws compiled per shape on JAX), then replaced below
        return host_drawn_copy(layer, dtype="float32" if id(layer) in outputs else policy)

    # recursive: layers of a nested model (a backbone) take the policy too, and their variables are
    # created again here (inside a distribution scope); frozen layers stay frozen (their config says so).
    new = keras.models.clone_model(model, clone_function=clone, recursive=True)
    record_as_keras(new)
    new.set_weights(model.get_weights())
    return carry_metadata(model, new)


def with_normalization(model, normalization, name="normalize"):
    """``model`` with ``normalization`` as a layer on its first (image) input, which then takes uint8 pixels.

    The graph is rebuilt flat around the same layer objects (weights shared, names unchanged): a
    :class:`zoo.layers.Normalize` between a new ``uint8`` input of the same name and shape and the
    layers that consumed the old input. Other inputs (CPM's centre map) are kept as they are.
    """
    image = model.inputs[0]
    raw = keras.Input(shape=tuple(image.shape[1:]), batch_size=image.shape[0], dtype="uint8", name=image.name)
    normalized = normalization.layer(name)(raw)

    def call(layer, *args, **kwargs):
        args, kwargs = keras.tree.map_structure(lambda t: normalized if t is raw else t, (args, kwargs))
        return layer(*args, **kwargs)

    others = [keras.Input(shape=tuple(t.shape[1:]), batch_size=t.shape[0], dtype=t.dtype, name=t.name)
              for t in model.inputs[1:]]
    inputs = keras.tree.pack_sequence_as(model.input, [raw] + others)
    new = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer,
                                   call_function=call)
    return carry_metadata(model, new)


def _prepare_model(model, task, train_data, val_data, model_kwargs, policy, feed, dist: Placement, log):
    """Build/clone the model in ``policy``, match the datasets to it (geometry, normalisation, feed).

    Returns:
        ``(model, family)``; the datasets are updated in place.
    """
    with _dtype_policy(policy):
        if isinstance(model, keras.Model):
            family = _family(model)
            if policy is not None:
                model = _with_policy(model, policy)
            elif dist.strategy is not None:  # variables inside the scope / created under JAX's distribution:
                # a model built before fit holds them on one device, which DataParallel's jitted step refused
                model = _with_policy(model, keras.config.dtype_policy().name)
        else:
            model, family = build_model(model, task, train_data, model_kwargs)
            if policy is not None:  # a .keras file keeps the dtypes it was saved with (bf16 given: it trained in
                # float32; a bf16 run's file given fp16: bf16), and a model built by name had bf16 outputs
                model = _with_policy(model, policy)
    check_model_task(model, task, "fit")
    for what, ds in (("train", train_data), ("val", val_data)):
        if ds is not None:
            _check_geometry(model, task, ds, lambda m, w=what: log(f"{w} {m}"))
    if val_data is not None:
        val_data.num_outputs = train_data.num_outputs
    rec = getattr(model, "_zoo_record", None)
    if rec is not None and train_data.normalization == Normalization():
        for ds in (train_data, val_data):
            if ds is not None:
                ds.normalization = Normalization.from_record(rec)
    if task == "pose":
        _match_heatmap_sigma(model, rec, train_data, val_data, log)
        _match_heatmap_offset(model, getattr(model, "_zoo_record", None), train_data, val_data, log)
    want = "uint8" if model_feed(model) == "uint8" else (feed or train_data.feed)
    if want == "uint8" and model_feed(model) != "uint8":
        with _dtype_policy(policy):
            model = with_normalization(model, train_data.normalization)
        log(f"model: input normalisation {train_data.normalization} moved into the model; it takes uint8 pixels")
    for what, ds in (("train", train_data), ("val", val_data)):
        if ds is not None and ds.feed != want:
            log(f"{what} dataset: feed {ds.feed} -> {want} (what the model expects)")
            ds.feed = want
    return model, family


def _check_geometry(model, task, ds, log) -> None:
    """Match the dataset's targets to the model's outputs (count, size, channels); its crops must be the model's
    input size."""
    check_model_input(model, ds, "fit")
    outs = model.outputs
    if ds.num_outputs != len(outs):
        log(f"dataset: {len(outs)} model outputs -> one target per output (was {ds.num_outputs})")
        ds.num_outputs = len(outs)
    shape = tuple(outs[-1].shape if task == "pose" else outs[0].shape)
    if len(shape) != 4:  # a classifier's (B, C): shape[-1] / shape[1:3] below failed with an IndexError
        which, want = ("last", "(B, h, w, K) heatmaps") if task == "pose" else ("first", "(B, h, w, C) class scores")
        raise ValueError(f"fit: the model's {which} output has shape {shape}, but {task} training needs {want} "
                         f"(a classifier's output is (B, classes)).")
    if None in shape[1:3]:  # an any-size model: its output at the dataset's crops (a size it cannot take is named
        # here, not by Keras' shape error in the first batch; targets of another size failed in the loss)
        try:
            ow, oh = model_output_size(model, -1 if task == "pose" else 0, ds.input_size)
        except ValueError as e:
            raise ValueError(f"fit: {e}; make the {type(ds).__name__} with an input_size it takes "
                             f"(kerazoo train: --input-size).") from None
        shape = (shape[0], oh, ow, shape[3])
    if task == "pose":
        if len(model.inputs) == 2 and ds.center_map_sigma is None:
            # a run's .keras trained with its own sigma (config.json, via _run_metadata); else the release's 21
            sigma = model_center_map_sigma(model)
            log(f"dataset: model takes (image, center_map) -> CPM centre map with sigma {sigma:g}")
            ds.center_map_sigma = float(sigma)
        ch = shape[-1]
        if ch == ds.num_keypoints + 1 and not ds.background:
            log("dataset: model predicts K + 1 maps -> CPM background channel added")
            ds.background = True
        want = ds.num_keypoints + (1 if ds.background else 0)
        if ch != want:
            raise ValueError(f"model output has {ch} heatmap channels but the dataset gives {want} "
                             f"({ds.num_keypoints} keypoints{' + background' if ds.background else ''}).")
        if None not in shape[1:3] and (shape[2], shape[1]) != tuple(ds.heatmap_size):
            log(f"dataset: heatmap_size {tuple(ds.heatmap_size)} -> {(shape[2], shape[1])} (model output)")
            ds.heatmap_size = (int(shape[2]), int(shape[1]))
            ds.codec  # noqa: B018  (validates the stride)
    else:
        if shape[-1] != ds.num_classes:
            raise ValueError(f"model output has {shape[-1]} classes but the dataset has num_classes={ds.num_classes}.")
        if None not in shape[1:3] and (shape[2], shape[1]) != tuple(ds.label_size):
            log(f"dataset: label_size {tuple(ds.label_size)} -> {(shape[2], shape[1])} (model output)")
            ds.label_size = (int(shape[2]), int(shape[1]))


def _match_heatmap_sigma(model, rec, train_data, val_data, log) -> None:
    """Train on the Gaussians the weights learnt, and keep the model's record true to what it learns.

    A release's targets had their own width (``rec.heatmap_sigma``: hourglass:mpii 1.75, the CPM releases 0.875
    heatmap px); with a dataset not given a ``sigma``, its targets take it, so fine-tuning does not first reshape
    every peak (training's 2.0 is 2.3x CPM's). A dataset given a sigma wins; the model's record then says so.
    The validation targets follow the training ones where they were not given one either.
    """
    theirs = getattr(rec, "heatmap_sigma", None)
    if theirs is not None and not train_data.sigma_given and train_data.sigma != theirs:
        train_data.sigma = theirs
        log(f"targets: sigma {theirs:g} heatmap px, the Gaussians of the model's weights "
            f"(HeatmapDataset(sigma=...) to train another)")
    ours = train_data.sigma
    if val_data is not None and val_data.sigma != ours and not val_data.sigma_given:
        log(f"val targets: sigma {val_data.sigma:g} -> {ours:g} heatmap px (the training targets')")
        val_data.sigma = ours
    if rec is not None and ours != theirs:  # a later fine-tuning of this model keeps it
        model._zoo_record = rec.replace(heatmap_sigma=ours)


def _match_heatmap_offset(model, rec, train_data, val_data, log) -> None:
    """Train in the weights' heatmap convention, and keep the model's record true to what it learns.

    A release's weights put heatmap pixel 0 at ``rec.heatmap_offset`` input px (CPM 3.5, hourglass 1.5):
    with a dataset left at the default 0, its targets move to the release's convention (as the input
    normalisation does), so fine-tuning does not first unlearn a 2-3.5 px shift. A dataset given another
    offset wins; the model's record then says so, since ``evaluate``/``predict`` decode with it.
    The validation targets follow the training ones.
    """
    theirs = float(getattr(rec, "heatmap_offset", 0.0) or 0.0)
    if theirs and not train_data.heatmap_offset:
        train_data.heatmap_offset = theirs
        log(f"targets: heatmap_offset {theirs:g} input px, the convention of the model's weights "
            f"(HeatmapDataset(heatmap_offset=...) to train another)")
    ours = train_data.heatmap_offset
    if val_data is not None and val_data.heatmap_offset != ours:
        log(f"val targets: heatmap_offset {val_data.heatmap_offset:g} -> {ours:g} input px (the training targets')")
        val_data.heatmap_offset = ours
    if rec is not None and ours != theirs:
        model._zoo_record = rec.replace(heatmap_offset=ours)
    elif rec is None and ours:
        import zoo

        n = train_data.normalization
        model._zoo_record = zoo.WeightsRecord(scale=n.scale, mean=n.mean, std=n.std, channel_order=n.channel_order,
                                              heatmap_offset=ours)


def _named_config(ds, model) -> dict:
    """``ds.config()``; data without keypoint/class names takes those of the model's weights record when they are as
    many (a release fine-tuned on its own data: hourglass:mpii on MPII keeps its joints' names for ``predict``)."""
    config = ds.config()
    key, count = ("keypoint_names", ds.num_keypoints) if isinstance(ds, HeatmapDataset) else \
        ("class_names", ds.num_classes)
    record = weights_record(model)
    names = getattr(record, key, None) if record is not None else None
    if config.get(key) is None and names and len(names) == count:
        config[key] = list(names)
    return config
