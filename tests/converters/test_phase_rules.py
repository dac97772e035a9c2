"""Phase semantics of the reader: a Silence layer consumes its bottoms, and BatchNorm's use_global_stats
defaults to (phase == TEST), as in BVLC Caffe's net.cpp and batch_norm_layer.cpp."""

import numpy as np
import pytest

from converters import caffe
from converters.caffe.reader import loads
from tests.caffe_files import write_net

# test_silence_of_a_dropped_layers_top_is_accepted reads a prototxt only (nothing a Keras backend computes) and runs
# in ./dev test's TensorFlow pass alone; those that convert a net are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic


def _nhwc(a):
    return a.transpose(0, 2, 3, 1)


@agnostic
def test_silence_consumes_its_bottoms():
    # A blob read by Silence only is not a net output (net.cpp: Silence consumes it, and has no top).
    text = """input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 5 }
layer { name: "a" type: "ReLU" bottom: "data" top: "a" }
layer { name: "b" type: "TanH" bottom: "data" top: "b" }
layer { name: "silence" type: "Silence" bottom: "b" }"""
    net = loads(text)
    assert [net.caffe_names[b] for b in net.outputs] == ["a"]
    assert [l.name for l in net.layers] == ["a", "b"]
    model = caffe.to_keras(net, progress=False)
    assert [t._keras_history[0].name for t in model.outputs] == ["a"]


BN_NET = """input: "data" input_shape { dim: 2 dim: 3 dim: 5 dim: 7 }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }
layer { name: "bn_global" type: "BatchNorm" bottom: "data" top: "bn_global" batch_norm_param { use_global_stats: true } }
"""


@agnostic
def test_batchnorm_in_train_phase_uses_batch_statistics(tmp_path, rng):
    # batch_norm_layer.cpp: use_global_stats defaults to (phase == TEST).
    mean, var = rng.normal(size=3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    blobs = {n: [mean, var, np.ones(1, np.float32)] for n in ("bn", "bn_global")}
    p, m = write_net(tmp_path, BN_NET, blobs)
    x = rng.normal(2.0, 3.0, size=(2, 3, 5, 7)).astype(np.float32)

    def ref(stats_mean, stats_var):
        return _nhwc((x - stats_mean.reshape(1, 3, 1, 1)) / np.sqrt(stats_var.reshape(1, 3, 1, 1) + 1e-5))

    batch_mean, batch_var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    for phase, want_bn in (("TRAIN", ref(batch_mean, batch_var)), ("TEST", ref(mean, var))):
        model = caffe.to_keras(caffe.load(p, m, phase=phase), progress=False)
        bn, bn_global = model.predict(_nhwc(x), verbose=0)
        np.testing.assert_allclose(bn, want_bn, rtol=0, atol=1e-4, err_msg=phase)
        np.testing.assert_allclose(bn_global, ref(mean, var), rtol=0, atol=1e-4, err_msg=phase)


def test_silence_of_a_dropped_layers_top_is_accepted():
    # net.cpp: Silence may read any earlier top, an Accuracy's or a loss' too. The reader drops those
    # layers, so their tops have no producer; Silence of them was a GraphError (before Silence was read).
    text = """input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 5 }
input: "label" input_shape { dim: 1 }
layer { name: "a" type: "ReLU" bottom: "data" top: "a" }
layer { name: "acc" type: "Accuracy" bottom: "a" bottom: "label" top: "acc" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "a" bottom: "label" top: "loss" top: "prob" }
layer { name: "silence" type: "Silence" bottom: "acc" bottom: "prob" }"""
    net = loads(text)
    assert [net.caffe_names[b] for b in net.outputs] == ["a"]
    with pytest.raises(caffe.GraphError, match=r"layer 'silence' \(Silence.*bottom 'nothing' is not produced"):
        loads(text.replace('bottom: "prob"', 'bottom: "nothing"'))


@agnostic
def test_batchnorm_follows_its_own_phase_field(tmp_path, rng):
    # net.cpp gives a layer the net's phase only if it has none ("Inherit phase from net if unset");
    # batch_norm_layer.cpp then reads use_global_stats = (this->phase_ == TEST).
    text = """input: "data" input_shape { dim: 2 dim: 3 dim: 5 dim: 7 }
layer { name: "bn_train" type: "BatchNorm" bottom: "data" top: "bn_train" phase: TRAIN }
layer { name: "bn_test" type: "BatchNorm" bottom: "data" top: "bn_test" phase: TEST }
"""
    mean, var = rng.normal(size=3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    p, m = write_net(tmp_path, text, {n: [mean, var, np.ones(1, np.float32)] for n in ("bn_train", "bn_test")})
    x = rng.normal(2.0, 3.0, size=(2, 3, 5, 7)).astype(np.float32)

    def ref(stats_mean, stats_var):
        return _nhwc((x - stats_mean.reshape(1, 3, 1, 1)) / np.sqrt(stats_var.reshape(1, 3, 1, 1) + 1e-5))

    for phase in ("TEST", "TRAIN"):
        model = caffe.to_keras(caffe.load(p, m, phase=phase), progress=False)
        bn_train, bn_test = model.predict(_nhwc(x), verbose=0)
        np.testing.assert_allclose(bn_train, ref(x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))), rtol=0, atol=1e-4,
                                   err_msg=phase)
        np.testing.assert_allclose(bn_test, ref(mean, var), rtol=0, atol=1e-4, err_msg=phase)
