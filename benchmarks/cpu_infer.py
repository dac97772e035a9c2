"""Benchmark: CPU inference of converted Caffe nets under TensorFlow against OpenCV dnn on the same files.

    KERAS_BACKEND=tensorflow python benchmarks/cpu_infer.py --model resnet50 [--size 224] [--batch 8]
        [--threads 2] [--repeats 5] [--variants predict,predict_on_batch,function,xla,opencv] [--out results.txt]

Models (full-width deploy prototxts of ``tests/converters/nets.py``, random blobs written with
``tests/caffe_files.py``): ``resnet50`` (Kaiming ResNet-50, 224x224), ``cpm`` (shihenw CPM,
6 stages, image + centre map as one 4-channel blob, 368x368), ``fcn8s`` (VGG-16 FCN-8s, pad 100;
``--size`` smaller than the release's 500 to stay within minutes on 2 vCPUs).
Each is converted with ``converters.caffe.load`` + ``to_keras`` and run as

* ``predict``: ``model.predict(x, batch_size=B)`` (Keras' own loop; no XLA on CPU);
* ``predict_on_batch``: ``model.predict_on_batch(x)`` (same compiled function, no data adapter);
* ``function``: ``tf.function(model(x, training=False))``, graph mode;
* ``xla``: the same with ``jit_compile=True``;
* ``winograd``: ``function`` on ``zoo.winograd.optimize_for_inference(model)`` (wide 3x3 stride-1
  convolutions as Winograd F(4x4, 3x3), as OpenCV does);
* ``opencv``: ``cv2.dnn.readNetFromCaffe`` on the same files, default backend with its layer
  fusion and Winograd on (its inference settings, not the exactness oracle's),

all with ``--threads`` intra-op threads (``cv2.setNumThreads``, TF intra-op / inter-op 1).
Batch-1 latency is the median of ``--repeats`` calls after one warm-up call (which includes
tracing / XLA compilation, reported separately); throughput is images/s of batch ``--batch``.
Every variant's output is compared with OpenCV's (max abs difference relative to the output's
range) so all rows compute the same function. Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks._report import emit  # noqa: E402
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DEFAULT_SIZE = {"resnet50": 224, "cpm": 368, "fcn8s": 256}


def prototxt(name, size):
    from tests.converters import nets

    if name == "resnet50":  # logits: a softmax of random-weight logits is one-hot, useless to compare
        text = nets.resnet50(size, size)
        return text[:text.index('layer { name: "prob"')]
    if name == "cpm":
        return nets.cpm(size, size)
    if name == "fcn8s":
        return nets.fcn8s(size, size)
    raise SystemExit(f"--model must be one of {sorted(DEFAULT_SIZE)}. Received: {name!r}")


def files(name, size, directory):
    """Write (once) ``<name>_<size>.prototxt/.caffemodel`` with random blobs; return their paths."""
    import numpy as np

    from tests.caffe_files import random_blobs_for, write_net

    stem = f"{name}_{size}"
    proto, model = (os.path.join(directory, f"{stem}.{ext}") for ext in ("prototxt", "caffemodel"))
    if not (os.path.exists(proto) and os.path.exists(model)):
        text = prototxt(name, size)
        write_net(directory, text, random_blobs_for(text, np.random.default_rng(0)), name=stem)
    return proto, model


def _timed(fn, x, repeats):
    t = time.perf_counter()
    out = fn(x)
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return out, first, statistics.median(times)


def opencv_runner(proto, model, threads):
    import cv2
    import numpy as np

    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    names = list(net.getUnconnectedOutLayersNames())

    def run(x):  # NHWC in, NHWC out (as the Keras model)
        net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        out = net.forward(names)[-1]
        return out.transpose(0, 2, 3, 1) if out.ndim == 4 else out

    return run


def tf_runners(model, variants):
    import keras
    import tensorflow as tf

    from zoo.winograd import optimize_for_inference

    out = {}
    for v in variants:
        if v == "winograd":
            fast = optimize_for_inference(model, verbose=True)
            fn = tf.function(lambda x, m=fast: m(x, training=False), reduce_retracing=True)
            out[v] = lambda x, fn=fn: keras.ops.convert_to_numpy(fn(tf.constant(x)))
            continue
        if v == "predict":
            out[v] = lambda x, m=model: m.predict(x, batch_size=len(x), verbose=0)
            continue
        if v == "predict_on_batch":
            out[v] = lambda x, m=model: m.predict_on_batch(x)
            continue
        fn = tf.function(lambda x, m=model: m(x, training=False), jit_compile=v == "xla", reduce_retracing=True)
        out[v] = lambda x, fn=fn: keras.ops.convert_to_numpy(fn(tf.constant(x)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet50", choices=sorted(DEFAULT_SIZE))
    ap.add_argument("--size", type=int, help="input side (default: 224 resnet50, 368 cpm, 256 fcn8s)")
    ap.add_argument("--batch", type=int, default=8, help="batch of the throughput row")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--variants", default="predict,predict_on_batch,function,xla,winograd,opencv")
    ap.add_argument("--dir", default="/tmp/kerazoo_infer_bench")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args(argv)
    size = args.size or DEFAULT_SIZE[args.model]
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import cv2
    import keras
    import numpy as np

    from converters.caffe import load, to_keras

    os.makedirs(args.dir, exist_ok=True)
    t = time.perf_counter()
    proto, caffemodel = files(args.model, size, args.dir)
    t_files = time.perf_counter() - t
    t = time.perf_counter()
    model = to_keras(load(proto, caffemodel, progress=False), progress=False)
    t_convert = time.perf_counter() - t
    load_avg = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [f"cpu_infer: {args.model} {size}x{size}, {model.count_params():,} parameters, caffemodel "
             f"{os.path.getsize(caffemodel) / 2**20:.0f} MiB (files {t_files:.0f} s, convert {t_convert:.1f} s), "
             f"{time.strftime('%Y-%m-%d %H:%M')}",
             f"os.cpu_count() {os.cpu_count()}, {args.threads} threads each | load average {load_avg} | keras "
             f"{keras.__version__} tensorflow {tf.__version__} opencv {cv2.__version__} | TF_ENABLE_ONEDNN_OPTS="
             f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}"]
    for text in lines:
        print(text, flush=True)
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 1, (1,) + shape).astype(np.float32)
    xb = rng.uniform(0, 1, (args.batch,) + shape).astype(np.float32)
    variants = [v for v in args.variants.split(",") if v]
    runners = tf_runners(model, [v for v in variants if v != "opencv"])
    if "opencv" in variants:
        runners["opencv"] = opencv_runner(proto, caffemodel, args.threads)
    rows = {}
    for name, fn in runners.items():
        out1, first, lat = _timed(fn, x1, args.repeats)
        _, _, tb = _timed(fn, xb, max(2, args.repeats // 2))
        rows[name] = (first, lat, args.batch / tb, np.asarray(out1, np.float32))
        print(f"  {name}: first call {first:.2f} s, batch-1 {lat * 1e3:.1f} ms, batch {args.batch} "
              f"{args.batch / tb:.1f} img/s", flush=True)
    ref = rows["opencv"][3] if "opencv" in rows else None
    base = rows["opencv"][1] if "opencv" in rows else None
    lines.append(f"{'variant':<17}{'first call s':>13}{'batch-1 ms':>12}{'x opencv':>10}"
                 f"{'batch ' + str(args.batch) + ' img/s':>17}{'max|diff|/range':>17}")
    for name, (first, lat, thr, out) in rows.items():
        diff = "" if ref is None else f"{np.abs(out - ref).max() / max(np.ptp(ref), 1e-12):.1e}"
        ratio = "" if base is None else f"{lat / base:.2f}"
        lines.append(f"{name:<17}{first:>13.2f}{lat * 1e3:>12.1f}{ratio:>10}{thr:>17.1f}{diff:>17}")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
