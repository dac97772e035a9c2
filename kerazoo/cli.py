"""``kerazoo`` — one command line over the whole product.

    kerazoo list [PATTERN] [--pretrained]      registered models (fnmatch wildcards); with --pretrained,
                                               every NAME:TAG, whether it is cached and its hashes
    kerazoo download NAME[:TAG] ...            fetch, verify and convert original releases once
    kerazoo info NAME                          builder, defaults, head, weights records
    kerazoo inspect FILE [--values NAME]       tensors in a .keras / .weights.h5 / zoo .h5 / .caffemodel / .t7
    kerazoo convert ...                        = python -m converters caffe ...
    kerazoo train ... | evaluate ...           = python -m training train|evaluate ...
    kerazoo predict NAME IMAGE --weights W     classes (printed) / mask / keypoints drawn into a PNG (a video:
                                               every frame, into a video and a CSV)
    kerazoo export NAME|M.keras -o OUT         a SavedModel folder or LiteRT file, checked against Keras

Bad input exits with status 2 and a one-line reason; anything else exits 1, also in one line
(``KERAZOO_DEBUG=1`` shows its traceback); Ctrl-C exits 130. Never a bare traceback.
"""

# Standard library only at import: the commands (zoo.cli, converters.cli, training.__main__) and with them
# Keras are imported after the command line parsed, so --help and usage errors take ~0.1 s, not ~3 s,
# and TF_CPP_MIN_LOG_LEVEL is set before TensorFlow is first imported (its oneDNN notices otherwise).

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "convert_main", "train_main", "Parser", "HelpFormatter", "CLIError", "count", "real", "name_value",
           "blocked_by_file", "tensorflow_notices_held_back", "HEATMAP_OFFSET_HELP"]


def name_value(text):
    """argparse type for ``NAME=VALUE``: the value as a Python literal (``3``, ``(64, 64, 3)``, ``True``)
    when it parses as one, else the string."""
    import ast

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        v = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        pass  # keep it a string
    return k.strip(), v


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; an option's help ends with its default unless it has none or says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS)
                or "default" in text):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (status 2) that names the argument and points to
    ``--help``; argparse prints the whole usage first (29 lines for ``train``), burying the reason.
    Subcommand parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but unrecognised arguments are the chosen subcommand's error ('kerazoo list: error:
        ... (see kerazoo list --help)'); argparse reports them from the top parser ('kerazoo: error:')."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            self._innermost(parsed).error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed

    def _innermost(self, parsed) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                sub = action.choices.get(getattr(parsed, action.dest, None) or "")
                if sub is not None:
                    return sub._innermost(parsed) if isinstance(sub, Parser) else sub
        return self


def count(minimum: int):
    """argparse type: an int >= ``minimum`` (a sample, batch or worker count)."""

    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return n

    parse.__name__ = f"integer >= {minimum}"
    return parse


def real(minimum: float | None, *, above: bool = False):
    """argparse type: a finite float >= ``minimum`` (> ``minimum`` when ``above``; any finite float when
    ``minimum`` is ``None``): a rate, weight, length or offset. ``float`` alone takes 'inf', 'nan' and negative
    values."""
    bound = "" if minimum is None else f" {'>' if above else '>='} {minimum:g}"

    def parse(text):
        try:
            x = float(text)
        except ValueError:
            x = float("nan")
        if not (math.isfinite(x) and (minimum is None or (x > minimum if above else x >= minimum))):
            raise argparse.ArgumentTypeError(f"expected a finite number{bound}, got {text!r}")
        return x

    parse.__name__ = f"number{bound}"
    return parse


