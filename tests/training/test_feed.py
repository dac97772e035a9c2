"""uint8 feed + in-model normalisation (zoo.layers.Normalize), worker shared memory, fast jitter."""

import pickle
from multiprocessing import shared_memory
from multiprocessing.reduction import ForkingPickler

import cv2
import keras
import numpy as np
import pytest

from tests.training.helpers import tiny_pose_model, tiny_seg_model
from training.data import HeatmapDataset, Normalization, SegmentationDataset, model_feed
from training.datasets.synthetic import synthetic_pose, synthetic_segmentation
from training.shm import _SharedOnPickle, share_batch
from training.trainer import fit, with_normalization
from training.transforms import photometric_jitter
from zoo.layers import Normalize

pytestmark = pytest.mark.backend_agnostic

# Caffe-style convention: BGR, mean subtracted, std != 1 -- every branch of the arithmetic.
CAFFE = Normalization(scale=1.0, mean=(104.0, 117.0, 123.0), std=(58.4, 57.1, 57.4), channel_order="BGR")


def _pose(feed, n=8, **kw):
    return HeatmapDataset(synthetic_pose(n, image_size=(32, 32), num_keypoints=4, seed=1), batch_size=4,
                          input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, augment=True, normalization=CAFFE,
                          feed=feed, **{"flip_pairs": (), **kw})


def test_uint8_feed_plus_layer_equals_float32_host_path():
    (x8, y8, _), (x32, y32, _) = _pose("uint8")[1], _pose("float32")[1]
    assert x8.dtype == np.uint8 and x32.dtype == np.float32 and x8.nbytes * 4 == x32.nbytes
    np.testing.assert_array_equal(y8, y32)  # same augmentation draws
    np.testing.assert_array_equal(CAFFE(x8), x32)
    model = tiny_pose_model(32, 4, outputs=2)
    fed = with_normalization(model, CAFFE)
    assert model_feed(model) == "float32" and model_feed(fed) == "uint8"
    assert fed.inputs[0].dtype == "uint8" and fed.get_layer("c1") is model.get_layer("c1")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fed.get_layer("normalize")(x8)), x32, rtol=1e-6,
                               atol=1e-6)
    for a, b in zip(fed.predict(x8, verbose=0), model.predict(x32, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_normalize_cast_to_compute_dtype_and_save_load(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    layer = Normalize.from_record(CAFFE, dtype="mixed_bfloat16")
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    ref = keras.ops.cast(keras.ops.convert_to_tensor(CAFFE(x)), "bfloat16")  # = first layer's autocast of host input
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")),
                                  keras.ops.convert_to_numpy(keras.ops.cast(ref, "float32")))
    fed = with_normalization(tiny_seg_model(8, 3), CAFFE)
    fed.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert model_feed(back) == "uint8" and back.get_layer("normalize").get_config()["mean"] == (104.0, 117.0, 123.0)
    np.testing.assert_array_equal(back.predict(x, verbose=0), fed.predict(x, verbose=0))


@pytest.mark.parametrize("kwargs, match", [
    (dict(channel_order="RBG"), "channel_order"),
    (dict(std=(1.0, 0.0, 1.0)), "std"),
    (dict(mean=(0.0, 0.0)), "mean"),
])
def test_normalize_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Normalize(**kwargs)
    with pytest.raises(ValueError, match="feed"):
        _pose("float16")


def test_fit_with_uint8_feed_puts_normalisation_in_the_model(tmp_path):
    train, val = _pose("float32"), _pose("float32", shuffle=False)
    res = fit(tiny_pose_model(32, 4, outputs=2), train, val, epochs=1, feed="uint8", verbose=0, out_dir=tmp_path,
              checkpoint=False, backup=False)
    assert train.feed == val.feed == "uint8" and model_feed(res.model) == "uint8"
    assert res.model.get_layer("normalize").get_config()["channel_order"] == "BGR"
    assert np.isfinite(res.history["loss"]).all()
    saved = keras.models.load_model(tmp_path / "final.keras", safe_mode=True)
    assert model_feed(saved) == "uint8"
    # a model that already normalises its input switches float32 datasets to uint8; no second layer
    seg = SegmentationDataset(synthetic_segmentation(8, image_size=(32, 32), num_classes=3), batch_size=4,
                              input_size=(32, 32), num_classes=3)
    spe = 1 if keras.backend.backend() == "torch" else 2  # PyTorch runs one step per call
    res2 = fit(with_normalization(tiny_seg_model(32, 3), Normalization()), seg, epochs=1, verbose=0,
               precision="bf16", steps_per_execution=spe)
    assert seg.feed == "uint8" and sum(isinstance(l, Normalize) for l in res2.model.layers) == 1
    assert res2.model.steps_per_execution == spe and np.isfinite(res2.history["loss"]).all()
    assert res2.model.get_layer("normalize").dtype_policy.compute_dtype == "bfloat16"


@pytest.mark.tf_pass_only
def test_zoo_build_arguments_survive_the_models_fit_rebuilds(tmp_path):
    # fit() clones the model for uint8 feed / a precision policy; zoo.save_weights must still know how
    # zoo.get built it, so zoo.get(name, weights=file) rebuilds the same architecture.
    import zoo

    model = zoo.get("hourglass", stacks=1, features=16, num_keypoints=4, input_shape=(64, 64, 3))
    train = HeatmapDataset(synthetic_pose(8, image_size=(64, 64), num_keypoints=4), batch_size=4,
                           input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0)
    res = fit(model, train, epochs=1, feed="uint8", precision="bf16", verbose=0)
    assert res.model is not model
    zoo.save_weights(res.model, tmp_path / "hg.h5")
    again = zoo.get("hourglass", weights=tmp_path / "hg.h5")
    assert again.count_params() == model.count_params()


def test_worker_batches_travel_through_shared_memory():
    heat = np.random.default_rng(0).random((4, 64, 64, 16), dtype=np.float32)  # 1 MiB: over the threshold
    small = np.zeros((4, 3), np.float32)
    batch = (small, (heat, heat))
    assert share_batch(batch) is batch  # main process: unchanged
    marked = (small, (heat.view(_SharedOnPickle),) * 2)
    name = marked[1][0].__reduce_ex__(5)[1][0]
    shared_memory.SharedMemory(name=name).unlink()  # the probe's own segment
    back = pickle.loads(ForkingPickler.dumps(marked))
    assert type(back[1][0]) is np.ndarray and back[1][0] is back[1][1]  # one segment for both outputs
    np.testing.assert_array_equal(back[1][0], heat)
    np.testing.assert_array_equal(back[0], small)


def _float_jitter(img, rng, b=0.2, c=0.2, s=0.2):
    """The float32 chain (clip between steps), written independently of training.transforms."""
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    x = np.clip(img.astype(np.float32) * np.float32(rng.uniform(1 - b, 1 + b)), 0, 255)
    f = rng.uniform(1 - c, 1 + c)
    x = np.clip(f * x + (1 - f) * (x @ luma).mean(), 0, 255)
    f = rng.uniform(1 - s, 1 + s)
    x = np.clip(f * x + (1 - f) * (x @ luma)[..., None], 0, 255)
    return np.rint(x).astype(np.uint8)


def test_lookup_table_jitter_stays_within_two_levels_of_the_float_chain():
    img = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 256, (48, 48, 3), np.uint8), (3, 3), 0)
    for seed in range(10):
        fast = photometric_jitter(img, np.random.default_rng(seed)).astype(int)
        diff = np.abs(fast - _float_jitter(img, np.random.default_rng(seed)))
        assert diff.max() <= 2 and diff.mean() < 0.5, (seed, diff.max(), diff.mean())


