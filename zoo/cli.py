"""``kerazoo`` — one command line over the whole product.

    kerazoo list [PATTERN] [--pretrained]      registered models (fnmatch wildcards); with --pretrained,
                                               every NAME:TAG, whether it is cached and its hashes
    kerazoo download NAME[:TAG] ...            fetch, verify and convert original releases once
    kerazoo info NAME                          builder, defaults, head, weights records
    kerazoo inspect FILE [--values NAME]       tensors in a .keras / .weights.h5 / zoo .h5 / .caffemodel / .t7
    kerazoo convert ...                        = python -m converters caffe ...
    kerazoo train ... | evaluate ...           = python -m training train|evaluate ...
    kerazoo predict NAME IMAGE --weights W     classes (printed) / mask / keypoints drawn into a PNG

Bad input exits with status 2 and a one-line reason; anything else exits 1, also in one line
(``KERAZOO_DEBUG=1`` shows its traceback); Ctrl-C exits 130. Never a bare traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from zoo.errors import one_line  # noqa: F401 - also used by training/__main__ via zoo.cli

__all__ = ["main"]


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


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _cmd_list(args):
    import zoo

    names = zoo.list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        raise CLIError(f"no model matches {args.pattern!r}")
    if not args.pretrained:
        for n in names:
            print(n)
        return
    from zoo import pretrained

    where = pretrained.offline_dir()
    print(f"weights cache: {zoo.weights.cache_dir()}   offline folder (${pretrained.OFFLINE_ENV}): {where or 'not set'}")
    print(f"{'NAME:TAG':<24} {'CONVERTED':<10} {'FILE':<52} {'STATE':<16} SHA256")
    for n in names:
        st = pretrained.status(n)
        first = True
        for row in st["sources"] or [{"file": "-", "state": "-", "sha256": "-"}]:
            label = f"{st['name']}:{st['tag']}" if first else ""
            conv = ("yes" if st["converted"] else "no") if first else ""
            print(f"{label:<24} {conv:<10} {row['file']:<52} {row['state']:<16} {row['sha256']}")
            first = False


def _cmd_download(args):
    from zoo import pretrained
    from zoo.errors import ZooError

    for name in args.names:
        try:
            path = pretrained.resolve(name, progress=not args.quiet)
        except (ValueError, ZooError, NotImplementedError, OSError) as e:  # converter errors included
            raise CLIError(one_line(e)) from None
        print(f"{name}: {path}")


def _cmd_info(args):
    import zoo

    from zoo.registry import parse_name

    try:
        info = zoo.info(args.name)
    except ValueError as e:
        raise CLIError(one_line(e)) from None
    tag = parse_name(args.name)[1]
    if tag is not None and tag not in info["weights"]:  # zoo.info reads the name only
        raise CLIError(f"{info['name']}: unknown weights tag {tag!r} (in {args.name!r}). Known tags: "
                       f"{', '.join(info['weights']) or 'none registered yet'}.")
    print(json.dumps(info, indent=2, default=str))


def _stats(name, arr, note=""):
    arr = np.asarray(arr)
    if arr.size and np.issubdtype(arr.dtype, np.number):
        a = arr.astype(np.float64)
        s = f"min {a.min():.4g}  max {a.max():.4g}  mean {a.mean():.4g}  std {a.std():.4g}"
    else:
        s = ""
    return f"{name:<60} {str(tuple(arr.shape)):<22} {str(arr.dtype):<8} {s}" + (f"  [{note}]" if note else "")


def _h5_tensors(f, prefix=""):
    import h5py

    for key, item in f.items():
        path = f"{prefix}/{key}" if prefix else key
        if isinstance(item, h5py.Dataset):
            yield path, item[()]
        else:
            yield from _h5_tensors(item, path)


def _tensors(path: Path):
    import h5py

    if not path.exists():
        raise CLIError(f"file not found: {path}")
    if path.is_dir():  # was "unknown file type ''"
        raise CLIError(f"{path}: a folder, expected a weights file (.keras, .weights.h5, .h5, .caffemodel, .t7)")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as raw:
                import io

                with h5py.File(io.BytesIO(raw.read()), "r") as f:
                    yield from _h5_tensors(f)
        except (zipfile.BadZipFile, KeyError, OSError) as e:
            raise CLIError(f"{path}: not a readable .keras archive ({e})") from None
    elif suffix in (".h5", ".hdf5"):
        try:
            with h5py.File(path, "r") as f:
                yield from _h5_tensors(f)
        except OSError as e:
            raise CLIError(f"{path}: not a readable HDF5 file ({e})") from None
    elif suffix == ".caffemodel":
        from converters.caffe.caffemodel import read_caffemodel_file
        from converters.caffe.errors import CaffeError

        try:
            for layer, blobs in read_caffemodel_file(path, progress=False):
                for i, (shape, flat) in enumerate(blobs):
                    yield f"{layer}/{i}", flat.reshape([int(d) for d in shape] or [-1])
        except CaffeError as e:
            raise CLIError(str(e)) from None
    elif suffix == ".t7":
        from converters.torch7.errors import Torch7Error
        from converters.torch7.reader import load, named_tensors

        try:
            yield from named_tensors(load(path))  # (dotted path, array, owner class)
        except Torch7Error as e:
            raise CLIError(str(e)) from None
    else:
        raise CLIError(f"{path}: unknown file type {suffix!r} (expected .keras, .weights.h5, .h5, .caffemodel, .t7)")


def _cmd_inspect(args):
    path = Path(args.file)
    found = False
    total = 0
    for name, arr, *note in _tensors(path):  # .t7 entries also name the owning module class
        total += int(np.asarray(arr).size)
        if args.values:
            if name == args.values:
                found = True
                np.set_printoptions(threshold=args.max_values, linewidth=120)
                print(_stats(name, arr, *note))
                print(np.asarray(arr))
        else:
            print(_stats(name, arr, *note))
    if args.values and not found:
        raise CLIError(f"{path}: no tensor named {args.values!r} (run without --values to list them)")
    if not args.values:
        print(f"total: {total:,} values")


def _run_record(path: Path):
    """The input convention of a training run's ``.keras`` (its ``config.json`` beside it), else ``None``."""
    import zoo
    from training.normalization import Normalization

    n = Normalization.of_run(path.parent)
    return None if n is None else zoo.WeightsRecord(scale=n.scale, mean=n.mean, std=n.std, channel_order=n.channel_order)


