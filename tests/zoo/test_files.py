"""Durable writes (zoo.files): a failed write names its file and leaves the old one and no temporary file; legal long
names stay legal for the temporary file beside them. Real limits (RLIMIT_FSIZE), no mocks."""

import contextlib
import errno
import resource

import pytest

import zoo
from zoo.files import short_name, write_text

pytestmark = pytest.mark.backend_agnostic


@contextlib.contextmanager
def file_size_limit(limit):
    """Writes past ``limit`` bytes fail with EFBIG in this process (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_failed_write_names_the_file_and_leaves_the_old_one(tmp_path):
    path = tmp_path / "predictions.csv"
    path.write_text("old\n")
    with file_size_limit(4096), pytest.raises(OSError) as e:
        write_text(path, "x" * 20_000)
    # was "[Errno 27] File too large" naming nothing (evaluate's CSVs), or the hidden temporary file, left behind
    assert e.value.errno == errno.EFBIG and e.value.filename == str(path), e.value
    assert str(path) in str(e.value)
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]
    assert write_text(path, "a,b\r\n1,2\r\n") == path and path.read_bytes() == b"a,b\r\n1,2\r\n"  # the bytes given


def test_evaluate_csvs_under_a_full_disk_leave_no_temporary_file(tmp_path):
    from training.evaluation import _write_csv

    with file_size_limit(4096), pytest.raises(OSError, match="predictions.csv"):
        _write_csv(tmp_path / "eval" / "predictions.csv", ["id", "value"], [[i, "x" * 40] for i in range(500)])
    assert list((tmp_path / "eval").iterdir()) == []


def test_names_near_the_file_systems_limit_are_written(tmp_path):
    """A 243-byte name is legal; its temporary file ``.NAME.XXXXXXXX.tmp`` was not ("File name too long")."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
    for name in ("b" * 240 + ".h5", "é" * 118 + ".h5"):  # 243 bytes, ASCII and two-byte UTF-8
        zoo.save_weights(model, tmp_path / name)
        assert (tmp_path / name).exists()
    zoo.save_model(model, tmp_path / ("k" * 240 + ".keras"))
    write_text(tmp_path / ("c" * 250 + ".csv"), "a\n")
    assert len(list(tmp_path.iterdir())) == 4
    assert short_name("é" * 100, 9) == "éééé" and short_name("abc") == "abc"  # whole characters only


def test_save_weights_on_a_full_disk_names_the_file(tmp_path):
    """HDF5 said RuntimeError 'Can't decrement id ref count (unable to extend file properly, errno = 27 ...)',
    naming no file (the command line called it a bug)."""
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(512, name="d")])  # 130 kB of weights
    path = tmp_path / "w.h5"
    with file_size_limit(16_384), pytest.raises(OSError) as e:
        zoo.save_weights(model, path)
    assert e.value.errno == errno.EFBIG and e.value.filename == str(path), repr(e.value)
    assert list(tmp_path.iterdir()) == []


def test_save_model_on_a_full_disk_names_the_file(tmp_path):
    """Keras' zip writer said "[Errno 27] File too large" (convert, a run's checkpoints: the same write)."""
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(512, name="d")])
    path = tmp_path / "m.keras"
    with file_size_limit(16_384), pytest.raises(OSError) as e:
        zoo.save_model(model, path)
    assert e.value.errno == errno.EFBIG and e.value.filename == str(path), repr(e.value)
    assert list(tmp_path.iterdir()) == []
