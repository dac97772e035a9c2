"""The sgd presets' optimizer (training.solvers.CoupledSGD) against the originals' update rules written out in
NumPy, each over several steps of a real ``model.fit``:

- Caffe ``SGDSolver`` (src/caffe/solvers/sgd_solver.cpp): ``GetLearningRate`` (lr_policy "step"), ``Regularize``
  (L2: ``diff += weight_decay * decay_mult * w``), ``ComputeUpdateValue`` (``history = local_rate * diff +
  momentum * history``, ``local_rate = rate * lr_mult``), ``Net::Update`` (``w -= history``), with the
  ``EuclideanLoss`` gradient ``(y - t) / N`` of the summed loss that CPM's lr was tuned for;
- ``torch.optim.SGD`` (torch/optim/sgd.py ``_single_tensor_sgd``, dampening 0: ``g += wd * w``; ``buf = g`` on the
  first step, then ``momentum * buf + g``; ``w -= lr * buf``) with hszhao/semseg tool/train.py's param groups
  (new modules at 10x) and its per-iteration ``poly_learning_rate``.
"""

import dataclasses

import keras
import numpy as np
import pytest

from training.optimizers import PRESETS, Preset, make_optimizer, resolve_preset
from training.solvers import CoupledSGD

# resolve_preset's tests are dataclass lookups (nothing a Keras backend computes) and run in ./dev test's TensorFlow
# pass alone; those that make an optimizer, a model or a fit are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic

N, H, W, D, C = 4, 2, 2, 3, 2  # batch, output size, input channels, output channels of each head
STEPS_PER_EPOCH, EPOCHS = 3, 3


def _heads(names, seed=0):
    """image (H, W, D) -> one 1x1 conv with bias per name (C channels): each output is linear in its own
    weights, so the squared-error gradient is written out in NumPy below."""
    init = keras.initializers.RandomNormal(stddev=0.5, seed=seed)
    inp = keras.Input((H, W, D), name="image")
    outs = [keras.layers.Conv2D(C, 1, kernel_initializer=init, bias_initializer=init, name=n)(inp) for n in names]
    return keras.Model(inp, outs)


def _data(count, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N * STEPS_PER_EPOCH, H, W, D)).astype("float32")
    return x, [rng.normal(size=(N * STEPS_PER_EPOCH, H, W, C)).astype("float32") for _ in range(count)]


def _fit(model, optimizer, x, ys):
    model.compile(optimizer=optimizer, loss=["mse"] * len(ys))  # mean over all N*H*W*C elements, heads summed
    model.fit(x, ys, batch_size=N, epochs=EPOCHS, shuffle=False, verbose=0)
    return {v.path: keras.ops.convert_to_numpy(v).astype("float64") for v in model.trainable_variables}


def _conv_grads(params, names, x, ys, it, dloss_dy):
    """{path: gradient} of batch ``it % STEPS_PER_EPOCH`` for the 1x1 convs: y = X W + b over pixels."""
    b = it % STEPS_PER_EPOCH
    xb = x[b * N:(b + 1) * N].reshape(-1, D).astype("float64")
    out = {}
    for name, y in zip(names, ys):
        kernel, bias = params[f"{name}/kernel"], params[f"{name}/bias"]
        t = y[b * N:(b + 1) * N].reshape(-1, C).astype("float64")
        dy = dloss_dy(xb @ kernel.reshape(D, C) + bias, t)
        out[f"{name}/kernel"] = (xb.T @ dy).reshape(kernel.shape)
        out[f"{name}/bias"] = dy.sum(0)
    return out


