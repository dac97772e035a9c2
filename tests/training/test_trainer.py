"""training.fit / training.evaluate on tiny models: outputs, learning, presets, precision, distribution."""

import csv
import json
import socket

import keras
import numpy as np
import pytest

import zoo

from tests.training.helpers import CHILDREN_SOURCE, run_python, run_tf_workers, tiny_pose_model, tiny_seg_model
from training.data import HeatmapDataset, SegmentationDataset
from training.datasets.synthetic import synthetic_pose, synthetic_segmentation
from training.evaluation import evaluate
from training.schedules import LRSchedule, make_schedule
from training.solvers import CoupledSGD
from training.trainer import PRESETS, build_model, fit, make_optimizer

agnostic = pytest.mark.backend_agnostic  # the multi-worker test below is TensorFlow-only


def _pose_data(n=32, seed=0, k=4, **kw):
    return HeatmapDataset(synthetic_pose(n, image_size=(32, 32), num_keypoints=k, seed=seed), batch_size=8,
                          input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, **{"flip_pairs": (), **kw})


def _seg_data(n=32, seed=0, **kw):
    return SegmentationDataset(synthetic_segmentation(n, image_size=(32, 32), num_classes=3, seed=seed),
                               batch_size=8, input_size=(32, 32), num_classes=3, **kw)


@agnostic
def test_fit_writes_checkpoint_log_and_resolves_multi_output_monitor(tmp_path, capsys):
    train, val = _pose_data(augment=True, on_error="skip"), _pose_data(16, seed=9, shuffle=False)
    train.records[5] = train.records[5].replace(image=str(tmp_path / "missing.png"))  # skipped, reported
    res = fit(tiny_pose_model(outputs=2), train, val, epochs=2, out_dir=tmp_path, verbose=0, tensorboard=True)
    assert res.history["skipped_samples"] == [1.0, 1.0]
    assert "missing.png" in (tmp_path / "skipped.tsv").read_text()
    assert train.num_outputs == 2 and val.num_outputs == 2  # one target per stack
    assert "val_stack2_heatmaps_pck" in res.history and res.monitor == "val_pck"
    assert res.best_value == pytest.approx(max(res.history["val_stack2_heatmaps_pck"]))
    side = json.loads((tmp_path / "best.keras.json").read_text())
    assert side["monitor"] == "val_stack2_heatmaps_pck" and side["epoch"] == res.best_epoch
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert not (tmp_path / "backup").exists()  # finished runs drop their backup
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # atomic writes leave no temp files
    model = keras.models.load_model(tmp_path / "best.keras", safe_mode=True)
    assert len(model.outputs) == 2
    images = list((tmp_path / "tensorboard").rglob("*"))  # keypoints/heatmaps: PNGs, or events with TensorBoard
    assert any(p.name.startswith("keypoints_epoch001") or "tfevents" in p.name for p in images), images
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["task"] == "pose" and cfg["train_data"]["num_outputs"] == 2
    # the CLI evaluates the checkpoint: per-joint table printed, per-sample CSV written
    from training.__main__ import main

    assert main(["evaluate", "--model", str(tmp_path / "best.keras"), "--dataset", "synthetic", "--num-keypoints",
                 "4", "--image-size", "32", "--val-samples", "6", "--out", str(tmp_path / "eval")]) == 0
    assert "joint3" in capsys.readouterr().out
    assert len(list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))) == 6 * 4


@agnostic
def test_small_models_learn_synthetic_data():
    """The fast version of benchmarks/train_synthetic.py (lower bar, tiny models, 32x32 images)."""
    # Seeded initial weights: unseeded, about one start in a few dozen leaves the tiny segmenter predicting
    # background everywhere for all 8 epochs (val mIoU 0.283, seen once in CI), which says nothing of fit().
    keras.utils.set_random_seed(0)
    aug = {"rotation": 0.0, "scale_range": (0.9, 1.1)}
    seg = fit(tiny_seg_model(32, 3, width=16), _seg_data(96, augment=aug), _seg_data(32, seed=9, shuffle=False),
              epochs=8, verbose=0, learning_rate=3e-3)
    assert seg.best_value > 0.5, seg.history
    pose = fit(tiny_pose_model(32, 4, outputs=2, width=16), _pose_data(96, augment=aug),
               _pose_data(32, seed=9, shuffle=False), epochs=8, verbose=0, learning_rate=3e-3, preset="default")
    assert pose.best_value > 0.25, pose.history



@agnostic
def test_the_train_step_is_traced_once_per_run():
    """On TensorFlow the optimizer's and metrics' variables were created inside the first trace of the train step,
    and a tf.function that creates variables is traced again: two traces of forward, backward and update (about a
    third of a small model's fit). Built before model.fit, one trace serves every epoch on each backend."""
    traces = {"train": 0, "test": 0}

    class Counting(keras.Model):  # a functional model whose steps count their Python runs (one per trace)
        def train_step(self, *args, **kwargs):
            traces["train"] += 1
            return super().train_step(*args, **kwargs)

        def test_step(self, *args, **kwargs):
            traces["test"] += 1
            return super().test_step(*args, **kwargs)

    tiny = tiny_pose_model(outputs=1)
    model = Counting(tiny.inputs, tiny.outputs, name="counting")
    train, val = _pose_data(16), _pose_data(8, seed=9, shuffle=False)
    res = fit(model, train, val, epochs=2, verbose=0)
    assert len(res.history["loss"]) == 2 and np.isfinite(res.history["val_loss"]).all()
    if keras.backend.backend() == "torch":  # eager: nothing is traced, the step's Python runs once per batch
        assert traces == {"train": 2 * len(train), "test": 2 * len(val)}
    else:
        assert traces == {"train": 1, "test": 1}

