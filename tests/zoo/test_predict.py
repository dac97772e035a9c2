"""What ``kerazoo predict`` draws, decided from the registry; name:tag spellings; builder arguments in
saved weights; atomic PNG writes; truncated ``.keras`` files."""

import os
import warnings

import keras
import numpy as np
import pytest

import zoo
from training import inference, visualize
from zoo import registry
from zoo.errors import WeightsFileError

# The name-spelling, PNG-writing and centre-crop tests are NumPy/registry only (nothing a Keras backend computes) and
# run in ./dev test's TensorFlow pass alone; those that build or run a model are marked for its JAX pass too.
agnostic = pytest.mark.backend_agnostic


def _net(*, weights=None, input_shape=None, classes=3, valid=False, top=True, name="net"):
    """A tiny conv net: class scores (``top``), else a map ``classes`` deep, 2 pixels smaller with ``valid``."""
    inputs = keras.Input(input_shape or (12, 16, 3), name="image")
    x = keras.layers.Conv2D(classes, 3, padding="valid" if valid else "same", name="head")(inputs)
    if top:
        x = keras.layers.Dense(classes, activation="softmax", name="fc")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, x, name=name)


@pytest.fixture
def registered():
    names = []

    def add(name, family, **fixed):
        registry.register(name, family=family, head_layers=("head", "fc"), head_kwarg="classes")(
            lambda *, weights=None, input_shape=None, classes=3, name=name: _net(
                input_shape=input_shape, classes=classes, name=name, **fixed))
        names.append(name)
        return name

    yield add
    for n in names:
        registry._MODELS.pop(n, None)


def _image(h=12, w=16):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3)).astype(np.uint8)


@agnostic
def test_classifier_gives_its_top_classes_with_record_names(registered):
    name = registered("test_cls_net", "resnet")
    model = zoo.get(name, classes=4)
    model._zoo_record = zoo.WeightsRecord(class_names=("cat", "dog", "cow", "eel"), scale=1 / 255)
    assert inference.predict_overlay(model, _image()).shape == (12, 16, 3)  # was an IndexError
    pred = inference.predict(model, _image())
    assert pred.task == "classification" and len(pred.top) == 4
    probs = model.predict(_image()[None] / np.float32(255), verbose=0)[0]
    assert [l for l, _ in pred.top] == [("cat", "dog", "cow", "eel")[i] for i in np.argsort(-probs)]
    np.testing.assert_allclose([p for _, p in pred.top], np.sort(probs)[::-1], rtol=1e-5)
    model._zoo_record = None
    assert inference.predict(model, _image()).top[0][0].startswith("class ")  # no names: indices


@agnostic
def test_top_k_must_be_a_positive_integer(registered):
    # 0 was "max() arg is an empty sequence" from the drawing, -1 listed 3 of 4 classes, "2" failed in a slice
    model = zoo.get(registered("test_topk_net", "resnet"), classes=4)
    for bad in (0, -1, "2", 1.5, True, None):
        with pytest.raises(ValueError, match=rf"predict: top_k must be an integer >= 1 .* top_k={bad!r}"):
            inference.predict(model, _image(), top_k=bad)
    assert len(inference.predict(model, _image(), top_k=np.int64(2)).top) == 2
    assert len(inference.predict(model, _image(), top_k=9).top) == 4  # no more than there are


def test_a_model_name_is_refused_naming_zoo_get():
    # a name failed deep inside with "'str' object has no attribute 'inputs'"
    with pytest.raises(TypeError, match=r"predict: model must be a Keras model such as zoo\.get\('hourglass', "
                                        r"weights=\.\.\.\) .*Received: str 'hourglass'"):
        inference.predict("hourglass", _image())
    with pytest.raises(TypeError, match=r"predict: model must be a Keras model \(.*Received: NoneType None"):
        inference.predict(None, _image())


@agnostic
def test_a_record_that_is_not_a_weights_record_is_refused(registered):
    model = zoo.get(registered("test_record_arg_net", "resnet"), classes=4)
    for bad in ("mpii", {"scale": 1 / 255}):  # an AttributeError from inside before
        with pytest.raises(TypeError, match=r"predict: record must be a zoo.WeightsRecord or None \(a tag's: "
                                            rf"zoo.get_spec\(NAME\).weights\[TAG\].*Received: {type(bad).__name__}"):
            inference.predict(model, _image(), record=bad)


