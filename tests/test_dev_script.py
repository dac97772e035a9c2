"""./dev, the README's two commands: a Python older than 3.10 (or none) is refused in one line, before any venv."""

import os
import subprocess

import pytest

from tests.training.helpers import ROOT


def _dev(tmp_path, python):
    env = {**os.environ, "PYTHON": str(python)}
    return subprocess.run(["bash", str(ROOT / "dev"), "demo"], capture_output=True, text=True, env=env, timeout=60)


def test_an_old_python_is_refused_by_name(tmp_path):
    old = tmp_path / "python3.9"  # answers as a Python 3.9 would: its version, and False for >= (3, 10)
    old.write_text('#!/bin/sh\ncase "$2" in *">= (3, 10)"*) echo False ;; *) echo 3.9 ;; esac\n')
    old.chmod(0o755)
    done = _dev(tmp_path, old)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"./dev: kerazoo needs Python >= 3.10; PYTHON={old} is 3.9; set PYTHON=/path/to/python3.x\n"


@pytest.mark.parametrize("python", ["/nonexistent/python3", "true"])
def test_a_python_that_does_not_run_is_refused_by_name(tmp_path, python):
    done = _dev(tmp_path, python)
    assert done.returncode == 2 and "needs Python >= 3.10; PYTHON=" in done.stderr, done.stderr
    assert done.stderr.strip().endswith("set PYTHON=/path/to/python3.x")