@agnostic
def test_schedules():
    poly = LRSchedule("poly", 0.01, total_steps=100, power=0.9)
    assert float(poly(0)) == pytest.approx(0.01) and float(poly(50)) == pytest.approx(0.01 * 0.5 ** 0.9, rel=1e-5)
    assert float(poly(100)) == pytest.approx(0.0, abs=1e-9)
    step = make_schedule("step", 1.0, epochs=10, steps_per_epoch=10, milestones=(0.6, 9), gamma=0.1)
    assert [round(float(step(s)), 6) for s in (59, 60, 89, 90)] == [1.0, 0.1, 0.1, 0.01]
    cos = LRSchedule("cosine", 1.0, total_steps=10, warmup_steps=4, warmup_factor=0.0)
    assert float(cos(0)) == 0.0 and float(cos(2)) == pytest.approx(0.5 * 0.5 * (1 + np.cos(np.pi * 0.2)), rel=1e-5)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cos)).warmup_steps == 4
    with pytest.raises(ValueError, match="kind must be one of"):
        LRSchedule("linear")


@agnostic
def test_presets():
    hg = make_optimizer(PRESETS["hourglass"], epochs=10, steps_per_epoch=5)
    assert isinstance(hg, keras.optimizers.RMSprop) and hg.rho == 0.99
    assert float(hg.learning_rate) == pytest.approx(2.5e-4)
    psp = make_optimizer(PRESETS["pspnet"], epochs=1, steps_per_epoch=10)
    assert isinstance(psp, CoupledSGD) and psp.momentum == 0.9 and psp._learning_rate.kind == "poly"
    # CPM's Caffe lr is for a summed Euclidean loss: rescaled by h*w*channels/2 for the mean loss
    cpm = make_optimizer(PRESETS["cpm"], epochs=1, steps_per_epoch=1, output_shape=(None, 46, 46, 15))
    assert cpm._learning_rate.learning_rate == pytest.approx(8e-5 * 46 * 46 * 15 / 2)


@agnostic
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision(precision):
    res = fit(tiny_seg_model(32, 3), _seg_data(16), epochs=1, precision=precision, verbose=0)
    compute = {"bf16": "bfloat16", "fp16": "float16"}[precision]
    assert res.model.layers[1].dtype_policy.compute_dtype == compute
    assert res.model.layers[-1].dtype_policy.compute_dtype == "float32"  # logits stay float32
    assert isinstance(res.model.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "fp16")
    assert np.isfinite(res.history["loss"]).all()
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


