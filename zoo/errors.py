"""Exceptions raised by the zoo. Each message names the file, layer or argument at fault."""

__all__ = ["ZooError", "WeightsFileError", "WeightsMismatchError", "InputShapeError", "ExportError", "one_line",
           "backend_error_text", "quiet_opencv"]

import re
from contextlib import contextmanager


class ZooError(Exception):
    """Base class of the zoo's own errors."""


class WeightsFileError(ZooError, OSError):
    """A weights file is missing, unreadable, corrupt, or fails its sha256 check."""


class WeightsMismatchError(ZooError, ValueError):
    """Weights and model disagree: layers missing on either side, or shapes that differ."""


class InputShapeError(ZooError, ValueError):
    """An input shape a model cannot take (too small, wrong rank or channel count)."""


class ExportError(ZooError, ValueError):
    """The model cannot be exported as asked, or the artifact's outputs differ from the model's (``zoo.export``)."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(e, limit: int = 600) -> str:
    """The substance of an error message on one line.

    Lists ("  - item" lines, as in ``WeightsMismatchError``) keep their first 3 items and a count;
    Keras' noise goes: object and variable reprs with their values, the list of unloaded objects,
    and the "Exception encountered when calling ..." wrapping (with escape codes and the call's
    arguments) around an error raised inside a layer.
    """
    text = _ANSI.sub("", str(e))
    if "Error encountered:" in text:  # Keras' wrapping of an error raised in a layer's call()
        text = text.split("Error encountered:", 1)[1].split("Arguments received", 1)[0]
    elif text.lstrip().startswith("Exception encountered when calling"):  # the same, for the layer's own error
        text = text.lstrip().partition("\n")[2].split("Arguments received by", 1)[0]
    text = text.split("List of objects that could not be loaded:", 1)[0]
    text = re.sub(r"<Variable path=([^,>]+)[^>]*>", r"variable '\1'", text)  # drops the printed values
    text = re.sub(r"<(\w+) name=([^,>]+), built=\w+>", r"\1 '\2'", text)
    parts, items = [], []

    def flush():
        if items:
            shown = ", ".join(items[:3]) + (f", ... ({len(items) - 3} more)" if len(items) > 3 else "")
            parts.append(shown if not parts else parts.pop() + " " + shown)
            items.clear()

    for line in (l.strip() for l in text.splitlines()):
        if line.startswith("- "):
            items.append(line[2:])
        elif line:
            flush()
            parts.append(line)
    flush()
    out = ""
    for part in parts:
        out += part if not out else (" " if out[-1] in ".:;,!?" else "; ") + part
    out = " ".join(out.split())
    if len(out) > limit:
        cut = out.rfind(" ", 0, limit)
        out = out[: cut if cut > limit // 2 else limit] + f" ... [{len(out) - limit:,} more characters]"
    return out


def backend_error_text(e) -> str:
    """What a model's failure on an input says, on one line (:func:`one_line`): Keras' wrapping of a layer's error
    dropped, and of a TensorFlow graph's error its message without the traceback of where the node was built
    ("Graph execution error:" was all its first line said)."""
    text = str(e)
    if "Graph execution error" in text:  # "Detected at node ... (most recent call last):", indented frames, message
        lines = [l.strip() for l in text.splitlines() if l.strip() and not l[:1].isspace()]
        text = "\n".join(l for l in lines if not l.startswith(("Graph execution error", "Detected at node")))
    return one_line(text)


@contextmanager
def quiet_opencv():
    """OpenCV's (and FFmpeg's) own notices off inside the block: a broken file or a refused net is our one-line error,
    not a dozen of their [ERROR] / [WARN] lines too."""
    from cv2.utils import logging as cv_log

    level = cv_log.getLogLevel()
    cv_log.setLogLevel(cv_log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv_log.setLogLevel(level)