@agnostic
def test_cpm_preset_is_caffes_sgd_solver():
    # CPM's multipliers (stage 1 lr 5 / bias 10, others 1 / bias 2; decay 1 / bias 0), momentum 0.9, step
    # gamma 0.333; a larger rate and decay than CPM's so that both show in float32 over 9 steps
    names = ["conv1_stage1", "Mconv1_stage2"]
    base_lr, wd, stepsize = 0.01, 0.05, 3
    preset = dataclasses.replace(PRESETS["cpm"], learning_rate=base_lr, weight_decay=wd)
    model = _heads(names)
    params = {v.path: keras.ops.convert_to_numpy(v).astype("float64") for v in model.trainable_variables}
    x, ys = _data(len(names))
    ours = _fit(model, make_optimizer(preset, epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH,
                                      output_shape=model.outputs[-1].shape), x, ys)

    # Caffe on its own summed loss: EuclideanLoss = sum((y - t)^2) / (2 N), d/dy = (y - t) / N
    lr_mult = {"conv1_stage1/kernel": 5, "conv1_stage1/bias": 10, "Mconv1_stage2/kernel": 1, "Mconv1_stage2/bias": 2}
    decay_mult = {"conv1_stage1/kernel": 1, "conv1_stage1/bias": 0, "Mconv1_stage2/kernel": 1, "Mconv1_stage2/bias": 0}
    history = {k: np.zeros_like(v) for k, v in params.items()}
    for it in range(EPOCHS * STEPS_PER_EPOCH):
        rate = base_lr * 0.333 ** (it // stepsize)  # GetLearningRate, "step": floor(iter / stepsize)
        diff = _conv_grads(params, names, x, ys, it, lambda y, t: (y - t) / N)
        for k in params:
            diff[k] = diff[k] + wd * decay_mult[k] * params[k]  # Regularize, L2
            history[k] = rate * lr_mult[k] * diff[k] + 0.9 * history[k]  # ComputeUpdateValue: caffe_cpu_axpby
            params[k] = params[k] - history[k]  # Net::Update
    for k in params:
        np.testing.assert_allclose(ours[k], params[k], rtol=2e-5, atol=2e-6, err_msg=k)


@agnostic
def test_pspnet_preset_is_torch_sgd_with_semsegs_param_groups():
    # semseg: backbone at base_lr, ppm/cls/aux at 10x, one weight_decay for all, lr poly(iter) set per iteration
    names = ["conv1_1_3x3_s2", "conv6", "aux_conv6"]
    base_lr, wd, power = 0.02, 0.05, 0.9
    preset = dataclasses.replace(PRESETS["pspnet"], learning_rate=base_lr, weight_decay=wd)
    model = _heads(names, seed=2)
    params = {v.path: keras.ops.convert_to_numpy(v).astype("float64") for v in model.trainable_variables}
    x, ys = _data(len(names), seed=3)
    ours = _fit(model, make_optimizer(preset, epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH,
                                      output_shape=model.outputs[-1].shape), x, ys)

    max_iter = EPOCHS * STEPS_PER_EPOCH
    group_mult = {k: (1.0 if k.startswith("conv1_1") else 10.0) for k in params}
    buf = {}
    for it in range(max_iter):
        lr = base_lr * (1 - it / max_iter) ** power  # semseg util.poly_learning_rate, set after each step
        grads = _conv_grads(params, names, x, ys, it, lambda y, t: 2 * (y - t) / (N * H * W * C))  # MSE mean
        for k in params:
            g = grads[k] + wd * params[k]
            buf[k] = g.copy() if k not in buf else 0.9 * buf[k] + g
            params[k] = params[k] - lr * group_mult[k] * buf[k]
    for k in params:
        np.testing.assert_allclose(ours[k], params[k], rtol=2e-5, atol=2e-6, err_msg=k)


@agnostic
@pytest.mark.parametrize("family, output_shape, k", [("cpm", (None, 46, 46, 15), 46 * 46 * 15 / 2),
                                                     ("fcn", (None, 500, 500, 21), 500 * 500)])
def test_preset_decay_per_step_is_the_originals_under_lr_scale(family, output_shape, k):
    # with a zero loss gradient Caffe's first step moves w by rate * lr_mult * weight_decay * decay_mult * w
    # (CPM 8e-5 * 5e-4 = 4e-8, FCN 1e-10 * 5e-4 = 5e-14), whatever the loss scale K the lr is multiplied by
    p = PRESETS[family]
    opt = make_optimizer(p, epochs=1, steps_per_epoch=10, output_shape=output_shape)
    assert float(keras.ops.convert_to_numpy(opt.learning_rate)) == pytest.approx(p.learning_rate * k, rel=1e-6)
    paths = ["conv1_stage1/kernel", "conv1_stage1/bias", "Mconv1_stage2/kernel", "Mconv1_stage2/bias"]
    variables = []
    for path in paths:
        with keras.name_scope(path.split("/")[0]):
            variables.append(keras.Variable(np.ones(3, "float32"), name=path.split("/")[1]))
    opt.apply([keras.ops.zeros(3)] * len(variables), variables)
    caffe = {"cpm": [5 * 1, 0, 1 * 1, 0], "fcn": [1, 0, 1, 0]}[family]  # lr_mult * decay_mult per path
    for path, v, mult in zip(paths, variables, caffe):
        # history is what Caffe's Net::Update subtracts; in float32 1 - 4e-8 is 1
        h = keras.ops.convert_to_numpy(opt.momentums[opt._get_variable_index(v)])
        np.testing.assert_allclose(h, p.learning_rate * p.weight_decay * mult, rtol=1e-5, atol=0, err_msg=path)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), np.ones(3, "float32") - h, err_msg=path)