@agnostic
def test_mixed_precision_reaches_a_nested_frozen_backbone():
    # A user's model around a nested, frozen backbone: the clone kept the backbone's layers in float32
    # (only the top-level layers took the policy). Now they compute in bfloat16 and stay frozen.
    from keras import layers

    inp = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, padding="same", name="b1")(inp)
    x = layers.BatchNormalization(name="b_bn")(x)
    backbone = keras.Model(inp, layers.Conv2D(8, 3, padding="same", name="b2")(x), name="backbone")
    backbone.trainable = False
    image = keras.Input((32, 32, 3), name="image")
    model = keras.Model(image, layers.Conv2D(3, 1, name="logits")(backbone(image)))
    frozen = [w.copy() for w in backbone.get_weights()]
    res = fit(model, _seg_data(16), epochs=1, precision="bf16", verbose=0)
    inner = res.model.get_layer("backbone")
    assert [lay.dtype_policy.compute_dtype for lay in inner.layers[1:]] == ["bfloat16"] * 3
    assert not any(lay.trainable for lay in inner.layers[1:])
    for before, after in zip(frozen, inner.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert res.model.get_layer("logits").dtype_policy.compute_dtype == "float32"
    assert np.isfinite(res.history["loss"]).all()


@agnostic
def test_precision_applies_to_a_saved_model_and_a_named_one(tmp_path):
    """A .keras path (kerazoo train --model RUN/best.keras --precision bf16) trained in the dtypes it was saved with:
    bf16 asked, float32 computed (only its InputLayer changed); a model built by name had bf16 outputs."""
    from collections import Counter

    tiny_pose_model(outputs=2).save(tmp_path / "m.keras")
    res = fit(str(tmp_path / "m.keras"), _pose_data(8), epochs=1, precision="bf16", verbose=0)
    policies = Counter(l.dtype_policy.name for l in res.model.layers if l.weights)
    assert policies == Counter({"mixed_bfloat16": 4, "float32": 2})  # convs; the two heatmap outputs float32
    data = HeatmapDataset(synthetic_pose(8, image_size=(64, 64), num_keypoints=4), batch_size=8, input_size=(64, 64),
                          heatmap_size=(16, 16), flip_pairs=())
    named = fit("hourglass", data, epochs=1, precision="bf16", model_kwargs=dict(stacks=1, features=16), verbose=0)
    assert named.model.get_layer("stack1_heatmaps").dtype_policy.name == "float32"
    assert named.model.get_layer("stem_conv").dtype_policy.name == "mixed_bfloat16"
    assert keras.backend.standardize_dtype(named.model.outputs[-1].dtype) == "float32"


@agnostic
def test_the_mixed_precision_copy_draws_no_weights_with_keras_initializers(monkeypatch):
    # fit's copy of a model in the bf16 policy re-created each layer with Keras' initialisers, whose draws (compiled
    # per weight shape on JAX: 6.4 of an 8-stack hourglass' copy) set_weights then replaced
    import zoo
    from tests.zoo.helpers import count_keras_draws
    from training.matching import _with_policy

    model = zoo.get("hourglass", stacks=1, features=16, num_keypoints=2, input_shape=(64, 64, 3))
    draws = count_keras_draws(monkeypatch)
    copy = _with_policy(model, "mixed_bfloat16")
    assert draws == []
    assert copy.get_layer("stem_conv").dtype_policy.compute_dtype == "bfloat16"
    for got, want in zip(copy.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    # Keras' initialisers back on the copy: it saves (and a clone of it draws) as the model would
    assert [l.get_config().get("kernel_initializer") for l in copy.layers] == \
        [l.get_config().get("kernel_initializer") for l in model.layers]
    keras.models.clone_model(copy)
    assert draws  # the count sees Keras' draws


@agnostic
def test_a_monitor_that_is_not_logged_stops_after_the_first_epoch(tmp_path):
    # fit(monitor="val_pkc") printed a line after epoch 1, trained all its epochs and ended with no best.keras
    with pytest.raises(ValueError, match=r"monitor 'val_pkc' is not logged \(logged after epoch 1: .*val_pck.*\); "
                                         r"give monitor= one of them"):
        fit(tiny_pose_model(outputs=1), _pose_data(8), _pose_data(8, seed=1), epochs=3, out_dir=tmp_path,
            monitor="val_pkc", verbose=0)
    with open(tmp_path / "log.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 1  # the header and epoch 1: it stopped there
    assert not (tmp_path / "best.keras").exists()


@agnostic
def test_best_of_history_without_a_checkpoint_minimises_errors():
    # without an output folder the best epoch comes from the history: 'val_mae' is an error (min),
    # as BestCheckpoint decides; only names with 'loss' were minimised, so the worst epoch was reported
    from training.trainer import FitResult, _record_best

    for monitor, history, best in [("val_mae", [0.5, 0.2, 0.3], (0.2, 1)), ("val_pck", [0.5, 0.7, 0.6], (0.7, 1)),
                                   ("val_loss", [3.0, 1.0, 2.0], (1.0, 1))]:
        res = FitResult(model=None, history={monitor: history})
        _record_best(res, None, res.history, monitor)
        assert (res.best_value, res.best_epoch) == pytest.approx(best)


@agnostic
def test_evaluate_tables_and_csv(tmp_path):
    model = tiny_pose_model(outputs=2)
    val = _pose_data(10, seed=3, shuffle=False)
    val.num_outputs = 2
    res = evaluate(model, val, out_dir=tmp_path / "pose", verbose=False)
    assert res.metric == "PCK (box)@0.2" and set(res.table["per_joint"]) == {f"joint{j}" for j in range(4)}
    rows = list(csv.DictReader(open(tmp_path / "pose" / "predictions.csv")))
    assert len(rows) == 10 * 4 and {"id", "pred_x", "gt_x", "correct"} <= set(rows[0])
    assert sum(int(r["correct"]) for r in rows) / sum(int(r["visible"]) for r in rows) == \
        pytest.approx(res.table["mean_all"])
    assert len(evaluate(model, val, flip=True, verbose=False).rows) == 40
    seg = evaluate(tiny_seg_model(32, 3), _seg_data(10), out_dir=tmp_path / "seg", verbose=False)
    assert 0 <= seg.mean <= 1 and len(seg.table["iou"]) == 3
    table = list(csv.reader(open(tmp_path / "seg" / "table.csv")))
    assert table[0] == ["name", "value", "count"] and table[-2][0] == "mean"


@agnostic
def test_mismatches_raise_clear_errors():
    with pytest.raises(ValueError, match="model output has 3 classes but the dataset has num_classes=5"):
        fit(tiny_seg_model(32, 3), SegmentationDataset(synthetic_segmentation(8, image_size=(32, 32)),
                                                       batch_size=4, input_size=(32, 32), num_classes=5), epochs=1)
    with pytest.raises(ValueError, match="4 heatmap channels but the dataset gives 6"):
        fit(tiny_pose_model(outputs=1), _pose_data(8, k=6), epochs=1)
    with pytest.raises(TypeError, match="HeatmapDataset or SegmentationDataset"):
        fit(tiny_pose_model(), np.zeros((4, 32, 32, 3)))
    with pytest.raises(ValueError, match="precision must be"):
        fit(tiny_pose_model(), _pose_data(8), precision="int8")
    with pytest.raises(ValueError, match="steps_per_execution must be an integer >= 1. Received: steps_per_execution=0"):
        fit(tiny_pose_model(), _pose_data(8), steps_per_execution=0)


@agnostic
def test_a_dataset_cropping_to_another_size_than_the_model_takes_is_refused(tmp_path):
    # a 32x32 model and 48x40 crops: fit started the run folder (config.json, cli.json) and failed inside Keras
    # ("Input 0 ... is incompatible"); evaluate on JAX failed in a broadcasting add deep in the backend
    ds = HeatmapDataset(synthetic_pose(4, image_size=(48, 40), num_keypoints=4), batch_size=2, input_size=(48, 40),
                        heatmap_size=(12, 10), sigma=1.0, flip_pairs=())
    seg = SegmentationDataset(synthetic_segmentation(4, image_size=(48, 40)), batch_size=2, input_size=(48, 40),
                              num_classes=3)
    out = tmp_path / "run"
    msg = r"the model takes 32x32 \(width x height\) images .* input_size=\(48, 40\) \(w, h\); .* input_size=\(32, 32\)"
    with pytest.raises(ValueError, match="fit: " + msg):
        fit(tiny_pose_model(outputs=1), ds, epochs=1, out_dir=out, verbose=0, command={"argv": []})
    assert not out.exists()
    with pytest.raises(ValueError, match="fit: " + msg):
        fit(tiny_seg_model(32, 3), seg, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="evaluate: " + msg):
        evaluate(tiny_pose_model(outputs=1), ds, verbose=False)
    with pytest.raises(ValueError, match="evaluate: " + msg):
        evaluate(tiny_seg_model(32, 3), seg, verbose=False)
    # an open axis takes the dataset's
    free_h = keras.Model(*(lambda i: (i, keras.layers.Conv2D(3, 1)(i)))(keras.Input((None, 32, 3))))
    with pytest.raises(ValueError, match=r"evaluate: the model takes 32xany .* input_size=\(32, 40\)"):
        evaluate(free_h, seg, verbose=False)


@agnostic
def test_a_classifier_given_as_a_model_is_refused_by_its_output_shape():
    # a keras.Model classifier (B, classes) on maps: an IndexError from the geometry check (by name: refused earlier)
    inp = keras.Input((32, 32, 3))  # not a zoo model: nothing but its output says it is a classifier
    clf = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inp)))
    with pytest.raises(ValueError, match=r"fit: the model's last output has shape \(None, 3\), but pose training "
                                         r"needs \(B, h, w, K\) heatmaps"):
        fit(clf, _pose_data(8, k=3), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"fit: the model's first output has shape \(None, 3\), but segmentation "
                                         r"training needs \(B, h, w, C\) class scores"):
        fit(clf, _seg_data(8), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate: the model's last output has shape \(None, 3\), not the "
                                         r"\(B, h, w, C\) maps of a pose or segmentation model \(a classifier\?\)\.$"):
        evaluate(clf, _pose_data(8, k=3), verbose=False)  # an IndexError once evaluate asked for its output size


