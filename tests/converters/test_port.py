"""port(): Caffe blobs into the zoo builders by layer name, strictly; zoo.get(..., weights=".caffemodel").

The Caffe nets (tests/converters/nets.py) have the real releases' layer names and widths; ported zoo
models must give the outputs of ``to_keras`` on the same net (itself checked against OpenCV in
test_exactness.py).
"""

import warnings

import keras
import numpy as np
import pytest

import zoo
from converters import caffe
from converters.caffe import blobs as B
from converters.caffe.reader import blob_shapes, loads
from tests.caffe_files import random_blobs_for, write_net
from tests.converters import nets

# Every test runs under JAX too, except the FCN one: numpy-only port logic on 134 M parameters, too slow
# to run twice in CI.
agnostic = pytest.mark.backend_agnostic


@pytest.fixture(autouse=True)
def fast_init(monkeypatch):
    """Zero initial weights in the zoo builders (Keras' random initialisers and zoo.initializers' host-drawn
    ones): port overwrites every one (or raises), and a head that keeps its initial values is seen to."""
    from keras.src.initializers.random_initializers import RandomInitializer

    from zoo.initializers import _HostRandom

    def zeros(self, shape, dtype=None):
        return np.zeros(shape, dtype or "float32")

    todo = [RandomInitializer, _HostRandom]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if "__call__" in vars(cls):
            monkeypatch.setattr(cls, "__call__", zeros)
    yield
    keras.backend.clear_session()


def _net(proto, rng):
    """Net with random blobs, in memory (the file path is covered by the zoo_loader test)."""
    blobs = random_blobs_for(proto, rng)
    net = loads(proto)
    for layer in net.layers:
        layer.blobs = blobs.get(layer.name, [])
    return net, blobs


def _np(y):
    return [keras.ops.convert_to_numpy(t) for t in y] if isinstance(y, (list, tuple)) else keras.ops.convert_to_numpy(y)


