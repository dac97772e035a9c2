"""evaluate(native=True): FCN's own test (shelhamer/fcn.berkeleyvision.org score.py), each image alone at its own
size, against the test net written out in NumPy and the confusion counted here with np.bincount."""

import re

import numpy as np
import pytest

from tests.training.test_evaluation_tta import _confusion, _seg_model, _seg_net_numpy, _seg_records
from training.data import SegmentationDataset
from training.evaluation import evaluate

agnostic = pytest.mark.backend_agnostic
SHAPES = [(45, 31), (23, 60), (40, 40)]  # (w, h): none the dataset's 32x32 input


def _dataset(recs, **kw):
    return SegmentationDataset(recs, batch_size=2, input_size=(32, 32), num_classes=3, shuffle=False, **kw)


def _native_reference(image, flip):
    """The net on the whole image at its own size (the default normalisation: pixels / 255); flip: the mirrored
    image's probabilities, mirrored back, averaged in."""
    x = image.astype(np.float64) / 255.0
    p = _seg_net_numpy(x)
    if flip:
        p = (p + _seg_net_numpy(x[:, ::-1])[:, ::-1]) / 2.0
    return p.argmax(-1)


@agnostic
@pytest.mark.parametrize("flip", [False, True])
def test_native_runs_each_image_at_its_own_size(tmp_path, flip):
    recs, masks, images = _seg_records(tmp_path, SHAPES)
    res = evaluate(_seg_model(None), _dataset(recs), native=True, flip=flip, verbose=False)
    want = _confusion([_native_reference(im, flip) for im in images], masks)
    np.testing.assert_array_equal(np.array(res.table["confusion"]), want)
    assert [r["id"] for r in res.rows] == ["s0", "s1", "s2"]
    # not the letterboxed canvases' answer: the net pads each image's edges, and the letterbox resamples it
    boxed = evaluate(_seg_model(None), _dataset(recs), flip=flip, verbose=False)
    assert not np.array_equal(np.array(boxed.table["confusion"]), want)


@agnostic
def test_an_image_of_the_input_size_scores_as_the_letterbox(tmp_path):
    """The letterbox of an image of the input's own size is the image: both tests agree, for a net whose output is
    its input's size and for one of output stride 2 (scores resampled onto the mask the same way)."""
    import keras

    recs, _, _ = _seg_records(tmp_path, [(32, 32), (32, 32)], seed=3)
    strided = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 3, strides=2, padding="same",
                                                                                  kernel_initializer="he_normal")])
    for model in (_seg_model(None), strided):
        native = evaluate(model, _dataset(recs), native=True, verbose=False)
        boxed = evaluate(model, _dataset(recs), verbose=False)
        assert native.table["confusion"] == boxed.table["confusion"]
        assert native.metric == "IoU per class (original image size)"


@agnostic
def test_native_leaves_out_unreadable_records_and_names_refused_sizes(tmp_path):
    import keras

    recs, masks, images = _seg_records(tmp_path, SHAPES)
    (tmp_path / "i1.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="left out"):
        res = evaluate(_seg_model(None), _dataset(recs, on_error="skip"), native=True, verbose=False)
    want = _confusion([_native_reference(images[i], False) for i in (0, 2)], [masks[0], masks[2]])
    np.testing.assert_array_equal(np.array(res.table["confusion"]), want)
    with pytest.raises(Exception, match=r"sample 1 \(id 's1', image '.*i1\.png'"):
        evaluate(_seg_model(None), _dataset(recs), native=True, verbose=False)

    # a model of any size that takes only even sizes (a stride-2 path concatenated with the full-size one)
    inp = keras.Input((None, None, 3))
    up = keras.layers.UpSampling2D(2)(keras.layers.MaxPooling2D(2)(inp))
    even = keras.Model(inp, keras.layers.Conv2D(3, 1)(keras.layers.Concatenate()([inp, up])))
    recs, _, _ = _seg_records(tmp_path, [(32, 32), (45, 31)])
    with pytest.raises(ValueError, match=r"^evaluate\(native=True\): the model does not take sample 1 \(id 's1', "
                                         r"image '.*i1\.png', mask '.*m1\.png'\)'s 45x31 image at its own size \("):
        evaluate(even, _dataset(recs), native=True, verbose=False)


@agnostic
def test_native_refusals_name_what_clashes(tmp_path):
    from training.data import HeatmapDataset
    from training.datasets.synthetic import synthetic_pose

    recs, _, _ = _seg_records(tmp_path, SHAPES[:1])
    ds = _dataset(recs)
    with pytest.raises(ValueError, match=r"takes inputs of \(32, 32, 3\) only; build it for any size \(e\.g\. "
                                         r"zoo\.get\(NAME, input_shape=\(None, None, 3\)\)\)"):
        evaluate(_seg_model(32), ds, native=True, verbose=False)
    for kw, said in (({"scales": (1.0, 1.5)}, "scales=(1.0, 1.5)"), ({"base_size": 40}, "base_size=40"),
                     ({"resolution": "input"}, "resolution='input'")):
        with pytest.raises(ValueError, match=rf"native=True runs each image once .* does not take {re.escape(said)}$"):
            evaluate(_seg_model(None), ds, native=True, verbose=False, **kw)
    with pytest.raises(ValueError, match=r"native must be True or False .* Received: native='yes'"):
        evaluate(_seg_model(None), ds, native="yes", verbose=False)
    pose = HeatmapDataset(synthetic_pose(2, image_size=(64, 64), num_keypoints=3), batch_size=2,
                          input_size=(64, 64), heatmap_size=(16, 16), shuffle=False)
    with pytest.raises(ValueError, match="native=True is FCN's segmentation test .* the dataset is a HeatmapDataset"):
        evaluate(_seg_model(None), pose, native=True, verbose=False)