@agnostic
def test_an_out_dir_that_is_a_file_is_refused_before_the_model_runs(tmp_path):
    # evaluate ran the whole set, then failed writing its CSVs with "[Errno 17] File exists"; fit after compiling
    (tmp_path / "taken").write_text("x")
    ds = _pose_data(8)
    for out, blocker in ((tmp_path / "taken", tmp_path / "taken"), (tmp_path / "taken" / "eval", tmp_path / "taken")):
        with pytest.raises(ValueError, match=rf"evaluate: out_dir '{out}': '{blocker}' is a file, expected a folder "
                                             r"\(for table.csv"):
            evaluate(tiny_pose_model(outputs=1), ds, out_dir=out, verbose=False)
        with pytest.raises(ValueError, match=rf"fit: out_dir '{out}': '{blocker}' is a file, expected a folder"):
            fit(tiny_pose_model(outputs=1), ds, epochs=1, out_dir=out, verbose=0)
    assert (tmp_path / "taken").read_text() == "x"


@agnostic
@pytest.mark.tf_pass_only
def test_a_zoo_model_for_another_task_given_as_a_model_is_refused_by_name(tmp_path):
    # an hourglass with as many heatmaps as the masks have classes trained on them without a word (and was scored)
    hg = zoo.get("hourglass", stacks=1, features=8, num_keypoints=3, input_shape=(64, 64, 3))
    masks = SegmentationDataset(synthetic_segmentation(8, image_size=(64, 64), num_classes=3), batch_size=8,
                                input_size=(64, 64), num_classes=3)
    with pytest.raises(ValueError, match="fit: 'hourglass' is a pose model; the dataset is for segmentation"):
        fit(hg, masks, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="evaluate: 'hourglass' is a pose model; the dataset is for segmentation"):
        evaluate(hg, masks, verbose=False)  # scored a mean IoU of the heatmaps
    fcn = zoo.get("fcn32s", classes=4, input_shape=(64, 64, 3))
    keypoints = HeatmapDataset(synthetic_pose(8, image_size=(64, 64), num_keypoints=4), batch_size=8,
                               input_size=(64, 64), heatmap_size=(64, 64), flip_pairs=())
    with pytest.raises(ValueError, match="evaluate: 'fcn32s' is a segmentation model; the dataset is for pose"):
        evaluate(fcn, keypoints, verbose=False)  # scored PCK 0 of the class scores
    clf = zoo.get("resnet18", input_shape=(32, 32, 3), classes=3)
    with pytest.raises(ValueError, match="fit: 'resnet18' is a classification model; the dataset is for pose"):
        fit(clf, _pose_data(8, k=3), epochs=1, verbose=0)
    # a training run's .keras knows its task from the run (config.json / its kerazoo.json entry)
    fit(tiny_seg_model(32, 3), _seg_data(8), epochs=1, out_dir=tmp_path / "seg", verbose=0)
    seg = zoo.load_keras_model(tmp_path / "seg" / "final.keras")
    with pytest.raises(ValueError, match="is a segmentation model; the dataset is for pose"):
        fit(seg, _pose_data(8, k=3), epochs=1, verbose=0)