@pytest.mark.tf_pass_only
def test_cli_train_feed_uint8_then_evaluate(tmp_path, capsys, monkeypatch):
    import training.evaluation
    from training.__main__ import main

    feeds, real = [], training.evaluation.evaluate
    monkeypatch.setattr(training.evaluation, "evaluate", lambda model, ds, **kw: feeds.append(ds.feed) or
                        real(model, ds, **kw))

    args = ["--dataset", "synthetic-seg", "--image-size", "32", "--val-samples", "4", "--batch-size", "4"]
    spe = "1" if keras.backend.backend() == "torch" else "2"  # PyTorch runs one step per call
    assert main(["train", "--model", "tiny_fcn", "--num-samples", "8", "--epochs", "1", "--feed", "uint8", "--steps-per-execution", spe,
                 "--out", str(tmp_path), "--verbose", "0", *args]) == 0
    saved = keras.models.load_model(tmp_path / "final.keras", safe_mode=True)
    assert model_feed(saved) == "uint8"
    assert main(["evaluate", "--run", str(tmp_path)]) == 0
    assert feeds == ["uint8"]  # the run's model, not the saved dataset config, decides the feed
    text = capsys.readouterr().out
    assert "mean" in text.lower() and "IoU per class (original image size)" in text
    assert main(["evaluate", "--run", str(tmp_path), "--resolution", "input"]) == 0
    assert "IoU per class (network label size)" in capsys.readouterr().out


def test_slot_round_trip_keeps_values_and_shared_references(tmp_path):
    """Persistent workers write large arrays into a lent, reused segment; the parent copies them out."""
    import os

    from training.shm import SlotPool, pack_into_slot

    rng = np.random.default_rng(1)
    heat = rng.random((4, 64, 64, 16), dtype=np.float32)  # 1 MiB
    images = rng.integers(0, 255, (4, 256, 256, 3), dtype=np.uint8)  # 0.75 MiB: under the threshold
    weights = np.ones((4, 1, 1, 16), np.float32)
    batch = (images, (heat, heat), weights)
    pool = SlotPool(count=2)
    assert pool.lend() == (None, 0)  # the size is unknown before the first batch
    first = pack_into_slot(batch, None, 0)
    assert first.slot is None and first.needed == heat.nbytes
    assert pool.unpack(first) is batch and pool.size == 1 << 20  # slots of 1 MiB from now on
    name, size = pool.lend()
    answer = pack_into_slot(batch, name, size)
    assert answer.slot == name and not isinstance(answer.payload[1][0], np.ndarray)
    back = pool.unpack(answer)
    assert back[1][0] is back[1][1] and np.array_equal(back[1][0], heat)  # one array for both outputs
    assert np.array_equal(back[0], images) and np.array_equal(back[2], weights)
    assert pool.lend()[0] == name  # given back after the copy: the same segment is lent again
    too_big = pack_into_slot((heat, heat + 1), name, size)  # two distinct 1 MiB arrays
    assert too_big.slot is None and too_big.needed > size
    pool.give_back(name)
    pool.unpack(too_big)
    assert pool.size == 2 << 20 and name not in pool._segments  # grown; the small segment unlinked
    pool.close()
    assert not os.path.exists(f"/dev/shm/{name.lstrip('/')}")


def test_slots_are_only_made_with_room_in_dev_shm(monkeypatch):
    import training.shm as shm

    pool = shm.SlotPool(count=3)
    pool.size = 1 << 20
    monkeypatch.setattr(shm, "_room", lambda nbytes: False)  # /dev/shm nearly full (Docker's 64 MB)
    assert pool.lend() == (None, 0)  # the batch then goes through the pipe instead of risking SIGBUS
    monkeypatch.setattr(shm, "_room", lambda nbytes: True)
    name, size = pool.lend()
    assert size == 1 << 20 and name in pool._segments
    pool.close()
