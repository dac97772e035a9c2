"""Batched prediction (training.batching): several images, people or frames per model call, each result as
``predict`` gives it alone; calls padded to powers of two; a refused image named by its place."""

import keras
import numpy as np
import pytest

from training import inference
from training.inference import predict_batch

agnostic = pytest.mark.backend_agnostic


def _images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def _pose_net():
    """Stride-4 heatmaps of 5 joints from a 32x32 image (biased up: every joint found)."""
    keras.utils.set_random_seed(1)
    image = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(image)
    x = keras.layers.Conv2D(5, 3, strides=2, padding="same", bias_initializer=keras.initializers.Constant(2.0))(x)
    return keras.Model(image, x, name="pose_net")


def _centre_map_net():
    """CPM's two inputs (image, centre map) -> stride-4 maps of 3 joints and a background map."""
    keras.utils.set_random_seed(2)
    image, centre = keras.Input((32, 32, 3), name="image"), keras.Input((32, 32, 1), name="center_map")
    x = keras.layers.Concatenate()([image, centre])
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", bias_initializer=keras.initializers.Constant(2.0))(x)
    return keras.Model([image, centre], x, name="centre_map_net")


def _segmentation_net():
    """Any size -> 3 class maps of the same size."""
    keras.utils.set_random_seed(3)
    image = keras.Input((None, None, 3), name="image")
    return keras.Model(image, keras.layers.Conv2D(3, 3, padding="same")(image), name="seg_net")


def _classifier():
    keras.utils.set_random_seed(4)
    image = keras.Input((24, 24, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3)(image))
    return keras.Model(image, keras.layers.Dense(6, activation="softmax")(x), name="classifier")


def _recorded(model):
    """``model`` whose predict_on_batch calls are recorded (the rows of each call's first input)."""
    calls, call = [], model.predict_on_batch

    def predict_on_batch(x):
        calls.append(len(x[0] if isinstance(x, list) else x))
        return call(x)

    model.predict_on_batch = predict_on_batch
    return model, calls


@agnostic
@pytest.mark.parametrize("make", [_pose_net, _centre_map_net, _segmentation_net, _classifier])
def test_a_batch_gives_each_image_what_predict_gives_it(make):
    """7 images of two sizes, 3 per call: each image's prediction is predict's on it alone (the segmentation net
    takes the images at their own sizes: one call per size)."""
    model = make()
    images = _images([(40, 50), (33, 29), (40, 50), (40, 50), (33, 29), (40, 50), (40, 50)])
    alone = [inference.predict(model, image) for image in images]
    together = predict_batch(model, images, batch_size=3)
    assert len(together) == 7
    for a, b in zip(alone, together):
        assert a.task == b.task
        np.testing.assert_allclose(b.output, a.output, rtol=1e-5, atol=1e-5)
        if a.task == "pose":
            np.testing.assert_allclose(b.keypoints, a.keypoints, atol=1e-4)
            assert np.isfinite(a.keypoints).all()
        elif a.task == "segmentation":
            np.testing.assert_array_equal(b.mask, a.mask)
        else:
            assert [l for l, _ in b.top] == [l for l, _ in a.top]
        assert np.abs(b.picture.astype(int) - a.picture).max() <= 1


@agnostic
def test_calls_hold_batch_size_crops_padded_to_a_power_of_two():
    """JAX and TensorFlow compile a call per input shape: 7 crops in calls of 4 are 4 + 4 rows (the last 3 padded),
    1 image one row; 3 people one call of 4 rows; 6 video frames in calls of 4: 4 + 2."""
    from training.topdown import predict_people

    model, calls = _recorded(_pose_net())
    images = _images([(40, 50)] * 7)
    predict_batch(model, images, batch_size=4)
    assert calls == [4, 4]
    calls.clear()
    predict_batch(model, images[:1])
    inference.predict(model, images[0])
    assert calls == [1, 1]
    calls.clear()
    boxes = [(0, 0, 20, 30), (10, 5, 40, 35), (20, 10, 49, 39)]
    people = predict_people(model, images[0], boxes, batch_size=8)
    assert calls == [4] and people.keypoints.shape == (3, 5, 2)
    for box, found in zip(boxes, people.keypoints):  # each as one predict(box=) finds it
        np.testing.assert_allclose(found, inference.predict(model, images[0], box=box).keypoints, atol=1e-4)


