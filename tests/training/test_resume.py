"""A training run killed with SIGKILL mid-epoch resumes from its backup and finishes (real subprocesses); an
interrupted run resumed in-process ends as the uninterrupted one (weights, epochs, LR schedule position)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tests.training.helpers import ROOT, tiny_pose_model

pytestmark = pytest.mark.backend_agnostic


def _train_cmd(model, out, epochs=4):
    return [sys.executable, "-m", "training", "train", "--model", str(model), "--dataset", "synthetic",
            "--num-samples", "160", "--val-samples", "8", "--num-keypoints", "4", "--image-size", "32",
            "--batch-size", "4", "--epochs", str(epochs), "--out", str(out), "--verbose", "2"]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")


@pytest.mark.tf_pass_only
def test_sigkill_mid_epoch_then_resume(tmp_path):
    model = tmp_path / "tiny.keras"
    tiny_pose_model(32, 4, outputs=2).save(model)
    out = tmp_path / "run"
    meta = out / "backup" / "training_metadata.json"
    proc = subprocess.Popen(_train_cmd(model, out), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if json.loads(meta.read_text())["epoch"] >= 1:  # epoch 1 backed up: now inside epoch 2
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "run finished before it could be killed:\n" + proc.stdout.read()[-2000:]
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads(meta.read_text())["epoch"]
    assert 1 <= killed_at < 4 and not (out / "final.keras").exists()

    again = subprocess.run(_train_cmd(model, out), cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert f"resuming from backup {out / 'backup'} at epoch {killed_at + 1}" in again.stdout
    assert f"Epoch {killed_at + 1}/4" in again.stdout and "Epoch 1/4" not in again.stdout
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(out / "log.csv"))]
    assert sorted(set(epochs)) == [0, 1, 2, 3] and epochs[-1] == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == killed_at
    assert (out / "final.keras").exists() and (out / "best.keras").exists()
    assert not (out / "backup").exists()  # a finished run removes its backup



class _Crash(keras.callbacks.Callback):
    """Raises at the end of batch ``batch`` of epoch ``epoch`` (``batch=None``: at the epoch's end), after the
    backup callback (earlier in the list) has written its state."""

    def __init__(self, epoch, batch=None):
        super().__init__()
        self.at, self.batch, self.epoch = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.batch is not None and (self.epoch, batch) == (self.at, self.batch):
            raise RuntimeError("interrupted")

    def on_epoch_end(self, epoch, logs=None):
        if self.batch is None and epoch == self.at:
            raise RuntimeError("interrupted")


def _data():
    """6 batches per epoch, augmented: each epoch's order and draws come from its epoch number."""
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose

    return HeatmapDataset(synthetic_pose(24, image_size=(32, 32), num_keypoints=4, seed=1), batch_size=4,
                          input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), augment=True, seed=3)


_SETTINGS = dict(epochs=4, optimizer="sgd", learning_rate=0.05, schedule="poly", warmup_epochs=1.0, verbose=0)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """(the seeded model's file, its uninterrupted run's folder, the run's result): the reference both resume tests
    read (one fit instead of one per test; backups, whenever made, do not change a run's numbers)."""
    from training import fit

    folder = tmp_path_factory.mktemp("resume")
    keras.utils.set_random_seed(0)
    tiny_pose_model(32, 4, outputs=2).save(folder / "m.keras")
    return folder / "m.keras", folder / "plain", fit(str(folder / "m.keras"), _data(), out_dir=folder / "plain",
                                                       **_SETTINGS)


def _fit_interrupted(tmp_path, model, crash, **kw):
    """The run of ``model`` (a file) interrupted by ``crash`` in ``tmp_path / "cut"`` and started again."""
    from training import fit

    with pytest.raises(RuntimeError, match="interrupted"):
        fit(str(model), _data(), out_dir=tmp_path / "cut", callbacks=[crash], **_SETTINGS, **kw)
    return fit(str(model), _data(), out_dir=tmp_path / "cut", **_SETTINGS, **kw)


def _state(result):
    opt = result.model.optimizer
    return int(keras.ops.convert_to_numpy(opt.iterations)), float(keras.ops.convert_to_numpy(opt.learning_rate))


