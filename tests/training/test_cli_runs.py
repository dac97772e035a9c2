"""``python -m training`` run folders as a user meets them: what a failed start leaves, a second run in a
finished folder, checkpoints loaded in a fresh process, evaluate's splits and bad model files."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.training.helpers import ROOT, tiny_pose_model
from training.__main__ import main

pytestmark = pytest.mark.backend_agnostic


def _train(model, out, epochs=1, seed=0):
    return ["train", "--model", str(model), "--dataset", "synthetic", "--num-samples", "16", "--val-samples", "8",
            "--num-keypoints", "4", "--image-size", "32", "--batch-size", "4", "--epochs", str(epochs),
            "--out", str(out), "--verbose", "0", "--seed", str(seed), "--lr", "0.002"]


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.keras"
    tiny_pose_model(32, 4, outputs=2).save(path)
    return path


@pytest.mark.parametrize("signame, status, said", [("SIGTERM", 143, "terminated (SIGTERM)"),
                                                   ("SIGINT", 130, "interrupted")])
def test_sigterm_ends_a_command_as_ctrl_c_does(monkeypatch, capsys, signame, status, said):
    # a scheduler's SIGTERM (SLURM, Kubernetes, docker stop) killed `kerazoo train` at once: no message, the data
    # workers' semaphores left to the resource tracker's warnings; now Ctrl-C's way out, with its own word and status
    import os
    import signal
    import time

    import training.__main__ as cli

    def command(args):  # the signal arrives while the command runs
        os.kill(os.getpid(), getattr(signal, signame))
        time.sleep(5)
        return 0

    monkeypatch.setattr(cli, "cmd_train", command)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["train", "--dataset", "synthetic", "--model", "hourglass", "--out", "unused"]) == status
    assert capsys.readouterr().err == f"python -m training train: {said}; run the same command again to resume from " \
                                      f"--out\n"
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler back


def test_failed_start_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "hourglass", "--model-arg", "stacks=0", "--dataset", "synthetic", "--num-samples",
            "8", "--val-samples", "4", "--image-size", "64", "--epochs", "1", "--out", str(out)]
    assert main(argv) == 2
    assert "stacks" in capsys.readouterr().err
    assert not out.exists()  # cli.json used to be written (and a used folder's overwritten) before the model was built


@pytest.mark.tf_pass_only
def test_second_fresh_run_replaces_the_finished_one(tmp_path, tiny, capsys):
    out = tmp_path / "run"
    assert main(_train(tiny, out, epochs=2)) == 0
    first = json.loads((out / "best.keras.json").read_text())
    assert (out / "cli.json").exists() and json.loads((out / "cli.json").read_text())["epochs"] == 2
    capsys.readouterr()
    # A fresh run (the finished one left no backup/) must not inherit the old best value and checkpoint.
    (out / "best.keras.json").write_text(json.dumps({**first, "value": 1e9}))
    assert main(_train(tiny, out, epochs=1, seed=1) + ["--verbose", "2"]) == 0
    text = capsys.readouterr().out
    assert "holds a previous run's best.keras, best.keras.json, final.keras, summary.json" in text
    best = json.loads((out / "best.keras.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert best["value"] != 1e9 and best["epoch"] == 0 and summary["best_value"] == best["value"]
    assert "(epoch 1/1)" in text  # epochs are counted from 1 in messages, as Keras prints them


def test_checkpoints_load_in_a_fresh_process_with_safe_mode(tmp_path, tiny):
    out = tmp_path / "run"
    assert main(_train(tiny, out) + ["--feed", "uint8"]) == 0
    # fit() compiles the optimizer with kerazoo's LRSchedule: `import training` alone must register it.
    code = ("import sys, keras, zoo, training\n"
            "for name in ('best.keras', 'final.keras'):\n"
            "    m = keras.models.load_model(sys.argv[1] + '/' + name, safe_mode=True)\n"
            "    assert m.optimizer is not None and m.optimizer.built, name\n"
            "print('loaded')")
    res = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
                                           **{k: v for k, v in __import__("os").environ.items()
                                              if k not in ("PYTHONPATH",)}})
    assert res.returncode == 0 and "loaded" in res.stdout, res.stderr[-3000:]


def test_evaluate_splits_and_bad_model_files(tmp_path, tiny, capsys):
    out = tmp_path / "run"
    assert main(_train(tiny, out)) == 0
    with pytest.raises(SystemExit) as e:  # a typo used to evaluate the val split silently
        main(["evaluate", "--run", str(out), "--split", "tran"])
    assert e.value.code == 2 and "invalid choice: 'tran'" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(out), "--split", "train"]) == 0
    assert main(["evaluate", "--run", str(out)]) == 0
    assert (out / "eval_train" / "table.csv").exists() and (out / "eval" / "table.csv").exists()
    broken = tmp_path / "broken.keras"
    broken.write_bytes((out / "best.keras").read_bytes()[:5000])
    capsys.readouterr()
    for argv in (["evaluate", "--model", str(broken), "--dataset", "synthetic"], _train(broken, tmp_path / "r2")):
        assert main(argv) == 2
        assert f"'{broken}' is not a readable .keras archive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # refused by the parser, as the other counts ('invalid int value' for 'x')
        main(_train(tiny, tmp_path / "r3", epochs=0))
    assert e.value.code == 2 and capsys.readouterr().err == ("python -m training train: error: argument --epochs: "
                                                             "expected an integer >= 1, got '0' (see python -m "
                                                             "training train --help)\n")


def test_evaluate_run_scores_the_runs_own_data(tmp_path, tiny, capsys):
    """evaluate --run takes --seed, --num-samples and --sigma from the run's cli.json: the synthetic split is
    the one the run trained / validated on (records 'synth{seed}_{i}', val seed + 10000), not seed 0's 512."""
    import csv

    out = tmp_path / "run"
    assert main(_train(tiny, out, seed=3) + ["--sigma", "1.5"]) == 0
    for split, seed, n in (("train", 3, 16), ("val", 10003, 8)):
        assert main(["evaluate", "--run", str(out), "--split", split]) == 0
        folder = out / ("eval" if split == "val" else "eval_train")
        with open(folder / "predictions.csv", newline="") as f:
            ids = sorted({row["id"] for row in csv.DictReader(f)})
        assert ids == [f"synth{seed}_{i:06d}" for i in range(n)]
        text = capsys.readouterr().out  # the table shows the curve's AUC and the end-point error; the files named
        assert "\nauc " in text and "(mean PCK over 21 thresholds 0..0.2)" in text and "\nepe_px " in text
        assert f"{folder / 'pck_curve.csv'} and {folder / 'pck_curve.png'}\n" in text
        assert (folder / "pck_curve.png").stat().st_size > 1000
    from training.__main__ import parse_args

    args = parse_args(["evaluate", "--run", str(out), "--seed", "0"])  # given on the command line: kept
    assert args.seed == 0 and args.sigma is None
    (out / "cli.json").write_text('{"dataset": "synth')  # cut short
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out)]) == 2
    err = capsys.readouterr().err  # was "error: Unterminated string starting at: line 1 column 13 (char 12)"
    assert err.startswith(f"python -m training evaluate: error: cannot read '{out / 'cli.json'}' (Unterminated "
                          f"string") and err.count("\n") == 1