@agnostic
@pytest.mark.tf_pass_only
def test_an_any_size_model_gets_targets_of_its_output_size_or_a_clear_error():
    """An any-size hourglass kept the dataset's heatmap_size (32 for 64 px crops: the loss failed on (32, 32) targets
    for (16, 16) maps) and a crop size it cannot take failed inside Keras: its output at the crops is inferred."""
    hg = zoo.get("hourglass", stacks=1, features=8, num_keypoints=4, input_shape=(None, None, 3))
    ds = HeatmapDataset(synthetic_pose(8, image_size=(64, 64), num_keypoints=4), batch_size=4, input_size=(64, 64),
                        heatmap_size=(32, 32), flip_pairs=())
    fit(hg, ds, epochs=1, verbose=0)
    assert ds.heatmap_size == (16, 16)  # stride 4
    odd = HeatmapDataset(synthetic_pose(8, image_size=(48, 48), num_keypoints=4), batch_size=4, input_size=(48, 48),
                         heatmap_size=(12, 12), flip_pairs=())
    with pytest.raises(ValueError, match=r"fit: the model does not take 48x48 \(w x h\) inputs \(.*\); a size it "
                                         r"takes is a multiple of its total stride \(64 for an hourglass\); make the "
                                         r"HeatmapDataset with an input_size it takes"):
        fit(hg, odd, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"evaluate: the model does not take 48x48 \(w x h\) inputs \(.*\); make the "
                                         r"HeatmapDataset with an input_size it takes"):
        evaluate(hg, odd, verbose=False)


@agnostic
def test_bad_rates_are_refused_before_the_model_is_touched(tmp_path):
    """learning_rate <= 0 / NaN / inf, a negative weight_decay or warmup_epochs trained silently (a negative rate
    uphill); the command line refused them only. The model given does not fit the data (6 keypoints for 4
    maps): the rate's error coming first shows it is checked before any model work."""
    from training.trainer import Preset

    cases = [(dict(learning_rate=0.0), "learning_rate must be a finite number > 0. Received: learning_rate=0.0"),
             (dict(learning_rate=-1e-3), "Received: learning_rate=-0.001"),
             (dict(learning_rate=float("nan")), "Received: learning_rate=nan"),
             (dict(learning_rate=float("inf")), "Received: learning_rate=inf"),
             (dict(learning_rate=True), "Received: learning_rate=True"),
             (dict(learning_rate="0.1"), "Received: learning_rate='0.1'"),
             (dict(weight_decay=-1e-4), "weight_decay must be a finite number >= 0. Received: weight_decay=-0.0001"),
             (dict(weight_decay=float("inf")), "Received: weight_decay=inf"),
             (dict(warmup_epochs=-1), "warmup_epochs must be a finite number >= 0. Received: warmup_epochs=-1"),
             (dict(warmup_epochs=float("nan")), "Received: warmup_epochs=nan"),
             (dict(aux_weight=float("inf")), "aux_weight must be a finite number >= 0. Received: aux_weight=inf"),
             (dict(preset=Preset(learning_rate=-0.5)), "preset.learning_rate must be a finite number > 0. "
                                                       "Received: preset.learning_rate=-0.5")]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as e:
            fit(tiny_pose_model(outputs=1), _pose_data(8, k=6), epochs=1, out_dir=tmp_path / "run", verbose=0,
                **kwargs)
        assert message in str(e.value), (kwargs, str(e.value))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="4 heatmap channels but the dataset gives 6"):  # 0 is no weight decay
        fit(tiny_pose_model(outputs=1), _pose_data(8, k=6), epochs=1, weight_decay=0.0, warmup_epochs=0)


@agnostic
def test_steps_per_execution_on_pytorch_is_refused_before_training():
    # Keras refuses it on PyTorch only inside model.fit, after the data workers started.
    if keras.backend.backend() == "torch":
        with pytest.raises(ValueError, match="steps_per_execution=2: the PyTorch backend runs one training step"):
            fit(tiny_pose_model(), _pose_data(8), steps_per_execution=2)
    else:
        res = fit(tiny_pose_model(), _pose_data(8), epochs=1, steps_per_execution=2, verbose=0)
        assert res.model.steps_per_execution == 2


@agnostic
def test_data_parallel_distribution():
    """keras.distribution.DataParallel on JAX, tf.distribute.MirroredStrategy on TensorFlow; refused on PyTorch."""
    if keras.backend.backend() == "torch":
        with pytest.raises(ValueError, match="distribution='data_parallel' is not available on the torch backend"):
            fit(tiny_pose_model(outputs=2), _pose_data(16), epochs=1, distribution="data_parallel", verbose=0)
        return
    res = fit(tiny_pose_model(outputs=2), _pose_data(16), epochs=1, distribution="data_parallel", verbose=0)
    assert np.isfinite(res.history["loss"]).all()
    if keras.backend.backend() == "jax":
        assert keras.distribution.distribution() is None  # restored after fit


@agnostic
@pytest.mark.tf_pass_only
def test_named_models_get_dataset_geometry():
    model, family = build_model("tiny_fcn", "segmentation", _seg_data(8), {"width": 4})
    assert family == "default" and model.input_shape == (None, 32, 32, 3) and model.outputs[0].shape[-1] == 3
    ds = HeatmapDataset(synthetic_pose(4, num_keypoints=5), input_size=(64, 64), heatmap_size=(16, 16))
    model, family = build_model("hourglass", "pose", ds, {"stacks": 1, "features": 8})
    assert family == "hourglass" and tuple(model.outputs[0].shape) == (None, 16, 16, 5)
    with pytest.raises(ValueError, match="Unknown model 'hourglas'"):
        build_model("hourglas", "pose", _pose_data(8), None)