def _multipliers(preset, model):
    opt = make_optimizer(preset, epochs=1, steps_per_epoch=1, output_shape=model.outputs[-1].shape)
    return {v.path: opt.multipliers_for(v.path) for v in model.trainable_variables}


@agnostic
def test_cpm_and_pspnet_presets_pick_the_originals_layers_in_the_zoo_models():
    import zoo

    cpm = zoo.get("cpm", input_shape=(64, 64, 3), stages=2, num_keypoints=4)
    got = _multipliers(PRESETS["cpm"], cpm)
    stage1 = {f"conv{i}_stage1" for i in range(1, 8)}  # genProto.py: stage 1's 'C' layers (state 'image')
    assert {p.split("/")[0] for p in got} >= stage1 | {"conv1_stage2", "Mconv5_stage2"}
    for path, mults in got.items():
        layer, var = path.split("/")
        want = (5.0 if layer in stage1 else 1.0) * (2 if var == "bias" else 1)
        assert mults == (want, 0.0 if var == "bias" else 1.0), path

    psp = zoo.get("pspnet50", input_shape=(97, 97, 3), classes=3, aux=True)
    got = _multipliers(PRESETS["pspnet"], psp)
    new = {f"conv5_3_pool{b}_conv{bn}" for b in (1, 2, 3, 6) for bn in ("", "_bn")}  # semseg model.ppm
    new |= {"conv5_4", "conv5_4_bn", "conv6", "aux_3x3", "aux_3x3_bn", "aux_conv6"}  # model.cls, model.aux
    assert {p.split("/")[0] for p in got} >= new
    for path, mults in got.items():
        assert mults == (10.0 if path.split("/")[0] in new else 1.0, 1.0), path


@agnostic
def test_saved_with_its_optimizer_reloads_and_resumes_identically(tmp_path):
    names = ["conv1_stage1", "conv2"]
    opt = CoupledSGD(learning_rate=0.05, momentum=0.9, l2_decay=0.01, style="torch",
                     multipliers=[("conv1_*", 3.0, 0.5), ("*/bias", 2.0, 0.0)])
    model = _heads(names)
    x, ys = _data(len(names))
    model.compile(optimizer=opt, loss=["mse", "mse"])
    model.fit(x, ys, batch_size=N, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(again.optimizer, CoupledSGD) and again.optimizer.get_config() == opt.get_config()
    for m in (model, again):
        m.fit(x, ys, batch_size=N, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.trainable_variables, again.trainable_variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-6,
                                   atol=1e-7, err_msg=a.path)


@agnostic
def test_fp16_wraps_it_in_loss_scaling_and_keeps_the_multipliers(tmp_path):
    from tests.training.helpers import tiny_seg_model
    from training import fit
    from training.data import SegmentationDataset
    from training.datasets.synthetic import synthetic_segmentation

    data = SegmentationDataset(synthetic_segmentation(16, image_size=(32, 32), num_classes=3, seed=0),
                               batch_size=8, input_size=(32, 32), num_classes=3)
    model = tiny_seg_model(32, 3)
    before = {v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_variables}
    preset = Preset("sgd", 0.05, "constant", momentum=0.9, weight_decay=1e-3, multipliers=(("c1/*", 0.0, 1.0),))
    res = fit(model, data, epochs=1, precision="fp16", preset=preset, out_dir=tmp_path, verbose=0)
    opt = res.model.optimizer
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer) and isinstance(opt.inner_optimizer, CoupledSGD)
    assert np.isfinite(res.history["loss"]).all()
    for v in res.model.trainable_variables:  # c1 frozen by lr_mult 0, the others trained
        changed = not np.array_equal(keras.ops.convert_to_numpy(v), before[v.path])
        assert changed == (not v.path.startswith("c1/")), v.path
    loaded = keras.models.load_model(tmp_path / "final.keras", safe_mode=True)
    assert loaded.optimizer.inner_optimizer.get_config() == opt.inner_optimizer.get_config()