@agnostic
def test_classifier_without_top_is_a_clear_error(registered):
    name = registered("test_notop_net", "resnet", top=False)
    with pytest.raises(ValueError, match=r"test_notop_net: output of shape \(12, 16, 3\) is a feature map"):
        inference.predict(zoo.get(name), _image())


def _rgb_net(*, valid=False, name="rgb_net", shape=(12, 16, 3), **_):
    """Input ``shape`` -> its own R, G, B planes as 3 maps; with ``valid`` 2 pixels smaller, output pixel
    ``j`` being input pixel ``j`` (PSPNet's alignment: its 8F - 7 output starts on input pixel 0)."""
    inputs = keras.Input(shape, name="image")
    conv = keras.layers.Conv2D(3, 3, padding="valid" if valid else "same", use_bias=False, name="head")
    out = conv(inputs)
    kernel = np.zeros((3, 3, 3, 3), np.float32)
    kernel[(0, 0) if valid else (1, 1)] = np.eye(3)  # one tap: each map is its colour plane
    conv.set_weights([kernel])
    return keras.Model(inputs, out, name=name)


@pytest.fixture
def rgb_registered():
    names = []

    def add(name, family, **fixed):
        registry.register(name, family=family, head_layers=("head",))(
            lambda *, weights=None, input_shape=None, name=name: _rgb_net(name=name, **fixed))
        names.append(name)
        return name

    yield add
    for n in names:
        registry._MODELS.pop(n, None)