MWMS_SCRIPT = """
import json, os, sys
from training.data import HeatmapDataset
from training.datasets.synthetic import synthetic_pose
from training.trainer import fit
ds = HeatmapDataset(synthetic_pose(32, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                    heatmap_size=(8, 8), sigma=1.0)
# the model comes from a file, so it is built after the strategy exists (TensorFlow requires that order)
res = fit(sys.argv[2], ds, epochs=1, out_dir=sys.argv[1], verbose=0)
weights = float(sum(abs(w).sum() for w in res.model.get_weights()))
print("RESULT", json.dumps({"loss": res.history["loss"], "n": len(res.history["loss"]), "weights": weights}))
"""


def test_multi_worker_mirrored_strategy_localhost(tmp_path):
    tiny_pose_model(outputs=2).save(tmp_path / "tiny.keras")
    results = run_tf_workers(MWMS_SCRIPT, tmp_path / "run", tmp_path / "tiny.keras")
    assert all(r["n"] == 1 and np.isfinite(r["loss"][0]) for r in results)
    # synchronous data parallelism: both workers end with the same weights (gradients all-reduced)
    assert results[0]["weights"] == pytest.approx(results[1]["weights"], rel=1e-6)
    assert (tmp_path / "run" / "final.keras").exists()  # chief writes; the other worker keeps to .worker1
    assert (tmp_path / "run" / ".worker1").is_dir()


MWMS_WORKERS_SCRIPT = """
import json, multiprocessing, os, sys, time

""" + CHILDREN_SOURCE + """
if __name__ == "__main__":
    multiprocessing.set_start_method("spawn", force=True)
    import keras
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose
    from training.trainer import fit
    make = lambda n: HeatmapDataset(synthetic_pose(n, image_size=(32, 32), num_keypoints=4), batch_size=4,
                                    input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), workers=2,
                                    use_multiprocessing=True)
    seen = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(len(children()))

    res = fit(sys.argv[2], make(16), make(8), epochs=2, out_dir=sys.argv[1], verbose=0, callbacks=[Count()])
    deadline = time.time() + 30
    while children() and time.time() < deadline:
        time.sleep(0.2)
    print("RESULT", json.dumps({"loss": res.history["loss"], "during": seen, "after": children()}))
"""


