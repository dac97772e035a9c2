"""The ``kerazoo`` command end to end, through a subprocess."""

import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from tests.caffe_files import random_blobs_for, write_net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The CLI is backend-agnostic; JAX starts faster than TensorFlow in a fresh process.
ENV = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}


# TensorFlow's C++ start-up logging (absl/oneDNN notices), not ours.
_TF_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} \d\d:\d\d:\d\d)")


def kerazoo(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "kerazoo", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)


def kerazoo_here(*args, cwd=None, function="main"):
    """``kerazoo ARGS`` run by ``kerazoo.cli.main`` in this process: status, stdout and stderr as ``kerazoo``
    gives them, without a fresh interpreter loading Keras for each call (5-8 s each on 2 cores). For what the
    command does with its arguments and files; what needs a real process (the entry points, Ctrl-C, start-up
    notices, stderr closed) runs through ``kerazoo`` above. The suite's backend runs it (the subprocesses: JAX).
    ``function``: another console script of kerazoo.cli, called as its launcher does (arguments in sys.argv)."""
    import contextlib
    import io
    import multiprocessing
    import types

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    method = multiprocessing.get_start_method(allow_none=True)
    from kerazoo import cli

    argv = sys.argv
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                if function == "main":
                    status = cli.main([str(a) for a in args])
                else:
                    sys.argv = ["-c", *map(str, args)]  # as entry_point's child has it
                    status = getattr(cli, function)()
            except SystemExit as e:  # argparse's --help and usage errors
                status = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
        os.chdir(here)
        multiprocessing.set_start_method(method, force=True)  # train/evaluate make this process's workers spawn
    return types.SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())


def entry_point(function, *args, env=ENV):
    """A console script of setup.cfg run as pip's launcher runs it: ``sys.exit(kerazoo.cli.FUNCTION())``."""
    code = f"import sys; from kerazoo.cli import {function}; sys.exit({function}())"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


def _one_line_error(r):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l.strip() and not _TF_NOISE.match(l)]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_keras_failing_to_load_is_one_line_naming_the_backend(tmp_path):
    """A misspelt KERAS_BACKEND (or a backend not installed) was two tracebacks: the error handler imported zoo
    again for its error types, which failed the same way; convert and train imported outside any handler."""
    env = {**ENV, "KERAS_BACKEND": "jaxx"}
    expected = ("error: Keras could not be loaded: ValueError: Unable to import backend : jaxx "
                "(KERAS_BACKEND='jaxx': expected tensorflow, jax or torch)")
    for args, who in ((["list"], "kerazoo list"), (["convert", "a.prototxt", "a.caffemodel", "-o", "a.keras"],
                                                   "kerazoo convert caffe"),
                      (["train", "--model", "hourglass"], "kerazoo train")):
        r = subprocess.run([sys.executable, "-m", "kerazoo", *args], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
        assert r.returncode == 1 and _one_line_error(r) == f"{who}: {expected}", r.stderr
    assert not list(tmp_path.iterdir())


def test_list_and_info():
    r = kerazoo_here("list", "fcn*")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["fcn8s", "fcn8s_atonce", "fcn16s", "fcn32s"]
    r = kerazoo_here("info", "hourglass")
    assert r.returncode == 0 and '"head_kwarg": "num_keypoints"' in r.stdout
    assert "no model matches 'zzz*'" in _one_line_error(kerazoo_here("list", "zzz*"))
    assert "Did you mean" in _one_line_error(kerazoo_here("info", "hourglas"))


def test_bad_subcommand_and_help():
    r = kerazoo("frobnicate")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    for sub in ("inspect", "predict"):
        r = kerazoo(sub, "--help")
        assert r.returncode == 0 and "usage: kerazoo" in r.stdout


def test_delegated_commands_name_the_program_typed():
    """Usage lines and errors of train/evaluate/convert name what the user typed; they said
    'python -m training train' / 'python -m converters caffe' (and '__main__.py' for the console scripts)."""
    for args, usage in [(("train", "--help"), "usage: kerazoo train [-h] --model MODEL"),
                        (("evaluate", "--help"), "usage: kerazoo evaluate [-h]"),
                        (("convert", "--help"), "usage: kerazoo convert caffe [-h] -o OUTPUT")]:
        r = kerazoo_here(*args)
        assert r.returncode == 0 and r.stdout.startswith(usage), r.stdout[:200]
    for run, expected in [
        (kerazoo_here("train"), "kerazoo train: error: the following arguments are required: --model, --out "
                                "(see kerazoo train --help)"),
        (kerazoo_here("train", "--model", "m", "--out", "o"), "kerazoo train: error: the following arguments are "
                                                              "required: --dataset (see kerazoo train --help)"),
        (kerazoo_here("convert", "a.prototxt"), "kerazoo convert caffe: error: the following arguments are "
                                                "required: caffemodel, -o/--output (see kerazoo convert caffe --help)"),
        (kerazoo_here("evaluate", "--split", "x", function="train_main"),
         "kerazoo-train evaluate: error: argument --split: invalid choice: 'x'"),
        (kerazoo_here(function="train_main"), "kerazoo-train: error: the following arguments are required: "
                                              "{train,evaluate} (see kerazoo-train --help)"),
        (kerazoo_here("caffe", function="convert_main"), "kerazoo-convert caffe: error: the following arguments "
                                                         "are required: prototxt, caffemodel, -o/--output"),
        (kerazoo_here(function="convert_main"), "kerazoo-convert: error: the following arguments are required: "
                                                "{caffe}"),
    ]:
        assert run.returncode == 2 and _one_line_error(run).startswith(expected), run.stderr


def test_unrecognized_arguments_are_the_subcommands_error(capsys):
    """They were the top parser's: 'kerazoo: error: unrecognized arguments: --bogus (see kerazoo --help)' for
    'kerazoo list --bogus', which names neither the command nor the help that lists its options."""
    from kerazoo.cli import main

    for argv, who in [(["list", "--bogus"], "kerazoo list"), (["predict", "n", "i", "--weights", "w", "--bogus"],
                                                              "kerazoo predict"),
                      (["evaluate", "--bogus", "x"], "kerazoo evaluate"),
                      (["convert", "a", "b", "-o", "c", "--bogus"], "kerazoo convert caffe")]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        extra = " ".join(argv[argv.index("--bogus"):])
        assert e.value.code == 2 and capsys.readouterr().err == (f"{who}: error: unrecognized arguments: {extra} "
                                                                 f"(see {who} --help)\n")


def _env_with_sitecustomize(tmp_path, code):
    """The test environment with ``code`` as a sitecustomize (run at interpreter start, before any import)."""
    (tmp_path / "sitecustomize.py").write_text(code)
    return {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), ENV["PYTHONPATH"]])}


def _terminal_ctrl_c():
    """In a child before it starts: Ctrl-C as a terminal's foreground command has it (Python's default handler).
    A suite run as a background job of a script inherits SIGINT ignored, and so would every child."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# A sitecustomize: SIGINT to the process itself as the import of Keras starts, where a user's early Ctrl-C lands.
_CTRL_C_AS_KERAS_LOADS = ("import os, signal, sys\n"
                          "class Finder:\n"
                          "    def find_spec(self, name, path=None, target=None):\n"
                          "        if name == 'keras':\n"
                          "            os.kill(os.getpid(), signal.SIGINT)\n"
                          "sys.meta_path.insert(0, Finder())\n")


def _status_and_lines(cmd, env=ENV, preexec_fn=_terminal_ctrl_c):
    """Run ``cmd``; its exit status and its stderr lines without TensorFlow's start-up notices."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, preexec_fn=preexec_fn)
    return r.returncode, [l for l in r.stderr.strip().splitlines() if l.strip() and not _TF_NOISE.match(l)]


