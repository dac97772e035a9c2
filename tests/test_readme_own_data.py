"""The README's "Your own data" snippets, run as written on generated files: only the sizes, the epochs and the
starting weights are swapped for small ones (each swap must find its text, so an edit of the README shows here)."""

import json
import re
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SWAPS = [  # (README text, what runs here)
    ('input_size=(256, 256), heatmap_size=(64, 64)', 'input_size=(64, 64), heatmap_size=(16, 16)'),
    ('weights="mpii"', 'weights="mydata/start.keras"'),  # a 16-keypoint hourglass saved here, not the download
    ("epochs=50", "epochs=1"),
    ('input_size=(320, 320)', 'input_size=(64, 64)'),
    ('model = zoo.get("fcn8s", weights="voc", classes=len(CLASSES), input_shape=(320, 320, 3))',
     'from training.models import tiny_fcn; model = tiny_fcn(classes=len(CLASSES), input_shape=(64, 64, 3))'),
]


def _snippets():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Your own data"):]
    section = section[:section.index("\n## ")]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))
    for old, new in SWAPS:
        assert old in code, old
        code = code.replace(old, new)
    return code


def _pose_files(folder: Path, rng):
    """Five points on a bright blob per image (nose, ears, paws), three images hold out for validation."""
    entries = []
    for i in range(11):
        image = np.full((96, 112, 3), 40, np.uint8)
        cx, cy = rng.uniform(40, 70), rng.uniform(40, 55)
        pts = np.array([[cx, cy - 18], [cx - 12, cy - 24], [cx + 12, cy - 24], [cx - 14, cy + 20], [cx + 14, cy + 20]])
        for x, y in pts:
            cv2.circle(image, (int(x), int(y)), 4, (250, 250, 250), -1)
        cv2.imwrite(str(folder / f"a{i}.png"), image)
        vis = np.ones(5)
        vis[i % 5] = 0 if i % 3 == 0 else 1  # some keypoints unannotated
        entries.append({"image": str(folder / f"a{i}.png"), "keypoints": np.c_[pts, vis].tolist()})
    (folder / "train.json").write_text(json.dumps(entries[:8]))
    (folder / "val.json").write_text(json.dumps(entries[8:]))


def _segmentation_files(folder: Path, rng):
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    for i in range(14):
        mask = np.zeros((72, 88), np.uint8)
        mask[40:, :] = 1  # road
        x = int(rng.integers(5, 60))
        mask[30:50, x:x + 20] = 2  # car
        mask[:2] = 255  # not labelled
        image = np.stack([mask * 90 + 20, mask * 40 + 60, 200 - mask * 70], -1).astype(np.uint8)
        cv2.imwrite(str(folder / "images" / f"s{i:02d}.jpg"), image)
        cv2.imwrite(str(folder / "masks" / f"s{i:02d}.png"), mask)


def test_the_readme_snippets_for_your_own_data_run(tmp_path, monkeypatch):
    import zoo

    rng = np.random.default_rng(0)
    data = tmp_path / "mydata"
    data.mkdir()
    _pose_files(data, rng)
    _segmentation_files(data, rng)
    start = zoo.get("hourglass", stacks=1, features=16, num_keypoints=16, input_shape=(64, 64, 3))
    zoo.save_model(start, data / "start.keras")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(_snippets(), "README.md (Your own data)", "exec"), scope)
    pose = zoo.load_keras_model(tmp_path / "runs" / "mine" / "best.keras")
    record = zoo.weights_record(pose)
    assert pose.output_shape[-1] == 5 and record.keypoint_names == scope["NAMES"]
    assert [tuple(p) for p in record.flip_pairs] == scope["FLIP_PAIRS"]
    seg = zoo.load_keras_model(tmp_path / "runs" / "seg" / "best.keras")
    assert seg.output_shape[-1] == 3 and (tmp_path / "runs" / "seg" / "log.csv").exists()
