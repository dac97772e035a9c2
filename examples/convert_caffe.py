"""Convert a Caffe model to Keras, check it against OpenCV's Caffe engine, and predict on an image.

1. read the deploy prototxt + caffemodel (``converters.caffe.load``: no Caffe, no protoc) and build an
   exact Keras model of any supported graph (``caffe.to_keras``);
2. with ``--zoo NAME``, also port the weights into the zoo builder (``zoo.get(NAME, weights=CAFFEMODEL)``,
   which reads the deploy prototxt beside the caffemodel) and compare it with the generic conversion;
3. verify each model against OpenCV's Caffe importer on a random input (the converter CLI's
   ``--verify``: largest relative difference per output; skipped without opencv-python < 5);
4. save OUT/<net name>.keras (and OUT/<NAME>.keras), written to a temporary name then renamed;
5. with ``--image``, preprocess the picture as the weights expect (``zoo.preprocess`` with a
   ``zoo.WeightsRecord`` made of ``--bgr --scale --mean --std``) and print the top outputs (for
   spatial outputs: channels ranked by their mean over all positions).

    python -m examples.convert_caffe --fast                 # writes a tiny random Caffe net and converts it
    python -m examples.convert_caffe deploy.prototxt weights.caffemodel --input-shape 224 224 --out converted
    python -m examples.convert_caffe ResNet-50-deploy.prototxt ResNet-50-model.caffemodel --zoo resnet50 \\
        --image cat.jpg --bgr --mean 104.007 116.669 122.679 --labels synset_words.txt
    python -m examples.convert_caffe pose_deploy.prototxt pose_iter_320000.caffemodel --zoo cpm \\
        --zoo-arg num_keypoints=14 --input-shape 368 368 --image person.jpg --bgr --scale 0.00390625 --mean 0.5 0.5 0.5

Exit status: 0 success; 1 a verification above --tolerance (that model is not saved); 2 bad input (one line).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples._common import (existing_path, output_folder, parser, positive_float, positive_int,  # noqa: E402
                              print_done, run_main, step)
from examples.quickstart import write_caffe_demo  # noqa: E402
from zoo.cli import name_value  # noqa: E402

PROG = "convert_caffe"


def build_parser():
    p = parser(PROG, __doc__)
    p.add_argument("prototxt", nargs="?", help="deploy prototxt (not with --fast)")
    p.add_argument("caffemodel", nargs="?", help="binary weights (not with --fast)")
    p.add_argument("--fast", "--demo", dest="demo", action="store_true",
                   help="reduced mode: write a tiny random Caffe net (and a test picture) into OUT/caffe, convert it")
    p.add_argument("--out", default="converted", help="output folder (default converted/)")
    p.add_argument("--input-shape", nargs=2, type=positive_int, metavar=("H", "W"),
                   help="input height and width (default: the sizes declared in the prototxt)")
    p.add_argument("--name", help="Keras model name (default: the Caffe net's name)")
    p.add_argument("--zoo", metavar="NAME", help="also load the weights into this zoo builder (zoo.get)")
    p.add_argument("--zoo-arg", type=name_value, action="append", default=[], metavar="NAME=VALUE",
                   help="zoo builder argument, e.g. stages=6 (repeatable)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with OpenCV")
    p.add_argument("--tolerance", type=positive_float, default=1e-4,
                   help="largest relative difference accepted by the verification (default 1e-4)")
    g = p.add_argument_group("prediction (the weights' input convention: (reorder(rgb) * scale - mean) / std)")
    g.add_argument("--image", help="picture to predict on (resized to the model input)")
    g.add_argument("--bgr", action="store_true", help="the weights expect BGR channel order (Caffe's usual)")
    g.add_argument("--scale", type=positive_float, default=1.0, help="multiplies 0-255 pixels first (default 1)")
    g.add_argument("--mean", type=float, nargs=3, default=(0.0, 0.0, 0.0), metavar=("M1", "M2", "M3"),
                   help="per-channel mean in the weights' channel order, after --scale (default 0 0 0)")
    g.add_argument("--std", type=positive_float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("S1", "S2", "S3"),
                   help="per-channel divisor (default 1 1 1)")
    g.add_argument("--top", type=positive_int, default=5, help="outputs to print per model output (default 5)")
    g.add_argument("--labels", help="text file with one output name per line (e.g. synset_words.txt)")
    return p


def parse_args(argv):
    p = build_parser()
    a = p.parse_args(argv)
    if a.demo:
        if a.prototxt or a.caffemodel:
            p.error("--fast writes its own Caffe net; give either PROTOTXT CAFFEMODEL or --fast")
    elif not (a.prototxt and a.caffemodel):
        p.error("PROTOTXT and CAFFEMODEL are required (or --fast for the built-in demo net)")
    else:
        existing_path(p, a.prototxt, "PROTOTXT")
        existing_path(p, a.caffemodel, "CAFFEMODEL")
    for flag, value in (("--image", a.image), ("--labels", a.labels)):
        if value:
            existing_path(p, value, flag)
    if a.zoo_arg and not a.zoo:
        p.error("--zoo-arg needs --zoo NAME")
    return a


def demo_picture(path) -> Path:
    """A synthetic figure (training.datasets.synthetic) as a PNG to predict on in --fast mode."""
    from training.datasets.synthetic import synthetic_pose
    from training.visualize import write_png

    return write_png(path, synthetic_pose(1, image_size=(96, 80), seed=3)[0].image.load())


def output_view(net, model):
    """``model`` with its outputs reordered to the Caffe net's output blobs (matched by layer name).

    Returns ``(view, None)``, or ``(None, reason)`` when the zoo model cannot be lined up with the net.
    """
    import keras

    from converters.caffe.context import keras_name

    producers = net.producers()
    names = [keras_name(producers[b].name) for b in net.outputs]
    have = {layer.name for layer in model.layers}
    missing = [n for n in names if n not in have]
    if missing:
        return None, f"no zoo layer named {', '.join(missing)} (the Caffe net's output layers)"
    view = keras.Model(model.inputs, [model.get_layer(n).output for n in names], name=model.name)
    if len(model.inputs) == len(net.inputs):
        return view, None
    channels = [int(t.shape[-1]) for t in model.inputs]
    shape = tuple(next(iter(net.inputs.values())))  # NCHW
    if len(net.inputs) == 1 and len(shape) == 4 and shape[1] == sum(channels) and None not in model.inputs[0].shape[1:]:
        # the CPM releases take image and centre map as one 4-channel blob that a Slice splits at channel 3;
        # the zoo model takes them as two inputs: feed it the blob's channels in that order
        joined = keras.Input(shape=tuple(model.inputs[0].shape[1:3]) + (sum(channels),), name="data")
        parts, start = [], 0
        for c in channels:
            parts.append(joined[..., start:start + c])
            start += c
        outs = view(parts)
        return keras.Model(joined, list(outs) if isinstance(outs, (list, tuple)) else [outs], name=model.name), None
    return None, f"the zoo model has {len(model.inputs)} inputs, the Caffe net {len(net.inputs)}"


def verify(net, model, input_shape, tolerance, what, unsaved="nothing saved") -> bool:
    """The converter CLI's OpenCV comparison; prints one line per output, False above ``tolerance``."""
    from converters.cli import _verify, _VerifyFailed

    try:
        _verify(net, model, input_shape, tolerance)
    except _VerifyFailed as e:
        print(f"{PROG}: error: verification of the {what} failed: {e}; {unsaved}", file=sys.stderr)
        return False
    return True