def test_ctrl_c_while_keras_loads_exits_130_in_one_line():
    """SIGINT in the first seconds, while kerazoo train / kerazoo-convert import Keras (before the command's own
    handler), ended in a KeyboardInterrupt traceback and status -2. The process signals itself as the import of
    Keras starts, which is where a user's Ctrl-C lands."""
    code = ("import os, signal, sys\n"
            "class Finder:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'keras':\n"
            "            os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.meta_path.insert(0, Finder())\n"
            "from kerazoo.cli import {0}\n"
            "sys.exit({0}())")
    for function, argv, expected in [
            ("main", ["train", "--model", "m", "--dataset", "synthetic", "--out", "o"], "kerazoo train: interrupted"),
            ("train_main", ["evaluate", "--run", "r"], "kerazoo-train evaluate: interrupted"),
            ("main", ["convert", "a", "b", "-o", "c.keras"], "kerazoo convert caffe: interrupted"),
            ("convert_main", ["caffe", "a", "b", "-o", "c.keras"], "kerazoo-convert caffe: interrupted")]:
        assert _status_and_lines([sys.executable, "-c", code.format(function), *argv]) == (130, [expected])


def test_ctrl_c_while_keras_loads_exits_130_in_one_line_with_python_m(tmp_path):
    """`python -m training` imports the package, and with it Keras, before training.__main__ runs; `python -m
    converters` imported Keras outside its handler. Ctrl-C there printed a KeyboardInterrupt traceback (status -2).
    A sitecustomize signals the process as the import of Keras starts, before runpy imports the package."""
    env = _env_with_sitecustomize(tmp_path, _CTRL_C_AS_KERAS_LOADS)
    for argv, expected in [
            (["training", "train", "--model", "m", "--dataset", "synthetic", "--out", "o"],
             "python -m training train: interrupted"),
            (["training", "evaluate", "--run", "r"], "python -m training evaluate: interrupted"),
            (["converters", "caffe", "a", "b", "-o", "c.keras"], "python -m converters caffe: interrupted")]:
        assert _status_and_lines([sys.executable, "-m", *argv], env) == (130, [expected])
    # Imported as a library, the package leaves Ctrl-C to its caller
    r = subprocess.run([sys.executable, "-c", "import training"], capture_output=True, text=True, env=env,
                       timeout=300, preexec_fn=_terminal_ctrl_c)
    assert r.returncode not in (0, 130) and "KeyboardInterrupt" in r.stderr, (r.returncode, r.stderr[-2000:])


def test_ctrl_c_inside_a_garbage_collector_callback_while_keras_loads_still_exits_130(tmp_path):
    """JAX runs Python code in gc callbacks; a KeyboardInterrupt raised there is printed as 'Exception ignored' and
    lost, and the command ran on to the end (seen: `kerazoo evaluate` exited 0 after an early Ctrl-C). A
    sitecustomize delivers the SIGINT inside such a callback as the import of Keras starts."""
    env = _env_with_sitecustomize(
        tmp_path,
        "import gc, os, signal, sys, time\n"
        "def callback(phase, info):\n"
        "    if phase == 'start' and callback in gc.callbacks:\n"
        "        gc.callbacks.remove(callback)\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        t = time.time()\n"
        "        while time.time() - t < 0.2:  # the handler runs here, inside the callback\n"
        "            pass\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'keras' and not hasattr(self, 'done'):\n"
        "            self.done = True\n"
        "            gc.callbacks.append(callback)\n"
        "            gc.collect()\n"
        "sys.meta_path.insert(0, Finder())\n")
    for argv, expected in [
            (["kerazoo.cli", "evaluate", "--run", str(tmp_path / "none")], "kerazoo evaluate: interrupted"),
            (["kerazoo.cli", "info", "cpm"], "kerazoo info: interrupted"),
            (["kerazoo.cli", "convert", "a", "b", "-o", "c.keras"], "kerazoo convert caffe: interrupted"),
            (["converters", "caffe", "a", "b", "-o", "c.keras"], "python -m converters caffe: interrupted"),
            (["training", "evaluate", "--run", str(tmp_path / "none")], "python -m training evaluate: interrupted")]:
        if argv[0] == "kerazoo.cli":
            cmd = [sys.executable, "-c", "import sys; from kerazoo.cli import main; sys.exit(main())", *argv[1:]]
        else:
            cmd = [sys.executable, "-m", *argv]
        assert _status_and_lines(cmd, env) == (130, [expected]), argv


