"""A training run's .keras files carry the run's metadata (input convention, heatmap offset, flip pairs, CPM centre-map
sigma, builder arguments): zoo.load_keras_model and zoo.get(name, weights=...) in Python predict as kerazoo predict
does, also for a copy away from the run's config.json."""

import shutil
import zipfile

import cv2
import keras
import numpy as np
import pytest

import zoo
from training import fit, inference
from training.data import HeatmapDataset, Normalization
from training.datasets.synthetic import synthetic_pose
from zoo.api import build_info
from zoo.cli import main

# The tests that read a trained run's files share two runs (module fixtures: each fit costs ~5-12 s under
# TensorFlow) and run in ./dev test's TensorFlow pass only: what they check is the archive entry and the record,
# which no backend computes; saving and loading the entry on JAX is test_save_model_keeps_what_zoo_get_built's, and
# fine-tuning a run's file on JAX test_a_runs_checkpoint_keeps_its_family_convention_and_names'.
agnostic = pytest.mark.backend_agnostic
JOINTS = ("head", "l_hand", "r_hand", "feet")
BGR = Normalization(scale=1 / 256, mean=(0.5, 0.5, 0.5), channel_order="BGR")


@pytest.fixture(scope="module")
def hourglass_run(tmp_path_factory):
    """A 1-stack hourglass run trained on BGR / 256 - 0.5 with targets 1.5 px off, left/right pairs and joint names.
    Its folder is read, never written: a test that writes into a run's folder copies it first."""
    ds = HeatmapDataset(synthetic_pose(4, image_size=(64, 64), num_keypoints=4), batch_size=4, input_size=(64, 64),
                        heatmap_size=(16, 16), sigma=1.0, flip_pairs=((0, 3), (1, 2)), normalization=BGR,
                        heatmap_offset=1.5, keypoint_names=JOINTS)
    out = tmp_path_factory.mktemp("hourglass_run")
    fit("hourglass", ds, epochs=1, out_dir=out, verbose=0, model_kwargs={"stacks": 1, "features": 8})
    return out


