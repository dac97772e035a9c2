"""Save a whole model as ``.keras`` with what kerazoo knows about it: :func:`save_model`, the inverse of
:func:`zoo.load_keras_model`.

``model.save`` writes Keras' archive only, so a copy of a training run's model (or of its
``zoo.optimize_for_inference`` clone) lost the run's record, task and CPM centre-map sigma, and was then fed
pixels / 255 and decoded at heatmap offset 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zoo.files import check_file_target, replace_durably, short_name, writable_folder_error, write_errors_naming
from zoo.tensorflow_probe import tensorflow_if_imported
from zoo.weights import write_keras_metadata

__all__ = ["save_model", "model_metadata"]


def model_metadata(model) -> dict[str, Any]:
    """What :func:`zoo.get`, :func:`zoo.load_keras_model` and training attached to ``model``, as
    :func:`zoo.weights.write_keras_metadata` takes it: registry name and builder arguments (JSON-able ones only:
    no ``input_tensor``), weights record, family, task, background map, CPM centre-map sigma (input px)."""
    from zoo.api import build_info

    name, kwargs = build_info(model)
    if name is None:  # a loaded run's model: the builder it was made with
        name, kwargs = getattr(model, "_kerazoo_builder", None) or (None, {})
    kept = {}
    for k, v in kwargs.items():
        try:
            kept[k] = json.loads(json.dumps(v))
        except (TypeError, ValueError):
            pass
    meta = {"model_name": name, "builder_kwargs": kept, "record": getattr(model, "_zoo_record", None)}
    for key in ("family", "task", "background", "center_map_sigma"):
        meta[key] = getattr(model, f"_kerazoo_{key}", None)
    return meta


_BACKEND_OPTIMIZERS = "keras.src.backend."  # PyTorch's Keras swaps Adam, AdamW, RMSprop... for its own subclasses


def _backend_free(config):
    """``config`` with every serialized object's backend module (``keras.src.backend.torch.optimizers.torch_adam``)
    named as the public ``keras.optimizers``, and whether any was; nested (a LossScaleOptimizer's inner one)."""
    if isinstance(config, list):
        pairs = [_backend_free(c) for c in config]
        return [c for c, _ in pairs], any(f for _, f in pairs)
    if not isinstance(config, dict):
        return config, False
    found, out = False, {}
    for k, v in config.items():
        if k == "module" and isinstance(v, str) and v.startswith(_BACKEND_OPTIMIZERS) and ".optimizers." in v:
            out[k], found = "keras.optimizers", True
        else:
            out[k], f = _backend_free(v)
            found = found or f
    return out, found


def _portable_compile(config: dict):
    """``config`` (a ``.keras``'s) with the backend's own run settings left to the loading backend: ``jit_compile``
    ``"auto"`` (JAX saved True, which asked PyTorch for torch.compile) and ``steps_per_execution`` 1 (a JAX run's 2
    made the file refuse every call on PyTorch, which takes only 1); and whether anything changed."""
    compiled = config.get("compile_config")
    if not isinstance(compiled, dict):
        return config, False
    runtime = {"jit_compile": "auto", "steps_per_execution": 1}
    if all(compiled.get(k, v) == v for k, v in runtime.items()):
        return config, False
    return {**config, "compile_config": {**compiled, **{k: v for k, v in runtime.items() if k in compiled}}}, True


def _make_portable(path) -> None:
    """Make the ``.keras`` at ``path`` load compiled on every backend (rewritten in place when needed).

    Keras on PyTorch compiles ``TorchRMSprop`` (a subclass with the same variables) for ``RMSprop``, and saves
    its module, which imports only where torch is installed: a run trained on PyTorch could not be opened by
    ``keras.saving.load_model`` on JAX or TensorFlow without torch (``Could not deserialize class 'RMSprop'``);
    the public class is named instead. The saving backend's run settings go too (:func:`_portable_compile`).
    Other files are left as they are, unread but for their config.
    """
    import json
    import shutil
    import zipfile

    path = Path(path)
    with zipfile.ZipFile(path) as z:
        config, found = _backend_free(json.loads(z.read("config.json")))
    config, runtime = _portable_compile(config)
    if not (found or runtime):
        return
    copy = path.with_name(path.name + ".portable")
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(copy, "w") as dst:  # the same entries, in order
            for info in src.infolist():
                if info.filename == "config.json":
                    dst.writestr(info, json.dumps(config))
                else:  # streamed: a large model's weights are not held in memory twice
                    with src.open(info) as a, dst.open(info, "w") as b:
                        shutil.copyfileobj(a, b, 1 << 20)
        os.replace(copy, path)
    finally:
        if copy.exists():
            copy.unlink()


def save_model(model, path, *, metadata=None) -> Path:
    """``model.save(path)`` plus :func:`model_metadata` in the archive, written to a temporary name in the same
    folder and renamed (a crash leaves the old file or the new one).

    Args:
        model: a Keras model; one that kerazoo knows nothing about is saved as ``model.save`` would.
        path: the ``.keras`` file to write.
        metadata: what to write instead of :func:`model_metadata` (a training run's, from its config).
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        ValueError: ``path`` does not end in ``.keras``, is a folder, or a file stands where a folder above it
            should be (checked before anything is written).
        OSError: the folder cannot be written (names ``path`` and the folder).
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"save_model writes a whole model as .keras. Received: path='{path}'")
    check_file_target(path, "save_model")  # a folder of that name failed only at the rename, after the whole save
    meta = model_metadata(model) if metadata is None else metadata
    tmp = path.with_name(f".{short_name(path.stem)}.{os.getpid()}.tmp.keras")  # Keras wants the real suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        open(tmp, "wb").close()  # Keras' own error named the temporary file
    except OSError as e:
        raise writable_folder_error(path, e) from None
    try:
        # Keras' serializer imported TensorFlow into a JAX/PyTorch process at a run's first checkpoint
        with write_errors_naming(path, tmp):  # a full disk named nothing, or the temporary file
            with tensorflow_if_imported("keras.src.saving.serialization_lib"):
                model.save(str(tmp))
            _make_portable(tmp)
            if meta.get("model_name") or any(v is not None for k, v in meta.items()
                                             if k not in ("model_name", "builder_kwargs")):
                write_keras_metadata(tmp, meta)
            replace_durably(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