def test_a_command_started_with_ctrl_c_ignored_keeps_ignoring_it_while_keras_loads(tmp_path):
    """A script's background job (`kerazoo ... &`) or nohup starts with SIGINT ignored, so that a Ctrl-C meant for
    the foreground command leaves it running; kerazoo's handler for the seconds Keras loads replaced that, and such
    a Ctrl-C ended it ("interrupted", status 130). The SIGINT arrives as the import of Keras starts."""
    import signal

    env = _env_with_sitecustomize(tmp_path, _CTRL_C_AS_KERAS_LOADS)
    r = subprocess.run([sys.executable, "-m", "kerazoo", "info", "cpm"], capture_output=True, text=True, env=env,
                       timeout=300, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert r.returncode == 0 and "interrupted" not in r.stderr, r.stderr[-2000:]
    assert "cpm" in r.stdout
    # the same Ctrl-C with Python's default disposition: interrupted, as the tests above
    status = _status_and_lines([sys.executable, "-m", "kerazoo", "info", "cpm"], env)
    assert status == (130, ["kerazoo info: interrupted"])


def test_train_spawns_its_worker_processes():
    """`python -m training` makes --multiprocessing workers by spawning (forking a process that holds JAX's or
    TensorFlow's threads can deadlock the child); `kerazoo train` and `kerazoo-train` forked them on Linux."""
    # one interpreter for both, the start method unset again in between (each process starts with it unset)
    code = ("import multiprocessing, sys; from kerazoo.cli import main, train_main\n"
            "for function, args in ((main, [['train', '--help']]), (train_main, [])):\n"
            "    multiprocessing.set_start_method(None, force=True)\n"
            "    try: function(*args)\n"
            "    except SystemExit: pass\n"
            "    print('START', function.__name__, multiprocessing.get_start_method(allow_none=True))")
    r = subprocess.run([sys.executable, "-c", code, "train", "--help"], capture_output=True, text=True, env=ENV,
                       timeout=300)
    starts = [line for line in r.stdout.splitlines() if line.startswith("START ")]
    assert starts == ["START main spawn", "START train_main spawn"], (r.stdout[-300:], r.stderr[-1000:])


def test_runs_with_stderr_closed():
    """A daemon or `2>&-` starts Python with sys.stderr None: holding TensorFlow's notices back failed there with
    "AttributeError: 'NoneType' object has no attribute 'flush'" (status 1)."""
    r = subprocess.run(["sh", "-c", f"exec '{sys.executable}' -m kerazoo list fcn8s 2>&-"], capture_output=True,
                       text=True, env=ENV, timeout=300)
    assert (r.returncode, r.stdout) == (0, "fcn8s\n")


def test_help_and_usage_errors_load_no_keras():
    """`kerazoo --help` took 1.5-3 s on 2 cores: zoo.cli was inside the zoo package, whose import loads Keras and
    its backend. Now the command line is parsed with the standard library alone."""
    code = ("import sys; from kerazoo.cli import main\n"
            "for argv in (['--help'], ['frob'], [], ['list', '--help'], ['predict', 'x'], ['convert', '--help'],"
            " ['convert', 'a']):\n"
            "    try: main(argv)\n"
            "    except SystemExit as e: assert e.code in (0, 2), (argv, e.code)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'tensorflow', 'jax', 'torch', 'zoo', "
            "'training', 'numpy', 'h5py'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "[]", (r.stdout[-300:], r.stderr[-2000:])


def test_no_tensorflow_start_up_notices(tmp_path):
    """TensorFlow 2.19+ logs 'oneDNN custom operations are on ...' (INFO) at import through absl, past
    TF_CPP_MIN_LOG_LEVEL (tensorflow/tensorflow#100442); the commands wrote it to stderr, twice. Run with the
    variable unset, as a user's shell has it: on TensorFlow, and on JAX, where Keras imports TensorFlow to save
    a model."""
    env = {k: v for k, v in ENV.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proto, model = write_net(tmp_path, PROTO, random_blobs_for(PROTO, np.random.default_rng(1)))
    r = subprocess.run([sys.executable, "-m", "kerazoo", "convert", proto, model, "-o", tmp_path / "n.keras",
                        "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert (r.returncode, r.stderr) == (0, "") and (tmp_path / "n.keras").exists()
    r = subprocess.run([sys.executable, "-m", "kerazoo", "export", tmp_path / "n.keras", "-o", tmp_path / "n_sm",
                        "--input-shape", "9", "11"], capture_output=True, text=True,
                       env={**env, "KERAS_BACKEND": "jax"}, timeout=300)  # TensorFlow first imported to export
    assert (r.returncode, r.stderr) == (0, ""), r.stderr[-2000:]
    env["KERAS_BACKEND"] = "tensorflow"
    r = subprocess.run([sys.executable, "-m", "kerazoo", "list", "fcn8s"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert (r.returncode, r.stdout, r.stderr) == (0, "fcn8s\n", "")
    r = entry_point("train_main", "train", "--model", "m", "--out", "o", env=env)
    assert r.returncode == 2 and r.stderr == ("kerazoo-train train: error: the following arguments are required: "
                                              "--dataset (see kerazoo-train train --help)\n")


PROTO = """name: "tiny"
input: "data"
input_shape { dim: 1 dim: 3 dim: 9 dim: 11 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
"""


def test_inspect_every_format(tmp_path):
    import keras

    import zoo

    blobs = random_blobs_for(PROTO, np.random.default_rng(0))
    _, model_path = write_net(tmp_path, PROTO, blobs)
    r = kerazoo_here("inspect", model_path)
    assert r.returncode == 0, r.stderr
    assert "conv1/0" in r.stdout and "(4, 3, 3, 3)" in r.stdout and "conv1/1" in r.stdout
    r = kerazoo_here("inspect", model_path, "--values", "conv1/1")
    assert r.returncode == 0 and f"{blobs['conv1'][1][0]:.4f}"[:5] in r.stdout

    inputs = keras.Input((8, 8, 3))
    m = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="c")(inputs))
    zoo.save_weights(m, tmp_path / "z.h5")
    m.save(tmp_path / "m.keras")
    m.save_weights(tmp_path / "m.weights.h5")
    for name in ("z.h5", "m.keras", "m.weights.h5"):
        r = kerazoo_here("inspect", tmp_path / name)
        assert r.returncode == 0, r.stderr
        assert "(3, 3, 3, 2)" in r.stdout and "total: 56 values" in r.stdout
    assert "no tensor named" in _one_line_error(kerazoo_here("inspect", tmp_path / "z.h5", "--values", "nope"))
    assert "file not found" in _one_line_error(kerazoo_here("inspect", tmp_path / "missing.h5"))
    assert _one_line_error(kerazoo_here("inspect", tmp_path)) == (
        f"kerazoo inspect: error: {tmp_path}: a folder, expected a weights file (.keras, .weights.h5, .h5, "
        f".caffemodel, .t7)")
    (tmp_path / "bad.caffemodel").write_bytes(b"\x0a\xff\xff\xff\x0f")
    assert "bad.caffemodel" in _one_line_error(kerazoo_here("inspect", tmp_path / "bad.caffemodel"))


def test_convert_delegates_to_the_converter(tmp_path):
    proto, model = write_net(tmp_path, PROTO, random_blobs_for(PROTO, np.random.default_rng(1)))
    out = tmp_path / "tiny.keras"
    r = kerazoo_here("convert", proto, model, "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.exists()
    r = kerazoo_here("convert", proto, tmp_path / "missing.caffemodel", "-o", tmp_path / "x.keras")
    assert r.returncode != 0 and "Traceback" not in r.stderr and not (tmp_path / "x.keras").exists()


@pytest.mark.parametrize("args", [("predict", "hourglass", "nope.png", "--weights", "w.h5")])
def test_predict_errors_are_one_line(tmp_path, args):
    assert "cannot read image" in _one_line_error(kerazoo(*args, cwd=tmp_path))


def test_predict_writes_an_overlay(tmp_path):
    import cv2
    import keras

    import zoo

    model = zoo.get("hourglass", stacks=1, num_keypoints=4, features=16, input_shape=(64, 64, 3))
    zoo.save_weights(model, tmp_path / "hg.h5", zoo.WeightsRecord(
        num_keypoints=4, scale=1 / 255.0,
        builder_kwargs=dict(stacks=1, num_keypoints=4, features=16, input_shape=(64, 64, 3))))
    image = (np.random.default_rng(0).uniform(0, 255, (80, 96, 3))).astype("uint8")
    cv2.imwrite(str(tmp_path / "img.png"), image)
    r = kerazoo("predict", "hourglass", tmp_path / "img.png", "--weights", tmp_path / "hg.h5", "--out",
                tmp_path / "pred.png")
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / "pred.png"))
    assert out is not None and out.shape == (80, 96, 3)  # drawn on the image at its size, not the 64 x 64 input
    r = kerazoo_here("predict", "hourglass", tmp_path / "img.png", "--weights", tmp_path / "hg.h5", "--out",
                tmp_path / "pred_w.png", "--winograd")
    assert r.returncode == 0, r.stderr
    assert "optimize_for_inference: 0 Conv2D -> WinogradConv2D (none)" in r.stdout  # 16 features: too narrow
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "pred_w.png")), out)
    # a Keras .weights.h5 holds no architecture: --model-arg gives it, as Python's zoo.get(..., **kwargs)
    model.save_weights(tmp_path / "hg.weights.h5")
    r = kerazoo_here("predict", "hourglass", tmp_path / "img.png", "--weights", tmp_path / "hg.weights.h5", "--out",
                tmp_path / "pred_k.png", "--model-arg", "stacks=1", "--model-arg", "num_keypoints=4",
                "--model-arg", "features=16", "--model-arg", "input_shape=(64, 64, 3)")
    assert r.returncode == 0 and (tmp_path / "pred_k.png").exists(), r.stderr
    keras.backend.clear_session()


def test_inspect_torch7_file(tmp_path):
    from tests.converters import torch7_files as T

    conv = T.conv(np.random.default_rng(0), 3, 4, 3, ttype="torch.FloatTensor")
    path = T.write_t7(tmp_path / "net.t7", T.sequential(conv, T.relu()))
    r = kerazoo_here("inspect", path)
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("modules.1.weight "))
    assert "(4, 3, 3, 3)" in line and "float32" in line and "[cudnn.SpatialConvolution]" in line
    assert "total: 112 values" in r.stdout  # weight 108 + bias 4; empty state tensors are not listed
    r = kerazoo_here("inspect", path, "--values", "modules.1.bias")
    assert r.returncode == 0 and f"{conv.fields['bias'].array[0]:.4f}"[:5] in r.stdout
    (tmp_path / "bad.t7").write_bytes(b"\x04\x00\x00\x00\x01")
    err = _one_line_error(kerazoo_here("inspect", tmp_path / "bad.t7"))
    assert "bad.t7" in err and "byte 4: expected a reference index" in err and "truncated" in err


