"""Command line of the converters.

    python -m converters caffe DEPLOY.prototxt WEIGHTS.caffemodel -o OUT.keras [--input-shape H W] [--verify]
        [--winograd]

Reads the Caffe net (progress bar for big files), builds the exact Keras model, prints a summary
(layers, parameters, BatchNorm + Scale pairs folded) and saves a ``.keras`` file (written to a
temporary name, then renamed: a failed run leaves no output). ``--verify`` runs one random input
through the Keras model and through OpenCV's Caffe engine and prints the largest relative
difference per output (``max|keras - opencv| / max|opencv|``). ``--winograd`` saves a model for CPU
inference whose wide 3x3 convolutions run as Winograd F(4x4, 3x3) (``zoo.winograd``; FCN-8s 0.74-0.86x
the direct convolution's time on 2 cores, ~1e-5 round-off); it is what ``--verify`` checks then.
Keep the plain model for fine-tuning.

Exit status: 0 success; 1 ``--verify`` found a difference above ``--tolerance``, or a failure that is
not bad input (a bug: ``--debug`` shows its traceback; no file written either way); 2 bad input (the
message names the file, layer or argument; no traceback); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


class _VerifyFailed(Exception):
    """Keras and OpenCV outputs differ by more than the tolerance."""


def _tolerance(text):
    """argparse type of ``--tolerance``: a finite float >= 0 (NaN passed every check, as ``x > nan`` is False)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def build_parser(prog: str = "python -m converters") -> argparse.ArgumentParser:
    """``prog``: the program as the user typed it (``kerazoo convert``), which usage lines and errors name."""
    from kerazoo.cli import Parser, count  # the standard library only: --help without Keras

    p = Parser(prog=prog, description=__doc__)
    sub = p.add_subparsers(dest="format", required=True, metavar="{caffe}")  # named in its error, not "format"
    c = sub.add_parser("caffe", help="convert a Caffe deploy prototxt + caffemodel to a .keras file")
    c.add_argument("prototxt", help="deploy prototxt (graph and hyper-parameters)")
    c.add_argument("caffemodel", help="binary weights (.caffemodel)")
    c.add_argument("-o", "--output", required=True,
                   help="output .keras file (one that exists is replaced, once the new one is whole)")
    c.add_argument("--input-shape", nargs=2, type=count(1), metavar=("H", "W"),
                   help="input height and width (default: the sizes declared in the prototxt)")
    c.add_argument("--verify", action="store_true", help="compare with OpenCV's Caffe engine on a random input")
    c.add_argument("--tolerance", type=_tolerance, default=1e-4,
                   help="largest relative difference --verify accepts, a finite number >= 0 (default 1e-4)")
    c.add_argument("--winograd", action="store_true",
                   help="for CPU inference: wide 3x3 stride-1 convolutions as Winograd F(4x4, 3x3) "
                        "(zoo.winograd.optimize_for_inference); not for fine-tuning")
    c.add_argument("--name", help="Keras model name (default: the Caffe net's name)")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _say(msg=""):
    print(msg, flush=True)


def _relative_difference(top, y, r):
    """max |y - r| / max |r| over the finite values; NaN/inf must sit at the same places with the same value.

    A NaN would otherwise compare as no difference at all (``max(0.0, nan)`` is 0.0).
    """
    import numpy as np

    bad_y, bad_r = ~np.isfinite(y), ~np.isfinite(r)
    if bad_y.any() or bad_r.any():
        if not (np.array_equal(bad_y, bad_r) and np.array_equal(y[bad_y], r[bad_r], equal_nan=True)):
            raise _VerifyFailed(
                f"output '{top}': {int(bad_y.sum())} NaN/inf values in Keras' output, {int(bad_r.sum())} in "
                f"OpenCV's, not the same; a net whose values overflow float32 on random input cannot be "
                f"checked this way"
            )
        y, r = y[~bad_y], r[~bad_r]
    if r.size == 0:
        return 0.0
    return float(np.abs(y - r).max() / max(float(np.abs(r).max()), 1e-30))