def _stripes(h, w):
    """Red, green and blue vertical thirds: the mask a colour-plane model should give."""
    img = np.zeros((h, w, 3), np.uint8)
    truth = np.minimum(np.arange(w) * 3 // w, 2)[None].repeat(h, 0)
    for c in range(3):
        img[truth == c, c] = 255
    return img, truth


@agnostic
@pytest.mark.parametrize("valid", [False, True])  # a map as large as the input, or smaller (as PSPNet's)
def test_segmentation_mask_is_given_at_the_image_size(rgb_registered, valid):
    model = zoo.get(rgb_registered(f"test_rgb_seg_{int(valid)}", "pspnet", valid=valid))
    for h, w in [(12, 16), (30, 70), (50, 21)]:  # the input size, wide and tall images (letterboxed)
        image, truth = _stripes(h, w)
        pred = inference.predict(model, image)
        assert pred.task == "segmentation" and pred.mask.shape == (h, w) and pred.picture.shape == (h, w, 3)
        assert np.mean(pred.mask == truth) > 0.9, (h, w, np.mean(pred.mask == truth))  # stripes' edges may move
        np.testing.assert_array_equal(pred.picture, visualize.mask_overlay(image, pred.mask))


@agnostic
def test_pose_keypoints_are_given_in_the_image(rgb_registered):
    model = zoo.get(rgb_registered("test_rgb_pose", "hourglass"))
    image = np.zeros((24, 40, 3), np.uint8)  # letterboxed into 16 x 12: 0.4 input px per image px
    spots = np.array([[30.0, 5.0], [6.0, 18.0], [20.0, 12.0]])  # (x, y) of a red, a green and a blue spot
    for c, (x, y) in enumerate(spots.astype(int)):
        image[y - 1:y + 2, x - 1:x + 2, c] = 255
    pred = inference.predict(model, image)
    assert pred.task == "pose" and pred.mask is None and pred.picture.shape == (24, 40, 3)
    np.testing.assert_allclose(pred.keypoints, spots, atol=2.5)  # one input pixel is 2.5 image px
    np.testing.assert_array_equal(pred.picture, visualize.draw_keypoints(image, pred.keypoints))
    blank = inference.predict(model, np.zeros((24, 40, 3), np.uint8))  # no positive maximum anywhere
    assert np.isnan(blank.keypoints).all()
    any_size = zoo.get(rgb_registered("test_rgb_fcn", "hourglass", shape=(None, None, 3)))
    tall = np.zeros((40, 24, 3), np.uint8)  # portrait, taken as it is: the maps are the image's own planes
    for c, (x, y) in enumerate([(18, 5), (3, 31), (11, 21)]):
        tall[y - 1:y + 2, x, c], tall[y, x - 1:x + 2, c] = 100, 100
        tall[y, x, c] = 255  # a symmetric peak: decoded exactly
    np.testing.assert_allclose(inference.predict(any_size, tall).keypoints, [[18, 5], [3, 31], [11, 21]], atol=1e-6)
    # weights whose heatmap pixel g is at input px g + 1.5 (their record says so): the keypoints move by that
    any_size._zoo_record = zoo.WeightsRecord(heatmap_offset=1.5)
    np.testing.assert_allclose(inference.predict(any_size, tall).keypoints, [[19.5, 6.5], [4.5, 32.5], [12.5, 22.5]],
                               atol=1e-6)
    np.testing.assert_allclose(inference.predict(any_size, tall, heatmap_offset=0.0).keypoints,
                               [[18, 5], [3, 31], [11, 21]], atol=1e-6)
    cpm = zoo.get_spec("cpm").weights["mpii"]  # a released record passed in: 3.5 px
    np.testing.assert_allclose(inference.predict(any_size, tall, record=cpm.replace(scale=1.0, mean=(0.0,) * 3,
                                                                                      channel_order="RGB")).keypoints,
                               [[21.5, 8.5], [6.5, 34.5], [14.5, 24.5]], atol=1e-6)
    with pytest.raises(ValueError, match=r"predict: heatmap_offset must be a finite number"):
        inference.predict(any_size, tall, heatmap_offset=float("inf"))


@agnostic
def test_pose_box_crops_the_person_it_names(rgb_registered):
    """predict(box=) estimates the person in a box (a detector's or an annotation's), not the whole image: the crop is
    the box's longer side x 1.25 about its centre. Here that crop is the image's pixels 30..45 x 13..28 moved by whole
    pixels onto the 16x16 input (box 12.8 px, centre (37.5, 20.5)), so symmetric spots in it are found exactly, and
    brighter ones outside the box, which the whole-image letterbox picks, are not seen."""
    model = zoo.get(rgb_registered("test_rgb_pose_box", "hourglass", shape=(16, 16, 3)))
    image = np.zeros((60, 90, 3), np.uint8)
    spots = [(33, 17), (41, 25), (38, 15)]  # a red, a green and a blue spot inside the box
    for c, (x, y) in enumerate(spots + [(70, 45), (10, 50), (80, 10)]):  # then brighter ones of each colour outside
        value = 120 if c < 3 else 250
        image[y - 1:y + 2, x, c % 3], image[y, x - 1:x + 2, c % 3] = value // 3, value // 3
        image[y, x, c % 3] = value
    box = (31.1, 14.1, 43.9, 26.9)
    pred = inference.predict(model, image, box=box)
    np.testing.assert_allclose(pred.keypoints, spots, atol=1e-6)
    whole = inference.predict(model, image)  # the letterbox sees the brighter spots outside the box
    assert np.abs(whole.keypoints - np.array(spots)).max() > 10
    boxed = visualize.draw_keypoints(image, pred.keypoints)
    assert (pred.picture != boxed).any() and (pred.picture[14:28, 31:45] == boxed[14:28, 31:45]).mean() > 0.5  # + box
    with pytest.raises(ValueError, match=r"predict: box must be \(x1, y1, x2, y2\) image px with x1 < x2 and y1 < y2"):
        inference.predict(model, image, box=(40, 10, 30, 20))
    with pytest.raises(ValueError, match=r"predict: box is 0.3 x 0.5 px, too small to hold a person or a hand; give "
                                         r"image px \(a box in 0..1 coordinates: multiply"):
        inference.predict(model, image, box=(0.2, 0.1, 0.5, 0.6))  # a detector's normalised box: cropped ~1 px
    with pytest.raises(ValueError, match="predict: box_padding must be a number > 0"):
        inference.predict(model, image, box=box, box_padding=0)
    h, w = image.shape[:2]
    for off in ((w, 0, w + 20, 20), (-30, -30, 0, 0), (0, h + 5, 10, h + 40)):  # keypoints were put on the padding
        with pytest.raises(ValueError, match=rf"^predict: box lies outside the {w}x{h} image \(x from 0 to {w}, y from "
                                             rf"0 to {h}\); give the box in this image's px\. Received: box="
                                             rf"\({float(off[0])}, "):
            inference.predict(model, image, box=off)
    with pytest.raises(ValueError, match=rf"^predict: box is 1e\+09 x 1e\+09 px, over 1000x the {w}x{h} image; give "
                                         rf"the box in this image's px\. Received: box=\(0\.0, 0\.0, 1000000000\.0, "):
        inference.predict(model, image, box=(0, 0, 1e9, 1e9))  # was OpenCV's "`mat` is singular", no box named
    edge = inference.predict(model, image, box=(w - 1, h - 1, w + 9, h + 9))  # a box partly on the image is taken
    assert edge.keypoints.shape == (3, 2)
    seg = zoo.get(rgb_registered("test_rgb_seg_box", "pspnet", shape=(16, 16, 3)))
    with pytest.raises(ValueError, match="predict: box is for pose models of a fixed input size .* test_rgb_seg_box "
                                         "gives segmentation"):
        inference.predict(seg, image, box=box)
    free = zoo.get(rgb_registered("test_rgb_pose_free", "hourglass", shape=(None, None, 3)))
    with pytest.raises(ValueError, match=r"takes inputs of any size \(None, None\)"):
        inference.predict(free, image, box=box)


@agnostic
def test_predict_people_finds_each_person_in_its_box(rgb_registered):
    """Several people, one box each (a detector's): each box is cropped as predict(box=) crops it, so each person's
    spots are found exactly (the boxes' crops fall on whole pixels, as in the test above) and a brighter spot
    outside both boxes is not; everyone is drawn on one picture, boxes included."""
    from training.topdown import predict_people

    model = zoo.get(rgb_registered("test_rgb_people", "hourglass", shape=(16, 16, 3)))
    image = np.zeros((60, 90, 3), np.uint8)
    people = [[(33, 17), (41, 25), (38, 15)], [(63, 37), (71, 45), (68, 35)]]
    for c, (x, y) in enumerate(people[0] + people[1] + [(10, 50)] * 3):
        image[y, x, c % 3] = 250 if c >= 6 else 120
    boxes = [(31.1, 14.1, 43.9, 26.9), (61.1, 34.1, 73.9, 46.9)]
    found = predict_people(model, image, boxes)
    np.testing.assert_allclose(found.keypoints, people, atol=1e-6)
    assert found.boxes.tolist() == [list(b) for b in boxes] and len(found.outputs) == 2
    for box, one in zip(boxes, people):  # the same as one predict(box=) per person
        np.testing.assert_allclose(inference.predict(model, image, box=box).keypoints, one, atol=1e-6)
    assert found.picture.shape == image.shape and found.picture.dtype == np.uint8
    for x1, y1, x2, y2 in boxes:  # both boxes drawn (white, anti-aliased), nothing drawn far from the people
        for y in (y1, y2):
            edge = found.picture[round(y), round(x1) + 2:round(x2) - 1]
            assert (edge.min(axis=-1) > 150).mean() > 0.5
    assert (found.picture[:10, :20] == 0).all()
    with pytest.raises(ValueError, match=r"^predict_people: box 2 of 2 lies outside the 90x60 image \(x from 0 to 90"):
        predict_people(model, image, [boxes[0], (100, 10, 120, 30)])
    for bad in ([], None, 3):
        with pytest.raises(ValueError, match=r"^predict_people: boxes must be a list of \(x1, y1, x2, y2\) image px"):
            predict_people(model, image, bad)


@agnostic
@pytest.mark.parametrize("tall", [True, False])
def test_pose_box_on_a_non_square_input_crops_as_training(rgb_registered, tall):
    """On a non-square input the box's crop is the one training and evaluate make for that box (the datasets'
    square of its longer side x 1.25, fitted into the input's shorter side), not a tighter one: a 12x16 (w x h)
    model given a tall 6 x 9.6 px box (a wide 9.6 x 6 one on 16x12) sees the 12 px square about its centre (37.5,
    20.5) on its shorter side at 1 input px per image px: the image's pixels 32..43 x 13..28 (30..45 x 15..26).
    It saw a 9 px wide crop, the person 4/3 as large as training showed it."""
    shape = (16, 12, 3) if tall else (12, 16, 3)
    model = zoo.get(rgb_registered(f"test_rgb_pose_box_{'tall' if tall else 'wide'}", "hourglass", shape=shape))
    image = np.random.default_rng(3).integers(0, 256, (60, 90, 3)).astype(np.uint8)
    box = (34.5, 15.7, 40.5, 25.3) if tall else (32.7, 17.5, 42.3, 23.5)
    pred = inference.predict(model, image, box=box)
    crop = image[13:29, 32:44] if tall else image[15:27, 30:46]  # the hand crop at whole-pixel offsets
    np.testing.assert_allclose(pred.output, crop / 255.0, atol=1e-6)


def test_scales_divide_the_crop_about_its_own_centre():
    """The scale search's other crops are centred where the scale-1 crop is: a person box's centre (the image's centre
    for the letterbox). A bright pixel at the box centre lies at the centre of every scale's crop."""
    from training.transforms import affine_matrix
    from training.tta import image_heatmaps

    image = np.zeros((100, 80, 3), np.uint8)
    image[20, 37] = 255  # the box centre, far from the image's (39.5, 49.5)
    mat = affine_matrix((37.0, 20.0), 16.0, (15, 15))  # the scale-1 crop: 16 px about it onto 15x15
    crops = []

    def run(crop):
        crops.append(crop[..., 0].astype(float))
        return crop[..., :1].astype(np.float32)  # a 15x15x1 "heatmap" at stride 1

    image_heatmaps(run, image, mat, (15, 15), (1.0, 0.5, 2.0), np.array([1.0, 1.0]), 0.0)
    for crop in crops:
        assert np.unravel_index(np.argmax(crop), crop.shape) == (7, 7), crop


@agnostic
def test_letterbox_scales_crop_about_the_image_centre_bit_for_bit(rgb_registered):
    """The letterbox's scale search crops about the image's centre exactly as before the box came: that centre was
    recovered by inverting the letterbox matrix, 1e-14 px off, and for this 417 x 579 image on a 256x256 input the
    0.8 crop's warp rounded a row of samples 1/32 px the other way (2602 pixels of the crop changed)."""
    from training.transforms import affine_matrix, warp_image
    from training.tta import average_heatmaps, heatmap_frame_matrix

    model = zoo.get(rgb_registered("test_rgb_pose_256", "hourglass", shape=(256, 256, 3)))
    W, H = 417, 579
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3)).astype(np.uint8)
    pred = inference.predict(model, image, scales=(0.8,))
    # the reference: the letterbox's square (the image's longer side) about the image centre, divided by 0.8
    centre = ((W - 1) / 2.0, (H - 1) / 2.0)
    mat = affine_matrix(centre, float(H), (256, 256))
    m = affine_matrix(centre, H / 0.8, (256, 256))
    crop = warp_image(image, m, (256, 256)).astype(np.float32) / 255.0
    want = average_heatmaps([crop], [heatmap_frame_matrix(mat, m, (1.0, 1.0), 0.0)], (256, 256))
    np.testing.assert_allclose(pred.output, want, atol=1e-6)


