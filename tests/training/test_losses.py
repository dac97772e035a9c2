"""training.losses: element-wise weighted heatmap MSE and ignore-aware segmentation cross-entropy."""

import keras
import numpy as np
import pytest

from training.losses import HeatmapMSE, SegmentationCrossEntropy, auxiliary_loss_weights

# The loss-weight list and config round trip compute nothing (nothing a Keras backend computes) and run in ./dev
# test's TensorFlow pass alone; those that compute a loss are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic


def _heatmap_batch(rng, b=3, h=6, w=5, k=4):
    gt = rng.random((b, h, w, k)).astype(np.float32)
    pred = rng.random((b, h, w, k)).astype(np.float32)
    weights = rng.integers(0, 2, (b, 1, 1, k)).astype(np.float32)
    weights[0, 0, 0, :2] = [1, 0]  # per-joint weights differ inside a sample
    return gt, pred, weights


def _f(x):
    return float(keras.ops.convert_to_numpy(x))


@agnostic
def test_heatmap_mse_equals_elementwise_numpy_reference(rng):
    gt, pred, w = _heatmap_batch(rng)
    ref = np.mean(w * (pred - gt) ** 2)
    assert _f(HeatmapMSE()(gt, pred, sample_weight=w)) == pytest.approx(ref, rel=1e-5)
    assert _f(HeatmapMSE(factor=0.5)(gt, pred, sample_weight=w)) == pytest.approx(0.5 * ref, rel=1e-5)
    assert _f(HeatmapMSE()(gt, pred)) == pytest.approx(np.mean((pred - gt) ** 2), rel=1e-5)
    # (B, K) and per-sample (B,) weights are reshaped to broadcast like (B, 1, 1, K) / (B, 1, 1, 1)
    assert _f(HeatmapMSE()(gt, pred, sample_weight=w[:, 0, 0])) == pytest.approx(ref, rel=1e-5)
    ws = np.array([1.0, 0.0, 2.0], np.float32)
    ref_s = np.mean(ws[:, None, None, None] * (pred - gt) ** 2)
    assert _f(HeatmapMSE()(gt, pred, sample_weight=ws)) == pytest.approx(ref_s, rel=1e-5)


@agnostic
def test_heatmap_mse_differs_from_keras_mse_when_joint_weights_vary(rng):
    gt, _, w = _heatmap_batch(rng)
    pred = gt + 3.0 * (1.0 - w)  # errors only on weight-0 joints
    ours = _f(HeatmapMSE()(gt, pred, sample_weight=w))
    # Keras' MSE averages over the last (joint) axis first: the best it can take is a per-sample weight
    keras_mse = keras.losses.MeanSquaredError()
    per_sample = w.mean(axis=(1, 2, 3))[:, None, None]
    theirs = _f(keras_mse(gt, pred, sample_weight=per_sample))
    print(f"weighted heatmap MSE {ours:.6f} vs keras MSE with per-sample weights {theirs:.6f}")
    assert ours == 0.0 and theirs > 0.5
    # identical when every joint of a sample has the same weight
    uniform = np.broadcast_to(np.array([1, 0, 2.0], np.float32)[:, None, None, None], w.shape)
    pred = gt + rng.random(gt.shape).astype(np.float32)
    assert _f(HeatmapMSE()(gt, pred, sample_weight=uniform)) == pytest.approx(
        _f(keras_mse(gt, pred, sample_weight=uniform[:, :, :, 0])), rel=1e-5)


