"""Python's cyclic garbage collector paused while a model is built (``zoo.get``, the Caffe converter)."""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def without_cyclic_gc():
    """Pause the cyclic collector for the block; restore its state (on or off) afterwards.

    Building hundreds of Keras layers allocates enough container objects to start several full collections, each
    walking every object the process holds (a TensorFlow process: a few hundred thousand). Measured in fresh
    processes on 2 CPU cores, alternating: ``zoo.get("hourglass")`` 2.0-2.4 -> 1.4-1.7 s on JAX, 5.6-5.9 -> 4.3-5.1 s
    on TensorFlow; a ResNet-152 caffemodel's TensorFlow build 1.63-1.74 -> 1.44-1.46 s. The garbage is still
    freed by reference counting as it goes; only cycles wait for the first collection after the block.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