def scale_list(text):
    """argparse type of ``--scales``: comma-separated finite numbers > 0 (``0.7,1,1.3``) as a tuple of floats."""
    parts = [p.strip() for p in text.split(",")]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if not vals or not all(math.isfinite(v) and v > 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers > 0 such as 0.7,1,1.3, got {text!r}")
    return vals


scale_list.__name__ = "scales"
SCALES_HELP = ("test-time scale search, comma-separated (default 1: none): pose crops the box / s at each scale and "
               "averages the heatmaps (CPM: 0.7,0.8,0.9,1,1.1,1.2,1.3); segmentation letterboxes the image at s times "
               "its fit into the input (sliding 2/3-overlapping windows over a fixed-size model's larger canvas) and "
               "averages the probabilities (PSPNet: 0.5,0.75,1,1.25,1.5,1.75 with --flip)")


def base_size_arg(text):
    """argparse type of ``--base-size``: a whole number of px >= 1."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of px >= 1 such as 512, got {text!r}")
    return v


base_size_arg.__name__ = "base size"


def box_arg(text):
    """argparse type of ``--box``: ``X1,Y1,X2,Y2`` finite image px with X1 < X2 and Y1 < Y2, as a tuple of floats."""
    try:
        vals = tuple(float(p) for p in text.split(","))
    except ValueError:
        vals = ()
    if not (len(vals) == 4 and all(math.isfinite(v) for v in vals) and vals[0] < vals[2] and vals[1] < vals[3]):
        raise argparse.ArgumentTypeError(f"expected X1,Y1,X2,Y2 image px with X1 < X2 and Y1 < Y2 such as "
                                         f"120,40,260,400, got {text!r}")
    return vals


box_arg.__name__ = "box"
BASE_SIZE_HELP = ("segmentation, a fixed-size model: PSPNet's own multi-scale test instead of the letterboxed "
                  "canvases (hszhao/PSPNet eval_sub.m): at each of --scales the long side becomes PX * s + 1, the "
                  "image is padded with the mean up to the input and slid over with 2/3-overlapping windows; "
                  "--flip sums the mirrored logits. The releases': 512 (ADE20K, VOC), 2048 (Cityscapes); "
                  "kerazoo info shows each record's eval_base_size")


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")  # what predict takes from a folder
# a video, told by its name: predict reads its frames (OpenCV's FFmpeg), writes .mp4 (MPEG-4) or .avi (Motion JPEG)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")
# --heatmap-offset of predict and evaluate: pose models only (classifiers and masks have no heatmaps)
HEATMAP_OFFSET_HELP = ("pose: input px where the centre of heatmap pixel 0 lies (pixel g at g * stride + PX); "
                       "default: the weights record's (a training run's config.json; the CPM releases 3.5, "
                       "hourglass:mpii 1.5), else 0 (training's convention). A converted .keras has no record: "
                       "give it here")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def blocked_by_file(path: Path):
    """The nearest existing ancestor of ``path`` when it is not a folder (``path`` cannot be created
    under it), else ``None``."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _quiet_tensorflow() -> None:
    # read once, when TensorFlow's C++ library loads: only effective before its first import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# TensorFlow's start-up notices at INFO level, logged through absl before absl is initialised, which
# TF_CPP_MIN_LOG_LEVEL does not reach (TF 2.19-2.21, tensorflow/tensorflow#100442): "I0000 00:00:... port.cc:153]
# oneDNN custom operations are on ...", twice, and the banner absl writes before the first line it logs.
_TF_NOTICE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
                        r"STDERR$|I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] )")


@contextlib.contextmanager
def tensorflow_notices_held_back(tensorflow: bool = False):
    """Run the block (the first import of Keras, hence TensorFlow) with stderr's file descriptor sent to a
    temporary file, then write what it got to stderr again without TensorFlow's INFO start-up lines; warnings
    and errors pass. Nothing is held back once Keras is loaded, or when ``TF_CPP_MIN_LOG_LEVEL`` asks for
    INFO lines (0).

    Args:
        tensorflow: also import TensorFlow, when installed, whatever the backend: on JAX and PyTorch, Keras
            imports it on its own in ``model.save`` (``serialization_lib``), where its notices would pass.
    """
    _quiet_tensorflow()
    if "keras" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"].strip() in ("", "0"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr to hold back (closed: sys.stderr is None)
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            if tensorflow:
                import importlib.util

                if importlib.util.find_spec("tensorflow") is not None:
                    import tensorflow  # noqa: F401
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _TF_NOTICE.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """While the block runs, SIGTERM (a scheduler's stop: SLURM, Kubernetes, ``docker stop``, ``timeout``) takes
    Ctrl-C's way out: the command's KeyboardInterrupt handling stops data workers and leaves nothing half-written (it
    killed the process at once, which left a temporary file and the pool's semaphores). Yields a list, non-empty once
    SIGTERM came, so the command says "terminated (SIGTERM)" and exits 143; nothing is installed off the main thread
    or over a handler of the caller's own. The previous handler is put back (in-process callers, tests)."""
    import threading

    came = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield came
        return

    def handler(signum, frame):
        came.append(signum)
        on_int = signal.getsignal(signal.SIGINT)  # fit's (training.interrupts: raised again if lost), else Python's
        (on_int if callable(on_int) else signal.default_int_handler)(signal.SIGINT, frame)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield came
    finally:
        signal.signal(signal.SIGTERM, previous)