def test_resume_after_an_epoch_backup_equals_the_uninterrupted_run(tmp_path, plain_run):
    model, plain_dir, plain = plain_run
    resumed = _fit_interrupted(tmp_path, model, _Crash(epoch=1))
    assert resumed.resumed_from == 2  # the history: epochs 1 and 2 from log.csv (it held only 3 and 4)
    np.testing.assert_allclose(resumed.history["loss"], plain.history["loss"], rtol=1e-6)
    assert resumed.history.keys() == plain.history.keys()
    assert _state(resumed) == _state(plain) and _state(plain)[0] == 4 * 6
    for a, b in zip(plain.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    logs = [list(csv.reader(open(run / "log.csv"))) for run in (plain_dir, tmp_path / "cut")]
    assert logs[0] == logs[1]  # the same four epochs, the same numbers


def test_resume_after_a_mid_epoch_backup_keeps_the_schedule(tmp_path, plain_run):
    # backups every 2 batches; interrupted after the 4th of 6 batches of epoch 2, which was just backed up
    model, _, plain = plain_run
    resumed = _fit_interrupted(tmp_path, model, _Crash(epoch=1, batch=3), backup_every=2)
    assert resumed.resumed_from == 1 and len(resumed.history["loss"]) == 4  # epoch 1 from log.csv; 2 again, 3, 4
    # the step count (the LR schedule's position) ends where the uninterrupted run's does, 4 epochs x 6 steps:
    # it ended at 28, the last 4 steps past the poly schedule's end (LR 0)
    assert _state(resumed) == _state(plain) == (24, 0.0)


def test_a_backup_cut_while_saving_resumes_from_the_previous_one(tmp_path, plain_run):
    """Keras truncated and rewrote training_metadata.json in place: a run killed in that moment (the SIGKILL test
    above once was) left it empty, and the next start failed with a JSONDecodeError instead of resuming. Our backups
    are renamed into place; an unreadable one (an older backup's) falls back to the previous backup."""
    from training import fit

    model, _, plain = plain_run
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(str(model), _data(), out_dir=tmp_path / "cut", callbacks=[_Crash(epoch=1)], **_SETTINGS)
    backup = tmp_path / "cut" / "backup"
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    assert not [p.name for p in backup.iterdir() if ".tmp." in p.name]  # no temporary file left behind
    (backup / "training_metadata.json").write_text("")  # as Keras' in-place write left it when killed
    resumed = fit(str(model), _data(), out_dir=tmp_path / "cut", **_SETTINGS)
    assert resumed.resumed_from == 1 and len(resumed.history["loss"]) == 4  # from the backup before: epoch 2 again
    # log.csv: epoch 2's row, written before the cut, replaced by its second training (it was there twice)
    assert [r[0] for r in csv.reader(open(tmp_path / "cut" / "log.csv"))] == ["epoch", "0", "1", "2", "3"]
    assert _state(resumed) == _state(plain)  # and the schedule ends where the uninterrupted run's does
    (tmp_path / "bad" / "backup").mkdir(parents=True)
    (tmp_path / "bad" / "backup" / "training_metadata.json").write_text('{"epo')  # and nothing before it
    (tmp_path / "bad" / "best.keras").write_bytes(b"a previous run's")
    with pytest.raises(ValueError, match=r"the backup in '.*bad/backup' cannot be read \('training_metadata.json' is "
                                         r"not the JSON a backup writes, and there is no readable backup before it\); "
                                         r"remove that folder to start the run afresh"):
        fit(str(model), _data(), out_dir=tmp_path / "bad", **_SETTINGS)
    assert (tmp_path / "bad" / "best.keras").read_bytes() == b"a previous run's"  # left as it was


def test_a_nan_step_ends_fit_before_a_batch_backup_saves_it(tmp_path):
    from training import fit
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose

    class NaNBatch(HeatmapDataset):  # batch 3 of epoch 2 has a NaN target: that step's loss and weights are NaN
        def __getitem__(self, index):
            x, y, w = super().__getitem__(index)
            if (self.epoch, index) == (1, 3):
                y = tuple(np.where(np.arange(t.size).reshape(t.shape) == 0, np.nan, t) for t in y)
            return x, y, w

    data = NaNBatch(synthetic_pose(24, image_size=(32, 32), num_keypoints=4, seed=1), batch_size=4,
                    input_size=(32, 32), heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), shuffle=False)
    model = tiny_pose_model(32, 4, outputs=2)
    with pytest.raises(FloatingPointError, match="loss is nan at batch 3"):
        fit(model, data, epochs=3, out_dir=tmp_path, backup_every=1, verbose=0)
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text()) == {"epoch": 1, "batch": 2}
    restored = tiny_pose_model(32, 4, outputs=2)
    restored.load_weights(tmp_path / "backup" / "latest.weights.h5", skip_mismatch=True)  # the optimizer's too
    assert all(np.isfinite(w).all() for w in restored.get_weights())  # a resume starts from the last finite step


