"""--scales of `kerazoo predict` and `kerazoo evaluate` / `python -m training evaluate`; --flip of `kerazoo predict`."""

import pytest

# Argument-parsing tests run no model (nothing a Keras backend computes) and run in ./dev test's TensorFlow pass
# alone; those that evaluate or predict are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic


@pytest.mark.parametrize("text", ["0,1", "1,-0.5", "nan", "inf,1", "", "1,,2", "a", "1;2"])
def test_bad_scales_are_refused_naming_the_option(text, capsys):
    from kerazoo.cli import build_parser
    from training.__main__ import build_parser as training_parser

    for parser, argv in ((build_parser(), ["predict", "hourglass", "img.png", "--weights", "w.h5"]),
                         (training_parser("kerazoo"), ["evaluate", "--run", "r"])):
        with pytest.raises(SystemExit) as e:
            parser.parse_args([*argv, "--scales", text])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert (f"argument --scales: expected comma-separated numbers > 0 such as 0.7,1,1.3, got {text!r}"
                in err), err


def test_scales_are_parsed_in_order():
    from kerazoo.cli import build_parser
    from training.__main__ import build_parser as training_parser

    args = build_parser().parse_args(["predict", "n", "i", "--weights", "w", "--scales", "0.7, 1,1.3"])
    assert args.scales == (0.7, 1.0, 1.3)
    assert build_parser().parse_args(["predict", "n", "i", "--weights", "w"]).scales == (1.0,)
    args = training_parser("kerazoo").parse_args(["evaluate", "--run", "r", "--scales", "1.25,0.5"])
    assert args.scales == (1.25, 0.5)


@agnostic
def test_evaluate_command_scores_with_the_scales(tmp_path, capsys):
    """The command passes --scales to evaluate: a 32 x 32 model (it slides windows over the 2x canvas) scores the
    synthetic set otherwise with 0.5,1,2 than without (evaluate itself is checked against NumPy in
    tests/training/test_evaluation_tta.py)."""
    import csv

    import numpy as np

    from tests.training.test_evaluation_tta import _seg_model

    # fixed weights (a colour -> class map): a randomly initialised net sometimes gave one class everywhere at
    # every scale, and the test failed now and then; the command takes the input size from the model
    _seg_model(32).save(tmp_path / "m.keras")
    from training.__main__ import main

    common = ["evaluate", "--model", str(tmp_path / "m.keras"), "--dataset", "synthetic-seg",
              "--num-classes", "3", "--val-samples", "4"]
    rows = {}
    for scales in (None, "0.5,1,2"):
        out = tmp_path / f"eval{scales}"
        argv = [*common, "--out", str(out)] + (["--scales", scales] if scales else [])
        assert main(argv) == 0, capsys.readouterr().err
        rows[scales] = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows[None]) == len(rows["0.5,1,2"]) == 4
    assert [r["mean_iou"] for r in rows[None]] != [r["mean_iou"] for r in rows["0.5,1,2"]]
    assert np.isfinite([float(r["mean_iou"]) for r in rows["0.5,1,2"]]).all()


def test_predict_flip_is_a_switch():
    from kerazoo.cli import build_parser

    argv = ["predict", "n", "i", "--weights", "w"]
    assert build_parser().parse_args([*argv, "--flip"]).flip is True
    assert build_parser().parse_args(argv).flip is False


