"""The commands of ``kerazoo`` (:mod:`kerazoo.cli` parses the command line and calls them):
``_cmd_NAME(args)`` for list, download, info, inspect, predict (:mod:`zoo.cli_predict`, a video's :mod:`zoo.cli_video`)
and export. A user error raises :class:`CLIError`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

# the command line's helpers, also imported from here by older code
from kerazoo.cli import (  # noqa: F401
    IMAGE_SUFFIXES, CLIError, HelpFormatter, Parser, blocked_by_file, build_parser, count, main, name_value,
)
from zoo.cli_predict import _cmd_predict  # noqa: F401 - kerazoo predict: zoo/cli_predict.py
from zoo.errors import one_line  # noqa: F401

__all__ = ["main"]


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

    try:
        info = zoo.info(args.name)  # refuses an unknown tag too
    except ValueError as e:
        raise CLIError(one_line(e)) from None
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


def _cmd_export(args):
    import zoo
    from zoo.errors import ZooError
    from zoo.export import check_target, export

    try:
        check_target(args.out, args.format, args.overwrite)  # before a model is built or loaded
        if args.model.lower().endswith(".keras"):
            if args.weights or args.model_arg:
                raise CLIError(f"--weights and --model-arg are for a registered NAME; {args.model} is a whole model")
            from training.models import _run_metadata

            model = zoo.load_keras_model(args.model)
            _run_metadata(model, args.model)  # a training run's input convention and names, for the JSON beside it
        else:
            model = zoo.get(args.model, weights=args.weights, **dict(args.model_arg))
        export(model, args.out, format=args.format, input_shape=args.input_shape, batch_size=args.batch_size,
               verify=args.verify, overwrite=args.overwrite)
    except (ValueError, TypeError, OSError, KeyError, ZooError) as e:
        raise CLIError(one_line(e)) from None