def test_multi_worker_shards_worker_processes_end_with_fit(tmp_path):
    """Each worker's shard copy has processes of its own (use_multiprocessing=True); they ended only with the
    program (tf.data keeps the copies), and the dataset's own processes started for the build batch."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    tiny_pose_model(outputs=2).save(tmp_path / "tiny.keras")
    cluster = {"cluster": {"worker": [f"localhost:{port}"]}, "task": {"type": "worker", "index": 0}}
    env = {"TF_CONFIG": json.dumps(cluster), "KERAS_BACKEND": "tensorflow"}
    script = tmp_path / "mwms_workers.py"
    script.write_text(MWMS_WORKERS_SCRIPT)
    proc = run_python([str(script), str(tmp_path / "run"), str(tmp_path / "tiny.keras")], env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert len(r["loss"]) == 2 and np.isfinite(r["loss"]).all()
    assert r["during"] == [4, 4]  # 2 for the training shard, 2 for the validation shard, kept across epochs
    assert r["after"] == []


@agnostic
def test_builder_arguments_with_a_saved_model_are_refused(tmp_path):
    # kerazoo train --model run/best.keras --model-arg width=4 trained the saved model, the argument ignored
    path = tmp_path / "seg.keras"
    tiny_seg_model(32, 3).save(path)
    with pytest.raises(ValueError, match=r"seg.keras' is a saved model, which takes no builder arguments "
                                         r".*\['width'\]"):
        build_model(str(path), "segmentation", _seg_data(8), {"width": 4})
    model, family = build_model(str(path), "segmentation", _seg_data(8), {})
    assert model.name == "tiny_seg" and family == "default"


@agnostic
def test_named_models_for_another_task_are_refused_by_name():
    with pytest.raises(ValueError, match="'resnet18' is a classification model; the dataset is for segmentation"):
        build_model("resnet18", "segmentation", _seg_data(8), None)  # was IndexError in the geometry check
    with pytest.raises(ValueError, match="'hourglass' is a pose model; the dataset is for segmentation"):
        build_model("hourglass", "segmentation", _seg_data(8), {"stacks": 1, "features": 8})
    with pytest.raises(ValueError, match="'tiny_fcn' is a segmentation model; the dataset is for pose"):
        build_model("tiny_fcn", "pose", _pose_data(8), None)  # was "21 heatmap channels but ... 4"
    with pytest.raises(ValueError, match="task must be one of"):
        build_model("tiny_fcn", "classification", _seg_data(8), None)


@agnostic
def test_worker_rank_counts_the_chief_of_a_tf_config_cluster():
    from training.distribute import worker_rank

    cluster = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}
    ranks = [worker_rank({"cluster": cluster, "task": {"type": t, "index": i}})
             for t, i in (("chief", 0), ("worker", 0), ("worker", 1))]
    assert ranks == [(0, 3), (1, 3), (2, 3)]  # worker 0 was a second chief (index 0) and the count was 2
    assert worker_rank({"cluster": {"worker": ["h1:1", "h2:1"]}, "task": {"type": "worker", "index": 1}}) == (1, 2)
    with pytest.raises(ValueError, match="task {'type': 'ps', 'index': 0} is not a chief or worker"):
        worker_rank({"cluster": {**cluster, "ps": ["h3:1"]}, "task": {"type": "ps", "index": 0}})
    with pytest.raises(ValueError, match="'index': 2} is not a chief or worker of the cluster"):
        worker_rank({"cluster": cluster, "task": {"type": "worker", "index": 2}})


@agnostic
def test_an_unknown_distribution_is_named_as_unknown():
    from training.distribute import setup_distribution

    with pytest.raises(ValueError, match=r"distribution must be one of \('auto', 'none', 'data_parallel', 'mirrored', "
                                         r"'multi_worker'\). Received: distribution='mirorred'"):
        setup_distribution("mirorred")  # was "not available on the jax backend", as if it existed elsewhere


@agnostic
def test_auto_distribution_on_torch_with_several_gpus_says_it_trains_on_one():
    """PyTorch has no distribution here: with 4 GPUs visible, fit trained on cuda:0 and left 3 idle without a word.
    (No GPUs here: the notice's rule and text; setup_distribution warns it on the torch backend.)"""
    from training.distribute import single_device_notice

    assert single_device_notice("torch", 0) is None and single_device_notice("torch", 1) is None
    assert single_device_notice("jax", 4) is None and single_device_notice("tensorflow", 4) is None  # they distribute
    assert single_device_notice("torch", 4) == (
        "distribution='auto': 4 CUDA devices are visible, but training.fit trains on one of them (cuda:0) on the torch "
        "backend (Keras has no data-parallel distribution for PyTorch). To use them all, run with KERAS_BACKEND=jax "
        "('data_parallel') or tensorflow ('mirrored'); CUDA_VISIBLE_DEVICES=0 silences this.")


@agnostic
def test_a_refused_distribution_names_what_this_backend_takes():
    """The refusal offered every backend's kinds alike, so PyTorch's named the refused 'data_parallel' as a choice."""
    from training.distribute import setup_distribution, unavailable_message

    refused = {"torch": ("data_parallel", "mirrored", "multi_worker"), "jax": ("multi_worker",), "tensorflow": ()}
    expected = {
        ("torch", "data_parallel"): "distribution='data_parallel' is not available on the torch backend; use 'auto' or "
                                    "'none' (training.fit runs on one device on the torch backend), or run with "
                                    "KERAS_BACKEND=tensorflow ('data_parallel', 'mirrored', 'multi_worker') or "
                                    "KERAS_BACKEND=jax ('data_parallel', 'mirrored').",
        ("torch", "multi_worker"): "distribution='multi_worker' is not available on the torch backend; use 'auto' or "
                                   "'none' (training.fit runs on one device on the torch backend), or run with "
                                   "KERAS_BACKEND=tensorflow ('data_parallel', 'mirrored', 'multi_worker').",
        ("jax", "multi_worker"): "distribution='multi_worker' is not available on the jax backend; use 'auto', 'none', "
                                 "'data_parallel' or 'mirrored', or run with KERAS_BACKEND=tensorflow ('data_parallel', "
                                 "'mirrored', 'multi_worker').",
    }
    backend = keras.backend.backend()
    for kind in refused[backend]:  # the refusal on this backend, as fit and the CLI show it
        with pytest.raises(ValueError) as e:
            setup_distribution(kind)
        text = str(e.value)
        assert text.startswith(f"distribution={kind!r} is not available on the {backend} backend; use "), text
        offered = text.split("; use ", 1)[1].split(", or run with")[0]
        assert repr(kind) not in offered, text  # not offered as a choice where it was just refused
        if (backend, kind) in expected:
            assert text == expected[backend, kind]
    for (other, kind), text in expected.items():  # also the other backends' refusals, from any backend
        assert unavailable_message(kind, other) == text


@agnostic
def test_a_tf_config_cluster_outside_tensorflow_is_refused_not_trained_alone(monkeypatch):
    from training.distribute import setup_distribution

    cluster = {"worker": ["h1:1", "h2:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert setup_distribution("none").count == 1  # asked for: this process alone, on any backend
    if keras.backend.backend() != "tensorflow":  # TensorFlow's "auto" joins the cluster (tested with real workers)
        # "auto" trained each of the cluster's processes alone, all writing one output folder
        with pytest.raises(ValueError, match=r"TF_CONFIG describes a cluster of 2 workers, but multi-worker training "
                                             r"runs on the TensorFlow backend only"):
            setup_distribution("auto")
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["h1:1"]}, "task": {"index": 0}}))
        assert setup_distribution("auto").count == 1  # a cluster of one is this process


@agnostic
def test_tiny_models_name_the_input_sizes_they_take():
    from training.models import tiny_fcn, tiny_pspnet

    # bins 1, 2, 3 on 120 px: a 15 x 15 stride-8 map, which 2 does not split (was a Concatenate shape error)
    with pytest.raises(ValueError, match=r"tiny_pspnet: input_shape must be \(H, W, 3\) with H and W divisible by 48"):
        tiny_pspnet(input_shape=(120, 120, 3), bins=(1, 2, 3), width=4)
    assert tiny_pspnet(input_shape=(48, 48, 3), bins=(1, 2, 3), width=4, aux=False).output_shape == (None, 48, 48, 21)
    with pytest.raises(ValueError, match=r"tiny_fcn: input_shape must be \(H, W, 3\). Received: input_shape=\(64, 64\)"):
        tiny_fcn(input_shape=(64, 64))  # was "not enough values to unpack"
    for model in (tiny_fcn, tiny_pspnet):  # any size: "unsupported operand type(s) for %"
        with pytest.raises(ValueError, match=r"input_shape must be \(H, W, 3\) with H and W divisible by \d+. "
                                             r"Received: input_shape=\(None, None, 3\)"):
            model(input_shape=(None, None, 3))