@pytest.fixture(scope="module")
def cpm_run(tmp_path_factory):
    """A 2-stage CPM run trained with centre maps of sigma 3 and a background map (read, never written)."""
    ds = HeatmapDataset(synthetic_pose(4, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                        heatmap_size=(4, 4), sigma=1.0, flip_pairs=(), num_outputs=2, background=True,
                        center_map_sigma=3.0)
    out = tmp_path_factory.mktemp("cpm_run")
    fit(zoo.get("cpm", stages=2, num_keypoints=4, input_shape=(32, 32, 3)), ds, epochs=1, out_dir=out, verbose=0)
    return out


def _quarter_keypoints(hm, stride, offset):
    """(h, w, K) heatmaps -> (K, 2) x, y in input px, written out: argmax, 0.25 px towards the higher neighbour on
    each axis where both exist, times the stride plus the offset; NaN where the maximum is not positive."""
    h, w, k = hm.shape
    out = np.full((k, 2), np.nan)
    for j in range(k):
        m = hm[..., j]
        y, x = np.unravel_index(np.argmax(m), m.shape)
        if m[y, x] <= 0:
            continue
        dx = 0.25 * np.sign(m[y, x + 1] - m[y, x - 1]) if 0 < x < w - 1 else 0.0
        dy = 0.25 * np.sign(m[y + 1, x] - m[y - 1, x]) if 0 < y < h - 1 else 0.0
        out[j] = ((x + dx) * stride + offset, (y + dy) * stride + offset)
    return out


def _cli_keypoints(tmp_path, capsys, name, weights, image):
    cv2.imwrite(str(tmp_path / "image.png"), image[..., ::-1])
    capsys.readouterr()
    assert main(["predict", name, str(tmp_path / "image.png"), "--weights", str(weights),
                 "--out", str(tmp_path / "drawn.png")]) == 0
    return np.array([[float(v) for v in line.split()[:2]] for line in capsys.readouterr().out.splitlines()[:-1]])


def test_a_runs_keras_file_predicts_in_python_as_on_the_command_line(hourglass_run, tmp_path, capsys):
    # an hourglass trained on BGR / 256 - 0.5 with targets 1.5 px off: loaded in Python, it was fed pixels / 255 and
    # decoded at offset 0 (zoo.load_keras_model), or not loaded at all (zoo.get: the builder's 8-stack default)
    (tmp_path / "copy").mkdir()
    copy = tmp_path / "copy" / "hg.keras"  # away from the run's config.json: the file itself says it
    shutil.copy(hourglass_run / "best.keras", copy)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # the input's size: no letterbox
    x = (image[None, ..., ::-1].astype(np.float32) / 256 - 0.5)  # BGR / 256 - 0.5, by hand

    def check(model):
        record = zoo.weights_record(model)
        assert (record.scale, record.mean, record.channel_order) == (1 / 256, (0.5, 0.5, 0.5), "BGR")
        assert record.heatmap_offset == 1.5 and record.flip_pairs == ((0, 3), (1, 2))
        assert record.keypoint_names == JOINTS  # the data's names (predict printed "joint 0", ...)
        want = np.asarray(model.predict_on_batch(x)[0])  # the model's output on the hand-normalised image
        pred = inference.predict(model, image)
        np.testing.assert_allclose(pred.output, want, atol=1e-5)
        np.testing.assert_allclose(pred.keypoints, _quarter_keypoints(want, 4, 1.5), atol=1e-6)
        assert inference.predict(model, image, flip=True).keypoints.shape == (4, 2)  # the run's pairs

    loaded = zoo.load_keras_model(copy)
    check(loaded)
    built = zoo.get("hourglass", weights=copy)  # no builder arguments: the file's
    kwargs = build_info(built)[1]
    assert (kwargs["stacks"], kwargs["features"], kwargs["num_keypoints"]) == (1, 8, 4)
    assert tuple(kwargs["input_shape"]) == (64, 64, 3)
    check(built)
    cli = _cli_keypoints(tmp_path, capsys, "hourglass", hourglass_run / "best.keras", image)
    np.testing.assert_allclose(inference.predict(loaded, image).keypoints, cli, atol=0.006)  # printed to 0.01
    assert main(["predict", "hourglass", str(tmp_path / "image.png"), "--weights", str(copy)]) == 0
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()[:4]] == list(JOINTS)
    with pytest.raises(zoo.WeightsMismatchError, match=r"hg.keras' \(its kerazoo.json\) holds stacks=1, but "
                                                       r"stacks=2 was asked for"):
        zoo.get("hourglass", weights=copy, stacks=2)
    # Keras' own loader reads the same network and leaves the entry alone (it has no place for metadata)
    plain = keras.saving.load_model(copy, compile=False)
    for a, b in zip(plain.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert zoo.weights_record(plain) is None
    from training.trainer import _zoo_model_name  # the preset's key: a reloaded staged FCN took the family's rate

    assert (_zoo_model_name(loaded), _zoo_model_name(plain)) == ("hourglass", None)
    # a copy of the loaded model: model.save drops the entry (Keras writes its own archive), zoo.save_model keeps it
    loaded.save(tmp_path / "copy" / "keras_save.keras")
    assert zoo.weights_record(zoo.load_keras_model(tmp_path / "copy" / "keras_save.keras")) is None
    zoo.save_model(loaded, tmp_path / "copy" / "zoo_save.keras")
    check(zoo.load_keras_model(tmp_path / "copy" / "zoo_save.keras"))
    check(zoo.get("hourglass", weights=tmp_path / "copy" / "zoo_save.keras"))
    with pytest.raises(ValueError, match=r"save_model writes a whole model as .keras. Received: path='.*m.h5'"):
        zoo.save_model(loaded, tmp_path / "m.h5")


def test_a_cpm_runs_keras_file_feeds_its_center_map_sigma_in_python(cpm_run, tmp_path):
    # a CPM trained with centre maps of sigma 3 and a background map: loaded in Python it was fed sigma 21 and its
    # background map was decoded as a fifth keypoint
    (tmp_path / "copy").mkdir()
    copy = tmp_path / "copy" / "cpm.keras"
    shutil.copy(cpm_run / "final.keras", copy)
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    y, x = np.mgrid[:32, :32]
    center = np.exp(-((x - 15.5) ** 2 + (y - 15.5) ** 2) / (2 * 3.0 ** 2))[None, ..., None]  # sigma 3 at the centre
    for model in (zoo.load_keras_model(copy), zoo.get("cpm", weights=copy)):
        want = np.asarray(model.predict_on_batch([image[None].astype(np.float32) / 255, center])[-1][0])
        pred = inference.predict(model, image)
        np.testing.assert_allclose(pred.output, want, atol=1e-5)
        assert pred.keypoints.shape == (4, 2)  # the background map is not a keypoint
    with pytest.raises(zoo.WeightsMismatchError, match=r"holds stages=2, but stages=3 was asked for"):
        zoo.get("cpm", weights=copy, stages=3)


@agnostic
@pytest.mark.tf_pass_only
def test_a_runs_checkpoint_keeps_its_family_convention_and_names(hourglass_run, tmp_path):
    from training.models import _run_flip_pairs
    from training.trainer import build_model

    ds = HeatmapDataset(synthetic_pose(4, image_size=(64, 64), num_keypoints=4), batch_size=4, input_size=(64, 64),
                        heatmap_size=(16, 16), sigma=1.0)
    model, family = build_model(str(hourglass_run / "best.keras"), "pose", ds, None)
    assert family == "hourglass"  # was "default": fine-tuning it used Adam, not the hourglass' RMSprop
    # evaluate/predict decode with the record's offset: it was 0, 1.5 input px off the run's own targets
    assert zoo.weights_record(model).heatmap_offset == 1.5
    assert zoo.weights_record(model).flip_pairs == ((0, 3), (1, 2))
    unsaid = HeatmapDataset(synthetic_pose(4, image_size=(64, 64), num_keypoints=4), batch_size=4,
                            input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0)  # flip_pairs not given
    assert unsaid.config()["flip_pairs"] is None and _run_flip_pairs({"train_data": unsaid.config()}) is None
    # fine-tuning a copy of the checkpoint (away from the run's config.json) on data without names or a
    # convention, and with no left/right joints this time
    shutil.copy(hourglass_run / "best.keras", tmp_path / "hg.keras")
    again = HeatmapDataset(synthetic_pose(4, image_size=(64, 64), num_keypoints=4), batch_size=4,
                           input_size=(64, 64), heatmap_size=(16, 16), sigma=1.0, flip_pairs=())
    res = fit(str(tmp_path / "hg.keras"), again, epochs=1, out_dir=tmp_path / "again", verbose=0)
    assert again.normalization == BGR  # was pixels / 255: not what the checkpoint was trained on
    assert isinstance(res.model.optimizer, keras.optimizers.RMSprop)  # the hourglass preset
    # the new run's files hold the same builder arguments, convention and the model's names (as many as the
    # data's keypoints); flip_pairs=() (no left/right joints: predict(flip=True) swaps nothing) is the data's
    for name in ("best.keras", "final.keras"):
        again = zoo.get("hourglass", weights=tmp_path / "again" / name)
        record = zoo.weights_record(again)
        assert len(again.outputs) == 1 and (record.channel_order, record.heatmap_offset) == ("BGR", 1.5)
        assert record.keypoint_names == JOINTS and record.flip_pairs == ()


@agnostic
@pytest.mark.tf_pass_only
def test_bad_metadata_in_a_keras_file_is_refused_by_name(tmp_path):
    from zoo.weights import write_keras_metadata

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    for field, value, said in (("center_map_sigma", -1.0, r"center_map_sigma must be a number > 0 \(input px\) or "
                                                          r"null, found -1.0"),
                               ("task", "mask", r"task must be 'pose' or 'segmentation' or null, found 'mask'"),
                               ("record", {"heatmap_offset": "x"}, r"record is not a weights record: .*heatmap_offset")):
        path = tmp_path / f"{field}.keras"
        model.save(path)
        write_keras_metadata(path, {field: value})
        with pytest.raises(zoo.WeightsFileError, match=rf"'{path}' \(kerazoo.json\): {said}"):
            zoo.load_keras_model(path)
    path = tmp_path / "other.keras"
    model.save(path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("kerazoo.json", "[1, 2]")
    with pytest.raises(zoo.WeightsFileError, match=r"\(kerazoo.json\): not kerazoo model metadata"):
        zoo.load_keras_model(path)


def test_a_runs_keras_file_in_another_runs_folder_keeps_its_own_metadata(hourglass_run, cpm_run, tmp_path, capsys):
    # a CPM run's file (background map, centre-map sigma 3) put into an hourglass run's folder: the command line took
    # the folder's config.json over the file's own entry (family hourglass, no background: a 5th "keypoint" printed)
    shutil.copytree(hourglass_run, tmp_path / "hg")
    hg = HeatmapDataset(synthetic_pose(4, image_size=(64, 64), num_keypoints=4), batch_size=4, input_size=(64, 64),
                        heatmap_size=(16, 16), sigma=1.0)
    shutil.copy(cpm_run / "final.keras", tmp_path / "hg" / "init.keras")
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cli = _cli_keypoints(tmp_path, capsys, "cpm", tmp_path / "hg" / "init.keras", image)
    assert cli.shape == (4, 2)  # the background map is not a keypoint
    from training.models import build_model

    model, family = build_model(str(tmp_path / "hg" / "init.keras"), "pose", hg)  # fine-tuning it: CPM's preset
    assert (family, model._kerazoo_background, model._kerazoo_center_map_sigma) == ("cpm", True, 3.0)


@agnostic
def test_metadata_is_written_into_keras_archives_only(tmp_path):
    # zipfile's append mode adds an archive to the end of any other file: an HDF5 weights file took a zip tail
    from zoo.weights import write_keras_metadata

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=rf"'{path}' is not a \.keras archive \(a zip\); kerazoo.json goes into "
                                         rf"a whole model's \.keras file"):
        write_keras_metadata(path, {"task": "pose"})
    assert path.read_bytes() == before


@agnostic
def test_save_model_keeps_what_zoo_get_built(tmp_path):
    # zoo.get's registry name, builder arguments and record travel in the file: zoo.get rebuilds the 1-stack,
    # 8-feature net without being told (from model.save's archive it built the 8-stack default and refused it)
    rec = zoo.WeightsRecord(num_keypoints=4, scale=1 / 256, mean=(0.5, 0.5, 0.5), channel_order="BGR",
                            heatmap_offset=1.5)
    model = zoo.get("hourglass", stacks=1, features=8, num_keypoints=4, input_shape=(64, 64, 3))
    model._zoo_record = rec
    zoo.save_model(model, tmp_path / "hg.keras")
    again = zoo.get("hourglass", weights=tmp_path / "hg.keras")
    assert zoo.weights_record(again) == rec and len(again.layers) == len(model.layers)
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_a_jax_run_does_not_import_tensorflow_to_save_its_checkpoints(tmp_path):
    """Keras' serializer imported TensorFlow (installed with kerazoo) at a JAX run's first checkpoint, to ask whether
    each object was a tf.TensorShape: 1-1.5 s, its memory, and its start-up notices in the middle of epoch 1."""
    from tests.training.helpers import run_python

    code = f"""
import sys
from tests.training.helpers import tiny_pose_model
import zoo
from training import fit
from training.data import HeatmapDataset
from training.datasets.synthetic import synthetic_pose

data = HeatmapDataset(synthetic_pose(8, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                      heatmap_size=(8, 8), sigma=1.0, flip_pairs=())
run = fit(tiny_pose_model(32, 4), data, data, epochs=1, out_dir={str(tmp_path / "run")!r}, verbose=0)
zoo.save_model(run.model, {str(tmp_path / "copy.keras")!r})
again = zoo.load_keras_model({str(tmp_path / "copy.keras")!r})
assert again.count_params() == run.model.count_params()
print("TENSORFLOW", "tensorflow" in sys.modules)
"""
    proc = run_python(code, env={"KERAS_BACKEND": "jax"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TENSORFLOW False" in proc.stdout, proc.stdout
    assert (tmp_path / "run" / "best.keras").exists() and (tmp_path / "run" / "final.keras").exists()


def test_a_run_folder_in_use_by_another_fit_is_refused(tmp_path):
    """Two fits into one folder: the second deleted the first one's backup when it finished ('No such file or
    directory: run/backup/...' in the other) or mixed their checkpoints; the folder is now locked while a fit writes.
    The lock is a real flock on the folder, held here through a descriptor of its own, as another process's would."""
    import os

    from tests.training.helpers import tiny_pose_model
    from zoo.files import hold_folder

    data = HeatmapDataset(synthetic_pose(4, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                          heatmap_size=(8, 8), sigma=1.0, flip_pairs=())
    out = tmp_path / "run"
    out.mkdir()
    held = hold_folder(out)
    try:
        with pytest.raises(ValueError, match=rf"fit: out_dir '{out}' is in use by another run \(it holds the "
                                             rf"folder's lock\); wait for it to end, or give another out_dir"):
            fit(tiny_pose_model(32, 4), data, epochs=1, out_dir=out, verbose=0)
        assert list(out.iterdir()) == []  # nothing of the refused run
    finally:
        os.close(held)
    run = fit(tiny_pose_model(32, 4), data, epochs=1, out_dir=out, verbose=0)  # free again: it runs
    assert (out / "final.keras").exists() and run.history
    again = hold_folder(out)  # and the finished fit let go of it
    assert again is not None
    os.close(again)
