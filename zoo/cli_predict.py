"""``kerazoo predict NAME IMAGE|FOLDER ...``: keypoints, a mask or classes for images, several or a folder's
(``--batch-size`` per model call), people by ``--box`` / ``--boxes``; a video goes to :mod:`zoo.cli_video`."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from kerazoo.cli import IMAGE_SUFFIXES, CLIError, blocked_by_file
from zoo.errors import one_line

__all__ = ["_cmd_predict"]


def _predict_images(args) -> tuple[list[Path], bool]:
    """The IMAGE arguments as files, and whether they are a batch (several, or a folder's).

    A folder gives its image files (by suffix, in name order, not its subfolders), leaving out the ``.pred.png``
    pictures and ``--masks``' ``.mask.png`` class indices an earlier run wrote beside them, and hidden files, as the
    shell's ``*`` does (macOS' ``._a.jpg`` AppleDouble companions in a copied folder are no images: each was skipped
    as unreadable, exit status 1). A file named twice (a folder and one of its files, ``./x`` and ``x``) is predicted
    once, where it is first named.
    """
    files, batch = [], len(args.image) > 1
    for arg in args.image:
        path = Path(arg)
        if path.is_dir():
            # a dangling link is kept, to be reported unreadable (it was left out without a word)
            found = sorted(q for q in path.iterdir() if (q.is_file() or _dangling(q))
                           and q.suffix.lower() in IMAGE_SUFFIXES
                           and not q.name.lower().endswith((".pred.png", ".mask.png"))
                           and not q.name.startswith("."))
            if not found:
                raise CLIError(f"{arg!r}: a folder without image files ({', '.join(IMAGE_SUFFIXES)})")
            files += found
            batch = True
        elif path.is_file():
            files.append(path)
        else:
            raise CLIError(f"cannot read image {arg!r}{_why_unreadable(path)}")
    named = {}  # absolute path -> the file as first named
    for f in files:
        named.setdefault(os.path.abspath(f), f)
    return list(named.values()), batch


def _dangling(path: Path) -> bool:
    return path.is_symlink() and not path.exists()


def _why_unreadable(path: Path) -> str:
    """What is known of why ``path`` gave no image, as a clause to append to 'cannot read image', else ''."""
    import stat

    try:
        st = os.stat(path)
    except OSError as e:  # ELOOP: a loop of links; EACCES: a folder on the way not searchable
        if _dangling(path) and isinstance(e, FileNotFoundError):
            return f" (a link to '{os.readlink(path)}', which does not exist)"
        return f" ({(e.strerror or type(e).__name__).lower()})"
    if stat.S_ISDIR(st.st_mode):
        return " (a folder)"
    if not stat.S_ISREG(st.st_mode):
        return " (not a regular file: a pipe, socket or device)"
    if not os.access(path, os.R_OK):
        return " (permission denied)"
    if st.st_size == 0:
        return " (an empty file)"
    return ""


def _predict_target(args, image: Path) -> Path:
    """``--out`` as given; in a folder (existing, written with a trailing slash, or a new name without a suffix):
    IMAGE_STEM.pred.png."""
    if not args.out:
        return Path(image).with_suffix(".pred.png")
    out = Path(args.out)
    # a new name without a suffix is a folder to make, as it is for several images
    if out.is_dir() or args.out.endswith(("/", os.sep)) or (not out.suffix and not os.path.lexists(out)):
        out = out / f"{Path(image).stem}.pred.png"
    elif out.suffix.lower() != ".png":  # the picture is PNG-encoded whatever the name says
        raise CLIError(f"--out '{out}': expected a file name ending in .png, or a folder")
    blocker = blocked_by_file(out)
    if blocker is not None:
        raise CLIError(f"--out '{out}': '{blocker}' is a file, expected a folder there")
    return out


def _predict_targets(args, images: list[Path], batch: bool) -> list[Path]:
    """Where each image's picture goes: one image as :func:`_predict_target`; a batch into the ``--out`` folder
    (made if missing), else beside each image. Checked before the model is loaded."""
    if not batch:
        return [_predict_target(args, images[0])]
    if not args.out:
        targets = [p.with_suffix(".pred.png") for p in images]
    else:
        out = Path(args.out)
        if out.suffix.lower() == ".png" or (out.exists() and not out.is_dir()):
            what = f"{len(images)} images" if len(images) > 1 else "a folder's images"  # not "1 images"
            raise CLIError(f"--out '{out}': {what} need a folder (an existing one, or a new name without .png)")
        blocker = blocked_by_file(out / "x")
        if blocker is not None:
            raise CLIError(f"--out '{out}': '{blocker}' is a file, expected a folder there")
        targets = [out / f"{image.stem}.pred.png" for image in images]
    seen = {}
    for image, target in zip(images, targets):
        # a.jpg and a.png (beside them or in --out), or two folders' a.jpg in --out: the second picture would
        # replace the first
        if os.path.abspath(target) in seen:
            first = seen[os.path.abspath(target)]
            if args.out:
                raise CLIError(f"--out '{args.out}': '{first}' and '{image}' would both be written to "
                               f"'{target.name}'; predict them into different folders")
            raise CLIError(f"'{first}' and '{image}' would both be written to '{target}'; give --out folders to "
                           f"predict them into different ones")
        seen[os.path.abspath(target)] = image
    return targets


def _refuse_writing_over_inputs(args, images: list[Path], targets: list[Path]) -> None:
    """No picture (nor ``--masks`` file) may replace an image given to predict: ``--out a.png`` for a.png wrote
    over it, and ``predict a.png a.pred.png`` wrote a.png's picture over the second image before it was read
    (which then printed a.png's keypoints)."""
    given = {os.path.realpath(p): p for p in images}
    for source, target in zip(images, targets):
        for written in (target, _mask_target(target)) if args.masks else (target,):
            image = given.get(os.path.realpath(written))
            if image is None:
                continue
            if args.out:
                same = "" if os.path.abspath(written) == os.path.abspath(image) else f" ('{written}' is '{image}')"
                raise CLIError(f"--out '{args.out}' would write over an image being read{same}; give another name "
                               f"or folder")
            raise CLIError(f"the picture of '{source}' would be written to '{written}', which is also an image given "
                           f"to predict; give --out a folder")


def _read_image(path: Path):
    """The file at its own depth and channels as predict takes it (RGB, grey or 16-bit/float), or ``None``."""
    import cv2
    import numpy as np

    from zoo.errors import quiet_opencv

    # depth and channel count as stored (IMREAD_COLOR cut 16-bit to 8 and refused float TIFFs): grey comes as
    # (H, W), colour as BGR with any alpha dropped, as predict drops it; not IMREAD_UNCHANGED, which would
    # also skip the EXIF orientation (a phone's portrait JPEG would be predicted on its side). The file's bytes are
    # decoded, as training's read_image does: cv2.imread filled a truncated JPEG's missing rows with grey and
    # predicted on them (imdecode refuses it), and reads no non-ASCII path on Windows.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:  # a folder, an unreadable file
        return None
    with quiet_opencv():  # a broken file is our one-line error, not OpenCV's notices too
        image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if data.size else None
    if image is not None and image.ndim == 3:
        image = image[..., ::-1]  # BGR -> RGB
    return image


def _load_predict_model(args):
    import zoo

    if Path(args.weights).suffix.lower() == ".keras":  # a whole model: load it, don't rebuild the default one
        if args.model_arg:
            raise CLIError(f"--model-arg is for weights that do not give the architecture; {args.weights!r} "
                           f"is a whole model, loaded as it is")
        from training.models import _run_metadata

        model = zoo.load_keras_model(args.weights)
        # a run's checkpoint: its input convention and heatmap offset (config.json) as the model's record; the
        # offset was left at 0, off the run's own targets by the offset it trained with
        _run_metadata(model, args.weights)
    else:
        model = zoo.get(args.name, weights=args.weights, **dict(args.model_arg))
    if args.winograd:
        model = zoo.optimize_for_inference(model, verbose=True)
    return model


# training.inference.predict's words for an image (or its scaled copy) whose size the model does not take
_IMAGE_NOT_TAKEN = re.compile(r"\bthis \d+x\d+ (scaled )?image\b")


def _predicted(model, record, images, first, args, people):
    """``(path, image, prediction)`` for each of ``images`` in order: ``image`` ``None`` where the file cannot be
    read; ``prediction`` a Prediction (People with ``--boxes`` or ``--box`` repeated), ``None`` (no box in
    ``--boxes``) or the error predicting it raised (the command names an option or box it is about, or skips an
    image the model does not take). Several images, read as they are needed, go through the model together:
    ``--batch-size`` images per round, their crops (all their people's) in calls of at most ``--batch-size``."""
    from training.batching import caught, check_batch_size, drive, gather
    from training.inference import predict_steps
    from training.topdown import people_steps

    size = check_batch_size(args.batch_size, "--batch-size")
    kw = dict(name=args.name, record=record, heatmap_offset=args.heatmap_offset, scales=args.scales, flip=args.flip,
              base_size=args.base_size)
    if people is None and args.box is not None and len(args.box) > 1:  # one image's people, as --boxes gives them
        people = [args.box]
    for start in range(0, len(images), size):
        chunk = [(start + k, path, first if first is not None else _read_image(path))
                 for k, path in enumerate(images[start:start + size])]
        todo = [(i, image) for i, _, image in chunk if image is not None and (people is None or people[i])]
        steps = (caught(predict_steps(model, image, box=args.box[0] if args.box else None, **kw) if people is None
                        else people_steps(model, image, people[i], **kw)) for i, image in todo)
        preds = dict(zip((i for i, _ in todo), drive(model, gather(steps), size)))
        for i, path, image in chunk:
            yield path, image, preds.get(i)


def _option_error(e, args, boxes, where="--box"):
    """Raise predict's ValueError ``e`` as the command's CLIError when it is about an argument (predict's own words
    name its argument, not the option); return when it is not."""
    person = re.match(r"predict_people: box (\d+) of \d+ ", str(e))
    if person:  # the box as the user gave it, which the message's position alone would leave to count
        given = ",".join(f"{v:g}" for v in boxes[int(person[1]) - 1])
        raise CLIError(f"{where} {given} {str(e)[person.end():].split(' Received')[0]}") from None
    for prefix, option in (("predict: scales are for pose", "--scales"),
                           ("predict: flip is for pose", "--flip")):
        if str(e).startswith(prefix):
            raise CLIError(f"{option} is for pose and segmentation models; {args.name} gives "
                           f"classification") from None
    if str(e).startswith("predict: box "):  # not a pose model of a fixed size, off the image, too large
        raise CLIError(f"--box{str(e)[len('predict: box'):].split(' Received')[0]}") from None
    if str(e).startswith(("predict: base_size is PSPNet's", "predict: heatmap_offset is for pose")):
        option = "--base-size" if str(e).startswith("predict: base_size") else "--heatmap-offset"
        rest = str(e).split(" ", 2)[2].split(" Received")[0].rstrip(".")  # "is ...; NAME is/gives ..."
        raise CLIError(f"{option} {rest}") from None
    if str(e).startswith("predict: scales=") and " make canvases " in str(e):  # too large for memory
        raise CLIError(f"--scales {str(e)[len('predict: scales='):]}") from None
    if str(e).startswith("predict: flip needs the keypoints' left/right pairs"):
        raise CLIError(f"--flip needs the keypoints' left/right pairs, and {args.name}'s weights record has "
                       f"no flip pairs (a converted .keras has none; a training run's .keras has its training "
                       f"data's, if that data had any)") from None


def _read_boxes(path, images, min_score=None) -> list[list]:
    """``--boxes FILE``'s people for each of ``images`` (training.topdown.read_boxes, matched by path or file name),
    read before the model loads: a bad row or a row for an image not given is one error naming the file."""
    from training.topdown import boxes_for_images, read_boxes

    try:
        return boxes_for_images(read_boxes(path, min_score), images, path)
    except OSError as e:
        raise CLIError(f"--boxes '{path}': cannot read it ({e.strerror or e})") from None
    except ValueError as e:
        raise CLIError(f"--boxes {e}") from None


def _keypoint_names(record, k) -> list:
    """The record's names of ``k`` keypoints where it names them all, else ``joint 0``, ``joint 1``, ..."""
    names = record.keypoint_names if record is not None else ()
    return list(names) if names and len(names) == k else [f"joint {j}" for j in range(k)]


def _print_keypoints(keypoints, record) -> list[tuple]:
    """Print ``X Y NAME`` per keypoint (image px; nan: not found), named by the record where it names them all;
    returns the predictions.csv rows (joint, name, x, y)."""
    names = _keypoint_names(record, len(keypoints))
    rows = []
    for j, ((x, y), label) in enumerate(zip(keypoints, names)):
        print(f"{x:9.2f} {y:9.2f}  {label}")
        rows.append((j, label, f"{x:.2f}", f"{y:.2f}"))
    return rows


def _mask_target(picture: Path) -> Path:
    """Where ``--masks`` writes a picture's class indices: IMAGE_STEM.mask.png beside IMAGE_STEM.pred.png
    (``--out x.png``: x.mask.png)."""
    name = picture.name
    stem = name[: -len(".pred.png")] if name.lower().endswith(".pred.png") else picture.stem
    return picture.with_name(f"{stem}.mask.png")


def _predict_csv(path: Path, column: str = "image") -> bool:
    """Whether ``path`` is a predictions.csv a predict batch wrote (its header), not evaluate's ('id,...') or another
    program's in a shared --out folder. ``column``: the header's first column (a video's CSV: ``frame``)."""
    try:
        with open(path, newline="") as f:
            first = f.readline().strip()
    except (OSError, UnicodeDecodeError):
        return False
    return first.split(",")[0] == column  # predict's headers: image,rank,... and image,joint,... (frame,... a video's)


def _cmd_predict(args):
    import zoo
    from zoo.errors import ZooError

    from training.video import is_video

    if any(is_video(arg) and Path(arg).is_file() for arg in args.image):
        from zoo.cli_video import predict_video_command

        return predict_video_command(args)
    if args.smooth:
        raise CLIError("--smooth is for a video (keypoints across its frames); the inputs are images")
    images, batch = _predict_images(args)
    first = _read_image(images[0]) if not batch else None
    if not batch and first is None:
        raise CLIError(f"cannot read image {args.image[0]!r}{_why_unreadable(images[0])}")
    if args.box is not None and args.boxes:
        raise CLIError("give --box (people in one image) or --boxes FILE (people per image), not both")
    if (args.box is not None or args.boxes) and args.masks:  # checked before the model loads (a box: pose only)
        raise CLIError(f"--masks is for segmentation models; {'--box' if args.box else '--boxes'} is for pose models")
    if args.min_score is not None and not args.boxes:
        raise CLIError("--min-score is for --boxes FILE (its sixth column, the detector's score)")
    people = _read_boxes(args.boxes, images, args.min_score) if args.boxes else None
    if args.box is not None and batch:  # one box is one person in one image
        raise CLIError("--box names a person in one image, not in several images or a folder's")
    targets = _predict_targets(args, images, batch)
    _refuse_writing_over_inputs(args, images, targets)
    csv_path = Path(args.out) / "predictions.csv" if batch and args.out else None
    if csv_path is not None and csv_path.exists() and not _predict_csv(csv_path):
        # evaluate --out writes a predictions.csv too: a batch replaced its per-image scores without a word
        raise CLIError(f"--out '{args.out}' holds a predictions.csv that kerazoo predict did not write (evaluate's "
                       f"per-image scores?); predict into another folder")
    rows, unread, untaken = [], [], []
    try:
        model = _load_predict_model(args)
        record = zoo.weights_record(model)  # input convention, heatmap offset, keypoint names
        if args.masks:  # a task known before any image runs (else found from the output, below)
            from training.inference import model_task

            task = model_task(model, args.name)
            if task not in (None, "segmentation"):  # was found after the first image: its keypoints printed
                raise CLIError(f"--masks is for segmentation models; {args.name} gives {task}")
        from training import visualize

        predicted = _predicted(model, record, images, first, args, people)
        for i, ((image_path, image, pred), target) in enumerate(zip(predicted, targets)):
            if image is None:  # one unreadable file does not stop a folder's run; the status says so at the end
                print(f"kerazoo predict: cannot read image '{image_path}'{_why_unreadable(image_path)} (skipped)",
                      file=sys.stderr)
                unread.append(image_path)
                continue
            if people is not None and not people[i]:  # no person detected: nothing to estimate, not a failure
                print(f"{image_path}: no box in {args.boxes}" if batch else f"no box in {args.boxes}")
                continue
            if isinstance(pred, Exception):
                # an any-size model that does not take this image's size (a batch's other images it may): skipped
                # like an unreadable one, named; the run stopped there, naming no file, and wrote no predictions.csv
                if not (batch and isinstance(pred, ValueError) and _IMAGE_NOT_TAKEN.search(str(pred))):
                    if isinstance(pred, ValueError) and people is None:  # about an option: the option's error
                        _option_error(pred, args, args.box or [None])
                    elif isinstance(pred, ValueError):  # or about a box: the box as --boxes gave it
                        _option_error(pred, args, people[i], f"--boxes '{args.boxes}': {image_path}: box")
                    raise pred
                print(f"kerazoo predict: cannot predict '{image_path}': {one_line(pred)} (skipped)", file=sys.stderr)
                untaken.append(image_path)
                continue
            if batch:
                print(f"{image_path}:")
            if hasattr(pred, "boxes"):  # several people (--box repeated, --boxes): person by person
                for person, (box, keypoints) in enumerate(zip(pred.boxes, pred.keypoints), 1):
                    print(f"person {person} (box {','.join(f'{v:g}' for v in box)}):")
                    rows += [(str(image_path), person, *row) for row in _print_keypoints(keypoints, record)]
                visualize.write_png(target, pred.picture)
                print(f"wrote {target}")
                continue
            for rank, (label, p) in enumerate(pred.top, 1):
                print(f"{p:8.4f}  {label}")
                rows.append((str(image_path), rank, label, f"{p:.6g}"))
            if pred.keypoints is not None:  # x, y in the image's pixels; nan: no keypoint found
                rows += [(str(image_path), *row) for row in _print_keypoints(pred.keypoints, record)]
            if args.masks:
                if pred.mask is None:
                    raise CLIError(f"--masks is for segmentation models; {args.name} gives {pred.task}")
                bits = 8 if pred.output.shape[-1] <= 256 else 16  # one depth for the batch: the model's classes
                print(f"wrote {visualize.write_label_png(_mask_target(target), pred.mask, bits)}")
            visualize.write_png(target, pred.picture)
            print(f"wrote {target}")
        if csv_path is not None:
            from training.evaluation import _write_csv

            if rows:
                header = {4: ("image", "rank", "label", "probability"), 5: ("image", "joint", "name", "x", "y"),
                          6: ("image", "person", "joint", "name", "x", "y")}[len(rows[0])]
                print(f"wrote {_write_csv(csv_path, header, rows)}")
            elif _predict_csv(csv_path):  # an earlier batch's rows no longer describe this folder's pictures
                csv_path.unlink()
                print(f"removed {csv_path} (an earlier run's: this one has no keypoints or classes to list)")
    except (ValueError, TypeError, OSError, KeyError, ZooError) as e:
        raise CLIError(one_line(e)) from None
    for left, what in ((unread, "read"), (untaken, "predicted")):
        if left:
            print(f"kerazoo predict: {len(left)} of {len(images)} images could not be {what}", file=sys.stderr)
    return 1 if unread or untaken else None