def _assert_same(zoo_out, ref):
    np.testing.assert_allclose(zoo_out, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("name,proto_fn,folds", [
    ("resnet50", nets.resnet50, 53),
    ("resnet50v2", nets.resnet_v2, 49),
])
@agnostic
def test_port_resnets_match_to_keras(rng, name, proto_fn, folds):
    net, _ = _net(proto_fn(35, 37, classes=5), rng)
    model = zoo.get(name, input_shape=(35, 37, 3), classes=5)
    report = caffe.port(net, model)
    assert report.folded_bn_scale == folds
    assert sorted(report.filled) == sorted(l.name for l in model.layers if l.weights)
    x = rng.normal(size=(1, 35, 37, 3)).astype(np.float32)
    _assert_same(_np(model(x)), _np(caffe.to_keras(net, progress=False)(x)))


@agnostic
def test_port_cpm_two_inputs(rng):
    # Caffe takes one 4-channel blob and slices it; the zoo model takes image + center_map.
    net, _ = _net(nets.cpm(41, 33, stages=2, parts=3), rng)
    model = zoo.get("cpm", input_shape=(41, 33, 3), stages=2, num_keypoints=3)
    caffe.port(net, model)
    x = rng.normal(size=(1, 41, 33, 4)).astype(np.float32)
    ours = _np(model([x[..., :3], x[..., 3:]]))
    _assert_same(ours[-1], _np(caffe.to_keras(net, progress=False)(x)))


@agnostic
@pytest.mark.parametrize("bn_form", ["master", "88d0b3"])
def test_port_pspnet50_bn(rng, bn_form):
    # master's deploy files leave bn_param.eps at 1e-5, the builder's epsilon: nothing to change (the builder had
    # 1e-10, the earlier commit's var_eps, and every BN of a master prototxt was changed); 88d0b3's BN adds 1e-10
    net, _ = _net(nets.pspnet50(39, 41, 6, classes=3, bn_form=bn_form), rng)
    model = zoo.get("pspnet50", input_shape=(39, 41, 3), classes=3)
    report = caffe.port(net, model)
    assert "conv1_1_3x3_s2/bn" in report.caffe_layers and "conv1_1_3x3_s2_bn" in report.filled
    bns = [l.name for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    changed = [] if bn_form == "master" else sorted(f"{n}: 1e-05 -> 1e-10" for n in bns)
    assert sorted(report.epsilon_changed) == changed
    x = rng.normal(size=(1, 39, 41, 3)).astype(np.float32)
    _assert_same(_np(model(x)), _np(caffe.to_keras(net, progress=False)(x)))


def test_port_fcn8s_atonce_weights(rng):
    # 134 M parameters: compare the ported weights (no forward pass; to_keras' FCN is checked vs OpenCV).
    # Uniform draws: distinct values are all a layout check needs, and 1.5x faster than normal ones at this size.
    net = loads(nets.fcn8s(64, 64, classes=3, atonce=True))
    blobs = {name: [rng.random(s, dtype=np.float32) for s in shapes]
             for name, shapes in blob_shapes(net).items()}
    for layer in net.layers:
        layer.blobs = blobs.get(layer.name, [])
    model = zoo.get("fcn8s_atonce", input_shape=(64, 64, 3), classes=3)
    report = caffe.port(net, model)
    assert len(report.filled) == len([l for l in model.layers if l.weights]) == 23
    got = {l.name: [keras.ops.convert_to_numpy(w) for w in l.weights] for l in model.layers if l.weights}
    # fc6 holds 103 M weights: np.array_equal (exact, shapes included) takes 2 s where assert_array_equal took 20.
    assert np.array_equal(got["fc6"][0], blobs["fc6"][0].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(got["upscore8"][0], blobs["upscore8"][0].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(got["scale_pool4"][0], blobs["scale_pool4"][0])
    np.testing.assert_array_equal(got["score_pool3"][1], blobs["score_pool3"][1])


# --- strictness and mappings ----------------------------------------------------------------------

SMALL = """
name: "small"
input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" batch_norm_param { eps: 0.001 } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 5 } }
"""


def _small_model(conv="conv1", bn="bn1", extra=False):
    x = inp = keras.Input((8, 8, 3), name="data")
    x = keras.layers.Conv2D(4, 3, name=conv)(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, name=bn)(x)
    x = keras.layers.Dense(5, name="fc")(keras.layers.Flatten()(x))
    if extra:
        x = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inp, x)


@agnostic
def test_port_spatial_fc_and_bn_fold(rng):
    net, blobs = _net(SMALL, rng)
    model = _small_model()
    report = caffe.port(net, model)
    assert report.folded_bn_scale == 1 and sorted(report.caffe_layers) == ["bn1", "conv1", "fc", "scale1"]
    assert report.epsilon_changed == ["bn1: 1e-05 -> 0.001"] and model.get_layer("bn1").epsilon == 0.001
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    _assert_same(_np(model(x)), _np(caffe.to_keras(net, progress=False)(x)))
    gamma, beta, mean, var = (keras.ops.convert_to_numpy(w) for w in model.get_layer("bn1").weights)
    np.testing.assert_allclose(mean, blobs["bn1"][0] / blobs["bn1"][2][0], rtol=1e-6)
    np.testing.assert_array_equal(gamma, blobs["scale1"][0])


@agnostic
def test_port_reports_both_sides_and_changes_nothing(rng):
    net, _ = _net(SMALL, rng)
    model = _small_model(bn="bn_renamed", extra=True)
    before = [keras.ops.convert_to_numpy(w) for w in model.weights]
    with pytest.raises(caffe.WeightsMismatchError) as e:
        caffe.port(net, model)
    msg = str(e.value)
    assert "'bn1' (BatchNorm + Scale 'scale1') -> no zoo layer 'bn1'" in msg
    assert "'bn_renamed'" in msg and "'head'" in msg and "zoo layers with weights the Caffe net does not fill" in msg
    for a, w in zip(before, model.weights):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(w))


@agnostic
def test_port_shape_mismatch_names_layer(rng):
    net, _ = _net(SMALL.replace("num_output: 4", "num_output: 6"), rng)
    with pytest.raises(caffe.WeightsMismatchError, match=r"'conv1' \(Convolution\) -> zoo layer 'conv1': Caffe gives"):
        caffe.port(net, _small_model())


@agnostic
def test_port_mapping_renames_and_drops(rng):
    net, _ = _net(SMALL, rng)
    model = _small_model(conv="features_conv", bn="features_bn")
    report = caffe.port(net, model, mapping={"conv1": "features_conv", "bn1": "features_bn"})
    assert sorted(report.filled) == ["fc", "features_bn", "features_conv"]
    with pytest.raises(caffe.WeightsMismatchError, match="'fc'"):  # dropped on purpose -> zoo 'fc' unfilled
        caffe.port(net, model, mapping={"conv1": "features_conv", "bn1": "features_bn", "fc": None})
    assert set(caffe.port.__globals__["FAMILY_MAPPINGS"]) >= {"resnet", "resnet_v2", "fcn", "cpm", "pspnet"}


# --- zoo.get(name, weights="x.caffemodel") ------------------------------------------------------------


@agnostic
def test_zoo_get_caffemodel(tmp_path, rng):
    proto = nets.cpm(41, 33, stages=2, parts=3)
    blobs = random_blobs_for(proto, rng)
    _, model_path = write_net(tmp_path, proto, blobs, name="pose_iter_1")
    model = zoo.get("cpm", weights=model_path, input_shape=(41, 33, 3), stages=2, num_keypoints=3)
    w = model.get_layer("Mconv5_stage2").weights[0]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), B.conv_kernel(blobs["Mconv5_stage2"][0]))
    # the file carries no metadata: the CPM releases' conventions (BGR / 256 - 0.5, heatmap pixel g at 8g + 3.5
    # input px), not which data it was trained on. There was no record: predict/evaluate took pixels / 255, offset 0
    rec = zoo.weights_record(model)
    assert (rec.channel_order, rec.scale, rec.mean, rec.heatmap_offset) == ("BGR", 1 / 256, (0.5, 0.5, 0.5), 3.5)
    assert rec.keypoint_names is None and rec.flip_pairs is None
    # fallbacks: <stem with model -> deploy>, deploy.prototxt, the folder's only *deploy*.prototxt
    for src, dst in (("pose_iter_1.prototxt", "pose_deploy_centerMap.prototxt"),
                     ("pose_deploy_centerMap.prototxt", "deploy.prototxt")):
        (tmp_path / src).rename(tmp_path / dst)
        zoo.get("cpm", weights=model_path, input_shape=(41, 33, 3), stages=2, num_keypoints=3)
    (tmp_path / "deploy.prototxt").unlink()
    with pytest.raises(zoo.WeightsFileError, match=r"pose_iter_1\.prototxt.*deploy\.prototxt"):
        zoo.get("cpm", weights=model_path, stages=2, num_keypoints=3)
    resnet_style = tmp_path / "Net-model.caffemodel"
    (tmp_path / "pose_iter_1.caffemodel").rename(resnet_style)
    write_net(tmp_path, proto, name="Net-deploy")
    zoo.get("cpm", weights=resnet_style, input_shape=(41, 33, 3), stages=2, num_keypoints=3)
    # PSPNet's releases add the input size to the prototxt's name: pspnet50_ADE20K_473.prototxt (was not found)
    (tmp_path / "Net-deploy.prototxt").rename(tmp_path / "pose[1]_473.prototxt")
    sized = resnet_style.rename(tmp_path / "pose[1].caffemodel")  # glob characters in the name: taken literally
    zoo.get("cpm", weights=sized, input_shape=(41, 33, 3), stages=2, num_keypoints=3)
    write_net(tmp_path, proto, name="pose[1]_368")  # two candidates: which one is the deploy is not guessed
    with pytest.raises(zoo.WeightsFileError, match=r"pose\[1\]_\*\.prototxt"):
        zoo.get("cpm", weights=sized, stages=2, num_keypoints=3)