def convert(a, proto, weights, out):
    """Generic conversion (+ verify + save): ``(net, model)`` or ``None`` after a failed verification."""
    from converters import caffe
    from training.callbacks import atomic_save

    step("1. read and convert the Caffe net (caffe.to_keras)")
    shape = tuple(a.input_shape) if a.input_shape else None
    net = caffe.load(proto, weights, input_shape=shape)
    inputs = ", ".join(f"{net.caffe_names.get(b, b)} {tuple(s)}" for b, s in net.inputs.items())
    print(f"read '{net.name or '(unnamed)'}': {len(net.layers)} layers; input {inputs} (NCHW)")
    model = caffe.to_keras(net, shape, name=a.name)
    print(f"Keras model '{model.name}': {len(model.layers)} layers, {model.count_params():,} parameters; outputs "
          + ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(model.output_names, model.outputs)))
    if not a.no_verify and not verify(net, model, a.input_shape, a.tolerance, "generic conversion"):
        return None
    path = atomic_save(model, out / f"{model.name}.keras")
    print(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return net, model


def convert_zoo(a, proto, weights, net, generic, out):
    """``zoo.get(a.zoo, weights=caffemodel)``, compared with the generic conversion and OpenCV."""
    import numpy as np

    import zoo
    from converters import caffe
    from converters.caffe.zoo_loader import find_prototxt
    from training.callbacks import atomic_save

    step(f"2. port into the zoo builder: zoo.get('{a.zoo}', weights=...)")
    found = find_prototxt(weights)
    if found.resolve() != Path(proto).resolve():
        print(f"note: zoo.get reads the deploy prototxt beside the caffemodel: {found}")
    kwargs = dict(a.zoo_arg)
    size = tuple(generic.inputs[0].shape[1:3])  # --input-shape, else the prototxt's declared size
    if None not in size:
        kwargs.setdefault("input_shape", (int(size[0]), int(size[1]), 3))
    model = zoo.get(a.zoo, weights=weights, **kwargs)
    print(f"zoo.get('{a.zoo}', weights='{weights}'{''.join(f', {k}={v!r}' for k, v in kwargs.items())}): "
          f"{model.count_params():,} parameters")
    h, w = model.inputs[0].shape[1:3]
    if (h, w) != tuple(generic.inputs[0].shape[1:3]) and None not in (h, w):
        net = caffe.load(proto, weights, input_shape=(h, w))  # the zoo builder's own input size
        generic = None
    view, why = output_view(net, model)
    if view is None:
        print(f"comparison skipped: {why}")
    else:
        if generic is not None:
            rng = np.random.default_rng(1)
            feed = [rng.normal(size=(1,) + tuple(t.shape[1:])).astype(np.float32) for t in view.inputs]
            ys = [view.predict(feed if len(feed) > 1 else feed[0], verbose=0),
                  generic.predict(feed if len(feed) > 1 else feed[0], verbose=0)]
            ys = [y if isinstance(y, (list, tuple)) else [y] for y in ys]
            diff = max(float(np.abs(np.asarray(p) - np.asarray(q)).max()) for p, q in zip(*ys))
            print(f"zoo model vs generic conversion: max |difference| = {diff:.2e}")
        if not a.no_verify and not verify(net, view, (h, w), a.tolerance, f"zoo model '{a.zoo}'",
                                          f"{a.zoo}.keras not saved (the generic conversion, verified, is)"):
            return None
    path = atomic_save(model, out / f"{a.zoo}.keras")
    print(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return model


def predict(a, model, image_path):
    """Preprocess ``image_path`` with the --bgr/--scale/--mean/--std record, print the top outputs."""
    import cv2
    import numpy as np

    import zoo
    from training.datasets.base import read_image

    step(f"3. predict on {image_path}")
    img = read_image(image_path)
    h, w = model.inputs[0].shape[1:3]
    h, w = h or img.shape[0], w or img.shape[1]
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    record = zoo.WeightsRecord(channel_order="BGR" if a.bgr else "RGB", scale=a.scale, mean=tuple(a.mean),
                               std=tuple(a.std), input_size=(h, w))
    feeds = [zoo.preprocess(None, img[None], record=record)]
    for t in model.inputs[1:]:
        if len(model.inputs) != 2 or t.shape[-1] != 1:
            raise ValueError(f"--image: cannot feed input '{t.name}' {tuple(t.shape)}; only an image input "
                             f"(plus a CPM-style 1-channel centre map) is supported")
        feeds.append(zoo.cpm_center_map(h, w)[None])
    print(f"input {w}x{h}, {record.channel_order}, (pixels * {a.scale:g} - {tuple(a.mean)}) / {tuple(a.std)}")
    outs = model.predict(feeds if len(feeds) > 1 else feeds[0], verbose=0)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    labels = Path(a.labels).read_text().splitlines() if a.labels else []
    for name, y in zip(model.output_names, outs):
        y = np.asarray(y)[0]
        scores = y.reshape(-1, y.shape[-1]).mean(0)
        where = f", mean over {'x'.join(map(str, y.shape[:-1]))} positions" if y.ndim > 1 else ""
        print(f"top {min(a.top, len(scores))} of output '{name}' ({y.shape[-1]} channels{where}):")
        for rank, c in enumerate(np.argsort(-scores)[:a.top], 1):
            name = f"  {labels[c]}" if c < len(labels) else ""
            print(f"  {rank}. {c:>4d}  {scores[c]:.4f}{name}")


def run(a) -> int:
    t0 = time.time()
    out = output_folder(a.out)
    proto, weights, image = a.prototxt, a.caffemodel, a.image
    if a.demo:
        proto, weights = write_caffe_demo(out / "caffe")
        image = image or demo_picture(out / "caffe" / "demo.png")
        print(f"demo: wrote {proto}, {weights} and {image}")
    done = convert(a, proto, weights, out)
    if done is None:
        return 1
    net, model = done
    if a.zoo:
        model = convert_zoo(a, proto, weights, net, model, out)
        if model is None:
            return 1
    if image:
        predict(a, model, image)
    print_done(t0)
    return 0


def main(argv=None) -> int:
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
