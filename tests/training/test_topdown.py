"""training.topdown's box files: a detector's boxes per image read and matched to the images given."""

import re
from pathlib import Path

import pytest

from training.topdown import boxes_for_images, read_boxes

pytestmark = pytest.mark.backend_agnostic


def test_read_boxes_takes_a_spreadsheets_csv(tmp_path):
    path = tmp_path / "boxes.csv"
    # a spreadsheet's byte-order mark and CRLF lines, a blank row, extra columns (score, class)
    path.write_bytes("\ufeffImage,x1,y1,x2,y2,score\r\na.jpg, 1, 2, 30, 40 ,0.9,person\r\n\r\nb/a.jpg,5,6,7,8\r\n"
                     .encode("utf-8"))
    assert read_boxes(path) == {"a.jpg": [(1.0, 2.0, 30.0, 40.0)], "b/a.jpg": [(5.0, 6.0, 7.0, 8.0)]}
    for text, expected in (("", "no boxes"), ("image,x1,y1,x2,y2\n", "no boxes"),
                           ("a.jpg,1,2,nan,40\n", "row 1: expected image,x1,y1,x2,y2"),
                           ("a.jpg,30,2,1,40\n", "row 1: expected image,x1,y1,x2,y2 with image px x1 < x2"),
                           (",1,2,30,40\n", "row 1: expected image,x1,y1,x2,y2")):
        path.write_text(text)
        with pytest.raises(ValueError, match=rf"^'{re.escape(str(path))}'.*{re.escape(expected)}"):
            read_boxes(path)
    path.write_bytes(b"\xff\xd8\xff\xe0 a JPEG, not a CSV")
    with pytest.raises(ValueError, match=rf"^'{re.escape(str(path))}': not a text \(CSV\) file of boxes"):
        read_boxes(path)


def test_boxes_are_matched_by_path_else_file_name():
    images = [Path("x/a.jpg"), Path("y/a.jpg"), Path("y/b.jpg")]
    box = (1.0, 2.0, 3.0, 4.0)
    assert boxes_for_images({"x/a.jpg": [box], "b.jpg": [box, box]}, images, "f.csv") == [[box], [], [box, box]]
    with pytest.raises(ValueError, match=r"^'f.csv': image 'a.jpg' names 2 of the images given \(x/a.jpg, y/a.jpg\); "
                                         r"write its folder too"):
        boxes_for_images({"a.jpg": [box]}, images, "f.csv")
    with pytest.raises(ValueError, match=r"^'f.csv': image 'z.jpg' is none of the images given"):
        boxes_for_images({"z.jpg": [box]}, images, "f.csv")


def test_read_boxes_keeps_scores_at_least_min_score(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("image,x1,y1,x2,y2,score\na.jpg,1,2,30,40,0.9\na.jpg,5,6,7,8,0.3\nb.jpg,1,2,3,4,0.5\n")
    assert read_boxes(path, 0.5) == {"a.jpg": [(1.0, 2.0, 30.0, 40.0)], "b.jpg": [(1.0, 2.0, 3.0, 4.0)]}
    assert read_boxes(path, 0.95) == {}  # no confident detection: no people, not an error
    assert len(read_boxes(path)["a.jpg"]) == 2  # no threshold: every row
    path.write_text("a.jpg,1,2,30,40,0.9\na.jpg,5,6,7,8\n")
    with pytest.raises(ValueError, match=r"row 2: a minimum score needs the detector's score in the sixth column"):
        read_boxes(path, 0.5)
