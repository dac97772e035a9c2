"""Pictures: drawn where the coordinates say, written atomically."""

import cv2
import numpy as np

from training import visualize


def test_keypoints_are_drawn_at_their_coordinates():
    img = np.zeros((64, 64, 3), np.uint8)
    kp = np.array([[10.0, 20.0], [40.0, 50.0]])
    out = visualize.draw_keypoints(img, kp, skeleton=[(0, 1)], color=(255, 0, 0))
    assert out[20, 10, 0] == 255 and out[50, 40, 0] == 255
    assert out[35, 25, 0] > 0  # the edge between them
    hidden = visualize.draw_keypoints(img, kp, visible=[True, False], skeleton=[(0, 1)], color=(255, 0, 0))
    assert hidden[50, 40, 0] == 0 and hidden[35, 25, 0] == 0
    assert img.max() == 0  # input untouched


def test_heatmap_grid_and_mask_overlay(tmp_path):
    hm = np.zeros((8, 8, 5), np.float32)
    hm[2, 3, 1] = 1.0
    grid = visualize.heatmap_grid(hm, cell=16)
    assert grid.shape == (2 * 16, 3 * 16, 3)  # 5 maps: 3 columns, 2 rows
    mask = np.zeros((10, 10), np.int32)
    mask[:5] = 1
    mask[0, 0] = 255
    img = np.full((10, 10, 3), 100, np.uint8)
    over = visualize.mask_overlay(img, mask)
    assert (over[9, 9] == 100).all() and (over[0, 0] == 100).all() and not (over[3, 3] == 100).all()
    path = visualize.write_png(tmp_path / "a" / "m.png", over)
    back = cv2.imread(str(path))[..., ::-1]
    np.testing.assert_array_equal(back, over)
    assert not list((tmp_path / "a").glob(".*"))


def test_voc_palette_matches_known_colours():
    pal = visualize.voc_palette()
    assert tuple(pal[1]) == (128, 0, 0) and tuple(pal[15]) == (192, 128, 128)


def test_training_curve_from_csv(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("epoch,loss,pck\n0,1.0,0.1\n1,0.5,0.6\n2,0.2,0.9\n")
    img = visualize.training_curve(p)
    assert img.shape == (320, 480, 3) and img.min() < 255
