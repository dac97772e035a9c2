"""Pascal VOC 2012 semantic segmentation reader.

On-disk layout (the official ``VOCtrainval_11-May-2012.tar``)::

    <root>/                              usually .../VOCdevkit/VOC2012
        JPEGImages/<id>.jpg              RGB photos
        SegmentationClass/<id>.png       8-bit *palette* PNG; pixel value = class id 0..20,
                                         255 = "void" (object borders, difficult regions) = ignore
        ImageSets/Segmentation/train.txt one image id per line (also val.txt, trainval.txt)

The SBD "aug" set (``SegmentationClassAug``, grey PNGs) is read the same way with
``mask_dir="SegmentationClassAug"``.
"""

from __future__ import annotations

from pathlib import Path

from training.datasets.base import AnnotationError, SegRecord
from zoo.releases import VOC_CLASSES  # noqa: F401  (re-exported; one definition)
from training.visualize import voc_palette  # noqa: F401  (re-exported: the VOC colour map)

__all__ = ["VOC_CLASSES", "voc_palette", "read_voc"]



def read_voc(root, split: str = "train", *, image_dir: str = "JPEGImages", mask_dir: str = "SegmentationClass",
             image_ext: str = ".jpg", mask_ext: str = ".png", check_files: bool = True) -> list[SegRecord]:
    """Records for one VOC split.

    Args:
        root: the ``VOC2012`` folder.
        split: name of a list file in ``ImageSets/Segmentation`` (``train``, ``val``, ``trainval``).
        image_dir, mask_dir, image_ext, mask_ext: sub-folders and suffixes (see module docstring).
        check_files: raise at once when a listed mask is missing (images are checked when read).
    Returns:
        list of :class:`SegRecord`; masks keep VOC ids (255 = ignore).
    Raises:
        AnnotationError: missing split file (lists the available ones) or a listed mask missing.
    """
    root = Path(root)
    list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not list_file.is_file():
        avail = sorted(p.stem for p in list_file.parent.glob("*.txt")) if list_file.parent.is_dir() else []
        raise AnnotationError(
            f"VOC split file not found: '{list_file}'. Available splits: {', '.join(avail) or 'none'}."
        )
    records = []
    for line_no, line in enumerate(list_file.read_text().splitlines(), 1):
        sid = line.strip().split()[0] if line.strip() else ""
        if not sid:
            continue
        mask = root / mask_dir / f"{sid}{mask_ext}"
        if check_files and not mask.is_file():
            raise AnnotationError(f"'{list_file}' line {line_no}: image id '{sid}' has no mask file '{mask}'.")
        records.append(SegRecord(image=str(root / image_dir / f"{sid}{image_ext}"), mask=str(mask), id=sid))
    return records