@agnostic
def test_a_video_in_batches_of_frames_equals_frame_by_frame(tmp_path):
    import cv2

    from training.video import predict_video

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (50, 40))
    for image in _images([(40, 50)] * 6, seed=5):
        writer.write(image)
    writer.release()
    model, calls = _recorded(_pose_net())
    batched = predict_video(model, path, batch_size=4, progress=False)
    assert calls == [4, 2]
    one = predict_video(model, path, batch_size=1, progress=False)
    assert calls[2:] == [1] * 6
    np.testing.assert_allclose(batched.keypoints, one.keypoints, atol=1e-4)
    assert batched.keypoints.shape == (6, 5, 2)
    people = predict_video(model, path, boxes=[(0, 0, 25, 40), (25, 0, 50, 40)], batch_size=8, progress=False)
    assert calls[8:] == [8, 4]  # 6 frames x 2 people: 8 crops, then 4
    assert people.keypoints.shape == (6, 2, 5, 2)


@agnostic
@pytest.mark.jax_pass_only
def test_a_refused_image_is_named_by_its_place():
    """An hourglass of any size given one image it takes and two it does not (70 px: not a multiple of 64): the
    batch of the two fails in the backend, and the message names the first of them and the hourglass' rule."""
    from zoo.models.hourglass import hourglass

    keras.backend.clear_session()
    model = hourglass(stacks=1, features=8, num_keypoints=3, input_shape=(None, None, 3))
    model._zoo_name = "hourglass"  # as zoo.get names it
    images = _images([(64, 64), (70, 70), (70, 70)])
    with pytest.raises(ValueError, match=r"^image 2 of 3: hourglass takes inputs of heights and widths that are "
                                         r"multiples of 64 .* but not this 70x70 image \("):
        predict_batch(model, images)
    with pytest.raises(ValueError, match=r"^hourglass takes inputs of heights and widths"):  # one image: as predict
        predict_batch(model, images[1:2])
    with pytest.raises(ValueError, match=r"^image 3 of 3: the image must be a non-empty \(H, W\)"):
        predict_batch(_pose_net(), _images([(40, 50)] * 2) + [np.zeros((40, 50, 5), np.uint8)])
    for bad in (0, 2.0, True, "8"):
        with pytest.raises(ValueError, match=r"^predict_batch: batch_size must be an integer >= 1 \(images per model "
                                             r"call\) or None. Received: batch_size="):
            predict_batch(_pose_net(), images, batch_size=bad)


def test_the_default_batch_is_8_on_an_accelerator_and_1_on_a_cpu(monkeypatch):
    """Where Keras computes: batching 8 crops on a CPU made a 2-stack 256 px hourglass slower per image on JAX."""
    from training.batching import default_batch_size

    for devices, expected in ((["cpu:0"], 1), (["gpu:0", "gpu:1"], 8), (["tpu:0"], 8)):
        monkeypatch.setattr(keras.distribution, "list_devices", lambda devices=devices: devices)
        assert default_batch_size() == expected
    monkeypatch.undo()
    assert default_batch_size() == (8 if any("cpu" not in d for d in keras.distribution.list_devices()) else 1)


def _any_size_hourglass():
    from zoo.models.hourglass import hourglass

    keras.backend.clear_session()
    keras.utils.set_random_seed(5)
    model = hourglass(stacks=1, features=8, num_keypoints=3, input_shape=(None, None, 3))
    model._zoo_name = "hourglass"  # as zoo.get names it
    return model


def _predict_at_batch_sizes(monkeypatch, capsys, argv, out, sizes, status):
    """``kerazoo predict ARGV --out OUT/<size> --batch-size <size>`` in this process for each of ``sizes``:
    {size: (rows of each model call, stderr lines, stdout, predictions.csv rows, files written)}."""
    import csv

    from kerazoo.cli import main
    from training import batching

    calls, model_call = [], batching.model_call

    def recorded(model, feeds, batch_size=None):
        calls.append(len(feeds[0]))
        return model_call(model, feeds, batch_size)

    monkeypatch.setattr(batching, "model_call", recorded)
    runs = {}
    for size in sizes:
        calls.clear()
        capsys.readouterr()
        assert main(["predict", *map(str, argv), "--out", str(out / size), "--batch-size", size]) == status
        std = capsys.readouterr()
        with open(out / size / "predictions.csv") as f:
            rows = list(csv.DictReader(f))
        runs[size] = (list(calls), std.err.splitlines(), std.out, rows, sorted(p.name for p in (out / size).iterdir()))
    return runs