def test_a_cut_while_best_keras_is_written_trains_that_epoch_again(tmp_path, plain_run, monkeypatch):
    """The backup ran before BestCheckpoint: a run cut while the best epoch's best.keras was written resumed after
    that epoch, so best.keras (and best_epoch) stayed an earlier, worse epoch for good."""
    import training.callbacks as callbacks
    from training import fit

    model, _, plain = plain_run
    best = plain.best_epoch
    assert best >= 1  # a backup exists by then
    real = callbacks.BestCheckpoint.on_epoch_end

    def cut(self, epoch, logs=None):
        if epoch == best:
            raise RuntimeError("interrupted while best.keras was written")
        return real(self, epoch, logs)

    monkeypatch.setattr(callbacks.BestCheckpoint, "on_epoch_end", cut)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(str(model), _data(), out_dir=tmp_path / "cut", **_SETTINGS)
    monkeypatch.setattr(callbacks.BestCheckpoint, "on_epoch_end", real)
    resumed = fit(str(model), _data(), out_dir=tmp_path / "cut", **_SETTINGS)
    assert resumed.resumed_from == best  # that epoch trained again
    assert (resumed.best_epoch, resumed.best_value) == (plain.best_epoch, plain.best_value)
    assert json.loads((tmp_path / "cut" / "best.keras.json").read_text())["epoch"] == best


def test_a_resume_with_another_optimizer_keeps_the_schedules_position(tmp_path, plain_run):
    # Keras skips the backup's optimizer variables (a warning): the step count restarted at 0, and with it the
    # warm-up and the poly schedule (the run ended at step 12 of 24, its LR far from 0)
    from training import fit

    model, _, plain = plain_run
    first = {**_SETTINGS, "optimizer": "adam", "learning_rate": 1e-3}
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(str(model), _data(), out_dir=tmp_path / "cut", callbacks=[_Crash(epoch=1)], **first)
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        resumed = fit(str(model), _data(), out_dir=tmp_path / "cut", **_SETTINGS)
    assert resumed.resumed_from == 2 and _state(resumed) == _state(plain) == (24, 0.0)


def test_an_out_dir_holding_another_models_backup_is_refused_and_left_as_it_was(tmp_path, plain_run):
    """Keras' error came after ~80 warnings ("A total of 94 objects could not be loaded ... variable.shape=...") and
    the run's config.json and cli.json had already been rewritten with the other model's settings."""
    from training import fit

    model, _, _ = plain_run
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(str(model), _data(), out_dir=tmp_path / "cut", callbacks=[_Crash(epoch=1)], command={"run": 1},
            **_SETTINGS)
    files = {name: (tmp_path / "cut" / name).read_bytes() for name in ("config.json", "cli.json")}
    other = tiny_pose_model(32, 4, outputs=2, width=16)
    with pytest.raises(ValueError, match=r"the backup in '.*cut.backup' is of another model than this run's \(A total "
                                         r"of \d+ objects could not be loaded\); give another output folder"):
        fit(other, _data(), out_dir=tmp_path / "cut", command={"run": 2}, **_SETTINGS)
    assert {name: (tmp_path / "cut" / name).read_bytes() for name in files} == files
