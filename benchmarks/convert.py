"""Benchmark: converting a ResNet-152-sized caffemodel (~230 MB of random float32) to Keras.

    KERAS_BACKEND=jax python benchmarks/convert.py [--dir /tmp/kerazoo_caffe_bench] [--net resnet152]
        [--repeats 1] [--out results.txt]

Uses a deploy prototxt and caffemodel of ``benchmarks/resnet_caffe.py`` (random blobs): ``resnet152``
(Kaiming layout, 670 Caffe layers, 230 MB: Keras's per-layer cost shows) or ``vgg16`` (BVLC layout,
39 layers, 528 MB: the data path shows), and times, each in a fresh subprocess so that peak RSS is per measurement:

* ``protobuf``: ``open().read()`` + BVLC ``NetParameter.ParseFromString`` (upb): the floor;
* ``load``: ``converters.caffe.load`` (prototxt parse, upgrade, shape inference, blobs streamed to
  float32 arrays);
* ``convert``: ``load`` + ``converters.caffe.to_keras`` (Keras graph + weights): the whole
  conversion, split into load and build seconds.

Peak RSS is ``/proc/self/status`` VmHWM above the process's VmRSS after imports and a warm-up on
a 3-layer net (``resource.getrusage`` ``ru_maxrss`` on other systems). Targets (issue #7):
total convert time <= 3x protobuf's parse, peak RSS <= 3x the file size. Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks._report import emit  # noqa: E402

from benchmarks.resnet_caffe import NETS, generate  # noqa: E402

_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
mode, proto, model = sys.argv[1:4]
from converters.caffe.schema import BVLC
from converters.caffe.reader import load, loads

def status(key):
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith(key + ":"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

load(proto)  # warm up the text parser and shape inference on the graph alone
if mode == "convert":
    from converters.caffe.keras import to_keras
    tiny = ('input: "data" input_shape {{ dim: 1 dim: 3 dim: 8 dim: 8 }}\n'
            'layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" '
            'convolution_param {{ num_output: 2 kernel_size: 3 }} }}\n'
            'layer {{ name: "bn" type: "BatchNorm" bottom: "c" top: "c" }}\n'
            'layer {{ name: "r" type: "ReLU" bottom: "c" top: "c" }}\n')
    to_keras(loads(tiny), progress=False)  # imports Keras + backend and the handlers
base = status("VmRSS")
out = {{}}
t = time.perf_counter()
if mode == "protobuf":
    with open(model, "rb") as f:
        data = f.read()
    out["read"] = time.perf_counter() - t
    msg = BVLC.NetParameter()
    msg.ParseFromString(data)
    out["layers"] = len(msg.layer)
else:
    net = load(proto, model, progress=False)
    out["load"] = time.perf_counter() - t
    out["layers"] = len(net.layers)
    if mode == "convert":
        t1 = time.perf_counter()
        m = to_keras(net, progress=False)
        out["build"] = time.perf_counter() - t1
out["seconds"] = time.perf_counter() - t
out["peak_kb"] = status("VmHWM") - base
out["base_kb"] = base
if mode == "convert":
    out["params"] = int(m.count_params())
    # Keras alone building the same layers from their configs (no Caffe, no weights): the floor of "build"
    import keras
    from converters.caffe.context import host_constant_initializers
    cfg = m.get_config()
    del m, net
    t2 = time.perf_counter()
    with host_constant_initializers():
        keras.Model.from_config(cfg)
    out["keras_rebuild"] = time.perf_counter() - t2
print(json.dumps(out))
"""


def measure(mode, proto, model, repeats):
    runs = []
    for _ in range(repeats):
        res = subprocess.run([sys.executable, "-c", _CHILD.format(root=ROOT), mode, proto, model],
                             capture_output=True, text=True,
                             env={**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"),
                                  "TF_CPP_MIN_LOG_LEVEL": "3"})
        if res.returncode:
            raise SystemExit(f"{mode} failed:\n{res.stderr[-3000:]}")
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    best["peak_kb"] = max(r["peak_kb"] for r in runs)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/tmp/kerazoo_caffe_bench")
    ap.add_argument("--net", default="resnet152", choices=sorted(NETS))
    ap.add_argument("--repeats", type=int, default=1, help="runs per mode (best time, worst peak)")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    t = time.perf_counter()
    proto, model = generate(args.dir, args.net)
    size = os.path.getsize(model)
    import google.protobuf
    import keras

    lines = [f"convert: {args.net} caffemodel {size / 2**20:.1f} MiB (generated in "
             f"{time.perf_counter() - t:.1f} s), {time.strftime('%Y-%m-%d %H:%M')}",
             f"os.cpu_count() {os.cpu_count()} | load average {', '.join(f'{v:.2f}' for v in os.getloadavg())} | "
             f"keras {keras.__version__} ({os.environ.get('KERAS_BACKEND', 'jax')}), protobuf "
             f"{google.protobuf.__version__}, best of {args.repeats}"]
    for text in lines:
        print(text, flush=True)
    rows = {mode: measure(mode, proto, model, args.repeats) for mode in ("protobuf", "load", "convert")}
    parse = rows["protobuf"]["seconds"]
    lines.append(f"{'':<10}{'load s':>8}{'build s':>9}{'total s':>9}{'x protobuf':>12}{'peak RSS MiB':>14}"
                 f"{'x file':>8}{'layers':>8}")
    for mode, r in rows.items():
        lines.append(f"{mode:<10}{r.get('load', r.get('read', 0.0)):>8.2f}{r.get('build', 0.0):>9.2f}"
                     f"{r['seconds']:>9.2f}{r['seconds'] / parse:>12.2f}{r['peak_kb'] / 1024:>14.1f}"
                     f"{r['peak_kb'] * 1024 / size:>8.2f}{r['layers']:>8}")
    lines.extend([f"protobuf: load s = file read, total = read + ParseFromString; convert: load + to_keras "
                 f"({rows['convert'].get('params', 0):,} Keras parameters); peak RSS above the post-import "
                 f"baseline ({rows['convert']['base_kb'] / 1024:.0f} MiB for convert).",
                 f"Keras alone rebuilding the converted model's layers from their configs (Model.from_config, "
                 f"no weights, not in the times above): {rows['convert']['keras_rebuild']:.2f} s against the "
                 f"{rows['convert']['build']:.2f} s build."])
    emit(lines, args.out)


if __name__ == "__main__":
    main()