@agnostic
@pytest.mark.parametrize("kwargs, message", [
    (dict(weight_decay=1e-4), "weight_decay is Keras' decoupled decay"),
    (dict(momentum=1.0), r"momentum must be a finite number in \[0, 1\)"),
    (dict(l2_decay=-1.0), "l2_decay must be a finite number >= 0"),
    (dict(style="keras"), "style must be one of"),
    (dict(multipliers=[("*/bias", 2.0)]), r"multipliers\[0\] must be \(pattern, lr_mult, decay_mult\)"),
    (dict(multipliers=[("*/bias", float("nan"), 0.0)]), r"multipliers\[0\] lr_mult must be a finite number"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CoupledSGD(**kwargs)


@agnostic
@pytest.mark.parametrize("family, kind, rate", [("cpm", "adam", 1e-3), ("cpm", "rmsprop", 1e-3),
                                                ("fcn", "adamw", 1e-3), ("hourglass", "sgd", 0.01)])
def test_another_optimizer_kind_starts_from_keras_defaults_not_the_presets_tuned_numbers(family, kind, rate):
    # cpm's 8e-5 is an SGD rate for a summed loss: x K it made Adam's rate 8e-5 * 15,870 = 1.27, and its
    # momentum 0.9 went into RMSprop; Keras' own defaults (hand values) and no multipliers instead
    p = resolve_preset(None, family, {"optimizer": kind})
    opt = make_optimizer(p, epochs=1, steps_per_epoch=1, output_shape=(None, 46, 46, 15))
    assert float(opt._learning_rate.learning_rate) == pytest.approx(rate)
    assert getattr(opt, "momentum", 0.0) == 0.0 and p.multipliers == () and p.weight_decay is None
    ours = resolve_preset(None, family, {"optimizer": kind, "learning_rate": 3e-4, "weight_decay": 1e-5})
    assert (ours.learning_rate, ours.weight_decay, ours.lr_scale) == (3e-4, 1e-5, None)
    same = resolve_preset(None, family, {"optimizer": PRESETS[family].optimizer.upper()})  # same kind: kept
    assert same.learning_rate == PRESETS[family].learning_rate and same.momentum == PRESETS[family].momentum


@pytest.mark.parametrize("name, rate", [("fcn32s", 1e-10), ("fcn16s", 1e-12), ("fcn8s", 1e-14),
                                        ("fcn8s_atonce", 1e-10)])
def test_each_fcn_takes_its_own_solvers_base_rate(name, rate):
    # voc-fcn32s / voc-fcn16s / voc-fcn8s / voc-fcn8s-atonce solver.prototxt base_lr
    assert resolve_preset(None, "fcn", {}, model_name=name).learning_rate == rate


@pytest.mark.parametrize("preset", ["fcn32s", "FCN", "pspnet50", {"optimizer": "sgd"}])
def test_an_unknown_preset_is_named_with_the_known_ones(preset):
    # a name that is no PRESETS key (a model name such as fcn32s, which takes its family's, or a typo) reached
    # dataclasses.replace as a string: "TypeError: replace() should be called on dataclass instances"
    with pytest.raises(ValueError) as e:
        resolve_preset(preset, "fcn", {})
    assert str(e.value) == (f"preset must be a Preset, one of {tuple(PRESETS)} or None (the model's own, else its "
                            f"family's). Received: preset={preset!r}")



@agnostic
def test_fit_refuses_an_unknown_preset_before_building_the_model(tmp_path):
    from training import fit
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose

    ds = HeatmapDataset(synthetic_pose(4, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                        heatmap_size=(8, 8), sigma=1.0)
    # the preset's error, not the (unbuildable) model's: the name was checked only after building or loading one
    with pytest.raises(ValueError, match=r"preset must be a Preset, one of .* Received: preset='fcn32s'"):
        fit(str(tmp_path / "missing.keras"), ds, preset="fcn32s", out_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


@agnostic
def test_numpy_scalars_are_numbers():
    # np.float32(0.9) is no Python float: "momentum must be a finite number in [0, 1). Received: np.float32(0.9)"
    opt = CoupledSGD(momentum=np.float32(0.9), l2_decay=np.float32(0.25),
                     multipliers=[("a/*", np.int64(2), np.float64(0.5))])
    assert (opt.momentum, opt.l2_decay, opt.multipliers) == (float(np.float32(0.9)), 0.25, (("a/*", 2.0, 0.5),))
    assert all(type(v) is float for v in (opt.momentum, opt.l2_decay, *opt.multipliers[0][1:]))  # JSON config
    with pytest.raises(ValueError, match=r"momentum must be a finite number in \[0, 1\). Received: momentum=np.True_"):
        CoupledSGD(momentum=np.bool_(True))