def test_train_and_evaluate_errors_are_one_line(tmp_path):
    r = kerazoo_here("train", "--model", "hourglas", "--dataset", "synthetic", "--out", tmp_path / "run")
    assert r.returncode == 2 and "Unknown model 'hourglas'. Did you mean: hourglass?" in _one_line_error(r)
    r = kerazoo_here("train", "--model", "hourglass", "--dataset", "synthetic", "--out", tmp_path / "run",
                "--steps-per-execution", "0")
    assert r.returncode == 2 and _one_line_error(r) == ("kerazoo train: error: argument --steps-per-execution: "
                                                        "expected an integer >= 1, got '0' (see kerazoo train --help)")
    # said 'kerazoo evaluate: error: evaluate: --run ...'
    r = kerazoo_here("evaluate", "--run", tmp_path / "no_such_run")
    assert r.returncode == 2 and _one_line_error(r).startswith(f"kerazoo evaluate: error: --run '{tmp_path}/no_such_run"
                                                               f"' is not a training run folder")
    r = kerazoo("evaluate", "--run", tmp_path / "no_such_run", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr  # --debug shows where it came from


def test_one_line_keeps_the_substance():
    from zoo.cli import one_line
    from zoo.errors import WeightsMismatchError

    err = WeightsMismatchError("Weights file 'w.h5' does not fit model 'cpm':\n40 layers of the model missing "
                               "from the file:\n" + "".join(f"  - conv{i} [(3, 3)]\n" for i in range(40))
                               + "1 layers in the file the model does not have:\n  - extra")
    assert one_line(err) == ("Weights file 'w.h5' does not fit model 'cpm': 40 layers of the model missing from "
                             "the file: conv0 [(3, 3)], conv1 [(3, 3)], conv2 [(3, 3)], ... (37 more); 1 layers in "
                             "the file the model does not have: extra")
    keras_err = ValueError("A total of 2 objects could not be loaded. Example error message for object "
                           "<Conv2D name=c1, built=True>:\n\nThe shape must match. variable.shape=(1, 8), "
                           "Received: value.shape=(1, 4). Target variable: <Variable path=c1/kernel, shape=(1, 8), "
                           "dtype=float32, value=[[0.1 0.2\n 0.3]]>\n\nList of objects that could not be loaded:\n"
                           "[<Conv2D name=c1, built=True>, <Dense name=d, built=True>]")
    assert one_line(keras_err) == ("A total of 2 objects could not be loaded. Example error message for object "
                                   "Conv2D 'c1': The shape must match. variable.shape=(1, 8), Received: "
                                   "value.shape=(1, 4). Target variable: variable 'c1/kernel'")
    long = one_line(ValueError("word " * 500), limit=100)
    assert len(long) < 140 and long.endswith("more characters]") and "\n" not in long


def test_predict_classifier_keras_model_and_out_folder(tmp_path):
    import cv2

    import zoo

    cv2.imwrite(str(tmp_path / "img.png"), np.random.default_rng(0).integers(0, 256, (40, 52, 3)).astype("uint8"))
    model = zoo.get("resnet18", input_shape=(32, 32, 3), classes=3)
    zoo.save_weights(model, tmp_path / "r.h5", zoo.WeightsRecord(class_names=("cat", "dog", "eel")))
    (tmp_path / "out").mkdir()
    r = kerazoo_here("predict", "resnet18:imagenet", tmp_path / "img.png", "--weights", tmp_path / "r.h5",
                "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert sorted(l.split()[1] for l in r.stdout.splitlines()[:3]) == ["cat", "dog", "eel"]
    assert cv2.imread(str(tmp_path / "out" / "img.pred.png")).shape == (40, 52, 3)  # the image's own size
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img.pred.png"]  # no temp file left

    hg = zoo.get("hourglass", stacks=1, num_keypoints=4, features=16, input_shape=(64, 64, 3))
    zoo.save_weights(hg, tmp_path / "hg.h5")  # no record given: the builder arguments go in anyway
    hg.save(tmp_path / "hg.keras")
    for weights in ("hg.h5", "hg.keras"):  # both the same small model, not the default one rebuilt
        r = kerazoo_here("predict", "hourglass", tmp_path / "img.png", "--weights", tmp_path / weights,
                    "--out", tmp_path / f"{weights}.png")
        assert r.returncode == 0, r.stderr
        assert cv2.imread(str(tmp_path / f"{weights}.png")).shape == (40, 52, 3)
    (tmp_path / "t.keras").write_bytes((tmp_path / "hg.keras").read_bytes()[:1000])
    err = _one_line_error(kerazoo_here("predict", "hourglass", tmp_path / "img.png", "--weights", tmp_path / "t.keras"))
    assert "t.keras' is not a readable .keras archive" in err
    err = _one_line_error(kerazoo_here("predict", "cpm", tmp_path / "img.png", "--weights", tmp_path / "hg.h5"))
    assert "holds weights of 'hourglass'" in err and "missing from the file: conv1_stage1 [(9, 9, 3, 128)" in err
    assert not list(tmp_path.glob(".*.tmp"))


def test_predict_a_folder_and_several_images_with_one_model_load(tmp_path):
    """kerazoo predict took one image: a folder of them meant loading the model once per image. Now IMAGE repeats
    and a folder gives its images; an unreadable one is skipped (status 1), and an --out folder gets the keypoints of
    all in predictions.csv, each row what that image's own run prints."""
    import csv

    import cv2

    import zoo

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, shape in (("b.png", (40, 52, 3)), ("a.jpg", (48, 40, 3))):
        cv2.imwrite(str(folder / name), rng.integers(0, 256, shape).astype("uint8"))
    (folder / "c.png").write_bytes(b"not a png")  # unreadable: skipped, named, status 1
    (folder / "d.png").symlink_to(tmp_path / "gone.png")  # a dangling link: as unreadable (was left out unsaid)
    (folder / "a.pred.png").write_bytes(b"an earlier run's picture")  # not an input
    (folder / "notes.txt").write_text("not an image")
    hg = zoo.get("hourglass", stacks=1, num_keypoints=4, features=16, input_shape=(64, 64, 3))
    zoo.save_weights(hg, tmp_path / "hg.h5", zoo.WeightsRecord(keypoint_names=("w", "x", "y", "z"), scale=1 / 255.0))
    out = tmp_path / "out"
    r = kerazoo_here("predict", "hourglass", folder, "--weights", tmp_path / "hg.h5", "--out", out)
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [f"kerazoo predict: cannot read image '{folder / 'c.png'}' (skipped)",
                                     f"kerazoo predict: cannot read image '{folder / 'd.png'}' (a link to "
                                     f"'{tmp_path / 'gone.png'}', which does not exist) (skipped)",
                                     "kerazoo predict: 2 of 4 images could not be read"]
    assert sorted(p.name for p in out.iterdir()) == ["a.pred.png", "b.pred.png", "predictions.csv"]
    assert cv2.imread(str(out / "a.pred.png")).shape == (48, 40, 3)  # each image's own size
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(q["image"], q["name"]) for q in rows] == [(str(folder / i), n) for i in ("a.jpg", "b.png") for n in "wxyz"]
    for image in ("a.jpg", "b.png"):  # the same numbers as a run on that image alone
        alone = kerazoo_here("predict", "hourglass", folder / image, "--weights", tmp_path / "hg.h5", "--out",
                             tmp_path / f"{image}.png")
        assert alone.returncode == 0, alone.stderr
        printed = [l.split() for l in alone.stdout.splitlines() if not l.startswith("wrote ")]
        assert [[q["x"], q["y"], q["name"]] for q in rows if q["image"].endswith(image)] == printed
        assert f"{folder / image}:" in r.stdout
    # files given one by one are a batch too; without --out each picture goes beside its image
    r = kerazoo_here("predict", "hourglass", folder / "a.jpg", folder / "b.png", "--weights", tmp_path / "hg.h5")
    assert r.returncode == 0 and (folder / "b.pred.png").exists(), r.stderr
    # checked before the model is loaded
    assert _one_line_error(kerazoo_here("predict", "hourglass", folder, "--weights", "w.h5", "--out", "o.png")) == (
        "kerazoo predict: error: --out 'o.png': 4 images need a folder (an existing one, or a new name without .png)")
    (tmp_path / "more").mkdir()
    cv2.imwrite(str(tmp_path / "more" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert _one_line_error(kerazoo_here("predict", "hourglass", folder / "d.png", "--weights", "w.h5")) == (
        f"kerazoo predict: error: cannot read image '{folder / 'd.png'}' (a link to '{tmp_path / 'gone.png'}', "
        f"which does not exist)")
    assert "'a.pred.png'; predict them into different folders" in _one_line_error(kerazoo_here(
        "predict", "hourglass", folder / "a.jpg", tmp_path / "more", "--weights", "w.h5", "--out", out))
    assert _one_line_error(kerazoo_here("predict", "hourglass", tmp_path / "out2", "--weights", "w.h5")) == (
        f"kerazoo predict: error: cannot read image '{tmp_path / 'out2'}' (no such file or directory)")
    (tmp_path / "loop1.png").symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(tmp_path / "loop1.png")
    (tmp_path / "empty.png").write_bytes(b"")
    for name, why in (("loop1.png", "too many levels of symbolic links"), ("empty.png", "an empty file")):
        assert _one_line_error(kerazoo_here("predict", "hourglass", tmp_path / name, "--weights", "w.h5")) == (
            f"kerazoo predict: error: cannot read image '{tmp_path / name}' ({why})")
    (tmp_path / "empty").mkdir()
    assert "a folder without image files (.jpg, .jpeg, .png" in _one_line_error(kerazoo_here(
        "predict", "hourglass", tmp_path / "empty", "--weights", "w.h5"))


def test_predict_several_images_never_write_one_picture_twice_and_a_file_named_twice_runs_once(tmp_path):
    """Without --out a batch's pictures go beside the images: a.jpg's and a.png's are both a.pred.png, and the
    second replaced the first without a word (an --out folder refused the pair). A file named twice (a folder and
    one of its files, or ./x and x) was refused with --out ("'a.jpg' and 'a.jpg' would both be written ...;
    predict them into different folders") and predicted twice without it; it is predicted once."""
    import cv2

    import zoo

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.jpg", "a.png", "b.png"):
        cv2.imwrite(str(folder / name), np.full((40, 40, 3), 128, np.uint8))
    hg = zoo.get("hourglass", stacks=1, num_keypoints=2, features=16, input_shape=(64, 64, 3))
    zoo.save_weights(hg, tmp_path / "hg.h5", zoo.WeightsRecord(keypoint_names=("l", "r"), scale=1 / 255.0))
    assert _one_line_error(kerazoo_here("predict", "hourglass", folder, "--weights", tmp_path / "hg.h5")) == (
        f"kerazoo predict: error: '{folder / 'a.jpg'}' and '{folder / 'a.png'}' would both be written to "
        f"'{folder / 'a.pred.png'}'; give --out folders to predict them into different ones")
    assert not (folder / "a.pred.png").exists()  # refused before anything was written
    os.remove(folder / "a.png")
    out = tmp_path / "out"
    for extra in ((), ("--out", out)):
        r = kerazoo_here("predict", "hourglass", folder, folder / "a.jpg", folder / ".." / "imgs" / "b.png",
                         "--weights", tmp_path / "hg.h5", *extra)
        assert r.returncode == 0, r.stderr
        assert [l for l in r.stdout.splitlines() if l.endswith(":")] == [f"{folder / 'a.jpg'}:", f"{folder / 'b.png'}:"]
    assert (out / "predictions.csv").read_text().count("a.jpg") == 2  # its two keypoints, once
    (tmp_path / "one").mkdir()  # a folder of one image is a batch too: said so, not "1 images need a folder"
    # copied from macOS: ._c.png is c.png's AppleDouble companion, no image (it was skipped as unreadable: status 1)
    (tmp_path / "one" / "._c.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    cv2.imwrite(str(tmp_path / "one" / "c.png"), np.zeros((8, 8, 3), np.uint8))
    assert _one_line_error(kerazoo_here("predict", "hourglass", tmp_path / "one", "--weights", "w.h5", "--out",
                                        "o.png")) == (
        "kerazoo predict: error: --out 'o.png': a folder's images need a folder (an existing one, or a new name "
        "without .png)")
    r = kerazoo_here("predict", "hourglass", tmp_path / "one", "--weights", tmp_path / "hg.h5")
    assert r.returncode == 0 and not r.stderr and (tmp_path / "one" / "c.pred.png").exists(), r.stderr


def test_predict_a_batch_skips_an_image_an_any_size_model_does_not_take_and_names_it(tmp_path):
    """An any-size hourglass takes multiples of 64 px: a 70x50 image in a folder stopped the run there (status 2,
    "not this 70x50 image", no file named), the images after it never predicted and no predictions.csv written."""
    import csv

    import cv2

    import zoo

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, (h, w) in (("a.png", (64, 64)), ("b.png", (50, 70)), ("c.png", (128, 64))):
        cv2.imwrite(str(folder / name), np.full((h, w, 3), 90, np.uint8))
    zoo.get("hourglass", stacks=1, num_keypoints=2, features=16, input_shape=(None, None, 3)).save(tmp_path / "hg.keras")
    out = tmp_path / "out"
    r = kerazoo_here("predict", "hourglass", folder, "--weights", tmp_path / "hg.keras", "--out", out)
    assert r.returncode == 1, r.stderr
    err = r.stderr.splitlines()
    assert len(err) == 2 and err[0].startswith(f"kerazoo predict: cannot predict '{folder / 'b.png'}': hourglass "
                                               f"takes inputs of any size, but not this 70x50 image") \
        and err[0].endswith("(skipped)") and err[1] == "kerazoo predict: 1 of 3 images could not be predicted", err
    assert sorted(p.name for p in out.iterdir()) == ["a.pred.png", "c.pred.png", "predictions.csv"]
    with open(out / "predictions.csv") as f:
        assert [q["image"] for q in csv.DictReader(f)] == [str(folder / i) for i in ("a.png", "a.png", "c.png", "c.png")]
    # one image alone: the error as before (status 2)
    assert "but not this 70x50 image" in _one_line_error(kerazoo_here(
        "predict", "hourglass", folder / "b.png", "--weights", tmp_path / "hg.keras"))


def _colour_planes(shape):
    """A model whose three maps are its input's R, G, B planes (a 1x1 identity convolution), saved as .keras."""
    import keras

    inputs = keras.Input(shape, name="image")
    conv = keras.layers.Conv2D(3, 1, use_bias=False, name="head")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.eye(3, dtype=np.float32)[None, None]])
    return model


def test_predict_boxes_file_for_a_folder(tmp_path):
    """--boxes FILE: a detector's boxes per image (by path or file name, its score column ignored) for a folder:
    each image's people as --box estimates them, predictions.csv with a person column; an image without rows is
    left out; a row naming no image given, a bad row or a box off its image is one error naming the file."""
    import csv

    import cv2

    image = np.zeros((60, 90, 3), np.uint8)
    spots = [(33, 17), (41, 25), (38, 15)]
    for c, (x, y) in enumerate(spots + [(70, 45)]):
        image[y, x, c % 3] = 120
    crowd = tmp_path / "crowd"
    crowd.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(crowd / name), image[..., ::-1])
    _colour_planes((16, 16, 3)).save(tmp_path / "pose.keras")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x1,y1,x2,y2,score\na.png,31.1,14.1,43.9,26.9,0.9\na.png,64.1,39.1,76.9,51.9,0.8\n"
                     f"{crowd / 'b.png'},31.1,14.1,43.9,26.9,0.7\n")
    out = tmp_path / "out"
    predict = ("predict", "hourglass", crowd, "--weights", tmp_path / "pose.keras")
    r = kerazoo_here(*predict, "--boxes", boxes, "--out", out)
    assert r.returncode == 0, r.stderr
    assert f"{crowd / 'c.png'}: no box in {boxes}" in r.stdout and not (out / "c.pred.png").exists()
    assert "person 2 (box 64.1,39.1,76.9,51.9):" in r.stdout and (out / "a.pred.png").exists()
    with open(out / "predictions.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["image", "person", "joint", "name", "x", "y"] and len(table) == 1 + 2 * 3 + 3
    assert [row[:3] for row in table[1:]] == [[str(crowd / "a.png"), "1", str(j)] for j in range(3)] + \
        [[str(crowd / "a.png"), "2", str(j)] for j in range(3)] + [[str(crowd / "b.png"), "1", str(j)] for j in range(3)]
    np.testing.assert_allclose([[float(row[4]), float(row[5])] for row in table[1:4]], spots, atol=0.005)
    assert table[4][4:] == ["70.00", "45.00"] and table[7][4:] == table[1][4:]
    for rows, expected in (
            ("a.png,1,2,30,40\nzzz.png,1,2,30,40\n", f"--boxes '{boxes}': image 'zzz.png' is none of the images given"),
            ("a.png,1,2,30\n", f"--boxes '{boxes}' row 1: expected image,x1,y1,x2,y2 with image px x1 < x2 and y1 < y2, "
                               f"got 'a.png,1,2,30'"),
            ("a.png,500,10,600,90\n", f"--boxes '{boxes}': {crowd / 'a.png'}: box 500,10,600,90 lies outside the 90x60 "
                                      f"image (x from 0 to 90, y from 0 to 60); give the box in this image's px.")):
        boxes.write_text(rows)
        assert _one_line_error(kerazoo_here(*predict, "--boxes", boxes, "--out", out)).endswith(expected)
    boxes.write_text("a.png,31.1,14.1,43.9,26.9,0.9\na.png,64.1,39.1,76.9,51.9,0.2\n")  # a weak detection left out
    r = kerazoo_here(*predict, "--boxes", boxes, "--min-score", "0.5", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "person 1 (box 31.1,14.1,43.9,26.9):" in r.stdout and "person 2" not in r.stdout
    assert f"{crowd / 'b.png'}: no box in {boxes}" in r.stdout
    assert _one_line_error(kerazoo_here(*predict, "--min-score", "0.5")).endswith(
        "--min-score is for --boxes FILE (its sixth column, the detector's score)")
    assert _one_line_error(kerazoo_here(*predict, "--boxes", boxes, "--box", "1,1,9,9")).endswith(
        "give --box (people in one image) or --boxes FILE (people per image), not both")
    assert _one_line_error(kerazoo_here(*predict, "--boxes", tmp_path / "none.csv")).startswith(
        f"kerazoo predict: error: --boxes '{tmp_path / 'none.csv'}': cannot read it (No such file or directory)")


def test_predict_box_and_masks(tmp_path):
    """--box crops the person it names (the inference test's scene: spots in the box found exactly, brighter ones
    outside ignored); --masks writes the class indices beside each picture as a grey PNG."""
    import cv2

    image = np.zeros((60, 90, 3), np.uint8)
    spots = [(33, 17), (41, 25), (38, 15)]
    for c, (x, y) in enumerate(spots + [(70, 45), (10, 50), (80, 10)]):
        value = 120 if c < 3 else 250
        image[y - 1:y + 2, x, c % 3], image[y, x - 1:x + 2, c % 3] = value // 3, value // 3
        image[y, x, c % 3] = value
    cv2.imwrite(str(tmp_path / "people.png"), image[..., ::-1])
    _colour_planes((16, 16, 3)).save(tmp_path / "pose.keras")
    r = kerazoo_here("predict", "hourglass", tmp_path / "people.png", "--weights", tmp_path / "pose.keras",
                     "--box", "31.1,14.1,43.9,26.9")
    assert r.returncode == 0, r.stderr
    printed = [tuple(map(float, l.split()[:2])) for l in r.stdout.splitlines() if not l.startswith("wrote ")]
    np.testing.assert_allclose(printed, spots, atol=0.005)
    # two people: --box twice, each one's keypoints under its box, both drawn on one picture
    r = kerazoo_here("predict", "hourglass", tmp_path / "people.png", "--weights", tmp_path / "pose.keras",
                     "--box", "31.1,14.1,43.9,26.9", "--box", "64.1,39.1,76.9,51.9", "--out", tmp_path / "two.png")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "person 1 (box 31.1,14.1,43.9,26.9):" and lines[4] == "person 2 (box 64.1,39.1,76.9,51.9):"
    np.testing.assert_allclose([tuple(map(float, l.split()[:2])) for l in lines[1:4]], spots, atol=0.005)
    assert lines[5].split() == ["70.00", "45.00", "joint", "0"]  # the red spot in the second box; no green or blue
    assert [l.split()[:2] for l in lines[6:8]] == [["nan", "nan"]] * 2 and lines[8] == f"wrote {tmp_path / 'two.png'}"
    assert cv2.imread(str(tmp_path / "two.png")).shape == image.shape
    assert _one_line_error(kerazoo_here("predict", "hourglass", tmp_path / "people.png", "--weights",
                                        tmp_path / "pose.keras", "--box", "31.1,14.1,43.9,26.9", "--box",
                                        "500,10,600,90")).endswith(
        "--box 500,10,600,90 lies outside the 90x60 image (x from 0 to 90, y from 0 to 60); give the box in this "
        "image's px.")
    assert _one_line_error(kerazoo_here("predict", "hourglass", tmp_path / "people.png", "--weights", "w.h5",
                                        "--box", "40,10,30,20")).endswith(
        "argument --box: expected X1,Y1,X2,Y2 image px with X1 < X2 and Y1 < Y2 such as 120,40,260,400, got "
        "'40,10,30,20' (see kerazoo predict --help)")
    assert _one_line_error(kerazoo_here("predict", "hourglass", tmp_path / "people.png", "--weights",
                                        tmp_path / "pose.keras", "--box", "500,10,600,90")).endswith(
        "--box lies outside the 90x60 image (x from 0 to 90, y from 0 to 60); give the box in this image's px.")
    assert _one_line_error(kerazoo_here("predict", "hourglass", tmp_path, "--weights", "w.h5", "--box",
                                        "1,1,5,5")).endswith(
        "--box names a person in one image, not in several images or a folder's")

    stripes = np.zeros((20, 30, 3), np.uint8)  # red, green and blue vertical thirds: classes 0, 1, 2
    truth = np.minimum(np.arange(30) // 10, 2)[None].repeat(20, 0)
    for c in range(3):
        stripes[truth == c, c] = 200
    (tmp_path / "seg").mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "seg" / name), stripes[..., ::-1])
    _colour_planes((None, None, 3)).save(tmp_path / "seg.keras")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "predictions.csv").write_text("image,joint\nold,0\n")  # an earlier batch's
    r = kerazoo_here("predict", "pspnet50", tmp_path / "seg", "--weights", tmp_path / "seg.keras", "--masks",
                     "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    for name in ("a", "b"):
        mask = cv2.imread(str(tmp_path / "out" / f"{name}.mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.shape == (20, 30)
        np.testing.assert_array_equal(mask, truth)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mask.png", "a.pred.png", "b.mask.png",
                                                                   "b.pred.png"]  # no stale predictions.csv
    assert "(an earlier run's: this one has no keypoints or classes to list)" in r.stdout
    (tmp_path / "people.pred.png").unlink()  # an earlier call's picture
    r = kerazoo_here("predict", "hourglass", tmp_path / "people.png", "--weights", tmp_path / "pose.keras", "--masks")
    assert _one_line_error(r).endswith("--masks is for segmentation models; hourglass gives pose")
    assert r.stdout == "" and not (tmp_path / "people.pred.png").exists()  # refused before the image ran


def test_predict_masks_beside_a_folders_images_are_no_inputs_the_next_time(tmp_path):
    """--masks without --out writes a.mask.png beside a.png; predicting the folder again leaves it out, as the
    .pred.png pictures are: it was taken for an image (the class indices predicted as a picture, a.mask.pred.png
    and a.mask.mask.png written, one more generation each run)."""
    import cv2

    stripes = np.zeros((20, 30, 3), np.uint8)  # red, green and blue vertical thirds: classes 0, 1, 2
    truth = np.minimum(np.arange(30) // 10, 2)[None].repeat(20, 0)
    for c in range(3):
        stripes[truth == c, c] = 200
    folder = tmp_path / "seg"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), stripes[..., ::-1])
    _colour_planes((None, None, 3)).save(tmp_path / "seg.keras")
    for _ in range(2):
        r = kerazoo_here("predict", "pspnet50", folder, "--weights", tmp_path / "seg.keras", "--masks")
        assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["a.mask.png", "a.png", "a.pred.png"]
    np.testing.assert_array_equal(cv2.imread(str(folder / "a.mask.png"), cv2.IMREAD_UNCHANGED), truth)


def test_predict_a_batch_leaves_a_predictions_csv_it_did_not_write(tmp_path):
    """A segmentation batch removes an earlier predict batch's predictions.csv from its --out folder (those rows no
    longer describe the pictures), but not evaluate's, which an --out folder shared with an evaluation holds: that
    one (its header 'id,...', not predict's 'image,...') was deleted, the evaluation's per-image scores lost; a pose or
    classifier batch replaced it. Now such a folder is refused before the model loads, whatever the model."""
    import cv2

    folder = tmp_path / "seg"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((20, 30, 3), 200, np.uint8))
    _colour_planes((None, None, 3)).save(tmp_path / "seg.keras")
    out = tmp_path / "results"
    out.mkdir()
    scores = "id,valid_pixels,correct_pixels\r\nimg0,600,512\r\n"  # evaluate --out-dir's rows
    (out / "predictions.csv").write_bytes(scores.encode())
    for name in ("pspnet50", "hourglass"):
        r = kerazoo_here("predict", name, folder, "--weights", tmp_path / "seg.keras", "--out", out)
        assert _one_line_error(r) == (f"kerazoo predict: error: --out '{out}' holds a predictions.csv that kerazoo "
                                      f"predict did not write (evaluate's per-image scores?); predict into another "
                                      f"folder")
        assert (out / "predictions.csv").read_bytes() == scores.encode()
        assert sorted(p.name for p in out.iterdir()) == ["predictions.csv"]