class CannotLoad(Exception):
    """Keras or the command's modules failed to import: the message is the command's whole error line."""


@contextlib.contextmanager
def cannot_load_reported(who: str, debug: bool = False):
    """Turn an exception while Keras and the command's modules import into :class:`CannotLoad`, one line.

    Not the command's error handler: that one imports :mod:`zoo` (Keras) for its error types, and raised again
    from inside the handler, two tracebacks (``KERAS_BACKEND=jaxx``, a backend not installed, a broken install).
    ``debug`` (or ``KERAZOO_DEBUG``): the import's own traceback. Put it outside :func:`tensorflow_notices_held_back`,
    whose entering imports TensorFlow (hence Keras).
    """
    try:
        yield
    except Exception as e:
        if debug or os.environ.get("KERAZOO_DEBUG"):
            raise
        text = " ".join(str(e).split()) or type(e).__name__
        backend = os.environ.get("KERAS_BACKEND")
        hint = (f" (KERAS_BACKEND={backend!r}: expected tensorflow, jax or torch)"
                if backend is not None and "backend" in text.lower() else "")
        if isinstance(e, ImportError) and backend is not None and not hint:
            hint = f" (KERAS_BACKEND={backend!r}: is that backend installed? see the README's install commands)"
        raise CannotLoad(f"{who}: error: Keras could not be loaded: {type(e).__name__}: {text}{hint}") from e


def _spawn_workers() -> None:
    # --multiprocessing workers are spawned, the same on every platform, as `python -m training` does:
    # forking a process that holds JAX's or TensorFlow's threads can deadlock the child
    import multiprocessing

    multiprocessing.set_start_method("spawn", force=True)