CPM_HEAD = ("conv7_stage1", "Mconv1_stage2", "Mconv5_stage2")  # their shapes depend on the keypoint count


@agnostic
def test_zoo_get_caffemodel_with_another_keypoint_count(tmp_path, rng):
    # Fine-tuning a CPM release on 5 keypoints: zoo.get refused the 3-keypoint .caffemodel ("layers that do not fit:
    # 'conv7_stage1' ..."), where a zoo .h5 or a .t7 loads everything but the head and warns
    proto = nets.cpm(41, 33, stages=2, parts=3)
    blobs = random_blobs_for(proto, rng)
    _, path = write_net(tmp_path, proto, blobs, name="pose_iter_1")
    with pytest.warns(UserWarning) as caught:
        model = zoo.get("cpm", weights=path, input_shape=(41, 33, 3), stages=2, num_keypoints=5)
    said = [str(w.message) for w in caught if "head" in str(w.message)]
    assert said == [f"cpm: weights '{path}' have num_keypoints=3 but num_keypoints=5 was asked for; loading "
                    f"everything but the head layers ({', '.join(CPM_HEAD)}), which keep their initial values."]
    assert sorted(l.name for l in model.layers if l.weights) == sorted(blobs)  # every weight is checked below
    for name, (kernel, bias) in blobs.items():
        got = [keras.ops.convert_to_numpy(w) for w in model.get_layer(name).weights]
        if name in CPM_HEAD:  # the builder's initial values (zeros here: fast_init), in the new head's shapes
            assert not any(np.any(g) for g in got), name
            assert got[0].shape[2:] == ((32 + 6 + 1, 128) if name.startswith("Mconv1") else (kernel.shape[1], 6))
        else:  # Caffe (O, I, kh, kw) -> Keras (kh, kw, I, O)
            np.testing.assert_array_equal(got[0], np.transpose(kernel, (2, 3, 1, 0)), err_msg=name)
            np.testing.assert_array_equal(got[1], bias, err_msg=name)
    # as from a zoo .h5: the record says 5 keypoints and names none of them
    rec = zoo.weights_record(model)
    assert rec.num_keypoints == 5 and rec.builder_kwargs["num_keypoints"] == 5
    assert rec.keypoint_names is None and rec.flip_pairs is None and rec.channel_order == "BGR"
    assert zoo.api.build_info(model)[1]["num_keypoints"] == 5  # what zoo.save_weights records