@agnostic
@pytest.mark.jax_pass_only
def test_return_exceptions_gives_a_refused_image_its_error_and_predicts_the_others():
    """A folder's images for an any-size hourglass, one of a size it does not take: predict_batch raised for the
    whole list; with return_exceptions each image gets its Prediction or its own error, and the batch of the refused
    size no longer stops the other sizes' batches."""
    model, calls = _recorded(_any_size_hourglass())
    images = _images([(64, 64), (70, 70), (64, 64), (70, 70), (128, 64)])
    got = predict_batch(model, images, batch_size=8, return_exceptions=True)
    assert [type(g).__name__ for g in got] == ["Prediction", "ValueError", "Prediction", "ValueError", "Prediction"]
    for k in (1, 3):
        assert str(got[k]).startswith(f"image {k + 1} of 5: hourglass takes inputs of heights and widths that are "
                                      f"multiples of 64"), got[k]
    assert calls == [2, 2, 1]  # the 64 px pair, the refused 70 px pair, the 128x64 one
    for k in (0, 2, 4):
        np.testing.assert_allclose(got[k].keypoints, inference.predict(model, images[k]).keypoints, atol=1e-3)
        np.testing.assert_allclose(got[k].output, inference.predict(model, images[k]).output, atol=1e-4)
    with pytest.raises(ValueError, match=r"^image 2 of 5: hourglass takes"):  # the default: raised, as before
        predict_batch(model, images, batch_size=8)


@agnostic
@pytest.mark.jax_pass_only
def test_the_command_line_predicts_a_folder_batch_size_images_per_call(tmp_path, monkeypatch, capsys):
    """``kerazoo predict FOLDER --batch-size 4``: the folder's images of one size go through the model together, its
    output equals image by image, and an unreadable file and an image the model does not take are still skipped and
    named (a folder was predicted one image per call whatever --batch-size said)."""
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a", (64, 64)), ("b", (50, 70)), ("c", (64, 64)), ("d", (64, 64)), ("e", (64, 64)),
                         ("f", (128, 64))):
        cv2.imwrite(str(folder / f"{name}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (folder / "g.png").write_bytes(b"not a png")
    _any_size_hourglass().save(tmp_path / "hg.keras")
    runs = _predict_at_batch_sizes(monkeypatch, capsys, ["hourglass", folder, "--weights", tmp_path / "hg.keras"],
                                   tmp_path / "out", ("1", "4"), status=1)
    assert runs["1"][0] == [1] * 6
    assert runs["4"][0] == [3, 1, 1, 1]  # a, c, d in one call, b refused; then e and f
    err = runs["4"][1]
    assert err == runs["1"][1] and len(err) == 4, err
    assert err[0].startswith(f"kerazoo predict: cannot predict '{folder / 'b.png'}': hourglass takes inputs of any "
                             f"size, but not this 70x50 image") and err[0].endswith("(skipped)"), err
    assert err[1:] == [f"kerazoo predict: cannot read image '{folder / 'g.png'}' (skipped)",
                       "kerazoo predict: 1 of 7 images could not be read",
                       "kerazoo predict: 1 of 7 images could not be predicted"], err
    assert runs["4"][4] == runs["1"][4] == [f"{n}.pred.png" for n in "acdef"] + ["predictions.csv"]
    one, four = runs["1"][3], runs["4"][3]
    assert [(r["image"], r["name"]) for r in four] == [(r["image"], r["name"]) for r in one] and len(four) == 15
    np.testing.assert_allclose([[float(r["x"]), float(r["y"])] for r in four],
                               [[float(r["x"]), float(r["y"])] for r in one], atol=0.02)


@agnostic
def test_the_command_line_predicts_a_folders_people_together(tmp_path, monkeypatch, capsys):
    """``kerazoo predict FOLDER --boxes FILE``: the people of several images go through the model together (each
    image's people were one call of their own), with the same CSV as one image at a time."""
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in "abcd":
        cv2.imwrite(str(folder / f"{name}.png"), rng.integers(0, 256, (60, 90, 3), dtype=np.uint8))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("a.png,10,5,40,50\na.png,50,10,80,55\nb.png,20,10,45,40\nd.png,5,5,35,35\nd.png,40,20,85,58\n")
    _pose_net().save(tmp_path / "pose.keras")
    runs = _predict_at_batch_sizes(monkeypatch, capsys, ["hourglass", folder, "--weights", tmp_path / "pose.keras",
                                                         "--boxes", boxes], tmp_path / "out", ("1", "8"), status=0)
    for size in runs:
        assert f"{folder / 'c.png'}: no box in {boxes}" in runs[size][2]
    assert runs["1"][0] == [2, 1, 2]  # image by image: a's 2 people, b's 1, d's 2
    assert runs["8"][0] == [5]  # all 5 people in one call
    one, eight = runs["1"][3], runs["8"][3]
    assert [(r["image"], r["person"], r["joint"]) for r in eight] == [(r["image"], r["person"], r["joint"])
                                                                       for r in one] and len(one) == 5 * 5
    np.testing.assert_allclose([[float(r["x"]), float(r["y"])] for r in eight],
                               [[float(r["x"]), float(r["y"])] for r in one], atol=0.02)