@contextlib.contextmanager
def exit_on_interrupt(who: str, debug: bool = False):
    """While Keras loads: Ctrl-C prints ``WHO: interrupted`` and exits 130 from the signal handler itself.

    A KeyboardInterrupt is not enough there: JAX runs Python code in garbage-collector callbacks, where the
    exception is printed as "Exception ignored" and lost, and the command went on to the end (status 0).
    Nothing is written before the command's own code runs, so exiting at once loses nothing. ``debug`` (or
    ``KERAZOO_DEBUG``): Python's own KeyboardInterrupt, with its traceback.
    """
    import threading

    if debug or os.environ.get("KERAZOO_DEBUG") or threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started so (a script's `cmd &`, nohup): Ctrl-C at the
        yield  # terminal is meant for the foreground command, and this process ignores it throughout
        return

    try:  # the terminal's stderr, kept: tensorflow_notices_held_back points fd 2 at a file meanwhile
        err = os.dup(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        err = None

    def handler(signum, frame):
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            message = f"{who}: interrupted\n"
            os.write(err, message.encode()) if err is not None else sys.stderr.write(message)
        os._exit(130)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if err is not None:
            os.close(err)


def _interrupted(who: str) -> int:
    # Ctrl-C while Keras loads (the first seconds), before the command's own handler is in place
    if os.environ.get("KERAZOO_DEBUG"):
        raise  # the KeyboardInterrupt being handled, with its traceback
    print(f"{who}: interrupted", file=sys.stderr)
    return 130


def _train(argv, prog) -> int:
    _spawn_workers()
    try:
        # the training package loads Keras; a training run saves checkpoints (TensorFlow, see above)
        who = " ".join([prog, *argv[:1]]) if argv[:1] in (["train"], ["evaluate"]) else prog
        with exit_on_interrupt(who), cannot_load_reported(who), \
                tensorflow_notices_held_back(tensorflow=argv[:1] == ["train"]):
            from training.__main__ import main as train

        return train(argv, prog=prog) or 0
    except CannotLoad as e:
        print(e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return _interrupted(" ".join([prog, *argv[:1]]) if argv[:1] in (["train"], ["evaluate"]) else prog)


def _convert(argv, prog) -> int:
    who = " ".join([prog, *argv[:1]]) if argv[:1] == ["caffe"] else prog
    try:
        with exit_on_interrupt(who), cannot_load_reported(who):
            from converters.cli import main as convert

        return convert(argv, prog=prog) or 0
    except CannotLoad as e:
        print(e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return _interrupted(" ".join([prog, *argv[:1]]) if argv[:1] == ["caffe"] else prog)


# Subcommands with their own parsers: name -> help. Handed their arguments untouched: argparse's
# REMAINDER in a subparser refuses a first token that looks like an option ("kerazoo train --model ...").
_DELEGATED = {"convert": "convert a Caffe model (see kerazoo convert -h)",
              "train": "train a model (see kerazoo train -h)",
              "evaluate": "evaluate a model (see kerazoo evaluate -h)"}


def build_parser():
    p = Parser(prog="kerazoo", description=__doc__.replace("``", ""))  # the docstring's markup is not for a terminal
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("list", help="list registered models")
    s.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    s.add_argument("--pretrained", action="store_true",
                   help="list NAME:TAG weights: converted or not, each release file (cached, to download, "
                        "present offline) and its sha256 (pinned, recorded on first download, unknown)")
    s = sub.add_parser("download", help="fetch, verify and convert the original release of NAME[:TAG] once",
                       description="Fetch the original release files of each NAME[:TAG] (or NAME.TAG; no tag = the "
                                   "model's first tag), check their sha256, convert them into zoo weights and cache "
                                   "the result, so later zoo.get(NAME, weights=TAG) calls are instant. Without "
                                   "internet, set $KERAZOO_OFFLINE_DIR to a folder holding the original files.")
    s.add_argument("names", nargs="+", metavar="NAME[:TAG]", help="e.g. hourglass:mpii cpm:lsp fcn8s")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s = sub.add_parser("info", help="show a model's builder, defaults and weights records")
    s.add_argument("name")
    s = sub.add_parser("inspect", help="list the tensors of a weights file with summary statistics")
    s.add_argument("file")
    s.add_argument("--values", metavar="NAME", help="print the values of one tensor")
    s.add_argument("--max-values", type=count(0), default=200, help="numpy print threshold")
    s = sub.add_parser("predict", help="run a model on images and write overlay PNGs",
                       description="Run NAME on each IMAGE. Classifiers print their top-5 classes (names from the "
                                   "weights record, else indices) and draw them on the picture; segmentation "
                                   "models draw a mask overlay, pose models their keypoints. The model is loaded "
                                   "once for all the images; with several (or a folder) each one's lines follow "
                                   "its name, an unreadable file (or one an any-size model does not take) is "
                                   "skipped (exit status 1 at the end), and an --out folder also gets "
                                   "predictions.csv (keypoints: image, joint, name, x, y; classes: image, rank, "
                                   "label, probability). A video (" + ", ".join(VIDEO_SUFFIXES) + ") is "
                                   "predicted frame by frame into VIDEO_STEM.pred.mp4 (.avi: Motion JPEG) at its "
                                   "frame rate, with VIDEO_STEM.pred.csv (frame, joint, name, x, y; classes: frame, "
                                   "rank, label, probability).")
    s.add_argument("name", help="registered model (NAME or NAME:TAG); with a .keras --weights it only says "
                                "what the output is (classes, mask or keypoints)")
    s.add_argument("image", nargs="+", metavar="IMAGE",
                   help="an image file, or a folder: its " + ", ".join(IMAGE_SUFFIXES) + " files in name order "
                        "(not its subfolders; earlier .pred.png pictures, .mask.png masks and hidden files left out), "
                        "or one video file")
    s.add_argument("--weights", required=True,
                   help="a tag, a zoo .h5 (the architecture comes from its record), .weights.h5, .caffemodel, "
                        ".t7, or a whole .keras model (e.g. a training run's best.keras), loaded as it is")
    s.add_argument("--out", help="output PNG (default: IMAGE_STEM.pred.png beside each image); an existing folder (or "
                                 "a path ending in /; with several images any name without .png) gets "
                                 "IMAGE_STEM.pred.png inside it. A video: a .mp4 or .avi name, or a folder")
    s.add_argument("--model-arg", type=name_value, action="append", default=[], metavar="NAME=VALUE",
                   help="builder argument, repeatable, for weights that do not give the architecture (a Keras "
                        ".weights.h5: e.g. stacks=2, stride_in_3x3=True)")
    s.add_argument("--winograd", action="store_true",
                   help="faster CPU inference: wide 3x3 convolutions as Winograd F(4x4, 3x3) (zoo.optimize_for_inference)")
    s.add_argument("--heatmap-offset", type=real(None), metavar="PX", help=HEATMAP_OFFSET_HELP)
    s.add_argument("--scales", type=scale_list, default=(1.0,), metavar="S,S,...", help=SCALES_HELP)
    s.add_argument("--base-size", type=base_size_arg, metavar="PX", help=BASE_SIZE_HELP)
    s.add_argument("--flip", action="store_true",
                   help="also run the mirrored image, as evaluate --flip (at each of --scales): pose averages the "
                        "heatmaps flipped back with left/right joints swapped (needs the weights record's flip "
                        "pairs); segmentation averages the probabilities")
    s.add_argument("--box", type=box_arg, action="append", metavar="X1,Y1,X2,Y2",
                   help="pose, one image: the person's (or hand's) box in image px, e.g. from a detector or the "
                        "annotations; the crop is its longer side x 1.25 about its centre (MMPose's top-down "
                        "padding) instead of the whole image letterboxed, and the box is drawn. Repeat it for "
                        "several people: each box's keypoints are listed under 'person N', all drawn on one picture")
    s.add_argument("--boxes", metavar="FILE.csv",
                   help="pose: people per image from a CSV file of rows IMAGE,X1,Y1,X2,Y2 (a detector's boxes, image "
                        "px; IMAGE as given or its file name; columns after the fifth ignored), each estimated as "
                        "--box does; predictions.csv gets a person column. An image without rows is left out")
    s.add_argument("--min-score", type=real(None), metavar="S",
                   help="--boxes: keep the rows whose sixth column (the detector's score) is at least S")
    s.add_argument("--batch-size", type=count(1), metavar="N",
                   help="images (several, or a folder's), a video's frames, or several people's crops (--box "
                        "repeated, --boxes) per model call (default: 8 where Keras computes on a GPU, 1 on a CPU)")
    s.add_argument("--smooth", action="store_true",
                   help="a video, pose: smooth each keypoint across frames with the One Euro filter (less jitter, a "
                        "little lag on fast moves); the video and CSV show the smoothed keypoints")
    s.add_argument("--masks", action="store_true",
                   help="segmentation: also write each image's class indices as IMAGE_STEM.mask.png beside its "
                        "picture (8-bit grey, 16-bit above 256 classes; the model's own class numbers)")
    s = sub.add_parser("export", help="write a model as a TensorFlow SavedModel or a LiteRT file, checked against Keras",
                       description="Write MODEL (a registered NAME[:TAG] or a .keras file, e.g. a converted Caffe net "
                                   "or a training run's best.keras) for deployment: a SavedModel folder "
                                   "(tf.saved_model.load(OUT).serve(x)) or a LiteRT .tflite file. The artifact is "
                                   "loaded back and its outputs compared with the Keras model's on a random input "
                                   "before it replaces OUT; a JSON goes beside it (OUT/kerazoo.json, LiteRT OUT.json): "
                                   "the inputs and outputs (name, shape, dtype), the preprocessing and the weights "
                                   "record (mean, std, channel order, class and keypoint names). Needs TensorFlow (a "
                                   "SavedModel also under KERAS_BACKEND=jax; LiteRT only under tensorflow).")
    s.add_argument("model", metavar="MODEL", help="registered NAME[:TAG] (random weights without a tag or --weights) "
                                                  "or a .keras file")
    s.add_argument("-o", "--out", required=True, help="SavedModel folder, or the .tflite file for --format litert")
    s.add_argument("--weights", help="for a NAME: a tag or weights file, as for predict")
    s.add_argument("--model-arg", type=name_value, action="append", default=[], metavar="NAME=VALUE",
                   help="builder argument for a NAME, repeatable (e.g. stacks=2, input_shape=(None,None,3))")
    s.add_argument("--format", default="saved_model", choices=("saved_model", "litert"),
                   help="saved_model (a folder) or litert (one .tflite file, fixed sizes)")
    s.add_argument("--input-shape", type=count(1), nargs=2, metavar=("H", "W"),
                   help="fix the image size of an any-size model (LiteRT needs one)")
    s.add_argument("--batch-size", type=count(1),
                   help="fix the batch (default: the one the model's input fixes, else free for a SavedModel and "
                        "1 for LiteRT)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT (atomically), if it is an earlier export (SavedModel folder, .tflite)")
    s.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip loading the artifact back and comparing outputs (checked by default)")
    for name, what in _DELEGATED.items():
        sub.add_parser(name, help=what, add_help=False)  # listed in --help; main() hands them over before parsing
    return p


def main(argv=None) -> int:
    """Entry point of the ``kerazoo`` console script and ``python -m kerazoo``; the exit status."""
    _quiet_tensorflow()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in _DELEGATED:
        command, rest = argv[0], argv[1:]
        if command == "convert":  # its parser's one subcommand, implied
            return _convert(rest if rest[:1] == ["caffe"] else ["caffe", *rest], prog="kerazoo convert")
        return _train([command, *rest], prog="kerazoo")
    args = build_parser().parse_args(argv)
    with sigterm_as_ctrl_c() as terminated:
        return _run(args, terminated)


def _run(args, terminated) -> int:
    try:
        # export loads TensorFlow whatever the backend (after this block, where its notices would pass)
        with exit_on_interrupt(f"kerazoo {args.command}"), cannot_load_reported(f"kerazoo {args.command}"), \
                tensorflow_notices_held_back(tensorflow=args.command == "export"):
            from zoo import cli as commands  # Keras from here on

        status = getattr(commands, f"_cmd_{args.command}")(args)  # None: done (predict: 1 if images were unread)
    except CannotLoad as e:
        print(e, file=sys.stderr)
        return 1
    except Exception as e:
        from zoo.errors import ZooError, one_line

        if isinstance(e, (CLIError, ZooError, ValueError, OSError)):  # bad input: one line that names it
            print(f"kerazoo {args.command}: error: {one_line(e)}", file=sys.stderr)
            return 2
        if os.environ.get("KERAZOO_DEBUG"):
            raise
        print(f"kerazoo {args.command}: error: {type(e).__name__}: {one_line(e)} (a bug? set KERAZOO_DEBUG=1 "
              f"for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outputs are written atomically: nothing half-written is left
        if os.environ.get("KERAZOO_DEBUG"):
            raise
        print(f"kerazoo {args.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    return status or 0


def exit_after(status) -> None:
    """End the process with ``status``; after Ctrl-C (130) without Python's interpreter finalization.

    TensorFlow interrupted in the middle of ``fit`` hung there, after the command had printed its "interrupted" line
    (4 of 6 Ctrl-Cs at random moments of a small fit; one aborted, status -6): nothing is left to do by then (the data
    workers are stopped, every file is whole), so the atexit functions run (multiprocessing's and the shared-memory
    clean-up among them) and the process ends.
    """
    if status != 130:
        sys.exit(status)
    import atexit

    def flush():
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()

    flush()
    atexit._run_exitfuncs()  # what Python's own exit would run first, without the finalization after it
    flush()
    os._exit(130)


def console_main() -> None:
    """The ``kerazoo`` console script."""
    exit_after(main())


def console_convert() -> None:
    """The ``kerazoo-convert`` console script."""
    exit_after(convert_main())


def console_train() -> None:
    """The ``kerazoo-train`` console script."""
    exit_after(train_main())


def convert_main() -> int:
    """Entry point of the ``kerazoo-convert`` console script (``kerazoo-convert caffe DEPLOY WEIGHTS -o OUT``)."""
    _quiet_tensorflow()
    return _convert(sys.argv[1:], prog="kerazoo-convert")


def train_main() -> int:
    """Entry point of the ``kerazoo-train`` console script (``kerazoo-train train|evaluate ...``)."""
    _quiet_tensorflow()
    return _train(sys.argv[1:], prog="kerazoo-train")