@agnostic
def test_zoo_get_caffemodel_another_head_and_another_trunk_is_refused(tmp_path, rng):
    # only the head may differ: a trunk layer of another width (conv4_stage1: 16 outputs, the builder's 32) is named
    proto = nets.cpm(41, 33, stages=2, parts=3, mid=16)
    _, path = write_net(tmp_path, proto, random_blobs_for(proto, rng), name="pose_iter_1")
    with warnings.catch_warnings(record=True) as caught, pytest.raises(caffe.WeightsMismatchError) as e:
        warnings.simplefilter("always")
        zoo.get("cpm", weights=path, input_shape=(41, 33, 3), stages=2, num_keypoints=5)
    msg = str(e.value)
    assert "'conv4_stage1' (Convolution) -> zoo layer 'conv4_stage1': Caffe gives [(5, 5, 128, 16), (16,)]" in msg
    assert not [n for n in CPM_HEAD if f"'{n}'" in msg]  # the head may differ: it is not what blocks the load
    assert not [w for w in caught if "head" in str(w.message)]  # nothing loaded, nothing to warn of


@agnostic
def test_zoo_get_caffemodel_with_another_class_count(tmp_path, rng):
    # the classification/segmentation families: an InnerProduct head (ResNet's fc1000) of 5 classes, 7 asked for
    proto = nets.resnet50(35, 37, classes=5)
    blobs = random_blobs_for(proto, rng)
    _, path = write_net(tmp_path, proto, blobs, name="ResNet-50-model")
    with pytest.warns(UserWarning, match=r"have classes=5 but classes=7 was asked for; loading everything but the "
                                         r"head layers \(fc1000\), which keep"):
        model = zoo.get("resnet50", weights=path, input_shape=(35, 37, 3), classes=7)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.get_layer("fc1000").weights)
    assert kernel.shape == (2048, 7) and not np.any(kernel) and not np.any(bias)  # fast_init's zeros
    for name in ("conv1", "res5c_branch2c"):  # Caffe (O, I, kh, kw) -> Keras (kh, kw, I, O)
        got = keras.ops.convert_to_numpy(model.get_layer(name).weights[0])
        np.testing.assert_array_equal(got, np.transpose(blobs[name][0], (2, 3, 1, 0)))
    rec = zoo.weights_record(model)
    assert (rec.num_classes, rec.builder_kwargs["classes"], rec.class_names) == (7, 7, None)


