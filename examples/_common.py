"""Helpers shared by the example scripts: argument parsing with one-line errors, error reporting, output.

Every example's ``main(argv)`` (:func:`run_main`) parses with :func:`parser` (a bad argument prints
``prog: error: <reason> (see --help)`` on one line and exits 2) and runs its work through
:func:`run_guarded` (a bad file, dataset or weights file prints one ``prog: error: ...`` line and
returns 2; ``--debug`` shows the traceback instead). The work prints numbered :func:`step` headings
and writes into :func:`output_folder`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide TensorFlow's C++ start-up messages

__all__ = ["OneLineParser", "parser", "positive_int", "positive_float", "existing_path", "one_line",
           "run_guarded", "run_main", "metric_line", "step", "output_folder", "start_run", "print_done"]


class OneLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def parser(prog: str, doc: str) -> OneLineParser:
    """A parser whose ``--help`` starts with the script's docstring (usage examples included)."""
    p = OneLineParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def positive_int(text) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def positive_float(text) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def existing_path(p: argparse.ArgumentParser, value, flag: str, *, folder: bool = False) -> Path:
    """``Path(value)``, or a one-line parser error naming ``flag`` when it is missing/of the wrong kind."""
    path = Path(value)
    if not path.exists():
        p.error(f"{flag}: '{path}' does not exist")
    if folder and not path.is_dir():
        p.error(f"{flag}: '{path}' is not a folder")
    if not folder and path.is_dir():
        p.error(f"{flag}: '{path}' is a folder; expected a file")
    return path


def one_line(text, limit: int = 600) -> str:
    """``text`` with its whitespace runs (newlines included) collapsed, cut to ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _expected_errors() -> tuple:
    """Exception types that mean bad input (files, datasets, weights, arguments), not a bug."""
    from converters.caffe.errors import CaffeError
    from training.datasets.base import DatasetError
    from zoo.errors import ZooError

    return (CaffeError, DatasetError, ZooError, OSError, ValueError, TypeError)


def run_guarded(prog: str, work, args) -> int:
    """``work(args)``; bad input -> one ``prog: error: ...`` line and 2, other errors -> one line and 1."""
    try:
        return int(work(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if getattr(args, "debug", False):
            raise
        if isinstance(e, _expected_errors()):
            print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
            return 2
        print(f"{prog}: error: {type(e).__name__}: {one_line(e)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def run_main(prog: str, parse_args, work, argv=None) -> int:
    """An example's ``main``: ``parse_args(argv or sys.argv[1:])``, then ``work(args)`` through :func:`run_guarded`."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_guarded(prog, work, args)


def step(title) -> None:
    """Print a step heading (``== 1. data``) of an example's run."""
    print(f"\n== {title}", flush=True)


def output_folder(path) -> Path:
    """``Path(path)``, created with its parents if missing."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def start_run(prog: str, a) -> Path:
    """Create the output folder ``a.out`` and print the run's first line (``a.model`` on ``a.dataset``, Keras)."""
    import keras

    out = output_folder(a.out)
    print(f"{prog}: {a.model} on {a.dataset}, Keras {keras.__version__} ({keras.backend.backend()}), output in {out}/")
    return out


def print_done(t0: float) -> None:
    """The last line of a run: seconds since ``t0`` (``time.time()`` at its start)."""
    print(f"\ndone in {time.time() - t0:.0f} s")


def metric_line(ev) -> str:
    """``"PCKh@0.5 0.812 (per joint: ...)"`` for a pose :class:`~training.evaluation.EvalResult`."""
    per = list(ev.table.get("per_joint", {}).values())
    return f"{ev.metric} {ev.mean:.3f}  per joint: {' '.join(f'{v:.2f}' for v in per)}"
