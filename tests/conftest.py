import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backend_agnostic: also run under KERAS_BACKEND=jax by ./dev test"
    )
    config.addinivalue_line(
        "markers", "tf_pass_only: backend-agnostic, but what it adds under JAX (saving, metadata, CLI, worker "
        "processes) other backend_agnostic tests cover there: ./dev test runs it in the TensorFlow pass only"
    )
    config.addinivalue_line(
        "markers", "jax_pass_only: backend-agnostic, what it checks does not depend on the backend, and it takes "
        "less time under JAX: ./dev test runs it in the JAX pass only"
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# Files whose tests take longest in all (subprocesses that each load Keras, real worker processes, several fit()
# runs, whole-network ports), longest first, as measured with --durations on 2 CPU cores under TensorFlow
# (2026-12-06, after that day's trims; the JAX pass runs the backend-agnostic part of the same files). ./dev test runs
# `-n 2 --dist loadfile --no-loadscope-reorder`: each file goes whole to the next free xdist worker in collection
# order, which this hook makes "these first, then the rest by test count, most first". xdist's own reorder, by
# count alone, left test_multiprocessing.py (10 tests, minutes) and test_examples.py (2) among the last files:
# one worker ran them alone while the other sat idle. Only the order changes, never a test; a stale list costs
# balance, nothing else.
_LONG_FILES = (
    "tests/test_examples_more.py",
    "tests/test_cli.py",
    "tests/converters/test_port.py",
    "tests/training/test_trainer.py",
    "tests/training/test_multiprocessing.py",
    "tests/zoo/test_fcn.py",
    "tests/training/test_run_files.py",
    "tests/zoo/test_weights_files.py",
    "tests/test_examples.py",
    "tests/zoo/test_export.py",
    "tests/zoo/test_winograd.py",
    "tests/zoo/test_pretrained.py",
    "tests/converters/test_torch7.py",
    "tests/training/test_feed.py",
    "tests/training/test_resume.py",
    "tests/zoo/test_init.py",
)


def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):  # a plain (non-xdist) run keeps the collection order
        return
    files = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def rank(path):
        return (_LONG_FILES.index(path), 0) if path in _LONG_FILES else (len(_LONG_FILES), -len(files[path]))

    items[:] = [item for path in sorted(files, key=rank) for item in files[path]]