# --- the architecture a .caffemodel's deploy prototxt holds ------------------------------------------------------


@pytest.mark.parametrize("name,proto,want", [
    ("cpm", nets.cpm(41, 33, stages=3, parts=4), {"stages": 3, "num_keypoints": 4}),  # Mconv5_stage3: 4 + background
    ("cpm", nets.cpm(41, 33, stages=1, parts=2), {"stages": 1, "num_keypoints": 2}),  # conv7_stage1 only
    ("resnet50", nets.resnet50(35, 37, classes=5), {"classes": 5, "stride_in_3x3": False}),  # fc1000; res3a_branch2a
    ("resnet50", nets.resnet50(35, 37, classes=4, stride_in_3x3=True), {"classes": 4, "stride_in_3x3": True}),
    ("resnet50v2", nets.resnet_v2(35, 37, classes=6), {"classes": 6}),  # classifier
    ("fcn8s", nets.fcn8s(64, 64, classes=3), {"classes": 3}),  # score_fr, score_pool4/3
    ("fcn8s_atonce", nets.fcn8s(64, 64, classes=4, atonce=True), {"classes": 4}),
    ("pspnet50", nets.pspnet50(39, 41, 6, classes=7), {"classes": 7, "input_shape": (39, 41, 3)}),  # conv6; input
])
def test_release_builder_kwargs_read_from_the_prototxt(tmp_path, name, proto, want):
    # the numbers are the ones the deploy prototxts above were written with
    from converters.caffe.zoo_loader import release_builder_kwargs

    write_net(tmp_path, proto, name="net")
    assert release_builder_kwargs(name, tmp_path / "net.caffemodel") == want


@agnostic
def test_zoo_get_caffemodel_builds_the_files_architecture_and_the_saved_copy_reloads(tmp_path, rng):
    # zoo.get("cpm", weights=X.caffemodel) without stages/num_keypoints built the default 6 stages x 14 keypoints and
    # was refused naming layers, where a zoo .h5 gives its builder arguments; the deploy prototxt gives them too
    proto = nets.cpm(41, 33, stages=2, parts=3)
    blobs = random_blobs_for(proto, rng)
    _, path = write_net(tmp_path, proto, blobs, name="pose_iter_1")
    model = zoo.get("cpm", weights=path, input_shape=(41, 33, 3))
    assert len(model.outputs) == 2 and model.outputs[-1].shape[-1] == 3 + 1
    for name in ("conv7_stage1", "Mconv5_stage2"):  # Caffe (O, I, kh, kw) -> Keras (kh, kw, I, O)
        got = keras.ops.convert_to_numpy(model.get_layer(name).weights[0])
        np.testing.assert_array_equal(got, np.transpose(blobs[name][0], (2, 3, 1, 0)))
    rec = zoo.weights_record(model)
    assert (rec.builder_kwargs, rec.num_keypoints, rec.channel_order) == ({"stages": 2, "num_keypoints": 3}, 3, "BGR")
    # save and reload with no builder arguments: the record rebuilds 2 stages x 3 keypoints at 41 x 33
    saved = zoo.save_weights(model, tmp_path / "cpm2.h5")
    again = zoo.get("cpm", weights=saved)
    assert tuple(again.inputs[0].shape[1:]) == (41, 33, 3) and len(again.outputs) == 2
    got = keras.ops.convert_to_numpy(again.get_layer("Mconv5_stage2").weights[0])
    np.testing.assert_array_equal(got, np.transpose(blobs["Mconv5_stage2"][0], (2, 3, 1, 0)))
    # a caller's stages that contradicts the file: one error naming both numbers, not a list of layers
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("cpm", weights=path, input_shape=(41, 33, 3), stages=3)
    deploy = path[:-len(".caffemodel")] + ".prototxt"
    assert str(e.value) == (f"cpm: '{path}' (its deploy prototxt '{deploy}') holds stages=2, "
                            f"but stages=3 was asked for; leave out stages (the weights give it) or pass stages=2.")
    zoo.get("cpm", weights=path, input_shape=(41, 33, 3), stages=2)  # agreeing with the file is fine