def _verify(net, model, input_shape, tolerance):
    """Print the relative difference per output; raise :class:`_VerifyFailed` above ``tolerance``."""
    import keras
    import numpy as np

    from converters.caffe import opencv

    if not opencv.available():
        _say("Verify: skipped, no OpenCV with the Caffe importer (pip install 'opencv-python-headless<5').")
        return
    departures = opencv.opencv_departures(net)
    if departures:
        _say(f"Verify: skipped, OpenCV cannot check this net: {'; '.join(departures)} (the conversion follows "
             "Caffe's own code there).")
        return
    rng = np.random.default_rng(0)
    feed, shapes = {}, {}
    for t in model.inputs:
        name = t.name if hasattr(t, "name") else None
        shape = tuple(t.shape[1:])
        x = rng.normal(size=(1,) + shape).astype(np.float32)
        feed[name] = x
        shapes[name] = (1, shape[-1]) + shape[:-1] if len(shape) == 3 else (1,) + shape
    caffe_inputs = [net.caffe_names.get(b, b) for b in net.inputs]
    keras_to_caffe = dict(zip([t.name for t in model.inputs], caffe_inputs))
    cv_feed = {keras_to_caffe[k]: v for k, v in feed.items()}
    cv_shapes = {keras_to_caffe[k]: v for k, v in shapes.items()}
    proto, weights = opencv.opencv_files(net, cv_shapes)
    out_layers = opencv.opencv_output_layers(net)
    try:
        ref = opencv.opencv_forward(proto, weights, cv_feed, list(out_layers.values()))
    except opencv.OpenCVRefused as e:  # a net OpenCV does not run: the conversion stands, unchecked
        _say(f"Verify: skipped, OpenCV could not run this net ({e}); the conversion follows Caffe's own code.")
        return
    ours = model.predict(feed if len(feed) > 1 else next(iter(feed.values())), verbose=0)
    ours = ours if isinstance(ours, (list, tuple)) else [ours]
    worst = 0.0
    for (top, layer), y in zip(out_layers.items(), ours):
        y, r = keras.ops.convert_to_numpy(y), ref[layer]
        if y.shape != r.shape:
            raise _VerifyFailed(f"output '{top}': Keras shape {y.shape} but OpenCV {r.shape}")
        rel = _relative_difference(top, y, r)
        worst = max(worst, rel)
        _say(f"Verify: {top}: max relative difference {rel:.2e} (OpenCV, random input {input_shape or 'as declared'})")
    if worst > tolerance:
        raise _VerifyFailed(f"largest relative difference {worst:.2e} exceeds --tolerance {tolerance:g}")


def _convert_caffe(args) -> int:
    out = Path(args.output)
    if out.suffix != ".keras":
        raise ValueError(f"--output must end in .keras (Keras' saving format). Received: '{out}'")
    if out.is_dir():
        raise ValueError(f"--output '{out}' is a directory; give a file name ending in .keras")
    from kerazoo.cli import blocked_by_file

    blocker = blocked_by_file(out)
    if blocker is not None:  # found before the conversion, not at the save after it
        raise ValueError(f"--output '{out}': '{blocker}' is a file, expected a folder there")
    from zoo.files import atomic_target

    # the temporary file first: a place that cannot be written (a read-only folder, a dangling link) is named now,
    # not after minutes of conversion
    tmp = atomic_target(out, ".tmp.keras")
    try:
        return _convert_into(args, out, tmp)
    finally:
        if tmp.exists():
            tmp.unlink()


