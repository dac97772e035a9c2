"""zoo.get and the Caffe converter build with Python's cyclic garbage collector paused (15-30% of a large model's
build), and leave it as they found it, also when the build fails."""

import gc

import keras
import pytest

from zoo import registry
from zoo.gc_pause import without_cyclic_gc

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture
def gc_seen():
    seen = []

    def builder(*, weights=None, input_shape=None, name="gc_probe", fail=False):
        seen.append(gc.isenabled())
        if fail:
            raise RuntimeError("builder failed")
        inputs = keras.Input(input_shape or (8, 8, 3))
        return keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(inputs), name=name)

    registry.register("gc_probe", head_layers=("head",))(builder)
    yield seen
    registry._MODELS.pop("gc_probe", None)


def test_zoo_get_builds_with_the_collector_paused_and_restores_it(gc_seen):
    import zoo

    was = gc.isenabled()
    try:
        gc.enable()
        zoo.get("gc_probe")
        assert gc_seen == [False] and gc.isenabled()
        with pytest.raises(RuntimeError, match="builder failed"):
            zoo.get("gc_probe", fail=True)
        assert gc_seen == [False, False] and gc.isenabled()  # back on after a failed build too
        gc.disable()  # a caller that turned it off keeps it off
        zoo.get("gc_probe")
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_caffe_conversion_builds_with_the_collector_paused(monkeypatch):
    from converters.caffe import keras as caffe_keras
    from converters.caffe.reader import loads

    seen = []
    handle = caffe_keras._convert_layer

    def spy(layer, ctx):
        seen.append(gc.isenabled())
        return handle(layer, ctx)

    monkeypatch.setattr(caffe_keras, "_convert_layer", spy)
    net = loads('input: "data" input_shape { dim: 1 dim: 3 dim: 5 dim: 5 }\n'
                             'layer { name: "relu" type: "ReLU" bottom: "data" top: "out" }')
    assert gc.isenabled()
    caffe_keras.to_keras(net, progress=False)
    assert seen == [False] and gc.isenabled()


def test_without_cyclic_gc_restores_the_state_it_found():
    was = gc.isenabled()
    try:
        for state in (True, False):
            (gc.enable if state else gc.disable)()
            with pytest.raises(ValueError):
                with without_cyclic_gc():
                    assert not gc.isenabled()
                    raise ValueError
            assert gc.isenabled() is state
    finally:
        (gc.enable if was else gc.disable)()