def test_predict_reads_16_bit_float_rgba_and_grey_files(tmp_path):
    """The file's own depth and channels reach predict: a float32 TIFF was "cannot read image" and a 16-bit PNG
    was cut to its top 8 bits (v >> 8, not predict's v / 257 rounded). A classifier's picture is the image
    itself below its text band, so the written pixels show how the file was read."""
    import cv2

    import zoo

    model = zoo.get("resnet18", input_shape=(32, 32, 3), classes=3)
    zoo.save_weights(model, tmp_path / "r.h5")
    rng = np.random.default_rng(0)
    u16 = rng.integers(0, 65536, (64, 52, 3)).astype(np.uint16)  # BGR, as cv2.imwrite takes it
    u16[-1, -1] = (200, 65280, 65535)  # v >> 8: 0, 255, 255; v / 257 rounded: 1, 254, 255
    f32 = rng.uniform(0, 1, (64, 52, 3)).astype(np.float32)
    rgba = rng.integers(0, 256, (64, 52, 4)).astype(np.uint8)
    grey = rng.integers(0, 256, (64, 52)).astype(np.uint8)
    cases = {"u16.png": (u16, np.round(u16 / 257.0)),  # predict's 16 bits: 65535 -> 255
             "f32.tiff": (f32, np.round(f32 * 255.0)),  # floats with maximum <= 1 are [0, 1]
             "rgba.png": (rgba, rgba[..., :3]),  # alpha dropped
             "grey.png": (grey, np.repeat(grey[..., None], 3, axis=2))}
    for name, (pixels, expected_bgr) in cases.items():
        assert cv2.imwrite(str(tmp_path / name), pixels)
        r = kerazoo_here("predict", "resnet18", tmp_path / name, "--weights", tmp_path / "r.h5", "--out",
                    tmp_path / f"{name}.pred.png")
        assert r.returncode == 0, (name, r.stderr[-2000:])
        out = cv2.imread(str(tmp_path / f"{name}.pred.png"), cv2.IMREAD_UNCHANGED)
        assert out.shape == (64, 52, 3) and out.dtype == np.uint8, name
        np.testing.assert_array_equal(out[40:], expected_bgr[40:].astype(np.uint8), err_msg=name)  # under the text
    # a camera's JPEG stored on its side with EXIF orientation 6 (turn 90 degrees clockwise) is shown upright
    ok, jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
    exif = b"Exif\0\0II*\0" + struct.pack("<IHHHIHHI", 8, 1, 0x0112, 3, 1, 6, 0, 0)  # one IFD entry: Orientation
    (tmp_path / "turned.jpg").write_bytes(jpeg[:2].tobytes() + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
                                          + jpeg[2:].tobytes())
    r = kerazoo_here("predict", "resnet18", tmp_path / "turned.jpg", "--weights", tmp_path / "r.h5", "--out",
                tmp_path / "turned.png")
    assert r.returncode == 0 and cv2.imread(str(tmp_path / "turned.png")).shape == (64, 48, 3), r.stderr[-2000:]
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    err = _one_line_error(kerazoo_here("predict", "resnet18", tmp_path / "bad.png", "--weights", tmp_path / "r.h5"))
    assert err.endswith(f"cannot read image '{tmp_path / 'bad.png'}'"), err
    # half a JPEG: cv2.imread gave its missing rows grey and predict ran on them (status 0, a picture written)
    ok, noise = cv2.imencode(".jpg", rng.integers(0, 256, (64, 52, 3)).astype(np.uint8))
    (tmp_path / "half.jpg").write_bytes(noise[: len(noise) // 2].tobytes())  # cut inside the scan data
    r = kerazoo_here("predict", "resnet18", tmp_path / "half.jpg", "--weights", tmp_path / "r.h5")
    assert r.returncode == 2 and _one_line_error(r).endswith(f"cannot read image '{tmp_path / 'half.jpg'}'")
    assert not (tmp_path / "half.pred.png").exists()


def _ctrl_c_while_reading(tmp_path, env=ENV):
    """``python -m kerazoo inspect`` of a pipe nobody writes yet (as a slow network file would be), Ctrl-C once it
    waits in read(): its exit status, stdout and stderr."""
    import signal
    import time

    fifo = tmp_path / "slow.t7"
    os.mkfifo(fifo)
    p = subprocess.Popen([sys.executable, "-m", "kerazoo", "inspect", str(fifo)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_terminal_ctrl_c)
    deadline = time.monotonic() + 240
    while True:  # opening the write end succeeds only once kerazoo has opened the pipe to read it
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.1)
    try:
        time.sleep(0.5)  # it now waits in read()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        os.close(fd)
        if p.poll() is None:
            p.kill()
    return p.returncode, out, err


def test_ctrl_c_exits_130_in_one_line(tmp_path):
    """Ctrl-C while a command waits on its input ends with status 130 and one line, not a KeyboardInterrupt
    traceback."""
    status, _, err = _ctrl_c_while_reading(tmp_path)
    lines = [l for l in err.strip().splitlines() if l.strip() and not _TF_NOISE.match(l)]
    assert status == 130 and "Traceback" not in err, err
    assert lines == ["kerazoo inspect: interrupted"], err


def test_after_ctrl_c_a_command_ends_without_python_s_finalization(tmp_path):
    """TensorFlow interrupted in the middle of fit hung in Python's finalization after "interrupted" was printed
    (4 of 6 Ctrl-Cs at random moments); a thread that never ends stands for it here (Python's exit waits for it).
    The command still ends with 130, and its atexit functions (multiprocessing's clean-up) still run."""
    env = _env_with_sitecustomize(
        tmp_path,
        "import atexit, threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), name='never-ends').start()\n"
        "atexit.register(lambda: print('ATEXIT RAN', flush=True))\n")
    status, out, err = _ctrl_c_while_reading(tmp_path, env)
    assert status == 130 and "kerazoo inspect: interrupted" in err, err
    assert out.strip().splitlines()[-1:] == ["ATEXIT RAN"], out


def test_predict_out_must_be_a_png_or_a_folder(tmp_path, capsys):
    """Checked before the model is loaded: a .jpg name got PNG bytes; a file in the way was '[Errno 17]'."""
    import cv2

    import zoo
    from zoo.cli import main

    cv2.imwrite(str(tmp_path / "img.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "file").write_text("x")
    for out, expected in [("o.jpg", "--out 'o.jpg': expected a file name ending in .png, or a folder"),
                          ("file/o.png", f"--out 'file/o.png': '{tmp_path / 'file'}' is a file, expected a folder"),
                          ("file/sub/", f"'{tmp_path / 'file'}' is a file, expected a folder there")]:
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            assert main(["predict", "hourglass", "img.png", "--weights", "w.h5", "--out", out]) == 2
        finally:
            os.chdir(cwd)
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "img.png"]
    # a new name without a suffix is a folder, as for several images (it was refused for one image)
    hg = zoo.get("hourglass", stacks=1, num_keypoints=2, features=8, input_shape=(64, 64, 3))
    zoo.save_weights(hg, tmp_path / "hg.h5")
    assert main(["predict", "hourglass", str(tmp_path / "img.png"), "--weights", str(tmp_path / "hg.h5"), "--out",
                 str(tmp_path / "pictures")]) == 0, capsys.readouterr().err
    assert [p.name for p in (tmp_path / "pictures").iterdir()] == ["img.pred.png"]


def test_predict_never_writes_over_an_image_it_reads(tmp_path, capsys):
    """--out a.png for a.png replaced the image with its picture; `predict a.png a.pred.png` wrote a.png's picture
    over a.pred.png before reading it (and printed a.png's keypoints for it). Checked before the model is loaded."""
    import cv2

    from zoo.cli import main

    for name in ("a.png", "a.pred.png", "a.mask.png"):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), 7, np.uint8))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    a, pred, mask = (str(tmp_path / n) for n in ("a.png", "a.pred.png", "a.mask.png"))
    for argv, expected in [
            (["hourglass", a, "--out", a], f"--out '{a}' would write over an image being read; give another name"),
            (["hourglass", a, pred], f"the picture of '{a}' would be written to '{pred}', which is also an image "
                                     f"given to predict; give --out a folder"),
            (["fcn8s", a, mask, "--masks"], f"the picture of '{a}' would be written to '{mask}', which is also an "
                                            f"image given to predict")]:
        assert main(["predict", *argv, "--weights", "w.h5"]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_info_checks_the_tag(capsys):
    from zoo.cli import main

    assert main(["info", "hourglass:zzz"]) == 2  # printed hourglass' record, status 0
    err = capsys.readouterr().err
    assert err == "kerazoo info: error: hourglass: unknown weights tag 'zzz' (in 'hourglass:zzz'). Known tags: mpii.\n"
    for name in ("hourglass:mpii", "hourglass.mpii"):
        assert main(["info", name]) == 0 and '"mpii": {' in capsys.readouterr().out
    # input px where heatmap pixel 0 lies in the releases (the record holds it; predict/evaluate decode with it)
    assert main(["info", "cpm:lsp"]) == 0
    weights = __import__("json").loads(capsys.readouterr().out)["weights"]
    assert weights["lsp"]["heatmap_offset"] == 3.5  # CPM's putGaussianMaps: stride / 2 - 0.5 at stride 8
    assert main(["info", "hourglass"]) == 0
    hourglass = __import__("json").loads(capsys.readouterr().out)["weights"]["mpii"]
    assert hourglass["heatmap_offset"] == 1.5 and hourglass["heatmap_sigma"] == 1.75  # pose-hg-train
    assert weights["lsp"]["heatmap_sigma"] == 0.875  # 7 input px at stride 8


def _keypoints(stdout):
    """``predict``'s keypoint lines ``X Y NAME`` -> ({name: (x, y)})."""
    rows = [l.split(None, 2) for l in stdout.splitlines() if not l.startswith("wrote ")]
    return {name: (float(x), float(y)) for x, y, name in rows}


def test_predict_decodes_in_the_records_heatmap_convention(tmp_path, capsys):
    """Heatmap pixel g is at input px g * stride + the record's heatmap_offset (hourglass:mpii 1.5): predict printed
    no keypoints, and decoded a training run's best.keras at offset 0 whatever the run trained with (config.json).
    --heatmap-offset PX overrides it; on an image of the input's size a keypoint moves by exactly PX px."""
    import cv2
    import keras

    import zoo
    from training import fit
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose
    from zoo.cli import main

    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "img64.png"), rng.integers(0, 256, (64, 64, 3)).astype("uint8"))
    cv2.imwrite(str(tmp_path / "img32.png"), rng.integers(0, 256, (32, 32, 3)).astype("uint8"))
    hg = zoo.get("hourglass", stacks=1, num_keypoints=4, features=16, input_shape=(64, 64, 3))
    kernel, bias = hg.get_layer("stack1_heatmaps").get_weights()
    hg.get_layer("stack1_heatmaps").set_weights([kernel, bias + 100.0])  # every map positive: a keypoint each
    names = ("nose", "neck", "hip", "knee")
    zoo.save_weights(hg, tmp_path / "hg.h5", zoo.WeightsRecord(num_keypoints=4, keypoint_names=names, scale=1 / 255,
                                                                heatmap_offset=2.0))

    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu", name="c1")(inp)
    run_model = keras.Model(inp, keras.layers.Conv2D(4, 1, activation="sigmoid", name="stack1_heatmaps")(x))
    ds = HeatmapDataset(synthetic_pose(4, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                        heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), heatmap_offset=1.5)
    fit(run_model, ds, epochs=1, out_dir=tmp_path / "run", verbose=0)
    run_model.save(tmp_path / "converted.keras")  # no run folder, no record: 0 unless given

    def keypoints(image, weights, *argv):
        assert main(["predict", "hourglass", str(tmp_path / image), "--weights", str(tmp_path / weights), "--out",
                     str(tmp_path / "p.png"), *argv]) == 0, capsys.readouterr().err
        return _keypoints(capsys.readouterr().out)

    capsys.readouterr()
    for image, weights, default, given in [("img64.png", "hg.h5", 2.0, -1.25), ("img32.png", "run/best.keras", 1.5, 0),
                                           ("img32.png", "converted.keras", 0.0, 3.5)]:
        by_record, by_option = keypoints(image, weights), keypoints(image, weights, "--heatmap-offset", str(given))
        assert len(by_record) == 4 and np.isfinite(list(by_record.values())).all(), by_record
        if weights == "hg.h5":
            assert tuple(by_record) == names  # named from the record
        np.testing.assert_allclose(np.array(list(by_record.values())) - np.array(list(by_option.values())),
                                   default - given, atol=0.011)  # printed with 2 decimals

    model = zoo.get("resnet18", input_shape=(32, 32, 3), classes=3)
    zoo.save_weights(model, tmp_path / "r.h5")
    for argv, expected in [(["resnet18", "img32.png", "--weights", "r.h5", "--heatmap-offset", "1"],
                            "kerazoo predict: error: --heatmap-offset is for pose models (heatmaps); resnet18 gives "
                            "classification\n"),
                           (["hourglass", "img32.png", "--weights", "hg.h5", "--heatmap-offset", "inf"],
                            "kerazoo predict: error: argument --heatmap-offset: expected a finite number, got 'inf' "
                            "(see kerazoo predict --help)\n")]:
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            assert main(["predict", *argv]) == 2
        except SystemExit as e:  # argparse's usage error
            assert e.code == 2
        finally:
            os.chdir(cwd)
        assert capsys.readouterr().err == expected
    assert not (tmp_path / "img32.pred.png").exists()