@agnostic
@pytest.mark.tf_pass_only
def test_zoo_get_caffemodel_class_count_from_the_file(tmp_path, rng):
    # a 5-class ResNet-50 deploy: zoo.get without classes built 1000 and refused fc1000; an explicit classes still
    # wins (all but the head, test above), and include_top=False drops the classifier whatever its size
    proto = nets.resnet50(35, 37, classes=5)
    blobs = random_blobs_for(proto, rng)
    _, path = write_net(tmp_path, proto, blobs, name="ResNet-50-model")
    model = zoo.get("resnet50", weights=path, input_shape=(35, 37, 3))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.get_layer("fc1000").weights)
    np.testing.assert_array_equal(kernel, blobs["fc1000"][0].T)  # InnerProduct (O, I) -> Dense (I, O)
    np.testing.assert_array_equal(bias, blobs["fc1000"][1])
    rec = zoo.weights_record(model)
    assert (rec.num_classes, rec.builder_kwargs["classes"], zoo.api.build_info(model)[1]["classes"]) == (5, 5, 5)
    again = zoo.get("resnet50", weights=zoo.save_weights(model, tmp_path / "r.h5"))
    assert tuple(again.get_layer("fc1000").weights[0].shape) == (2048, 5)
    headless = zoo.get("resnet50", weights=path, input_shape=(35, 37, 3), include_top=False)
    assert "fc1000" not in [l.name for l in headless.layers]


@agnostic
@pytest.mark.tf_pass_only
def test_zoo_get_caffemodel_stride_placement_from_the_prototxt(tmp_path, rng):
    # stride_in_3x3 changes no weight shape: Kaiming's ResNet-50 (stride 2 on the 1x1 res{3,4,5}a_branch2a) loaded
    # into stride_in_3x3=True, or a v1.5 deploy (stride on the 3x3 branch2b) into the default, gave another network
    # without a word. The prototxt's stride fields say where it is; Caffe's own net (to_keras) is the reference, on
    # the last feature map (the random classifier's softmax is one-hot for either network).
    def features(model):
        return _np(keras.Model(model.inputs[0], model.get_layer("res5c_relu").output)(x))

    x = rng.normal(size=(1, 35, 37, 3)).astype(np.float32)
    for placement in (True, False):
        folder = tmp_path / f"v{placement}"
        folder.mkdir()
        deploy, path = write_net(folder, nets.resnet50(35, 37, classes=3, stride_in_3x3=placement),
                                 random_blobs_for(nets.resnet50(35, 37, classes=3), rng), name="ResNet-50-model")
        reference = features(caffe.to_keras(caffe.load(deploy, path), progress=False))
        model = zoo.get("resnet50", weights=path, input_shape=(35, 37, 3))
        _assert_same(features(model), reference)
        assert zoo.weights_record(model).builder_kwargs["stride_in_3x3"] is placement
        saved = zoo.save_weights(model, folder / "r.h5")  # the record keeps it: the copy is the same network
        _assert_same(features(zoo.get("resnet50", weights=saved)), reference)
        with pytest.raises(zoo.WeightsMismatchError) as e:
            zoo.get("resnet50", weights=path, input_shape=(35, 37, 3), stride_in_3x3=not placement)
        assert str(e.value) == (
            f"resnet50: '{path}' (its deploy prototxt '{deploy}') holds stride_in_3x3={placement}, but "
            f"stride_in_3x3={not placement} was asked for; leave out stride_in_3x3 (the weights give it) or pass "
            f"stride_in_3x3={placement}.")
        with pytest.raises(zoo.WeightsMismatchError) as e:
            zoo.get("resnet50", weights=saved, stride_in_3x3=not placement)
        assert str(e.value).startswith(f"resnet50: '{saved}' (its weights record) holds stride_in_3x3={placement}, "
                                       f"but stride_in_3x3={not placement} was asked for;")


