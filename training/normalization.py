"""The pixel convention of a model's input, on the host (:class:`Normalization`) or in the model.

A dataset either normalises images on the host and feeds float32 (``feed="float32"``), or feeds the
raw uint8 RGB pixels (``feed="uint8"``: 4x fewer bytes host -> device) to a model that starts with a
:class:`zoo.layers.Normalize` layer doing the same arithmetic on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Normalization", "FEEDS", "check_feed", "model_feed"]


@dataclass(frozen=True)
class Normalization:
    """Pixel convention of the model input: ``(reorder(rgb) * scale - mean) / std`` as float32.

    A ``scale`` of ``1 / n`` (n an integer: 255, 256) divides by n, correctly rounded as Torch's
    ``div(255)`` and Caffe's ``/ 256``; :class:`zoo.layers.Normalize` multiplies (the same to 1 ulp).

    The default (RGB / 255) is pose-hg-train's. :meth:`from_record` copies a zoo weights record so
    fine-tuning feeds pretrained weights what they were trained on.
    """

    scale: float = 1.0 / 255.0
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"

    def __post_init__(self):
        order = str(self.channel_order).upper()
        if order not in ("RGB", "BGR"):
            raise ValueError(f"Normalization: channel_order must be 'RGB' or 'BGR'. Received: {self.channel_order!r}")
        object.__setattr__(self, "channel_order", order)  # 'bgr' must swap on the host as in the layer
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s != 0 for s in self.std):
            raise ValueError(f"Normalization: mean and std need 3 values each, std non-zero. "
                             f"Received: mean={self.mean!r}, std={self.std!r}")
        if not np.isfinite([self.scale, *self.mean, *self.std]).all():  # the model's Normalize layer refuses them
            raise ValueError(f"Normalization: scale, mean and std must be finite. Received: scale={self.scale!r}, "
                             f"mean={self.mean!r}, std={self.std!r}")

    @classmethod
    def from_record(cls, record) -> "Normalization":
        return cls(float(record.scale), tuple(map(float, record.mean)), tuple(map(float, record.std)),
                   str(record.channel_order).upper())

    @classmethod
    def of_run(cls, folder) -> "Normalization | None":
        """The training data's convention recorded in a run folder's ``config.json`` (``None``: none there)."""
        import json
        from pathlib import Path

        try:
            return cls.of_config(json.loads((Path(folder) / "config.json").read_text()))
        except (OSError, ValueError):
            return None

    @classmethod
    def of_config(cls, config) -> "Normalization | None":
        """The training data's convention in a run's ``config.json`` content (``None``: none there)."""
        try:
            n = config["train_data"]["normalization"]
            return cls(float(n["scale"]), tuple(n["mean"]), tuple(n["std"]), str(n["channel_order"]))
        except (ValueError, KeyError, TypeError):
            return None

    def zero_pixel(self) -> tuple:
        """The RGB 0-255 pixel this convention maps to 0 (its mean: ``mean / scale`` in RGB order), with which crops
        are padded outside the image, as the originals pad: black for RGB / 255 (pose-hg-train), grey 128 for
        CPM's BGR / 256 - 0.5, the mean for PSPNet and FCN."""
        px = np.asarray(self.mean, np.float64) / self.scale if self.scale else np.zeros(3)
        return tuple(float(v) for v in (px[::-1] if self.channel_order == "BGR" else px))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        # in place, same operations and order as zoo.layers.Normalize (one float32 copy, no temporaries)
        images = np.asarray(images)
        if images.ndim < 3 or images.shape[-1] != 3:  # BGR flipped a grey (H, W) image's columns
            raise ValueError(f"Normalization: images must be RGB with 3 channels last, (..., H, W, 3). "
                             f"Received shape {images.shape}")
        x = np.ascontiguousarray(images[..., ::-1] if self.channel_order == "BGR" else images, np.float32)
        if x is images:
            x = x.copy()
        inv = 1.0 / self.scale if self.scale else 0.0
        if inv and inv == round(inv):  # 1/255: divide as the originals do (x * float32(1/255) is 1 ulp off for half the pixels)
            x /= np.float32(inv)
        else:
            x *= np.float32(self.scale)
        if any(self.mean):
            x -= np.asarray(self.mean, np.float32)
        if any(s != 1.0 for s in self.std):
            x /= np.asarray(self.std, np.float32)
        return x

    def layer(self, name: str = "normalize"):
        """The same convention as a Keras layer (:class:`zoo.layers.Normalize`) for uint8-fed models."""
        from zoo.layers import Normalize

        return Normalize(self.scale, self.mean, self.std, self.channel_order, name=name)


FEEDS = ("float32", "uint8")


def check_feed(value, owner) -> str:
    """``value`` if it is one of :data:`FEEDS`, else a ValueError naming ``owner``."""
    if value not in FEEDS:
        raise ValueError(f"{owner}: feed must be 'float32' (normalised on the host) or 'uint8' (raw pixels, "
                         f"normalised in the model). Received: feed={value!r}")
    return value


def model_feed(model) -> str:
    """``"uint8"`` if ``model`` normalises its own (first) image input with a :class:`zoo.layers.Normalize`
    layer (it takes raw 0-255 RGB pixels), else ``"float32"`` (it takes host-normalised images)."""
    from zoo.layers import Normalize

    image = model.inputs[0]
    for layer in model.layers:
        if isinstance(layer, Normalize) and any(t is image for n in layer._inbound_nodes for t in n.input_tensors):
            return "uint8"
    return "float32"
