"""Deploy prototxts with random caffemodels for the converter benchmarks (``benchmarks/convert.py``).

* ResNet in Kaiming He's Caffe layout (conv, BatchNorm, Scale, ReLU, Eltwise): many small layers;
* VGG-16 as in the BVLC model zoo (13 conv + 3 InnerProduct): few layers, 528 MB of weights.

    proto, model = generate("/tmp/caffe_bench", "resnet152")   # ~230 MB of float32
"""

from __future__ import annotations

import os
import sys

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


VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (width, convs) per block


def vgg16_prototxt(size=224):
    """VGG-16 deploy prototxt text in the BVLC model zoo's layout (VGG_ILSVRC_16_layers_deploy)."""
    out = ['name: "VGG_ILSVRC_16_layers"', 'input: "data"',
           f"input_dim: 1 input_dim: 3 input_dim: {size} input_dim: {size}"]
    bottom = "data"
    for block, (width, convs) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, convs + 1):
            name = f"conv{block}_{i}"
            out.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
                       f"  convolution_param {{ num_output: {width} pad: 1 kernel_size: 3 }} }}")
            out.append(f'layer {{ name: "relu{block}_{i}" type: "ReLU" bottom: "{name}" top: "{name}" }}')
            bottom = name
        out.append(f'layer {{ name: "pool{block}" type: "Pooling" bottom: "{bottom}" top: "pool{block}"\n'
                   "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }")
        bottom = f"pool{block}"
    for name, n in (("fc6", 4096), ("fc7", 4096), ("fc8", 1000)):
        out.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}"\n'
                   f"  inner_product_param {{ num_output: {n} }} }}")
        if name != "fc8":
            out.append(f'layer {{ name: "relu{name[2:]}" type: "ReLU" bottom: "{name}" top: "{name}" }}')
            out.append(f'layer {{ name: "drop{name[2:]}" type: "Dropout" bottom: "{name}" top: "{name}"\n'
                       "  dropout_param { dropout_ratio: 0.5 } }")
        bottom = name
    out.append('layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }')
    return "\n".join(out) + "\n"


NETS = {**{f"resnet{d}": (lambda d=d: resnet_prototxt(d)) for d in _BLOCKS}, "vgg16": vgg16_prototxt}


def generate(directory, net="resnet152"):
    """Write ``<net>.prototxt`` and a ``<net>.caffemodel`` of seeded random blobs; return both paths."""
    import numpy as np

    from tests.caffe_files import random_blobs_for, write_net

    text = NETS[net]()
    blobs = random_blobs_for(text, np.random.default_rng(0))
    return write_net(directory, text, blobs, name=net)