@agnostic
def test_zoo_get_refuses_a_caffemodel_whose_stages_stride_differently(tmp_path, rng):
    # res4a strided on its 3x3 while res3a and res5a stride their 1x1: no zoo ResNet is that network, and porting it
    # by name built one placement for all three stages without a word
    import re

    proto = nets.resnet50(35, 37, classes=3)
    lines = proto.splitlines()
    for i, line in enumerate(lines):
        if 'name: "res4a_branch2a"' in line or 'name: "res4a_branch2b"' in line:
            lines[i] = re.sub(r"stride: (\d)", lambda m: "stride: " + ("1" if m[1] == "2" else "2"), line)
    mixed = "\n".join(lines)
    assert mixed != proto
    deploy, path = write_net(tmp_path, mixed, random_blobs_for(proto, rng), name="ResNet-50-model")
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("resnet50", weights=path, input_shape=(35, 37, 3))
    assert str(e.value) == (
        f"resnet50: '{deploy}' (the deploy prototxt of '{path}') strides its stages 3-5 in a way no resnet50 builds "
        f"(res3a branch2a/branch2b 2/1, res4a branch2a/branch2b 1/2, res5a branch2a/branch2b 2/1): each of res3a, "
        f"res4a and res5a must have stride 2 on branch2a only (Kaiming's release) or on branch2b only "
        f"(stride_in_3x3=True). Convert it with converters.caffe.to_keras instead")


@agnostic
@pytest.mark.tf_pass_only
def test_zoo_get_pspnet_caffemodel_builds_the_prototxts_input_size(tmp_path, rng):
    # PSPNet's pyramid pooling kernels and Interp sizes are fixed to the deploy's input (pspnet101_cityscapes_713:
    # 90/45/30/15 px windows on a 90 px map). zoo.get without input_shape built the builder's 473 default (60 px map,
    # 10 px windows), ported the weights into it and said nothing: another network than the file's
    proto = nets.pspnet50(39, 41, 6, classes=3)  # a 6 x 6 conv5 map, pooled with 6/3/2/1 px windows
    blobs = random_blobs_for(proto, rng)
    _, path = write_net(tmp_path, proto, blobs, name="pspnet50_ADE20K")
    model = zoo.get("pspnet50", weights=path)
    assert tuple(model.inputs[0].shape[1:]) == (39, 41, 3)
    for bins in (1, 2, 3, 6):
        assert tuple(model.get_layer(f"conv5_3_pool{bins}").pool_size) == (6 // bins, 6 // bins)
    net = caffe.load(tmp_path / "pspnet50_ADE20K.prototxt", path)
    x = rng.normal(size=(1, 39, 41, 3)).astype(np.float32)
    _assert_same(_np(model(x)), _np(caffe.to_keras(net, progress=False)(x)))
    assert zoo.api.build_info(model)[1]["input_shape"] == (39, 41, 3)
    again = zoo.get("pspnet50", weights=zoo.save_weights(model, tmp_path / "psp.h5"))  # the saved copy: same size
    assert tuple(again.inputs[0].shape[1:]) == (39, 41, 3)
    other = zoo.get("pspnet50", weights=path, input_shape=(45, 45, 3))  # an explicit size still wins
    assert tuple(other.inputs[0].shape[1:]) == (45, 45, 3)


@agnostic
def test_zoo_get_caffemodel_architecture_the_builder_cannot_make_names_the_file(tmp_path, rng):
    # a 1-stage CPM deploy (conv7_stage1 only; the zoo's CPM has >= 2 stages): the builder's "`stages` must be an int
    # >= 2. Received: stages=1" named an argument the caller never gave, and neither the file nor where 1 came from
    proto = nets.cpm(41, 33, stages=1, parts=2)
    _, path = write_net(tmp_path, proto, random_blobs_for(proto, rng), name="pose_iter_1")
    with pytest.raises(zoo.WeightsMismatchError) as e:
        zoo.get("cpm", weights=path, input_shape=(41, 33, 3))
    msg = str(e.value)
    assert f"'{path}' holds stages=1, num_keypoints=2 (read from its deploy prototxt" in msg and "pose_iter_1.prototxt" in msg
    assert "stages" in msg.split("cannot build:")[1]  # the builder's reason follows