@agnostic
def test_predict_command_flips(tmp_path, capsys):
    """--flip reaches predict: a segmentation .keras draws the mask of the mirrored pass averaged in, as written out
    in NumPy (tests/training/test_evaluation_tta.py's reference); a pose model without flip pairs (a .keras has no
    record) and a classifier are refused naming --flip."""
    import cv2
    import keras
    import numpy as np

    from tests.training.test_evaluation_tta import _pose_model, _reference_probabilities, _seg_model
    from training.visualize import mask_overlay
    from zoo.cli import main

    rng = np.random.default_rng(5)
    image = cv2.resize(rng.integers(0, 256, (5, 6, 3)).astype(np.uint8), (45, 31), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "img.png"), image[..., ::-1])
    _seg_model(None).save(tmp_path / "seg.keras")
    pictures = {}
    for flip in (False, True):
        out = tmp_path / f"flip{flip}.png"
        argv = ["predict", "pspnet", str(tmp_path / "img.png"), "--weights", str(tmp_path / "seg.keras"), "--out",
                str(out)] + (["--flip"] if flip else [])
        assert main(argv) == 0, capsys.readouterr().err
        pictures[flip] = cv2.imread(str(out))[..., ::-1]
    # a .keras has no record: pixels / 255, as the NumPy net takes them; the model takes the image as it is
    want = _reference_probabilities(image, (45, 31), (1.0,), True, False).argmax(-1)
    np.testing.assert_array_equal(pictures[True], mask_overlay(image, want))
    assert not np.array_equal(pictures[True], pictures[False])

    capsys.readouterr()
    _pose_model(64, 3).save(tmp_path / "pose.keras")
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((64, 64, 3), np.uint8))
    assert main(["predict", "hourglass", str(tmp_path / "p.png"), "--weights", str(tmp_path / "pose.keras"),
                 "--flip"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kerazoo predict: error: --flip needs the keypoints' left/right pairs, and hourglass's "
                          "weights record has no flip pairs") and err.count("\n") == 1, err
    inp = keras.Input((32, 32, 3))
    keras.Model(inp, keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp))).save(
        tmp_path / "clf.keras")
    assert main(["predict", "resnet18", str(tmp_path / "p.png"), "--weights", str(tmp_path / "clf.keras"),
                 "--flip"]) == 2
    err = capsys.readouterr().err
    assert err == "kerazoo predict: error: --flip is for pose and segmentation models; resnet18 gives classification\n"
    assert not list(tmp_path.glob("p.pred.png"))



@pytest.mark.parametrize("text", ["0", "-512", "512.5", "a", ""])
def test_bad_base_size_is_refused_naming_the_option(text, capsys):
    from kerazoo.cli import build_parser
    from training.__main__ import build_parser as training_parser

    for parser, argv in ((build_parser(), ["predict", "pspnet50", "img.png", "--weights", "w.h5"]),
                         (training_parser("kerazoo"), ["evaluate", "--run", "r"])):
        assert parser.parse_args([*argv, "--base-size", "512"]).base_size == 512
        assert parser.parse_args(argv).base_size is None
        with pytest.raises(SystemExit):
            parser.parse_args([*argv, "--base-size", text])
        err = capsys.readouterr().err
        assert f"argument --base-size: expected a whole number of px >= 1 such as 512, got {text!r}" in err, err