def _convert_into(args, out: Path, tmp: Path) -> int:
    """The conversion proper, saved to ``tmp`` (made by :func:`_convert_caffe`) and renamed to ``out``."""
    from converters.caffe import load
    from converters.caffe.keras import convert

    progress = None if not args.no_progress else False
    net = load(args.prototxt, args.caffemodel, input_shape=tuple(args.input_shape) if args.input_shape else None,
               progress=progress)
    inputs = ", ".join(f"{net.caffe_names.get(b, b)} {tuple(s)}" for b, s in net.inputs.items())
    _say(f"Read Caffe net '{net.name or '(unnamed)'}': {len(net.layers)} layers; input {inputs} (NCHW)")
    conv = convert(net, tuple(args.input_shape) if args.input_shape else None, name=args.name,
                   progress=None if not args.no_progress else False)
    model = conv.model
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    _say(f"Keras model '{model.name}': {len(model.layers)} layers, {conv.parameters:,} parameters "
         f"({trainable:,} trainable)")
    _say(f"Folded {conv.folded_bn_scale} BatchNorm + Scale pairs into BatchNormalization layers")
    if args.winograd:
        from zoo.winograd import WinogradConv2D, optimize_for_inference

        model = optimize_for_inference(model)
        swapped = [layer.name for layer in model.layers if isinstance(layer, WinogradConv2D)]
        _say(f"Winograd: {len(swapped)} Conv2D layers swapped" + (f" ({', '.join(swapped)})" if swapped else ""))
    _say("Outputs: " + ", ".join(f"{top} -> {name} {tuple(t.shape)}"
                                 for (top, name), t in zip(conv.outputs.items(), model.outputs)))
    if args.verify:
        _verify(net, model, args.input_shape, args.tolerance)
    from zoo.files import replace_durably, write_errors_naming

    with write_errors_naming(out, tmp):  # a full disk named nothing ("[Errno 27] File too large")
        model.save(tmp)
        replace_durably(tmp, out)  # synced first: a power cut leaves no empty OUT.keras
    _say(f"Saved {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def main(argv=None, prog: str = "python -m converters") -> int:
    """Entry point of ``python -m converters``; ``kerazoo convert`` and ``kerazoo-convert`` call it with their
    own ``prog``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else list(argv))
    from kerazoo.cli import (CannotLoad, cannot_load_reported, exit_on_interrupt, sigterm_as_ctrl_c,
                             tensorflow_notices_held_back)

    who = f"{prog} {args.format}"  # as typed: "kerazoo convert caffe", "python -m converters caffe"
    # Ctrl-C lands here in the first seconds, while Keras loads: one line and 130 (--debug: the traceback)
    try:
        with exit_on_interrupt(who, debug=args.debug), cannot_load_reported(who, debug=args.debug), \
                tensorflow_notices_held_back(tensorflow=True):  # zoo loads Keras; model.save TensorFlow, any backend
            import converters.caffe.errors  # noqa: F401  (Keras and the converter, loaded under the guards)
            import zoo.errors  # noqa: F401
    except CannotLoad as e:  # a backend not installed, KERAS_BACKEND misspelt: one line, not two tracebacks
        print(e, file=sys.stderr)
        return 1
    with sigterm_as_ctrl_c() as terminated:
        return _run(args, who, terminated)


def _run(args, who: str, terminated: list) -> int:
    from converters.caffe.errors import CaffeError  # loaded by main, under its guards
    from zoo.errors import ZooError, one_line

    try:
        return _convert_caffe(args)
    except _VerifyFailed as e:
        print(f"{who}: error: verification failed: {e}; no output written (rerun without --verify to keep the "
              f"model)", file=sys.stderr)
        return 1
    except (CaffeError, ZooError, OSError, ValueError) as e:
        if args.debug:
            raise
        print(f"{who}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{who}: {'terminated (SIGTERM)' if terminated else 'interrupted'}; no output written", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as e:  # a bug rather than bad input: still one line, --debug shows the traceback
        if args.debug:
            raise
        print(f"{who}: error: {type(e).__name__}: {one_line(e)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
