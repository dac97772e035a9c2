"""python -m converters caffe: summary, .keras output, --verify against OpenCV, clean errors."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from converters import caffe
from converters.cli import main
from tests.caffe_files import random_blobs_for, write_net
from tests.converters import nets

NET = """
name: "tiny"
input: "data" input_shape { dim: 1 dim: 3 dim: 11 dim: 9 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


@pytest.fixture
def files(tmp_path, rng):
    return write_net(tmp_path, NET, random_blobs_for(NET, rng))


@pytest.mark.backend_agnostic
def test_convert_summary_output_and_verify(tmp_path, files, capsys, rng):
    out = tmp_path / "sub" / "tiny.keras"
    assert main(["caffe", *files, "-o", str(out), "--verify", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Read Caffe net 'tiny': 7 layers" in text
    assert "Folded 1 BatchNorm + Scale pairs" in text and "prob -> prob (None, 5)" in text
    rel = float(text.split("prob: max relative difference ")[1].split()[0])
    assert rel <= 1e-5
    assert [p.name for p in out.parent.iterdir()] == ["tiny.keras"]  # no temporary file left
    loaded = keras.models.load_model(out, safe_mode=True)
    x = rng.normal(size=(2, 11, 9, 3)).astype(np.float32)
    ref = caffe.to_keras(caffe.load(*files), progress=False)(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(ref), atol=1e-6)


@pytest.mark.backend_agnostic
def test_verify_pspnet_bn_and_input_shape(tmp_path, capsys, rng):
    # OpenCV cannot read PSPNet's BN: --verify rewrites it to BatchNorm + Scale for OpenCV only.
    proto = nets.pspnet50(41, 43, 6, widths=(2, 2, 4, 4), blocks=(1, 1, 1, 1), stem=(2, 2, 4), ppm=2, head=3,
                          classes=3)
    files = write_net(tmp_path, proto, random_blobs_for(proto, rng))
    out = tmp_path / "psp.keras"
    assert main(["caffe", *files, "-o", str(out), "--verify", "--input-shape", "39", "41", "--no-progress"]) == 0
    text = capsys.readouterr().out
    rel = float(text.split("conv6_interp: max relative difference ")[1].split()[0])
    assert rel <= 1e-4 and "input data (1, 3, 39, 41) (NCHW)" in text
    # 39 x 41 -> 6 x 6 features -> Interp zoom 8: 41 x 41, as Caffe computes it
    assert keras.models.load_model(out, safe_mode=True).output.shape == (None, 41, 41, 3)


def _fails(capsys, argv, code=2):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_errors_are_one_line_and_leave_no_file(tmp_path, files, capsys):
    out = tmp_path / "o.keras"
    err = _fails(capsys, ["caffe", str(tmp_path / "missing.prototxt"), files[1], "-o", str(out)])
    assert "missing.prototxt" in err
    assert "must end in .keras" in _fails(capsys, ["caffe", *files, "-o", str(tmp_path / "o.h5")])
    bad = write_net(tmp_path, NET.replace('"ReLU"', '"SPP"'), name="bad")[0]
    err = _fails(capsys, ["caffe", bad, files[1], "-o", str(out)])
    assert "'relu'" in err and "SPP" in err
    with open(files[1], "rb") as f:
        data = f.read()
    with open(tmp_path / "cut.caffemodel", "wb") as f:
        f.write(data[: len(data) // 2])
    assert "cut.caffemodel" in _fails(capsys, ["caffe", files[0], str(tmp_path / "cut.caffemodel"), "-o", str(out)])
    (tmp_path / "taken").write_text("a file where the output's folder should be")
    err = _fails(capsys, ["caffe", *files, "-o", str(tmp_path / "taken" / "x" / "o.keras"), "--no-progress"])
    # said before converting; was '[Errno 20] Not a directory' after it
    assert err == f"python -m converters caffe: error: --output '{tmp_path / 'taken' / 'x' / 'o.keras'}': " \
                  f"'{tmp_path / 'taken'}' is a file, expected a folder there\n"
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")  # a dangling link where the output's folder should be
    assert main(["caffe", *files, "-o", str(tmp_path / "gone" / "o.keras"), "--no-progress"]) == 2
    said = capsys.readouterr()
    # said before converting (nothing read yet); was '[Errno 17] File exists' after the conversion
    assert said.out == "" and said.err == (
        f"python -m converters caffe: error: [Errno 17] '{tmp_path / 'gone'}' is a symbolic link to "
        f"'{tmp_path / 'nowhere'}', which does not exist: '{tmp_path / 'gone' / 'o.keras'}'\n")
    err = _fails(capsys, ["caffe", *files, "-o", str(out), "--verify", "--tolerance", "0"], code=1)
    assert "verification failed" in err and "exceeds --tolerance 0" in err  # float32 round-off: 6e-8 here
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".keras") == []


def test_module_entry_point_exit_status(tmp_path, files):
    out = tmp_path / "x.keras"
    r = subprocess.run([sys.executable, "-m", "converters", "caffe", files[0], str(tmp_path / "nope.caffemodel"),
                        "-o", str(out)], capture_output=True, text=True, cwd=os.getcwd(), timeout=300)
    assert r.returncode == 2 and "nope.caffemodel" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.backend_agnostic
def test_verify_fails_on_nan_or_inf_that_opencv_does_not_share():
    # max(0.0, nan) is 0.0: a NaN output once passed --verify as "no difference"
    from converters.cli import _relative_difference, _VerifyFailed

    r = np.array([1.0, 2.0, np.inf, -np.inf, np.nan], np.float32)
    assert _relative_difference("t", r.copy(), r) == 0.0  # the same non-finite values at the same places
    y = r.copy()
    y[0] = 1.5
    assert _relative_difference("t", y, r) == pytest.approx(0.25)  # over the finite values
    for i, v in [(4, 0.0), (2, -np.inf), (0, np.nan)]:
        y = r.copy()
        y[i] = v
        with pytest.raises(_VerifyFailed, match=r"output 't': \d NaN/inf values in Keras' output, \d in OpenCV's"):
            _relative_difference("t", y, r)
    with pytest.raises(_VerifyFailed, match="0 NaN/inf values in Keras' output, 3 in OpenCV's"):
        _relative_difference("t", np.ones(5, np.float32), r)


@pytest.mark.backend_agnostic
def test_verify_accepts_overflow_that_opencv_shares(tmp_path, capsys):
    proto = ('input: "data" input_shape { dim: 1 dim: 2 dim: 5 dim: 7 }\n'
             'layer { name: "big" type: "Power" bottom: "data" top: "big" power_param { power: 2 scale: 1e30 } }\n'
             'layer { name: "sig" type: "Sigmoid" bottom: "data" top: "sig" }\n')
    files = write_net(tmp_path, proto)
    assert main(["caffe", *files, "-o", str(tmp_path / "p.keras"), "--verify", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Verify: big: max relative difference 0.00e+00" in text and "Verify: sig: max relative" in text


@pytest.mark.backend_agnostic
def test_verify_skips_a_net_opencv_refuses_and_keeps_the_model(tmp_path, capfd, monkeypatch, rng):
    # a refusal opencv_departures does not foresee (here one it does, hidden from it): OpenCV's error in one line,
    # the model saved (it was: "error: error: OpenCV(4.14.0) ...", status 1, no model, and a dozen [ERROR] lines)
    from converters.caffe import opencv

    proto = ('input: "data" input_shape { dim: 1 dim: 3 dim: 13 dim: 13 }\n'
             'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 '
             'kernel_size: 1 } }\n'
             'layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: AVE kernel_size: 20 '
             'stride: 20 } }\n')
    files = write_net(tmp_path, proto, random_blobs_for(proto, rng))
    monkeypatch.setattr(opencv, "opencv_departures", lambda net: [])
    out = tmp_path / "p.keras"
    assert main(["caffe", *files, "-o", str(out), "--verify", "--no-progress"]) == 0
    said, err = capfd.readouterr()
    assert "Verify: skipped, OpenCV could not run this net (OpenCV 4." in said, said
    assert "total(os[i]) > 0" in said and "the conversion follows Caffe's own code" in said, said
    assert out.exists() and "[ERROR" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv, expected", [
    (["--tolerance", "nan"], "argument --tolerance: expected a finite number >= 0, got 'nan'"),  # x > nan: never
    (["--tolerance", "-1"], "argument --tolerance: expected a finite number >= 0, got '-1'"),
    (["--tolerance", "1e-4x"], "argument --tolerance: expected a finite number >= 0, got '1e-4x'"),
    (["--input-shape", "0", "5"], "argument --input-shape: expected an integer >= 1, got '0'"),
    (["--input-shape", "9", "x"], "argument --input-shape: expected an integer >= 1, got 'x'"),
])
def test_bad_arguments_are_one_line_with_status_2(tmp_path, files, capsys, argv, expected):
    out = tmp_path / "o.keras"
    with pytest.raises(SystemExit) as e:
        main(["caffe", *files, "-o", str(out), "--verify", "--no-progress", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == f"python -m converters caffe: error: {expected} (see python -m converters " \
                                        f"caffe --help)\n"  # one line; argparse printed the usage before it
    assert not out.exists()


def test_sigterm_while_converting_leaves_no_file_and_says_so(tmp_path, files):
    """SIGTERM (timeout, docker stop, SLURM) killed convert at once, leaving its empty temporary .keras; now
    Ctrl-C's way out: status 143, one line, nothing written. The caffemodel is a FIFO that holds the converter in
    its read until the signal comes (a real process, a real signal)."""
    import errno
    import signal
    import time

    from tests.test_cli import ENV

    fifo = tmp_path / "held.caffemodel"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "kerazoo", "convert", str(files[0]), str(fifo), "-o",
                             str(out / "net.keras")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    writer, deadline = None, time.monotonic() + 240
    try:
        while writer is None:  # opening the FIFO to write succeeds once the converter has it open to read
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                assert e.errno == errno.ENXIO and proc.poll() is None and time.monotonic() < deadline, e
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if writer is not None:
            os.close(writer)
        proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "kerazoo convert caffe: terminated (SIGTERM); no output written", err
    assert list(out.iterdir()) == []