@agnostic
def test_heatmap_mse_in_evaluate_with_rank4_sample_weight_and_two_outputs(rng):
    gt, _, w = _heatmap_batch(rng, b=4, h=8, w=8, k=2)
    x = rng.random((4, 8, 8, 3)).astype(np.float32)
    inp = keras.Input((8, 8, 3))
    out1 = keras.layers.Conv2D(2, 1, name="stack1")(inp)
    out2 = keras.layers.Conv2D(2, 1, name="stack2")(inp)
    model = keras.Model(inp, [out1, out2])
    model.compile(loss=[HeatmapMSE(), HeatmapMSE()], loss_weights=auxiliary_loss_weights(2, 1.0, main_index=-1))
    p1, p2 = model.predict(x, verbose=0)
    ref = np.mean(w * (p1 - gt) ** 2) + np.mean(w * (p2 - gt) ** 2)
    # numpy arrays need one non-scalar sample_weight per output ...
    loss = model.evaluate(x, (gt, gt), sample_weight=(w, w), batch_size=4, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(ref, rel=1e-4)
    # ... while a PyDataset batch may carry a single (B, 1, 1, K) array used for every output
    loss = model.evaluate(_OneBatch(x, (gt, gt), w), verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(ref, rel=1e-4)


@agnostic
def test_heatmap_mse_sample_weight_rank_may_change_between_calls(rng):
    # TensorFlow retraces the step with a relaxed, unknown rank when the weight's rank changes.
    gt, _, w = _heatmap_batch(rng, b=4, h=8, w=8, k=2)
    x = rng.random((4, 8, 8, 3)).astype(np.float32)
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    model.compile(loss=HeatmapMSE())
    p = model.predict(x, verbose=0)
    for weight in (w[:, 0, 0, :], w[:, 0, 0, 0], w[:, 0, 0, :]):  # (B, K), then (B,), then (B, K) again
        full = weight.reshape(4, 1, 1, -1)
        loss = model.evaluate(x, gt, sample_weight=weight, batch_size=4, verbose=0)
        assert loss == pytest.approx(np.mean(full * (p - gt) ** 2), rel=1e-4)


class _OneBatch(keras.utils.PyDataset):
    def __init__(self, *batch):
        super().__init__()
        self.batch = batch

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.batch


def _ce_reference(labels, logits, ignore=255):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    valid = labels != ignore
    nll = -np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    return nll[valid].sum() / max(valid.sum(), 1), nll[valid].sum()


@agnostic
def test_segmentation_ce_ignores_255_and_averages_over_valid_pixels(rng):
    logits = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, (2, 5, 6)).astype(np.int32)
    labels[0, :3] = 255
    ref_mean, ref_sum = _ce_reference(labels, logits)
    loss = SegmentationCrossEntropy()
    assert _f(loss(labels, logits)) == pytest.approx(ref_mean, rel=1e-5)
    assert _f(loss(labels[..., None], logits)) == pytest.approx(ref_mean, rel=1e-5)
    keras_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)
    assert _f(loss(labels, logits)) == pytest.approx(_f(keras_ce(labels, logits)), rel=1e-5)
    # logits at ignored pixels do not matter
    changed = logits.copy()
    changed[0, :3] = 100.0 * rng.normal(size=changed[0, :3].shape)
    assert _f(loss(labels, changed)) == pytest.approx(ref_mean, rel=1e-5)
    changed[0, 0, 0] = [np.inf, -np.inf, np.nan, 0.0]  # overflowed there (fp16): the whole loss was NaN
    for ce in (loss, SegmentationCrossEntropy(from_logits=False)):
        assert np.isfinite(_f(ce(labels, changed))), ce.from_logits
    assert _f(loss(labels, changed)) == pytest.approx(ref_mean, rel=1e-5)
    assert _f(SegmentationCrossEntropy(reduction="sum")(labels, logits)) == pytest.approx(ref_sum, rel=1e-5)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
    assert _f(SegmentationCrossEntropy(from_logits=False)(labels, probs)) == pytest.approx(ref_mean, rel=1e-4)
    assert _f(loss(np.full_like(labels, 255), logits)) == 0.0


def test_losses_serialize_round_trip():
    for loss in (HeatmapMSE(factor=0.5), SegmentationCrossEntropy(ignore_label=0, from_logits=False)):
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()


def test_auxiliary_loss_weights():
    assert auxiliary_loss_weights(2) == [1.0, 0.4]
    assert auxiliary_loss_weights(3, 1.0, main_index=-1) == [1.0, 1.0, 1.0]
    assert auxiliary_loss_weights(3, 0.5, main_index=-1) == [0.5, 0.5, 1.0]
    with pytest.raises(ValueError, match="n_outputs"):
        auxiliary_loss_weights(0)
    with pytest.raises(ValueError, match="main_index"):
        auxiliary_loss_weights(2, main_index=2)


@agnostic
def test_shape_errors_name_the_loss(rng):
    with pytest.raises(ValueError, match="HeatmapMSE"):
        HeatmapMSE()(np.zeros((1, 4, 4, 2)), np.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match="sample_weight"):
        HeatmapMSE()(np.zeros((1, 4, 4, 2)), np.zeros((1, 4, 4, 2)), sample_weight=np.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match="SegmentationCrossEntropy"):
        SegmentationCrossEntropy()(np.zeros((1, 4, 4), np.int32), np.zeros((1, 8, 8, 3)))


@agnostic
def test_heatmap_mse_mean_with_sample_weight_divides_by_the_weights_of_every_element(rng):
    # sum(w * err) / sum over all (b, y, x, k) of w: the weighted mean of the squared errors, so weight-0
    # joints leave the denominator; Keras divided by the sum of the (B, 1, 1, K) weights themselves (h*w x too big)
    gt, pred, w = _heatmap_batch(rng)
    err = (pred - gt) ** 2
    loss = HeatmapMSE(reduction="mean_with_sample_weight")
    ref = np.sum(w * err) / (np.sum(w) * err.shape[1] * err.shape[2])
    assert _f(loss(gt, pred, sample_weight=w)) == pytest.approx(ref, rel=1e-5)
    assert _f(loss(gt, pred, sample_weight=w[:, 0, 0])) == pytest.approx(ref, rel=1e-5)
    ws = np.array([1.0, 0.0, 2.0], np.float32)  # per sample: every element of a sample has its weight
    ref_s = np.sum(ws[:, None, None, None] * err) / (np.sum(ws) * np.prod(err.shape[1:]))
    assert _f(loss(gt, pred, sample_weight=ws)) == pytest.approx(ref_s, rel=1e-5)
    assert _f(loss(gt, pred, sample_weight=np.zeros_like(w))) == 0.0  # nothing annotated: 0, not NaN
    assert _f(loss(gt, pred)) == pytest.approx(np.mean(err), rel=1e-5)