def blocked_by_file(path: Path):
    """The nearest existing ancestor of ``path`` when it is not a folder (``path`` cannot be created
    under it), else ``None``."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _predict_target(args) -> Path:
    """``--out`` as given; in a folder (existing, or written with a trailing slash): IMAGE_STEM.pred.png."""
    if not args.out:
        return Path(args.image).with_suffix(".pred.png")
    out = Path(args.out)
    if out.is_dir() or args.out.endswith(("/", os.sep)):
        out = out / f"{Path(args.image).stem}.pred.png"
    elif out.suffix.lower() != ".png":  # the picture is PNG-encoded whatever the name says
        raise CLIError(f"--out '{out}': expected a file name ending in .png, or a folder")
    blocker = blocked_by_file(out)
    if blocker is not None:
        raise CLIError(f"--out '{out}': '{blocker}' is a file, expected a folder there")
    return out


def _cmd_predict(args):
    import cv2

    import zoo
    from zoo.errors import ZooError

    image = cv2.imread(args.image, cv2.IMREAD_COLOR) if Path(args.image).is_file() else None
    if image is None:
        raise CLIError(f"cannot read image {args.image!r}")
    target = _predict_target(args)
    try:
        record = None
        if Path(args.weights).suffix.lower() == ".keras":  # a whole model: load it, don't rebuild the default one
            model = zoo.load_keras_model(args.weights)
            record = _run_record(Path(args.weights))
        else:
            model = zoo.get(args.name, weights=args.weights)
        if args.winograd:
            model = zoo.optimize_for_inference(model, verbose=True)
        from training import visualize

        pred = visualize.predict(model, image[..., ::-1], name=args.name, record=record)
        for label, p in pred.top:
            print(f"{p:8.4f}  {label}")
        visualize.write_png(target, pred.picture)
    except (ValueError, TypeError, OSError, KeyError, ZooError) as e:
        raise CLIError(one_line(e)) from None
    print(f"wrote {target}")


def _delegate(module, argv):
    import importlib

    return importlib.import_module(module).main(argv)


# Subcommands with their own parsers: name -> (module, help). Handed their arguments untouched:
# argparse's REMAINDER in a subparser refuses a first token that looks like an option
# ("kerazoo train --model ...").
_DELEGATED = {"convert": ("converters.__main__", "convert a Caffe model (see kerazoo convert -h)"),
              "train": ("training.__main__", "train a model (see kerazoo train -h)"),
              "evaluate": ("training.__main__", "evaluate a model (see kerazoo evaluate -h)")}


def build_parser():
    p = Parser(prog="kerazoo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", help="list registered models")
    s.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    s.add_argument("--pretrained", action="store_true",
                   help="list NAME:TAG weights: converted or not, each release file (cached, to download, "
                        "present offline) and its sha256 (pinned, recorded on first download, unknown)")
    s.set_defaults(fn=_cmd_list)
    s = sub.add_parser("download", help="fetch, verify and convert the original release of NAME[:TAG] once",
                       description="Fetch the original release files of each NAME[:TAG] (or NAME.TAG; no tag = the "
                                   "model's first tag), check their sha256, convert them into zoo weights and cache "
                                   "the result, so later zoo.get(NAME, weights=TAG) calls are instant. Without "
                                   "internet, set $KERAZOO_OFFLINE_DIR to a folder holding the original files.")
    s.add_argument("names", nargs="+", metavar="NAME[:TAG]", help="e.g. hourglass:mpii cpm:lsp fcn8s")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(fn=_cmd_download)
    s = sub.add_parser("info", help="show a model's builder, defaults and weights records")
    s.add_argument("name")
    s.set_defaults(fn=_cmd_info)
    s = sub.add_parser("inspect", help="list the tensors of a weights file with summary statistics")
    s.add_argument("file")
    s.add_argument("--values", metavar="NAME", help="print the values of one tensor")
    s.add_argument("--max-values", type=count(0), default=200, help="numpy print threshold")
    s.set_defaults(fn=_cmd_inspect)
    s = sub.add_parser("predict", help="run a model on an image and write an overlay PNG",
                       description="Run NAME on IMAGE. Classifiers print their top-5 classes (names from the "
                                   "weights record, else indices) and draw them on the picture; segmentation "
                                   "models draw a mask overlay, pose models their keypoints.")
    s.add_argument("name", help="registered model (NAME or NAME:TAG); with a .keras --weights it only says "
                                "what the output is (classes, mask or keypoints)")
    s.add_argument("image")
    s.add_argument("--weights", required=True,
                   help="a tag, a zoo .h5 (the architecture comes from its record), .weights.h5, .caffemodel, "
                        ".t7, or a whole .keras model (e.g. a training run's best.keras), loaded as it is")
    s.add_argument("--out", help="output PNG (default: IMAGE.pred.png); an existing folder (or a path ending "
                                 "in /) gets IMAGE_STEM.pred.png inside it")
    s.add_argument("--winograd", action="store_true",
                   help="faster CPU inference: wide 3x3 convolutions as Winograd F(4x4, 3x3) (zoo.optimize_for_inference)")
    s.set_defaults(fn=_cmd_predict)
    for name, (_, what) in _DELEGATED.items():
        sub.add_parser(name, help=what, add_help=False)  # listed in --help; main() hands them over before parsing
    return p


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in _DELEGATED:
        command, rest = argv[0], argv[1:]
        if command == "convert":
            rest = rest if rest[:1] == ["caffe"] else ["caffe", *rest]
        else:
            rest = [command, *rest]
        return _delegate(_DELEGATED[command][0], rest) or 0
    parser = build_parser()
    args = parser.parse_args(argv)
    from zoo.errors import ZooError

    try:
        args.fn(args)
    except (CLIError, ZooError, ValueError, OSError) as e:  # bad input: one line that names it
        print(f"kerazoo {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outputs are written atomically: nothing half-written is left
        if os.environ.get("KERAZOO_DEBUG"):
            raise
        print(f"kerazoo {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("KERAZOO_DEBUG"):
            raise
        print(f"kerazoo {args.command}: error: {type(e).__name__}: {one_line(e)} (a bug? set KERAZOO_DEBUG=1 "
              f"for the traceback)", file=sys.stderr)
        return 1
    return 0
