import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backend_agnostic: also run under KERAS_BACKEND=jax by ./dev test"
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)
