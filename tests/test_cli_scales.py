"""--scales of `kerazoo predict` and `kerazoo evaluate` / `python -m training evaluate`."""

import pytest

pytestmark = pytest.mark.backend_agnostic


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


def test_evaluate_command_scores_with_the_scales(tmp_path, capsys):
    """The command passes --scales to evaluate: a 32 x 32 model (it slides windows over the 2x canvas) scores the
    synthetic set otherwise with 0.5,1,2 than without (evaluate itself is checked against NumPy in
    tests/training/test_evaluation_tta.py)."""
    import csv

    import keras
    import numpy as np

    inp = keras.Input((32, 32, 3))  # the command takes the input size from the model
    model = keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same", name="logits")(inp))
    model.save(tmp_path / "m.keras")
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