@pytest.mark.parametrize("argv, expected", [
    ([], "the following arguments are required: --dataset"),  # was SystemExit('...'): status 1, no 'error:'
    (["--dataset", "synthetic", "--num-keypoints", "0"], "argument --num-keypoints: expected an integer >= 1, got '0'"),
    (["--dataset", "synthetic", "--workers", "-2"], "argument --workers: expected an integer >= 0, got '-2'"),
    (["--dataset", "synthetic", "--backup-every", "0"], "argument --backup-every: expected an integer >= 1, got '0'"),
    (["--dataset", "synthetic-seg", "--num-classes", "1"], "argument --num-classes: expected an integer >= 2, got '1'"),
    (["--dataset", "synthetic", "--input-size", "0"], "argument --input-size: expected SIZE or W,H with positive ints"),
    (["--dataset", "synthetic", "--input-size", "3x"], "argument --input-size: expected SIZE or W,H with positive ints"),
    (["--dataset", "synthetic", "--input-size", "64,,48"], "argument --input-size: expected SIZE or W,H with positive "
                                                           "ints, got '64,,48'"),
    (["--dataset", "synthetic", "--image-size", "abc"], "argument --image-size: expected SIZE or W,H with positive "
                                                        "ints, got 'abc'"),  # was 'invalid _size value'
    # these three trained (lr inf, a negative decay and warm-up taken as they came)
    (["--dataset", "synthetic", "--lr", "inf"], "argument --lr: expected a finite number > 0, got 'inf'"),
    (["--dataset", "synthetic", "--weight-decay", "-1"], "argument --weight-decay: expected a finite number >= 0, "
                                                         "got '-1'"),
    (["--dataset", "synthetic", "--warmup-epochs", "-1"], "argument --warmup-epochs: expected a finite number >= 0, "
                                                          "got '-1'"),
    (["--dataset", "synthetic", "--sigma", "nan"], "argument --sigma: expected a finite number > 0, got 'nan'"),
    # numpy's "expected non-negative integer" (no argument named), argparse's "invalid int value: 'x'"
    (["--dataset", "synthetic", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["--dataset", "synthetic", "--steps-per-execution", "x"], "argument --steps-per-execution: expected an integer "
                                                               ">= 1, got 'x'"),
    (["--dataset", "synthetic", "--bogus", "1"], "unrecognized arguments: --bogus 1"),  # was 'python -m training:'
])
def test_bad_arguments_are_one_line_with_status_2(tmp_path, tiny, capsys, argv, expected):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:  # a small run: the old code trained with --workers -2 and --backup-every 0
        main(["train", "--model", str(tiny), "--out", str(out), "--num-samples", "4", "--val-samples", "0",
              "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--verbose", "0", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("python -m training train: error: ")
    assert expected in err and err.endswith("(see python -m training train --help)\n") and err.count("\n") == 1
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    """--debug, or KERAZOO_DEBUG=1 as `kerazoo --help` says for every command: the error is raised, not one line
    (KERAZOO_DEBUG did nothing for kerazoo train / evaluate)."""
    for argv in (["--debug"], []):
        if not argv:
            monkeypatch.setenv("KERAZOO_DEBUG", "1")
        with pytest.raises(ValueError, match="is not a training run folder"):
            main(["evaluate", "--run", str(tmp_path / "none"), *argv])


def test_out_that_is_a_file_is_named(tmp_path, tiny, capsys):
    for out in (tiny, tiny / "run"):  # the file itself, or a file where a parent folder should be
        assert main(_train(tiny, out)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"python -m training train: error: --out '{out}': '{tiny}' is a file, expected a "
                              f"folder") and err.count("\n") == 1
        assert main(["evaluate", "--model", str(tiny), "--dataset", "synthetic", "--num-keypoints", "4", "--out",
                     str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"python -m training evaluate: error: --out '{out}': '{tiny}' is a file, expected a "
                              f"folder") and err.count("\n") == 1


def test_evaluate_refuses_a_model_that_does_not_fit_the_data(tmp_path, tiny, capsys):
    from tests.training.helpers import tiny_seg_model

    seg = tmp_path / "seg.keras"
    tiny_seg_model(32, classes=3).save(seg)
    common = ["--val-samples", "4", "--image-size", "32", "--batch-size", "4"]
    # 3 class scores on synthetic-seg's 4 classes were scored with status 0; 4 heatmaps against 16 keypoints
    # failed with "`pred` shape (4, 4, 2) must equal `gt` shape (4, 16, 2)"
    for model, dataset, expected in [
            (seg, "synthetic-seg", f"model '{seg}' outputs 3 class scores, but dataset 'synthetic-seg' has 4 classes"),
            (tiny, "synthetic", f"model '{tiny}' outputs 4 channels, but dataset 'synthetic' has 16 keypoints "
                                "(expected 16 heatmaps, or 17 with a background map)")]:
        assert main(["evaluate", "--model", str(model), "--dataset", dataset, *common]) == 2
        err = capsys.readouterr().err  # the command named once ('python -m training evaluate: error: evaluate: ...')
        assert err.startswith(f"python -m training evaluate: error: {expected}") and err.count("\n") == 1, err
    assert main(["evaluate", "--model", str(seg), "--dataset", "synthetic-seg", *common, "--heatmap-offset", "2"]) == 2
    assert capsys.readouterr().err == ("python -m training evaluate: error: --heatmap-offset is for pose models "
                                       "(heatmaps); dataset 'synthetic-seg' is segmentation\n")
    assert main(["evaluate", "--model", str(seg), "--dataset", "synthetic-seg", "--num-classes", "3", *common]) == 0


def test_evaluate_input_size_is_an_any_size_models_and_refused_against_a_fixed_one(tmp_path, tiny, capsys):
    # --input-size was ignored (the model's input shape was taken as the crop size): an any-size model failed with
    # "input_size must be a (w, h) pair of positive ints. Received: input_size=(None, None)"
    import csv

    from tests.training.helpers import tiny_seg_model

    free = tmp_path / "free.keras"
    tiny_seg_model(None, classes=4).save(free)
    common = ["--dataset", "synthetic-seg", "--val-samples", "2", "--image-size", "40", "--batch-size", "2",
              "--resolution", "input"]
    assert main(["evaluate", "--model", str(free), *common, "--input-size", "24,16", "--out", str(tmp_path / "e")]) == 0
    with open(tmp_path / "e" / "predictions.csv") as f:
        # the square 40 px images letterboxed into 24x16: 16x16 label pixels each, the rest padding (ignored)
        assert {r["valid_pixels"] for r in csv.DictReader(f)} == {str(16 * 16)}
    assert main(["evaluate", "--model", str(free), *common]) == 0  # synthetic's default: the image size
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny), "--dataset", "synthetic", "--num-keypoints", "4",
                 "--input-size", "48"]) == 2
    assert capsys.readouterr().err == (f"python -m training evaluate: error: --input-size 48,48 (w,h): model '{tiny}' "
                                       f"takes 32x32 (w x h) images; give its size or leave --input-size out\n")


def test_evaluate_run_with_another_fixed_size_model_takes_the_models_size(tmp_path, tiny, capsys):
    # the run's cli.json --input-size 32 fills what the command leaves out, so --run RUN --model (a 48 px model) was
    # refused as if it had been typed: "--input-size 32,32 (w,h): model ... takes 48x48 (w x h) images; ... leave
    # --input-size out" (it was left out; before --input-size was read here the model's size was taken)
    from tests.training.helpers import tiny_pose_model

    other = tmp_path / "tiny48.keras"
    tiny_pose_model(48, 4, outputs=2).save(other)
    run = tmp_path / "run"
    assert main(_train(tiny, run) + ["--input-size", "32"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--model", str(other), "--out", str(tmp_path / "e")]) == 0, \
        capsys.readouterr().err
    assert main(["evaluate", "--run", str(run), "--model", str(other), "--input-size", "32"]) == 2  # typed: refused
    assert "--input-size 32,32 (w,h): model" in capsys.readouterr().err


def test_evaluate_decodes_in_the_runs_heatmap_convention(tmp_path, capsys):
    """A run fitted on HeatmapDataset(heatmap_offset=1.5) puts heatmap pixel g at input px 4g + 1.5, and on
    BGR / 256 - 0.5 input: evaluate --model RUN/best.keras decoded it at 4g (0) on pixels / 255 (only --run gave
    the input convention). Now both come from the run's config.json, and --heatmap-offset PX overrides the offset:
    a prediction moves by PX input px, which the crop maps to PX * side / 32 original px (side: the record's crop)."""
    import csv

    import keras

    from training import datasets, fit
    from training.data import HeatmapDataset, Normalization
    from training.datasets.synthetic import synthetic_pose

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu", name="c1")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(4, 1, activation="sigmoid", name="stack1_heatmaps")(x))  # > 0: no NaN
    ds = HeatmapDataset(synthetic_pose(8, image_size=(32, 32), num_keypoints=4), batch_size=4, input_size=(32, 32),
                        heatmap_size=(8, 8), sigma=1.0, flip_pairs=(), heatmap_offset=1.5,
                        normalization=Normalization(scale=1 / 256, mean=(0.5, 0.5, 0.5), channel_order="BGR"))
    fit(model, ds, epochs=1, out_dir=tmp_path / "run", verbose=0)
    data = ["--dataset", "synthetic", "--num-keypoints", "4", "--image-size", "32", "--val-samples", "4",
            "--batch-size", "4"]

    def predictions(name, *argv):
        assert main(["evaluate", *argv, *data, "--out", str(tmp_path / name)]) == 0
        with open(tmp_path / name / "predictions.csv", newline="") as f:
            return [(row["id"], float(row["pred_x"]), float(row["pred_y"])) for row in csv.DictReader(f)]

    best = ["--model", str(tmp_path / "run" / "best.keras")]
    default, by_run = predictions("default", *best), predictions("run", "--run", str(tmp_path / "run"))
    assert default == by_run  # the same model, input convention and offset, by --model or by --run
    zero, minus = predictions("zero", *best, "--heatmap-offset", "0"), predictions("minus", *best, "--heatmap-offset",
                                                                                   "-2.5")
    side = {r.id: r.scale for r in datasets.load("synthetic", "val", num_samples=4, num_keypoints=4,
                                                 image_size=(32, 32), seed=0)[0]}
    assert len(default) == 16 and not np.isnan([p[1:] for p in default]).any()
    for (i, x, y), (_, x0, y0), (_, xm, ym) in zip(default, zero, minus):
        np.testing.assert_allclose([x - x0, y - y0, xm - x0, ym - y0], np.array([1.5, 1.5, -2.5, -2.5]) * side[i] / 32,
                                   atol=2e-3)  # the CSV's 3 decimals
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["evaluate", *best, *data, "--heatmap-offset", "nan"])
    assert e.value.code == 2
    assert "argument --heatmap-offset: expected a finite number, got 'nan'" in capsys.readouterr().err


def test_evaluate_feeds_a_runs_center_map_sigma(tmp_path):
    """A CPM fitted in Python with HeatmapDataset(center_map_sigma=3): evaluate --model RUN/best.keras fed the
    training command's sigma 21. The model's heatmaps are g(x - 2) - g(x + 2) of its centre map g, whose maximum
    lies further right of the centre the wider g is (at the crop's right edge for 21)."""
    import csv

    import keras

    from training import datasets

    image, cmap = keras.Input((32, 32, 3), name="image"), keras.Input((32, 32, 1), name="center_map")
    kernel = np.zeros((1, 5, 1, 4), np.float32)
    kernel[0, 0], kernel[0, 4] = 1.0, -1.0  # Keras correlates: out[x] = g[x - 2] - g[x + 2]
    diff = keras.layers.Conv2D(4, (1, 5), padding="same", use_bias=False,
                               kernel_initializer=keras.initializers.Constant(kernel))(cmap)
    zero = keras.layers.Conv2D(4, 1, kernel_initializer="zeros")(image)
    run = tmp_path / "run"
    run.mkdir()
    keras.Model([image, cmap], keras.layers.Add()([diff, zero])).save(run / "best.keras")
    (run / "config.json").write_text(json.dumps({"family": "cpm", "task": "pose",
                                                 "train_data": {"center_map_sigma": 3.0}}))
    assert main(["evaluate", "--model", str(run / "best.keras"), "--dataset", "synthetic", "--num-keypoints", "4",
                 "--image-size", "32", "--val-samples", "4", "--batch-size", "4", "--out", str(tmp_path / "e")]) == 0
    g = np.exp(-(np.arange(-2, 34) - 15.5) ** 2 / (2 * 3.0 ** 2))  # sigma 3 along x, 2 px of zero padding each side
    g[:2] = g[-2:] = 0.0
    x_in = int(np.argmax(g[:-4] - g[4:]))  # input px of the heatmaps' maximum (decoding moves it 0.25 at most)
    recs = {r.id: r for r in datasets.load("synthetic", "val", num_samples=4, num_keypoints=4, image_size=(32, 32),
                                           seed=0)[0]}
    with open(tmp_path / "e" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16
    for row in rows:  # the crop maps input px x to centre_x + (x - 15.5) * side / 32 original px
        rec = recs[row["id"]]
        dx = (float(row["pred_x"]) - rec.center[0]) * 32 / rec.scale + 15.5 - x_in
        assert abs(dx) <= 0.25 + 1e-2, (row, x_in)


@pytest.mark.tf_pass_only
def test_evaluate_an_any_size_model_at_a_size_it_does_not_take_is_named(tmp_path, capsys):
    # an any-size hourglass at 50 px failed inside a batch with Keras' raw shape error, naming no option; its targets
    # were built at the input's size (16x the memory at stride 4). Keras' shape inference gives both up front.
    import zoo
    from training.__main__ import _output_size, parse_args

    path = tmp_path / "hg.keras"
    hg = zoo.get("hourglass", stacks=1, features=8, num_keypoints=4, input_shape=(None, None, 3))
    hg.save(path)
    argv = ["evaluate", "--model", str(path), "--dataset", "synthetic", "--num-keypoints", "4", "--val-samples", "2",
            "--image-size", "64"]
    assert main(argv + ["--input-size", "50"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m training evaluate: error: model '{path}' does not take 50x50 (w x h) inputs (")
    assert err.endswith("a size it takes is a multiple of its total stride (64 for an hourglass); give an --input-size "
                        "it takes\n"), err
    args = parse_args(argv + ["--input-size", "128,64"])
    assert _output_size(hg, -1, 128, 64, args) == (32, 16)  # the heatmaps at stride 4, not the input's size
    assert main(argv + ["--input-size", "64"]) == 0


def test_evaluate_a_classifier_is_one_line(tmp_path, capsys):
    # a classifier .keras with as many classes as the keypoints: an IndexError (tuple index out of range), status 1
    import keras

    inputs = keras.Input((32, 32, 3))
    path = tmp_path / "clf.keras"
    keras.Model(inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(inputs))).save(path)
    assert main(["evaluate", "--model", str(path), "--dataset", "synthetic", "--num-keypoints", "4",
                 "--val-samples", "2", "--image-size", "32"]) == 2
    assert capsys.readouterr().err == (
        f"python -m training evaluate: error: model '{path}': the model's last output has shape (None, 4), not the "
        f"(B, h, w, C) maps of a pose or segmentation model (a classifier?)\n")


@pytest.mark.jax_pass_only
def test_fine_tuning_a_runs_checkpoint_keeps_its_sigma(tmp_path, tiny):
    """``train --model RUN/best.keras`` without ``--sigma`` trained on the command's 2.0 whatever the run had learnt
    (here 1.25): the run's .keras records its targets' sigma, which the next run keeps; ``--sigma`` still wins."""
    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    assert main([*_train(tiny, first), "--sigma", "1.25"]) == 0
    assert main(_train(first / "best.keras", second)) == 0
    assert json.loads((second / "config.json").read_text())["train_data"]["sigma"] == 1.25
    assert json.loads((second / "cli.json").read_text())["sigma"] is None  # not given: the weights' own
    assert main([*_train(second / "best.keras", third), "--sigma", "2"]) == 0
    assert json.loads((third / "config.json").read_text())["train_data"]["sigma"] == 2.0
    assert main(_train(tiny, tmp_path / "fresh")) == 0  # no record: training's default
    assert json.loads((tmp_path / "fresh" / "config.json").read_text())["train_data"]["sigma"] == 2.0


def _mpii_json(folder, n=4):
    import cv2

    (folder / "images").mkdir(parents=True)
    recs = []
    for i in range(n):
        cv2.imwrite(str(folder / "images" / f"{i:09d}.jpg"), np.full((80, 80, 3), 40 * i, np.uint8))
        recs.append({"image": f"{i:09d}.jpg", "center": [40, 30], "scale": 0.25,
                     "joints": [[20 + 2 * j, 20 + 2 * j] for j in range(16)], "joints_vis": [1] * 16})
    (folder / "train.json").write_text(json.dumps(recs))
    return folder / "train.json", folder / "images"


@pytest.mark.tf_pass_only
def test_an_mpii_json_is_one_split_train_does_not_validate_on_it(tmp_path, capsys):
    """An MPII .json (train.json) without --val-annotations: validation was the training file itself (val_pck on
    the people fit on, best.keras chosen by it) and evaluate --run scored it again. The folder's ':' is legal: the
    path was split at os.pathsep ("takes one 'annotations' path; received 2")."""
    model = tmp_path / "k16.keras"
    tiny_pose_model(32, 16, outputs=1).save(model)
    ann, images = _mpii_json(tmp_path / "run:2026-12-07")
    out = tmp_path / "run"
    argv = ["train", "--model", str(model), "--dataset", "mpii", "--annotations", str(ann), "--images", str(images),
            "--input-size", "32", "--batch-size", "4", "--epochs", "1", "--out", str(out), "--verbose", "0"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"train: no validation: '{ann}' is one split of MPII (a .json) and --val-annotations is not given" in text
    assert json.loads((out / "summary.json").read_text())["monitor"] == "pck"
    assert json.loads((out / "cli.json").read_text())["annotations"] == [str(ann)]
    assert main(["evaluate", "--run", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--run '{out}' trained on '{ann}' without --val-annotations, and an MPII .json is one split" in err
    assert err.count("\n") == 1
    assert main(["evaluate", "--run", str(out), "--annotations", str(ann), "--out", str(tmp_path / "e")]) == 0
    assert main(["evaluate", "--run", str(out), "--split", "train", "--out", str(tmp_path / "e2")]) == 0
    # with a validation file the run validates on it
    assert main(argv[:-4] + ["--val-annotations", str(ann), "--out", str(tmp_path / "run2"), "--verbose", "0"]) == 0
    assert json.loads((tmp_path / "run2" / "summary.json").read_text())["monitor"] == "val_pck"


def test_a_runs_paths_from_cli_json(tmp_path):
    from training.__main__ import _saved_paths, parse_args

    args = parse_args(["train", "--model", "m", "--out", "o", "--dataset", "lsp",
                       "--annotations", "a.mat", "--images", "a", "--annotations", "b:c.mat", "--images", "b:c"])
    assert (args.annotations, args.images) == (["a.mat", "b:c.mat"], ["a", "b:c"])
    assert _saved_paths(["a.mat", "b:c.mat"]) == ("a.mat", "b:c.mat")
    import os

    joined = os.pathsep.join([str(tmp_path / "a.mat"), str(tmp_path / "b.mat")])  # cli.json before lists
    assert _saved_paths(joined) == (str(tmp_path / "a.mat"), str(tmp_path / "b.mat"))
    (tmp_path / "x:y.json").write_text("[]")
    assert _saved_paths(str(tmp_path / "x:y.json")) == (str(tmp_path / "x:y.json"),)


def test_evaluate_run_of_a_python_training_names_what_is_missing(tmp_path, capsys):
    """A run folder that training.fit wrote from Python (no cli.json) was told "give --run, or --model and --dataset"
    although --run was given."""
    import keras

    run = tmp_path / "run"
    run.mkdir()
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)]).save(run / "best.keras")
    assert main(["evaluate", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: --run '{run}' names no dataset (no cli.json: trained from Python, on records of "
                        f"your own?); score it with training.evaluate(model, dataset), or give --dataset and its "
                        f"options\n"), err


def test_the_same_train_command_gives_the_same_run(tmp_path, monkeypatch):
    """--seed seeded the data only: a new model's initial weights differed, so the same command gave another loss
    each time (tiny_pspnet: 1.94 vs 2.05 after one epoch). The command runs as typed up to the model fit() builds;
    the test keeps that model's weights and ends the command there (two trainings took 70 s of the suite)."""
    import training.matching

    class Built(BaseException):  # not an Exception: no handler of the command catches it
        pass

    real_build, weights = training.matching.build_model, []

    def build_then_stop(*args, **kwargs):
        model, _ = real_build(*args, **kwargs)
        weights.append([keras.ops.convert_to_numpy(w) for w in model.weights])
        raise Built

    monkeypatch.setattr(training.matching, "build_model", build_then_stop)
    for name in ("a", "b"):
        argv = ["train", "--model", "hourglass", "--model-arg", "stacks=1", "--model-arg", "features=8", "--dataset",
                "synthetic", "--num-samples", "8", "--val-samples", "4", "--image-size", "64", "--batch-size", "4",
                "--epochs", "1", "--seed", "3", "--verbose", "0", "--out", str(tmp_path / name)]
        with pytest.raises(Built):
            main(argv)
    a, b = weights
    assert len(a) == len(b) > 50
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # unseeded: every kernel differs