@agnostic
def test_segmentation_ce_mean_with_sample_weight_divides_by_the_valid_pixels_weights(rng):
    logits = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, (2, 5, 6)).astype(np.int32)
    labels[0, :3] = 255
    labels[1, 0, 0] = 9  # outside [0, C): ignored as well
    valid = (labels != 255) & (labels < 4)
    _, ref_sum = _ce_reference(np.where(valid, labels, 255), logits)
    loss = SegmentationCrossEntropy(reduction="mean_with_sample_weight")
    # no weights: the mean over valid pixels (it was divided by all pixels, ignored ones included)
    assert _f(loss(labels, logits)) == pytest.approx(ref_sum / valid.sum(), rel=1e-5)
    sw = rng.random(labels.shape).astype(np.float32) + 0.5
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    ref = np.sum((sw * nll)[valid]) / np.sum(sw[valid])  # PyTorch CrossEntropyLoss(weight, ignore_index)
    assert _f(loss(labels, logits, sample_weight=sw)) == pytest.approx(ref, rel=1e-5)
    assert _f(loss(labels[..., None], logits, sample_weight=sw)) == pytest.approx(ref, rel=1e-5)
    assert _f(loss(np.full_like(labels, 255), logits, sample_weight=sw)) == 0.0


@agnostic
@pytest.mark.parametrize("dtype", ["float16", "mixed_float16", "mixed_bfloat16"])
def test_losses_with_a_half_precision_dtype_reduce_in_float32(rng, dtype):
    # a mean over 4 x 128 x 128 = 65,536 pixels: the pixel count alone overflows float16 (max 65,504), and a
    # bfloat16 sum of that many terms loses all precision; the losses compute and reduce in float32
    logits = rng.normal(size=(4, 128, 128, 3)).astype(np.float16)
    labels = rng.integers(0, 3, (4, 128, 128)).astype(np.int32)
    labels[:, :40] = 255
    ref, _ = _ce_reference(labels, logits.astype(np.float64))
    got = SegmentationCrossEntropy(dtype=dtype)(labels, logits)
    assert keras.ops.convert_to_numpy(got).dtype == np.float32
    assert _f(got) == pytest.approx(ref, rel=1e-3)
    assert _f(SegmentationCrossEntropy(dtype=dtype)(np.full_like(labels, 255), logits)) == 0.0
    gt = rng.random((4, 64, 64, 16)).astype(np.float16)
    pred = rng.random((4, 64, 64, 16)).astype(np.float16)
    w = rng.integers(0, 2, (4, 1, 1, 16)).astype(np.float32)
    ref = np.mean(w * (pred.astype(np.float64) - gt.astype(np.float64)) ** 2)
    assert _f(HeatmapMSE(dtype=dtype)(gt, pred, sample_weight=w)) == pytest.approx(ref, rel=1e-3)


@agnostic
def test_segmentation_ce_float16_logits_under_a_mixed_policy(rng):
    # mixed precision: the model's logits are float16, the loss (default dtype) works in float32
    logits = (30.0 * rng.normal(size=(2, 9, 7, 5))).astype(np.float16)  # large logits: float16 softmax would overflow
    labels = rng.integers(0, 5, (2, 9, 7)).astype(np.int32)
    labels[1, 2:] = 255
    ref, _ = _ce_reference(labels, logits.astype(np.float64))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        got = SegmentationCrossEntropy()(labels, logits)
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.ops.convert_to_numpy(got).dtype == np.float32
    assert _f(got) == pytest.approx(ref, rel=1e-5)


@agnostic
def test_compiled_losses_reload_with_safe_mode(tmp_path, rng):
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, [keras.layers.Conv2D(3, 1, name="seg")(inp), keras.layers.Conv2D(2, 1, name="hm")(inp)])
    model.compile("sgd", loss=[SegmentationCrossEntropy(ignore_label=7, from_logits=True), HeatmapMSE(factor=0.5)],
                  loss_weights=[1.0, 0.4])
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 8, 8)).astype(np.int32)
    labels[0] = 7
    hm = rng.random((2, 8, 8, 2)).astype(np.float32)
    p_seg, p_hm = model.predict(x, verbose=0)
    ce, _ = _ce_reference(np.where(labels == 7, 255, labels), p_seg)
    ref = ce + 0.4 * 0.5 * np.mean((p_hm - hm) ** 2)
    assert again.evaluate(x, [labels, hm], verbose=0)[0] == pytest.approx(ref, rel=1e-4)