@agnostic
def test_base_size_reaches_evaluate_and_predict(tmp_path, capsys):
    """--base-size runs PSPNet's test (checked against the MATLAB code written out in NumPy in
    tests/training/test_evaluation_pspnet.py): evaluate scores otherwise than the letterboxed canvases, predict draws
    the reference's mask; a model that takes any size is refused naming --base-size."""
    import csv

    import cv2
    import numpy as np

    from tests.training.test_evaluation_pspnet import _reference
    from tests.training.test_evaluation_tta import _seg_model
    from training.__main__ import main as training_main
    from training.normalization import Normalization
    from training.visualize import mask_overlay
    from zoo.cli import main

    _seg_model(32).save(tmp_path / "m.keras")
    common = ["evaluate", "--model", str(tmp_path / "m.keras"), "--dataset", "synthetic-seg", "--num-classes", "3",
              "--val-samples", "3", "--scales", "0.5,1.5"]
    rows = {}
    for base in (None, "40"):
        out = tmp_path / f"eval{base}"
        assert training_main([*common, "--out", str(out)] + (["--base-size", base] if base else [])) == 0
        rows[base] = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["mean_iou"] for r in rows[None]] != [r["mean_iou"] for r in rows["40"]]

    rng = np.random.default_rng(8)
    image = cv2.resize(rng.integers(0, 256, (5, 6, 3)).astype(np.uint8), (45, 31), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "img.png"), image[..., ::-1])
    out = tmp_path / "pred.png"
    assert main(["predict", "pspnet", str(tmp_path / "img.png"), "--weights", str(tmp_path / "m.keras"), "--out",
                 str(out), "--scales", "0.5,1.5", "--flip", "--base-size", "40"]) == 0, capsys.readouterr().err
    want = _reference(image, 32, 40, (0.5, 1.5), True, Normalization()).argmax(-1)  # a .keras: pixels / 255
    np.testing.assert_array_equal(cv2.imread(str(out))[..., ::-1], mask_overlay(image, want))

    capsys.readouterr()
    _seg_model(None).save(tmp_path / "any.keras")
    assert main(["predict", "pspnet", str(tmp_path / "img.png"), "--weights", str(tmp_path / "any.keras"),
                 "--base-size", "40"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kerazoo predict: error: --base-size is PSPNet's test for a segmentation model of a fixed "
                          "input size"), err


@agnostic
def test_native_reaches_evaluate(tmp_path, capsys):
    """--native runs FCN's test (each image at its own size; checked against the net in NumPy in
    tests/training/test_evaluation_native.py): the rows are evaluate(native=True)'s; a fixed-size model is refused."""
    import csv

    import keras

    from training.__main__ import main as training_main

    for side, name in ((None, "any"), (32, "fixed")):  # random 7x7 filters: classes vary with colour and position
        keras.Sequential([keras.Input((side, side, 3)), keras.layers.Conv2D(
            3, 7, padding="same", kernel_initializer=keras.initializers.RandomNormal(seed=0))]).save(
            tmp_path / f"{name}.keras")
    common = ["evaluate", "--dataset", "synthetic-seg", "--num-classes", "3", "--val-samples", "3", "--input-size",
              "40,24"]
    rows = {}
    for native in ([], ["--native"]):
        out = tmp_path / f"eval{len(native)}"
        assert training_main([*common, "--model", str(tmp_path / "any.keras"), "--out", str(out), *native]) == 0
        rows[bool(native)] = [r["mean_iou"] for r in csv.DictReader(open(out / "predictions.csv"))]
    assert len(rows[True]) == 3 and rows[True] != rows[False]
    capsys.readouterr()
    assert training_main([*common[:-2], "--model", str(tmp_path / "fixed.keras"), "--native"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"error: --native runs each image at its own size, but '{tmp_path / 'fixed.keras'}' takes "
                        f"32x32 inputs only; drop --native, or save a model of any size first: "
                        f"zoo.save_model(zoo.get(NAME, weights=..., input_shape=(None, None, 3)), 'any.keras')\n"), err
    assert training_main([*common, "--model", "nothing.keras", "--native", "--scales", "1,2", "--base-size", "40"]) == 2
    assert capsys.readouterr().err.endswith("error: --native runs each image once at its own size and scores its "
                                            "original mask; not with --scales or --base-size\n")


@agnostic
def test_heatmap_offset_for_a_segmentation_model_is_refused_before_the_scales_run(tmp_path, capsys):
    """--heatmap-offset with --scales/--base-size for a segmentation model was refused only after predict had run every
    scale (minutes for a PSPNet on a CPU) and nothing was written; predict now refuses it after the first pass. Scale
    5000 shows which comes first: its canvases (160000 px a side) are refused before any is made, so the old order
    gave that error instead."""
    import cv2
    import numpy as np

    from tests.training.test_evaluation_tta import _seg_model
    from training.inference import predict
    from zoo.cli import main

    image = np.full((31, 45, 3), 90, np.uint8)
    with pytest.raises(ValueError, match=r"^predict: heatmap_offset is for pose models \(heatmaps\); x gives "
                                         r"segmentation\. Received: heatmap_offset=1\.5$"):
        predict(_seg_model(32), image, name="x", heatmap_offset=1.5, scales=(5000.0,))
    _seg_model(32).save(tmp_path / "m.keras")
    cv2.imwrite(str(tmp_path / "img.png"), image)
    for extra in (["--scales", "5000"], ["--base-size", "40", "--scales", "5000"]):
        capsys.readouterr()
        assert main(["predict", "segx", str(tmp_path / "img.png"), "--weights", str(tmp_path / "m.keras"), "--out",
                     str(tmp_path / "p.png"), "--heatmap-offset", "1", *extra]) == 2
        assert capsys.readouterr().err == ("kerazoo predict: error: --heatmap-offset is for pose models (heatmaps); "
                                           "segx gives segmentation\n")
    assert not (tmp_path / "p.png").exists()


@agnostic
def test_scales_too_large_for_memory_are_refused_naming_the_option(tmp_path, capsys):
    """kerazoo predict --scales 5000 (canvases 160000 px a side, with or without --base-size) was refused in predict's
    words, 'predict: scales=(5000.0,) make canvases ...', naming no option of the command."""
    import cv2
    import numpy as np

    from tests.training.test_evaluation_tta import _seg_model
    from zoo.cli import main

    _seg_model(32).save(tmp_path / "m.keras")
    cv2.imwrite(str(tmp_path / "img.png"), np.full((31, 45, 3), 90, np.uint8))
    for extra in ([], ["--base-size", "40"]):
        capsys.readouterr()
        assert main(["predict", "segx", str(tmp_path / "img.png"), "--weights", str(tmp_path / "m.keras"), "--out",
                     str(tmp_path / "p.png"), "--scales", "1,5000", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("kerazoo predict: error: --scales (1.0, 5000.0) make canvases up to "), err
        assert err.endswith("; choose smaller scales\n"), err
