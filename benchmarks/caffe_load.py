"""Benchmark: reading a ResNet-152-sized caffemodel (~230 MB of random float32) with ``converters.caffe.load``.

    python benchmarks/caffe_load.py [--dir /tmp/caffe_bench] [--depth 152]

Writes a ResNet deploy prototxt (Kaiming layout: conv, BatchNorm, Scale, ReLU, Eltwise) and a caffemodel
with random blobs, then times, each in a fresh subprocess so peak RSS is per measurement:

* ``protobuf``: read the file + ``NetParameter.ParseFromString`` (BVLC schema, upb), the floor;
* ``load()``: prototxt text parse + upgrade + shape inference + streaming the blobs to float32 arrays;

and prints wall time and peak RSS above the process baseline (``resource.getrusage``), relative to the
file size. Not run by the tests.
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

_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def resnet_prototxt(depth=152, size=224):
    """ResNet deploy prototxt text in KaimingHe's Caffe layout."""
    out = [f'name: "ResNet-{depth}"', 'input: "data"',
           f"input_dim: 1 input_dim: 3 input_dim: {size} input_dim: {size}"]

    def conv(name, bottom, n, k, s=1, p=0, bias=False):
        out.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
                   f"  convolution_param {{ num_output: {n} kernel_size: {k} stride: {s} pad: {p}"
                   f"{'' if bias else ' bias_term: false'} }} }}")

    def bn_scale(conv_name, suffix, relu=True):
        out.append(f'layer {{ name: "bn{suffix}" type: "BatchNorm" bottom: "{conv_name}" top: "{conv_name}"\n'
                   "  batch_norm_param { use_global_stats: true } }")
        out.append(f'layer {{ name: "scale{suffix}" type: "Scale" bottom: "{conv_name}" top: "{conv_name}"\n'
                   "  scale_param { bias_term: true } }")
        if relu:
            out.append(f'layer {{ name: "{conv_name}_relu" type: "ReLU" bottom: "{conv_name}" top: "{conv_name}" }}')

    conv("conv1", "data", 64, 7, 2, 3, bias=True)
    bn_scale("conv1", "_conv1")
    out.append('layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"\n'
               "  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }")
    bottom, width = "pool1", 64
    for stage, blocks in enumerate(_BLOCKS[depth], start=2):
        for b in range(blocks):
            tag = f"{stage}{'a' if b == 0 else ('b' + str(b) if blocks > 6 else chr(ord('a') + b))}"
            stride = 2 if (b == 0 and stage > 2) else 1
            if b == 0:
                conv(f"res{tag}_branch1", bottom, width * 4, 1, stride)
                bn_scale(f"res{tag}_branch1", f"{tag}_branch1", relu=False)
                shortcut = f"res{tag}_branch1"
            else:
                shortcut = bottom
            conv(f"res{tag}_branch2a", bottom, width, 1, stride)
            bn_scale(f"res{tag}_branch2a", f"{tag}_branch2a")
            conv(f"res{tag}_branch2b", f"res{tag}_branch2a", width, 3, 1, 1)
            bn_scale(f"res{tag}_branch2b", f"{tag}_branch2b")
            conv(f"res{tag}_branch2c", f"res{tag}_branch2b", width * 4, 1)
            bn_scale(f"res{tag}_branch2c", f"{tag}_branch2c", relu=False)
            out.append(f'layer {{ name: "res{tag}" type: "Eltwise" bottom: "{shortcut}" '
                       f'bottom: "res{tag}_branch2c" top: "res{tag}" }}')
            out.append(f'layer {{ name: "res{tag}_relu" type: "ReLU" bottom: "res{tag}" top: "res{tag}" }}')
            bottom = f"res{tag}"
        width *= 2
    out.append(f'layer {{ name: "pool5" type: "Pooling" bottom: "{bottom}" top: "pool5"\n'
               "  pooling_param { pool: AVE kernel_size: 7 stride: 1 } }")
    out.append('layer { name: "fc1000" type: "InnerProduct" bottom: "pool5" top: "fc1000"\n'
               "  inner_product_param { num_output: 1000 } }")
    out.append('layer { name: "prob" type: "Softmax" bottom: "fc1000" top: "prob" }')
    return "\n".join(out) + "\n"


def generate(directory, depth):
    import numpy as np

    from tests.caffe_files import random_blobs_for, write_net

    text = resnet_prototxt(depth)
    blobs = random_blobs_for(text, np.random.default_rng(0))
    return write_net(directory, text, blobs, name=f"resnet{depth}")


# Peak RSS: /proc/self/status VmHWM (per address space, so reset by exec; getrusage's ru_maxrss would
# inherit the parent's high-water mark across fork+exec), baseline VmRSS after imports and a warm-up.
_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
mode, proto, model = sys.argv[1:4]
from converters.caffe.schema import BVLC
from converters.caffe.reader import load

def status(key):
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith(key + ":"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

load(proto)  # warm up lazy imports (zoo.layers) and the text parser on the graph alone
base = status("VmRSS")
t = time.perf_counter()
if mode == "protobuf":
    with open(model, "rb") as f:
        data = f.read()
    t_read = time.perf_counter() - t
    msg = BVLC.NetParameter()
    msg.ParseFromString(data)
    n = len(msg.layer)
else:
    t_read = 0.0
    net = load(proto, model, progress=False)
    n = len(net.layers)
dt = time.perf_counter() - t
print(json.dumps({{"seconds": dt, "read": t_read, "peak_kb": status("VmHWM") - base, "layers": n}}))
"""


def measure(mode, proto, model, repeats=3):
    runs = []
    for _ in range(repeats):
        res = subprocess.run([sys.executable, "-c", _CHILD.format(root=ROOT), mode, proto, model],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")})
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    return best["seconds"], best["read"], max(r["peak_kb"] for r in runs) * 1024, best["layers"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/tmp/kerazoo_caffe_bench")
    ap.add_argument("--depth", type=int, default=152, choices=sorted(_BLOCKS))
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    t = time.perf_counter()
    proto, model = generate(args.dir, args.depth)
    size = os.path.getsize(model)
    print(f"generated {model}: {size / 2**20:.1f} MiB in {time.perf_counter() - t:.1f} s")
    rows = {mode: measure(mode, proto, model) for mode in ("protobuf", "load")}
    base_s, base_read = rows["protobuf"][:2]
    print(f"{'':<10}{'seconds':>10}{'(file read)':>12}{'x read+parse':>14}{'x parse':>9}{'peak RSS MiB':>14}"
          f"{'x file':>8}{'layers':>8}")
    for mode, (sec, read, peak, n) in rows.items():
        print(f"{mode:<10}{sec:>10.3f}{read:>12.3f}{sec / base_s:>14.2f}{sec / (base_s - base_read):>9.2f}"
              f"{peak / 2**20:>14.1f}{peak / size:>8.2f}{n:>8}")
    print("protobuf = open().read() + BVLC NetParameter.ParseFromString; load = converters.caffe.load(prototxt, "
          "caffemodel) incl. text parse and shape inference; peak RSS above the post-import baseline.")


if __name__ == "__main__":
    main()
