"""A training run killed with SIGKILL mid-epoch resumes from its backup and finishes (real subprocesses)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.training.helpers import ROOT, tiny_pose_model

pytestmark = pytest.mark.backend_agnostic


def _train_cmd(model, out, epochs=4):
    return [sys.executable, "-m", "training", "train", "--model", str(model), "--dataset", "synthetic",
            "--num-samples", "160", "--val-samples", "8", "--num-keypoints", "4", "--image-size", "32",
            "--batch-size", "4", "--epochs", str(epochs), "--out", str(out), "--verbose", "2"]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")


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

