"""Videos: every frame predicted as an image is, written as a video at the source's rate, nothing half-written."""

import csv
import os

import cv2
import numpy as np
import pytest

from training import inference
from training.video import predict_video

agnostic = pytest.mark.backend_agnostic


def _clip(path, frames=6, size=(96, 80), fps=12.0):
    """A Motion JPEG clip of a white bar moving right (OpenCV writes it in every build)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 30, np.uint8)
        cv2.rectangle(frame, (10 + 8 * i, 20), (30 + 8 * i, 60), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def _frames(path):
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])  # RGB, as predict takes images
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


def _pose_model(input_shape=(64, 64, 3)):
    import keras

    import zoo

    keras.utils.set_random_seed(0)  # some random heads had a map below 0 everywhere (a keypoint not found)
    model = zoo.get("hourglass", stacks=1, features=8, num_keypoints=4, input_shape=input_shape)
    head = model.get_layer("stack1_heatmaps")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias + 1.0])  # peaks above 0 everywhere: every keypoint found, where the frame says
    return model


@agnostic
def test_every_frame_is_predicted_as_an_image_and_written_at_the_sources_rate(tmp_path):
    clip = _clip(tmp_path / "clip.avi")
    model = _pose_model()
    result = predict_video(model, clip, tmp_path / "out" / "clip.pred.mp4", progress=False)
    frames, _ = _frames(clip)
    assert (result.frames, result.fps, result.size, result.task) == (6, 12.0, (96, 80), "pose")
    want = [inference.predict(model, f) for f in frames]
    np.testing.assert_array_equal(result.keypoints, np.stack([p.keypoints for p in want]))
    assert result.keypoints.shape == (6, 4, 2) and np.isfinite(result.keypoints).all()
    written, fps = _frames(tmp_path / "out" / "clip.pred.mp4")
    assert len(written) == 6 and fps == 12.0 and written[0].shape == (80, 96, 3)
    for got, pred in zip(written, want):  # MPEG-4 is lossy: the drawn pictures, near enough
        assert np.abs(got.astype(float) - pred.picture).mean() < 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.pred.mp4"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)  # the usual permissions, as the .png and .csv get: it was mkstemp's 0600
    assert (tmp_path / "out" / "clip.pred.mp4").stat().st_mode & 0o777 == 0o666 & ~umask


@agnostic
def test_several_boxes_give_each_frames_people(tmp_path):
    from training.topdown import predict_people

    clip = _clip(tmp_path / "clip.avi")
    model = _pose_model()
    boxes = [(0, 0, 40, 40), (40, 20, 90, 79)]
    result = predict_video(model, clip, boxes=boxes, max_frames=3, progress=False)
    assert result.frames == 3 and result.path is None and result.keypoints.shape == (3, 2, 4, 2)
    frames, _ = _frames(clip)
    for got, frame in zip(result.keypoints, frames):
        np.testing.assert_array_equal(got, predict_people(model, frame, boxes).keypoints)


@agnostic
def test_a_frame_the_model_refuses_leaves_nothing_behind(tmp_path):
    """An hourglass of any size takes multiples of 64 px: a 96x80 clip fails at its first frame, and neither the
    video nor its temporary file is left."""
    clip = _clip(tmp_path / "clip.avi")
    model = _pose_model(input_shape=(None, None, 3))
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match=r"not this 96x80 image"):
        predict_video(model, clip, tmp_path / "out" / "p.avi", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_bad_videos_and_arguments_are_named(tmp_path):
    clip = _clip(tmp_path / "clip.avi")
    (tmp_path / "text.mp4").write_text("not a video\n")
    model = object()  # each refusal comes before the model is used
    for kwargs, match in [
        (dict(video=tmp_path / "text.mp4"), r"OpenCV cannot read '.*text.mp4' as a video"),
        (dict(video=tmp_path / "none.mp4"), r"no video file '.*none.mp4'"),
        (dict(video=clip, out=tmp_path / "p.png"), r"out must name a .mp4 or .avi file .* Received: out='.*p.png'"),
        (dict(video=clip, max_frames=0), r"max_frames must be an integer >= 1 or None. Received: max_frames=0"),
        (dict(video=clip, boxes=[(0, 0, 9, 9)], box=(0, 0, 9, 9)), r"give box= \(one person\) or boxes= \(several\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            predict_video(model, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "text.mp4"]


def test_command_line_predicts_a_video_into_a_video_and_a_csv(tmp_path):
    import zoo
    from tests.test_cli import _one_line_error, kerazoo_here

    clip = _clip(tmp_path / "clip.avi")
    zoo.save_weights(_pose_model(), tmp_path / "hg.h5")
    r = kerazoo_here("predict", "hourglass", clip, "--weights", tmp_path / "hg.h5", "--out", f"{tmp_path / 'o'}/")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "o"
    assert r.stdout.splitlines() == [f"{clip}: 6 frames, 96x80 at 12 fps (pose)", f"wrote {out / 'clip.pred.avi'}",
                                     f"wrote {out / 'clip.pred.csv'}"]
    with open(tmp_path / "o" / "clip.pred.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["frame", "joint", "name", "x", "y"] and len(rows) == 6 * 4
    assert [r["frame"] for r in rows[::4]] == [str(i) for i in range(6)]
    assert len(_frames(tmp_path / "o" / "clip.pred.avi")[0]) == 6
    # 4 frames per model call: the same keypoints (printed to 0.01 px)
    r = kerazoo_here("predict", "hourglass", clip, "--weights", tmp_path / "hg.h5", "--batch-size", "4", "--out",
                     tmp_path / "b4" / "c.avi")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "b4" / "c.csv") as f:
        batched = list(csv.DictReader(f))
    np.testing.assert_allclose([[float(r["x"]), float(r["y"])] for r in batched],
                               [[float(r["x"]), float(r["y"])] for r in rows], atol=0.011)
    r = kerazoo_here("predict", "hourglass", clip, "--weights", tmp_path / "hg.h5", "--batch-size", "0")
    assert r.returncode == 2 and "argument --batch-size: expected an integer >= 1, got '0'" in r.stderr, r.stderr
    # several boxes: a person column; the default target beside the video
    r = kerazoo_here("predict", "hourglass", clip, "--weights", tmp_path / "hg.h5", "--box", "0,0,40,40",
                     "--box", "40,20,90,79")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "clip.pred.csv") as f:
        assert next(csv.reader(f)) == ["frame", "person", "joint", "name", "x", "y"]
    r = kerazoo_here("predict", "hourglass", clip, "--weights", tmp_path / "hg.h5", "--smooth", "--out", out / "s.avi")
    assert r.returncode == 0 and r.stdout.startswith(f"{clip}: 6 frames, 96x80 at 12 fps (pose, keypoints smoothed)")
    with open(out / "s.csv") as f:  # the smoothed keypoints: the first frame's as the unsmoothed run's, not the rest
        smoothed = [(r["x"], r["y"]) for r in csv.DictReader(f)]
    assert smoothed[:4] == [(r["x"], r["y"]) for r in rows[:4]] and smoothed[4:] != [(r["x"], r["y"]) for r in rows[4:]]
    zoo.save_weights(zoo.get("resnet18", input_shape=(32, 32, 3), classes=3), tmp_path / "r18.h5")
    r = kerazoo_here("predict", "resnet18", clip, "--weights", tmp_path / "r18.h5", "--smooth")
    said = "kerazoo predict: error: smooth is for pose models (keypoints across frames); resnet18 gives"
    assert r.returncode == 2 and _one_line_error(r) == f"{said} classification"
    assert not (tmp_path / "clip.pred.mp4").exists()
    cv2.imwrite(str(tmp_path / "still.png"), np.zeros((64, 64, 3), np.uint8))
    r = kerazoo_here("predict", "hourglass", tmp_path / "still.png", "--weights", tmp_path / "hg.h5", "--smooth")
    assert r.returncode == 2 and _one_line_error(r) == ("kerazoo predict: error: --smooth is for a video (keypoints "
                                                        "across its frames); the inputs are images")
    r = kerazoo_here("predict", "resnet18", clip, "--weights", tmp_path / "r18.h5", "--out", out)  # classes per frame
    assert r.returncode == 0, r.stderr
    with open(out / "clip.pred.csv") as f:
        classes = list(csv.DictReader(f))
    assert list(classes[0]) == ["frame", "rank", "label", "probability"] and len(classes) == 6 * 3
    assert [(c["frame"], c["rank"]) for c in classes[:4]] == [("0", "1"), ("0", "2"), ("0", "3"), ("1", "1")]
    # masks drawn into the frames, no CSV: the classifier's rows no longer describe clip.pred.avi, so they go
    import keras

    inputs = keras.Input((None, None, 3))
    keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs)).save(tmp_path / "seg.keras")
    r = kerazoo_here("predict", "fcn8s", clip, "--weights", tmp_path / "seg.keras", "--out", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == [f"wrote {out / 'clip.pred.avi'}", f"removed {out / 'clip.pred.csv'} (an "
                                         f"earlier run's: this one has no keypoints or classes to list)"]
    assert len(_frames(out / "clip.pred.avi")[0]) == 6
    for args, said in [((clip, clip), "a video is predicted alone: give one video, not it among 2 images or videos"),
                       ((clip, "--out", tmp_path / "p.png"), f"--out '{tmp_path / 'p.png'}': a video's pictures go "
                                                             f"to a .mp4 or .avi file, or a folder"),
                       ((clip, "--masks"), "--masks writes class-index PNGs per image"),
                       ((clip, "--boxes", tmp_path / "b.csv"), "--boxes FILE gives people per image"),
                       ((clip, "--out", clip), f"--out '{clip}' is the video being read")]:
        r = kerazoo_here("predict", "hourglass", *args, "--weights", tmp_path / "hg.h5")
        assert r.returncode == 2 and _one_line_error(r).startswith(f"kerazoo predict: error: {said}"), r.stderr


@agnostic
def test_smoothed_keypoints_are_the_one_euro_filter_of_each_frames_and_are_drawn(tmp_path):
    from training.smoothing import one_euro
    from training.visualize import draw_keypoints
    from training.inference import _skeleton

    clip = _clip(tmp_path / "clip.avi")
    model = _pose_model()
    plain = predict_video(model, clip, progress=False)
    result = predict_video(model, clip, tmp_path / "s.avi", smooth=dict(min_cutoff=0.5, beta=0.01), progress=False)
    np.testing.assert_array_equal(result.raw_keypoints, plain.keypoints)
    np.testing.assert_allclose(result.keypoints, one_euro(plain.keypoints, 12.0, min_cutoff=0.5, beta=0.01), atol=0)
    assert not np.allclose(result.keypoints[1:], plain.keypoints[1:])  # the bar moves: smoothing lags it
    frames, _ = _frames(clip)
    written, _ = _frames(tmp_path / "s.avi")
    for got, frame, kp in zip(written, frames, result.keypoints):  # the smoothed points drawn (Motion JPEG: near)
        assert np.abs(got.astype(float) - draw_keypoints(frame, kp, skeleton=_skeleton(None, 4))).mean() < 4
    people = predict_video(model, clip, boxes=[(0, 0, 40, 40), (40, 20, 90, 79)], smooth=True, progress=False)
    np.testing.assert_allclose(people.keypoints, one_euro(people.raw_keypoints, 12.0), atol=0)
    for smooth, match in ((dict(cutoff=1), r"smooth must be True, False, None or a dict of the One Euro filter's "
                                           r"settings \(min_cutoff, beta, d_cutoff\). Received: smooth=\{'cutoff'"),
                          (dict(beta=-1), r"one_euro: beta must be a number >= 0")):
        with pytest.raises(ValueError, match=match):
            predict_video(model, clip, smooth=smooth, progress=False)


def test_an_unreadable_video_is_one_line_without_ffmpegs_own(tmp_path):
    # FFmpeg wrote "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x...] moov atom not found" to stderr before the error line
    import zoo
    from tests.test_cli import _TF_NOISE, kerazoo

    (tmp_path / "bad.mp4").write_text("not a video\n")
    zoo.save_weights(_pose_model(), tmp_path / "hg.h5")
    r = kerazoo("predict", "hourglass", tmp_path / "bad.mp4", "--weights", tmp_path / "hg.h5")  # FFmpeg's stderr
    lines = [line for line in r.stderr.splitlines() if not _TF_NOISE.match(line)]
    assert r.returncode == 2 and lines == [
        f"kerazoo predict: error: OpenCV cannot read '{tmp_path / 'bad.mp4'}' as a video"], r.stderr


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_a_video_cut_short_by_a_full_disk_is_not_renamed_into_place(tmp_path, suffix):
    """OpenCV's writer fails without a word at a file-size limit or a full disk: the cut file (an MP4 nothing opens,
    an AVI of 5 frames in 40) was renamed into place and the command said 'wrote'. A real limit (RLIMIT_FSIZE) in a
    real process."""
    import resource
    import subprocess
    import sys

    import zoo
    from tests.test_cli import ENV

    clip = tmp_path / "clip.avi"  # noise, which no codec shrinks much: the pictures are > 400 kB in either format
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (160, 128))
    rng = np.random.default_rng(0)
    for _ in range(40):
        writer.write(rng.integers(0, 256, (128, 160, 3), dtype=np.uint8))
    writer.release()
    zoo.save_weights(_pose_model(), tmp_path / "hg.h5")
    out = tmp_path / "out" / f"clip.pred{suffix}"
    out.parent.mkdir()
    limit = 100_000  # bytes: the Keras start-up writes nothing this large

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    r = subprocess.run([sys.executable, "-m", "kerazoo", "predict", "hourglass", str(clip), "--weights",
                        str(tmp_path / "hg.h5"), "--out", str(out)], capture_output=True, text=True, env=ENV,
                       preexec_fn=limited, timeout=300)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"error: writing '{out}' failed: the file written " in r.stderr and "nothing was written" in r.stderr, \
        r.stderr
    assert "wrote" not in r.stdout and list(out.parent.iterdir()) == []