@agnostic
@pytest.mark.jax_pass_only
def test_fine_tuning_keeps_the_weights_heatmap_convention(tmp_path):
    # A release's record puts heatmap pixel 0 at 2 input px (hourglass:mpii); fine-tuning it with a dataset left at
    # the default trained 0-offset targets, and the record still told evaluate/predict to decode with 2.
    def data(**kw):
        return HeatmapDataset(synthetic_pose(8, image_size=(64, 64), num_keypoints=4), batch_size=4,
                              input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, flip_pairs=(), **kw)

    base = zoo.get("hourglass", stacks=1, features=8, num_keypoints=4, input_shape=(64, 64, 3))
    zoo.save_weights(base, tmp_path / "release.h5", record=zoo.WeightsRecord(heatmap_offset=2.0))
    train, val = data(), data(heatmap_offset=0.5)
    res = fit(zoo.get("hourglass", weights=str(tmp_path / "release.h5")), train, val, epochs=1, verbose=0)
    assert (train.heatmap_offset, val.heatmap_offset) == (2.0, 2.0)  # the release's convention, both sets
    assert zoo.weights_record(res.model).heatmap_offset == 2.0
    # a dataset given its own offset wins, and the model's record follows what it was trained on (a small model
    # with the release's record: the hourglass is not what is checked, and its fit costs several seconds)
    zoo.save_model(tiny_pose_model(64, outputs=1), tmp_path / "recorded.keras",
                   metadata={"record": zoo.WeightsRecord(heatmap_offset=2.0)})
    recorded = zoo.load_keras_model(tmp_path / "recorded.keras")
    assert zoo.weights_record(recorded).heatmap_offset == 2.0
    res = fit(recorded, data(heatmap_offset=1.0), epochs=1, verbose=0)
    assert zoo.weights_record(res.model).heatmap_offset == 1.0
    # a model without a record gets one when its targets are not the default's
    res = fit(tiny_pose_model(64, outputs=1), data(heatmap_offset=1.5), epochs=1, verbose=0)
    assert zoo.weights_record(res.model).heatmap_offset == 1.5


@agnostic
def test_fine_tuning_keeps_the_weights_heatmap_sigma(tmp_path):
    # A release's record says its targets were Gaussians of sigma 0.875 heatmap px (the CPM releases); a dataset
    # left at its default trained them on training's 2.0 (2.3x wider peaks) without a word.
    def data(**kw):
        return HeatmapDataset(synthetic_pose(8, image_size=(32, 32), num_keypoints=4), batch_size=4,
                              input_size=(32, 32), heatmap_size=(8, 8), flip_pairs=(), shuffle=False, **kw)

    def release(sigma):
        path = tmp_path / f"release_{sigma}.keras"
        zoo.save_model(tiny_pose_model(32, outputs=1), path, metadata={"record": zoo.WeightsRecord(heatmap_sigma=sigma)})
        return zoo.load_keras_model(path)

    train, val = data(), data()
    assert (train.sigma, train.sigma_given) == (2.0, False)
    res = fit(release(0.875), train, val, epochs=1, verbose=0)
    assert (train.sigma, val.sigma) == (0.875, 0.875)  # the weights' Gaussians, both sets
    np.testing.assert_array_equal(val[0][1], data(sigma=0.875)[0][1])  # the targets themselves
    assert train.config()["sigma"] == 0.875  # what the run's config.json (and its .keras record) keep
    assert zoo.weights_record(res.model).heatmap_sigma == 0.875
    # a sigma given wins, even training's default written out; the model's record then says what it learnt
    for given in (2.0, 3.0):
        train, val = data(sigma=given), data(sigma=1.0)
        res = fit(release(0.875), train, val, epochs=1, verbose=0)
        assert (train.sigma, val.sigma) == (given, 1.0)
        assert zoo.weights_record(res.model).heatmap_sigma == given
    # a record without one (training's convention) leaves the default; the fitted record says 2.0
    res = fit(release(None), data(), epochs=1, verbose=0)
    assert zoo.weights_record(res.model).heatmap_sigma == 2.0
    with pytest.raises(ValueError, match=r"HeatmapDataset: `sigma` must be a finite number > 0 \(heatmap px\)\. "
                                         r"Received: sigma='wide'"):
        data(sigma="wide")  # was float()'s "could not convert string to float: 'wide'"


def test_fine_tuning_a_cpm_run_keeps_its_center_map_sigma(tmp_path):
    # A CPM run trained with centre maps of sigma 3 (config.json's train_data); fine-tuning its .keras with a dataset
    # that does not say gave it the release's 21: maps 7x wider than the ones its weights learnt to read.
    def data(**kw):
        return HeatmapDataset(synthetic_pose(4, image_size=(32, 32), num_keypoints=4), batch_size=4,
                              input_size=(32, 32), heatmap_size=(4, 4), sigma=1.0, flip_pairs=(), num_outputs=2,
                              background=True, **kw)

    model = zoo.get("cpm", stages=2, num_keypoints=4, input_shape=(32, 32, 3))
    fit(model, data(center_map_sigma=3.0), epochs=1, out_dir=tmp_path / "run", verbose=0)
    again = data()
    fit(str(tmp_path / "run" / "best.keras"), again, epochs=1, verbose=0)
    assert again.center_map_sigma == 3.0
    fresh = data()
    fit(zoo.get("cpm", stages=2, num_keypoints=4, input_shape=(32, 32, 3)), fresh, epochs=1, verbose=0)
    assert fresh.center_map_sigma == 21.0  # no run behind it: the release's
