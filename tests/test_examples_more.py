"""examples/finetune_pose.py, segment.py and convert_caffe.py end to end in their reduced modes.

Each script runs in a subprocess as a user would start it (``python -m examples.<name>``), under
JAX (it starts faster than TensorFlow); the tests check the exit status, the printed numbers against
the files written, and that a bad argument gives one ``error:`` line and no traceback.
"""

import csv
import json
import os
import re
import subprocess
import sys

import cv2
import h5py
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
SCRIPTS = ("finetune_pose", "segment", "convert_caffe")


@pytest.fixture(scope="module", autouse=True)
def jax_compilation_cache(tmp_path_factory):
    """One JAX persistent compilation cache for this module's child processes: a script run of the same model as
    one before it (finetune_pose --fast twice) loads its compiled steps and initialisers instead of compiling them
    again (~60% of such a run's CPU time). The first run of each model compiles as a user's would. Under ./dev test,
    which gives all its processes one cache (JAX_COMPILATION_CACHE_DIR), that one is used."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # ENV has it: a copy of os.environ
        yield
        return
    ENV.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    yield
    for key in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"):
        ENV.pop(key, None)


def _run(script, *args, timeout=240):
    return subprocess.run([sys.executable, "-m", f"examples.{script}", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=ENV, timeout=timeout)


def _ok(r):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return r.stdout


def _number(pattern, text):
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in output:\n{text[-3000:]}"
    return float(m.group(1))


def _table_mean(path):
    with open(path, newline="") as f:
        return {row["name"]: float(row["value"]) for row in csv.DictReader(f)}["mean"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    r = _run(script, "--help", timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("usage:") and "--fast" in out and "--debug" in out
    assert f"python -m examples.{script}" in out  # the docstring's usage examples come with --help


def test_finetune_pose_fast(tmp_path):
    # Starting weights whose record puts heatmap pixel g at 4 g + 1.5 input px (as the releases' 3.5 / 2.0): fit
    # trains in that convention and evaluate decodes in it; the saved file must say so, or zoo.get(weights=)
    # decodes it at 4 g. (A run of its own took 19 s of the suite.)
    import zoo

    model = zoo.get("hourglass", input_shape=(64, 64, 3), num_keypoints=16, stacks=1, features=16)
    start = zoo.save_weights(model, tmp_path / "start.h5", zoo.WeightsRecord(scale=1 / 255.0, heatmap_offset=1.5))
    out = _ok(_run("finetune_pose", "--fast", "--weights", start, "--out", tmp_path))
    assert "heatmap_offset 1.5" in out  # fit's log: the targets moved to the weights' convention
    before = _number(r"before: PCK \(box\)@0\.2 (\d\.\d+)", out)
    after = _number(r"after 1 epochs: PCK \(box\)@0\.2 (\d\.\d+)", out)
    assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0
    assert "flip test on" in out
    assert re.search(r"^joint15 +\d+\.\d\d +\(n=\d+\)$", out, re.M)  # the per-joint table
    headline = _number(r"PCK \(box\)@0\.2 = (\d\.\d+) on 16 validation records", out)
    assert abs(headline - _table_mean(tmp_path / "eval" / "table.csv")) < 6e-4
    with open(tmp_path / "eval" / "predictions.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 16 * 16  # one row per sample and joint
    assert (tmp_path / "run" / "log.csv").exists() and (tmp_path / "run" / "final.keras").exists()
    with h5py.File(tmp_path / "hourglass_synthetic.h5", "r") as f:  # what zoo.get(..., weights=) reads
        record = json.loads(f.attrs["record"])
        assert f.attrs["model_name"] == "hourglass"
    assert record["num_keypoints"] == 16 and record["builder_kwargs"]["stacks"] == 1
    assert record["heatmap_offset"] == 1.5  # was 0.0: reloaded, decoded 1.5 px off
    assert record["output_stride"] == 4 and record["scale"] == pytest.approx(1 / 255)
    # no mirrored joints, which the flip test takes (as best.keras' record says): None, "unknown", made
    # `kerazoo predict ... --weights hourglass_synthetic.h5 --flip` refuse the model it scored with --flip
    assert record["flip_pairs"] == []


def test_segment_fast(tmp_path):
    out = _ok(_run("segment", "--fast", "--out", tmp_path))
    for name in ("background", "class1", "class2", "class3", "pixel_accuracy"):
        assert re.search(rf"^{name} +\d+\.\d\d$", out, re.M), name  # the per-class IoU table
    miou = _number(r"mean IoU = (\d\.\d+), pixel accuracy = \d\.\d+ on 16 validation images", out)
    assert abs(miou - _table_mean(tmp_path / "eval" / "table.csv")) < 6e-4
    pngs = sorted((tmp_path / "overlays").glob("*.png"))
    assert len(pngs) == 4 and all(f"wrote {p}" in out for p in pngs)
    for p in pngs:
        img = cv2.imread(str(p))
        assert img.shape == (64, 3 * 64, 3) and img.std() > 5  # image | truth | prediction
    assert (tmp_path / "run" / "best.keras").exists()
    assert re.search(r"best checkpoint: .*best\.keras \(val mean IoU \d\.\d{3}, epoch 1/1\)", out)  # said epoch 0


def test_convert_caffe_fast(tmp_path):
    out = _ok(_run("convert_caffe", "--fast", "--out", tmp_path, "--bgr", "--mean", 104, 117, 123, "--top", 4))
    assert _number(r"Verify: prob: max relative difference (\S+) \(OpenCV", out) <= 1e-4
    assert (tmp_path / "quickstart_net.keras").stat().st_size > 0
    assert (tmp_path / "caffe" / "deploy.prototxt").exists() and (tmp_path / "caffe" / "demo.png").exists()
    assert "input 41x37, BGR, (pixels * 1 - (104.0, 117.0, 123.0))" in out
    ranks = re.findall(r"^  (\d)\. +(\d) +(\d\.\d{4})$", out, re.M)
    assert [int(r[0]) for r in ranks] == [1, 2, 3, 4] and sorted(int(r[1]) for r in ranks) == [0, 1, 2, 3]
    scores = [float(r[2]) for r in ranks]
    assert scores == sorted(scores, reverse=True)
    assert abs(sum(scores) - 1.0) < 1e-3  # softmax channels averaged over positions still sum to 1


def _one_line_error(r, *words):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_arguments(tmp_path):
    _one_line_error(_run("finetune_pose", "--dataset", "mpii", "--images", tmp_path, timeout=60),
                    "--dataset mpii needs --annotations")
    _one_line_error(_run("segment", "--model", "tiny_fcn", "--input-size", 48, timeout=60),
                    "--input-size 48", "multiple of 32")
    _one_line_error(_run("convert_caffe", tmp_path / "no.prototxt", tmp_path / "no.caffemodel", timeout=60),
                    "PROTOTXT", "does not exist")


def test_convert_caffe_bad_prototxt(tmp_path):
    """Bad input found after start-up (the parser of the Caffe files) is one line too, exit status 2."""
    (tmp_path / "deploy.prototxt").write_text('name: "x"\nlayer { name: "a" type: "ReLU" bottom: \n')
    (tmp_path / "w.caffemodel").write_bytes(b"")
    r = _run("convert_caffe", tmp_path / "deploy.prototxt", tmp_path / "w.caffemodel", "--out", tmp_path / "o",
             timeout=120)
    _one_line_error(r, "deploy.prototxt")
    assert r.returncode == 2 and not list((tmp_path / "o").glob("*.keras"))


def test_segment_epochs_0_evaluates_the_given_weights_only(tmp_path, capsys):
    # the docstring's "evaluate a trained model only" (--epochs 0): fit refused epochs=0 ("epochs must be an
    # integer >= 1"), exit status 2. The weights are a tiny FCN whose every output is class 0's: all-background
    from training.models import tiny_fcn

    model = tiny_fcn(input_shape=(64, 64, 3), classes=4, width=8)
    bias = model.get_layer("score_fr").weights[1]  # the stride-32 scores, upsampled into the output
    for layer in model.layers:
        for w in layer.weights:
            w.assign(w.numpy() * 0.0)
    bias.assign([10.0, 0.0, 0.0, 0.0])
    model.save(tmp_path / "all_background.keras")
    from examples import segment

    argv = ["--model", "tiny_fcn", "--weights", str(tmp_path / "all_background.keras"), "--epochs",
            "0", "--val-samples", "4", "--num-samples", "4", "--overlays", "1", "--out", str(tmp_path / "o")]
    assert segment.main(argv) == 0  # in this process: no second Keras start-up (the suite's time budget)
    out = capsys.readouterr().out
    # every pixel predicted background: IoU(background) = its share of pixels = pixel accuracy, the classes
    # present 0, an absent one nan (left out of the mean)
    acc = _number(r"pixel accuracy = (\d\.\d+) on 4 validation images", out)
    assert _number(r"(?m)^background +(\d+\.\d\d)$", out) == pytest.approx(100 * acc, abs=0.01)
    others = re.findall(r"(?m)^class\d +(\S+)$", out)
    assert len(others) == 3 and set(others) <= {"0.00", "nan"}
    present = 1 + others.count("0.00")
    assert _number(r"mean IoU = (\d\.\d+)", out) == pytest.approx(acc / present, abs=6e-4)
    assert not (tmp_path / "o" / "run" / "log.csv").exists()  # nothing trained
    assert len(list((tmp_path / "o" / "overlays").glob("*.png"))) == 1


def test_finetune_pose_from_a_runs_best_keras(tmp_path, capsys):
    # --weights RUN/best.keras of another architecture than the defaults: the example rebuilt --model's default
    # (here 1 stack of 16 features) and loaded the file by structure, which failed; it also lost the run's
    # heatmap_offset (config.json). The saved .h5 must rebuild this 8-feature model through zoo.get
    import keras
    import numpy as np

    import zoo
    from examples import finetune_pose

    run = tmp_path / "run"
    run.mkdir()
    zoo.get("hourglass", input_shape=(64, 64, 3), num_keypoints=16, stacks=1, features=8).save(run / "best.keras")
    (run / "config.json").write_text(json.dumps({"family": "hourglass", "train_data": {
        "heatmap_offset": 1.5, "normalization": {"scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1],
                                                 "channel_order": "RGB"}}}))
    argv = ["--fast", "--num-samples", "8", "--val-samples", "4", "--no-flip", "--workers", "0",
            "--weights", str(run / "best.keras"), "--out", str(tmp_path / "o")]
    assert finetune_pose.main(argv) == 0, capsys.readouterr().err
    with h5py.File(tmp_path / "o" / "hourglass_synthetic.h5", "r") as f:
        record = json.loads(f.attrs["record"])
    assert record["heatmap_offset"] == 1.5  # the run's convention, kept through fit and the save
    assert (record["builder_kwargs"]["stacks"], record["builder_kwargs"]["features"]) == (1, 8)
    again = zoo.get("hourglass", weights=tmp_path / "o" / "hourglass_synthetic.h5")
    final = keras.models.load_model(tmp_path / "o" / "run" / "final.keras", safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    for p, q in zip(again.predict(x, verbose=0), final.predict(x, verbose=0)):
        np.testing.assert_array_equal(p, q)  # the fine-tuned weights, reloaded by name


def test_segment_weights_for_an_fcn_pass_no_pspnet_argument(tmp_path, capsys):
    # --model fcn32s --weights W stopped at "fcn32s() got unexpected argument(s) 'aux'" (the example gave every zoo
    # model PSPNet's aux=False) whatever W held: a file that is no weights file shows the weights are now read
    import h5py

    from examples import segment

    h5py.File(tmp_path / "other.h5", "w").close()
    argv = ["--model", "fcn32s", "--weights", str(tmp_path / "other.h5"), "--epochs", "0", "--val-samples", "2",
            "--num-samples", "2", "--overlays", "0", "--out", str(tmp_path / "o")]
    assert segment.main(argv) == 2
    err = capsys.readouterr().err
    assert "other.h5' is an HDF5 file but not a kerazoo weights file" in err and "aux" not in err, err


def test_segment_takes_pspnets_aux_head_from_a_zoo_file(tmp_path):
    # every PSPNet --weights was built with aux=False, so a zoo .h5 saved with the aux head (a training run's) was
    # refused ("3 layers in the file the model does not have: aux_3x3, ..."): the file's record now says
    import keras

    import zoo
    from examples.segment import weights_have_aux

    inputs = keras.Input((8, 8, 3))
    small = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="conv6")(inputs))
    for aux in (True, False):
        zoo.save_weights(small, tmp_path / f"{aux}.h5", zoo.WeightsRecord(builder_kwargs={"aux": aux, "classes": 2}))
        assert weights_have_aux(tmp_path / f"{aux}.h5") is aux
    zoo.save_weights(small, tmp_path / "none.h5")  # no builder arguments recorded: the releases' layout
    (tmp_path / "other.h5").write_bytes(b"not HDF5")
    for weights in ("ade20k", tmp_path / "none.h5", tmp_path / "other.h5", tmp_path / "x.caffemodel"):
        assert weights_have_aux(weights) is False


def test_segment_weights_keras_is_the_whole_model(tmp_path, capsys):
    # --weights X.keras of a tiny model of another width than the default (--fast trains width 8): the example
    # built a width-16 model and loaded the file into it by structure ("28 objects could not be loaded")
    from examples import segment
    from training.models import tiny_pspnet

    model = tiny_pspnet(input_shape=(64, 64, 3), classes=4, width=8)
    model.save(tmp_path / "best.keras")
    argv = ["--weights", str(tmp_path / "best.keras"), "--epochs", "0", "--val-samples", "2", "--num-samples", "2",
            "--overlays", "0", "--out", str(tmp_path / "o")]
    assert segment.main(argv) == 0, capsys.readouterr().err
    assert f"tiny_pspnet: {model.count_params():,} parameters" in capsys.readouterr().out  # the file's model


def test_convert_caffe_zoo_cpm_is_compared_and_verified(tmp_path, capsys):
    # the CPM deploy takes image + centre map as one 4-channel blob (a Slice splits it), the zoo cpm two inputs:
    # the docstring's --zoo cpm example printed "comparison skipped: the zoo model has 2 inputs, the Caffe net 1"
    # and never checked the ported model against the conversion or OpenCV
    import numpy as np

    from examples import convert_caffe
    from tests.caffe_files import random_blobs_for, write_net
    from tests.zoo.test_cpm import _cpm_prototxt

    text = _cpm_prototxt(32, 32, 2, 15)
    proto, weights = write_net(tmp_path, text, random_blobs_for(text, np.random.default_rng(0)), name="pose")
    argv = [proto, weights, "--zoo", "cpm", "--zoo-arg", "stages=2", "--out", str(tmp_path / "o")]
    assert convert_caffe.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    # without --input-shape the zoo model takes the size the prototxt declares, as the conversion does (it was
    # built at cpm's own default, 368x368, and compared with nothing)
    assert "stages=2, input_shape=(32, 32, 3)): " in out
    assert "comparison skipped" not in out
    assert _number(r"zoo model vs generic conversion: max \|difference\| = (\S+)", out) <= 1e-5
    verified = re.findall(r"Verify: Mconv5_stage2: max relative difference (\S+) \(OpenCV", out)
    assert len(verified) == 2 and max(map(float, verified)) <= 1e-4  # the generic conversion, then the zoo model


def test_segment_rerun_leaves_only_this_runs_overlays(tmp_path, capsys):
    # a second run into the same --out with fewer --overlays (or other data) left the first run's pictures
    # beside the new ones, as if this model had drawn them
    from examples import segment
    from training.models import tiny_fcn

    tiny_fcn(input_shape=(64, 64, 3), classes=4, width=8).save(tmp_path / "m.keras")
    common = ["--weights", str(tmp_path / "m.keras"), "--epochs", "0", "--num-samples", "2", "--out", str(tmp_path)]
    assert segment.main([*common, "--val-samples", "3", "--overlays", "3"]) == 0
    assert segment.main([*common, "--val-samples", "1", "--overlays", "1", "--seed", "5"]) == 0
    wrote = re.findall(r"^wrote (\S+\.png)$", capsys.readouterr().out.split("segment: ")[-1], re.M)
    assert len(wrote) == 1
    assert sorted(map(str, (tmp_path / "overlays").glob("*.png"))) == wrote


def test_seed_fixes_the_initial_weights():
    # --seed seeded the data only: two runs of the same command started from different random models (the
    # untrained PCK printed as 'before' read 0.020 in one run and 0.044 in the next)
    import numpy as np

    from examples import finetune_pose, segment
    from training.data import SegmentationDataset
    from training.datasets.synthetic import synthetic_segmentation

    def pose(seed):
        a = finetune_pose.parse_args(["--fast", "--seed", str(seed), "--out", "unused"])
        return finetune_pose.build_model(a, 4)[0].get_weights()

    def seg(seed):
        a = segment.parse_args(["--fast", "--seed", str(seed), "--out", "unused"])
        data = SegmentationDataset(synthetic_segmentation(4, image_size=(32, 32), num_classes=3), batch_size=2,
                                   input_size=(32, 32), num_classes=3)
        return segment.build_model(a, data).get_weights()

    for build in (pose, seg):
        first, again, other = build(3), build(3), build(4)
        assert all(np.array_equal(x, y) for x, y in zip(first, again))
        assert not all(np.array_equal(x, y) for x, y in zip(first, other))


def test_finetune_pose_cpm_stages_come_from_the_caffemodel(tmp_path, capsys):
    # --model cpm --weights X.caffemodel of a 3-stage CPM without --stages: the example built 6 stages and the port
    # refused the file (Mconv*_stage4..6 "not filled"); the deploy prototxt beside it says 3. A --stages that
    # contradicts it is one error line naming both numbers
    import keras
    import numpy as np

    from examples import finetune_pose
    from tests.caffe_files import random_blobs_for, write_net
    from tests.converters import nets

    text = nets.cpm(32, 32, stages=3, parts=4)
    blobs = random_blobs_for(text, np.random.default_rng(0))
    _, weights = write_net(tmp_path, text, blobs, name="pose_iter_1")
    argv = ["--model", "cpm", "--weights", weights, "--input-size", "32", "--out", str(tmp_path / "o")]
    for extra in ([], ["--stages", "3"]):
        a = finetune_pose.parse_args(argv + extra)
        assert a.stages == 3
    model, kwargs = finetune_pose.build_model(a, 4)
    assert kwargs["stages"] == 3 and len(model.outputs) == 3  # the saved record rebuilds 3 stages
    got = keras.ops.convert_to_numpy(model.get_layer("Mconv5_stage3").weights[0])
    np.testing.assert_array_equal(got, blobs["Mconv5_stage3"][0].transpose(2, 3, 1, 0))  # Caffe OIHW -> HWIO
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        finetune_pose.parse_args(argv + ["--stages", "6"])
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--stages 6" in lines[0] and "a CPM of 3 stages" in lines[0], lines


def test_finetune_pose_hourglass_t7_saved_run_records_the_files_architecture(tmp_path):
    # --model hourglass --weights X.t7 without --stacks/--features: the builder arguments given to the run's saved
    # record were the caller's only (no stacks, features), so `zoo.get("hourglass", weights=<the run's .h5>)` built
    # the default 8 x 256 hourglass and was refused; the 2-stack, 16-feature file's architecture is recorded now
    import numpy as np

    from examples import finetune_pose
    from tests.converters import torch7_files as T

    inp, outs = T.hourglass_nodes(np.random.default_rng(3), stacks=2, features=16, keypoints=4)
    weights = T.write_t7(tmp_path / "hg.t7", T.gmodule(inp, outs))
    a = finetune_pose.parse_args(["--model", "hourglass", "--weights", str(weights), "--input-size", "64",
                                  "--out", str(tmp_path / "o")])
    model, kwargs = finetune_pose.build_model(a, 4)
    assert len(model.outputs) == 2
    assert {k: kwargs.get(k) for k in ("stacks", "features", "num_keypoints", "modules", "post_residuals")} == \
        {"stacks": 2, "features": 16, "num_keypoints": 4, "modules": 1, "post_residuals": True}