def test_name_and_tag_spellings(registered):
    name = registered("test_tag_net", "resnet")
    zoo.register_weights(name, "demo", zoo.WeightsRecord(channel_order="BGR"))
    assert zoo.info(f"{name}:demo")["name"] == name  # was "Unknown model"
    assert registry.parse_name(f"{name}:demo") == registry.parse_name(f"{name}.demo") == (name, "demo")
    assert registry.parse_name(name) == (name, None)
    for spelled in (f"{name}:demo", f"{name}.demo"):
        assert zoo.info(spelled)["name"] == name
        assert zoo.preprocess(spelled, np.zeros((1, 1, 3))).shape == (1, 1, 3)
        with pytest.raises(ValueError, match="unknown weights tag 'nope'"):
            zoo.get(f"{name}:nope" if ":" in spelled else f"{name}.nope")
    assert zoo.list_models(f"{name}:*", pretrained=True) == [f"{name}.demo"]
    assert "resnet50" in zoo.list_models("RESNET*") and zoo.list_models("Test_Tag_*") == [name]


@agnostic
@pytest.mark.tf_pass_only
def test_save_weights_stores_the_builder_arguments(tmp_path):
    model = zoo.get("hourglass", stacks=1, features=16, input_shape=(64, 64, 3))
    path = zoo.save_weights(model, tmp_path / "hg1.h5")
    _, rec = zoo.read_record(path)
    assert rec.builder_kwargs == {"stacks": 1, "features": 16, "input_shape": [64, 64, 3], "num_keypoints": 16}
    again = zoo.get("hourglass", weights=path)  # was the default 8-stack model: WeightsMismatchError
    x = np.random.default_rng(0).uniform(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with pytest.warns(UserWarning, match=r"num_keypoints=16 but num_keypoints=8.*stack1_heatmaps"):
        other = zoo.get("hourglass", weights=path, num_keypoints=8)
    assert other.outputs[0].shape[-1] == 8 and zoo.weights_record(other).num_keypoints == 8
    np.testing.assert_array_equal(other.get_layer("stem_conv").get_weights()[0],
                                  model.get_layer("stem_conv").get_weights()[0])
    # a given record keeps its own builder arguments; one without any gets the model's
    zoo.save_weights(model, tmp_path / "own.h5", zoo.WeightsRecord(builder_kwargs={"stacks": 1, "features": 16,
                                                                                  "input_shape": [64, 64, 3]}))
    assert "num_keypoints" not in zoo.read_record(tmp_path / "own.h5")[1].builder_kwargs
    zoo.save_weights(model, tmp_path / "bare.h5", zoo.WeightsRecord(mean=(1.0, 2.0, 3.0)))
    assert zoo.read_record(tmp_path / "bare.h5")[1].builder_kwargs["stacks"] == 1
    # an HDF5 file named .keras failed much later, in zoo.get, as "not a zip archive"
    with pytest.raises(ValueError, match=r"save_weights: '.*hg\.keras' ends in \.keras, the name of a whole Keras "
                                         r"model .* name it \.h5, or save the whole model with zoo\.save_model"):
        zoo.save_weights(model, tmp_path / "hg.keras")
    assert not list(tmp_path.glob("*.keras*")) and not list(tmp_path.glob(".*"))
    (tmp_path / "folder").mkdir()  # was a bare IsADirectoryError from os.replace, after writing the whole file
    with pytest.raises(ValueError, match=r"save_weights: '.*folder' is a folder; give the file to write"):
        zoo.save_weights(model, tmp_path / "folder")
    assert not list((tmp_path / "folder").iterdir()) and not list(tmp_path.glob(".*"))


def test_write_png_leaves_no_temp_file(tmp_path, monkeypatch):
    (tmp_path / "pdir").mkdir()
    with pytest.raises(IsADirectoryError, match="pdir"):
        visualize.write_png(tmp_path / "pdir", _image())
    assert os.listdir(tmp_path / "pdir") == [] and [p.name for p in tmp_path.iterdir()] == ["pdir"]

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        visualize.write_png(tmp_path / "a.png", _image())
    assert [p.name for p in tmp_path.iterdir()] == ["pdir"]


@agnostic
def test_truncated_keras_file_is_named_as_such(tmp_path, registered):
    name = registered("test_keras_net", "resnet")
    model = zoo.get(name)
    model.save(tmp_path / "m.keras")
    loaded = zoo.load_keras_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.get_layer("fc").get_weights()[0], model.get_layer("fc").get_weights()[0])
    (tmp_path / "t.keras").write_bytes((tmp_path / "m.keras").read_bytes()[:300])
    with pytest.raises(WeightsFileError, match=r"t.keras' is not a readable .keras archive"):
        zoo.load_keras_model(tmp_path / "t.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(WeightsFileError, match=r"t.keras' is not a readable .keras archive"):
            zoo.get(name, weights=tmp_path / "t.keras")
    with pytest.raises(WeightsFileError, match="model file not found"):
        zoo.load_keras_model(tmp_path / "none.keras")
    # a .weights.h5 that is no HDF5 (cut short, a text file) was a WeightsMismatchError, as if another model's
    model.save_weights(tmp_path / "m.weights.h5")
    (tmp_path / "cut.weights.h5").write_bytes((tmp_path / "m.weights.h5").read_bytes()[:4])
    (tmp_path / "text.weights.h5").write_text("hello")
    for bad in ("cut", "text"):
        with pytest.raises(WeightsFileError, match=rf"{bad}.weights.h5' is not a readable HDF5 file \(truncated, or "
                                                   r"not a Keras .weights.h5\)"):
            zoo.get(name, weights=tmp_path / f"{bad}.weights.h5")
    np.testing.assert_array_equal(zoo.get(name, weights=tmp_path / "m.weights.h5").get_layer("fc").get_weights()[0],
                                  model.get_layer("fc").get_weights()[0])


def test_classifiers_see_imagenets_centre_crop():
    image = np.zeros((448, 600, 3), np.uint8)  # shorter side 448 -> 256, then the centre 224 x 224
    image[112:336, 188:412] = 255  # a centred 224 square: 128 px after the resize
    crop = inference._centre_crop(image, (224, 224))
    assert crop.shape == (224, 224, 3)
    white = np.argwhere(crop[..., 0] > 127)
    np.testing.assert_allclose(white.min(0), [48, 48], atol=1)  # 128 px, centred (600 * 256 / 448 rounds)
    np.testing.assert_allclose(white.max(0), [175, 175], atol=1)
