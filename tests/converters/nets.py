"""Deploy prototxts for the converter tests, with the layer names of the original Caffe releases.

Each generator takes the widths as arguments: small widths give cheap nets for the exactness tests
against OpenCV, the real widths give nets whose layer names and shapes match the zoo builders
(port tests). Written from the released deploy files' structure (KaimingHe ResNet-50, soeaver
pre-activation ResNet, shelhamer FCN-8s, shihenw CPM, hszhao PSPNet-50), not from the zoo code.
"""

from __future__ import annotations


class Proto:
    """Accumulates prototxt text; ``add`` returns the top name."""

    def __init__(self, name, inputs):
        """``inputs``: list of ``(name, (N, C, H, W))``."""
        self.lines = [f'name: "{name}"']
        for n, shape in inputs:
            self.lines.append(f'input: "{n}"')
            self.lines.append("input_shape { " + " ".join(f"dim: {d}" for d in shape) + " }")

    def add(self, name, type_, bottoms, tops=None, params=""):
        bottoms = [bottoms] if isinstance(bottoms, str) else list(bottoms)
        tops = [name] if tops is None else ([tops] if isinstance(tops, str) else list(tops))
        b = " ".join(f'bottom: "{x}"' for x in bottoms)
        t = " ".join(f'top: "{x}"' for x in tops)
        self.lines.append(f'layer {{ name: "{name}" type: "{type_}" {b} {t} {params} }}')
        return tops[0]

    def conv(self, name, bottom, n, k, *, s=1, p=0, d=1, bias=True, top=None, extra=""):
        params = f"num_output: {n} kernel_size: {k} stride: {s} pad: {p}"
        params += f" dilation: {d}" if d != 1 else ""
        params += "" if bias else " bias_term: false"
        return self.add(name, "Convolution", bottom, top, f"convolution_param {{ {params} {extra} }}")

    def relu(self, name, blob):
        return self.add(name, "ReLU", blob, blob)

    def bn_scale(self, bn, scale, blob):
        """In-place BatchNorm (use_global_stats) + Scale (bias_term), as in Kaiming's files."""
        self.add(bn, "BatchNorm", blob, blob, "batch_norm_param { use_global_stats: true }")
        return self.add(scale, "Scale", blob, blob, "scale_param { bias_term: true }")

    @property
    def text(self):
        return "\n".join(self.lines) + "\n"


def resnet50(h, w, *, widths=(64, 128, 256, 512), blocks=(3, 4, 6, 3), classes=1000, stem=64, stride_in_3x3=False):
    """KaimingHe ResNet-50-deploy.prototxt layout; ``pool5`` global (exact for any size).

    ``stride_in_3x3``: stages 3-5 stride their first block's 3x3 ``branch2b`` instead of the 1x1 ``branch2a``
    (ResNet v1.5, as torchvision; Kaiming's files stride ``branch2a``)."""
    p = Proto("ResNet-50", [("data", (1, 3, h, w))])
    x = p.conv("conv1", "data", stem, 7, s=2, p=3)
    p.bn_scale("bn_conv1", "scale_conv1", x)
    p.relu("conv1_relu", x)
    x = p.add("pool1", "Pooling", x, params="pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
    for stage, (f, count) in enumerate(zip(widths, blocks), start=2):
        for i in range(count):
            sfx = f"{stage}{chr(ord('a') + i)}"
            stride = 2 if i == 0 and stage > 2 else 1
            if i == 0:
                sc = p.conv(f"res{sfx}_branch1", x, 4 * f, 1, s=stride, bias=False)
                p.bn_scale(f"bn{sfx}_branch1", f"scale{sfx}_branch1", sc)
            else:
                sc = x
            y = p.conv(f"res{sfx}_branch2a", x, f, 1, s=1 if stride_in_3x3 else stride, bias=False)
            p.bn_scale(f"bn{sfx}_branch2a", f"scale{sfx}_branch2a", y)
            p.relu(f"res{sfx}_branch2a_relu", y)
            y = p.conv(f"res{sfx}_branch2b", y, f, 3, s=stride if stride_in_3x3 else 1, p=1, bias=False)
            p.bn_scale(f"bn{sfx}_branch2b", f"scale{sfx}_branch2b", y)
            p.relu(f"res{sfx}_branch2b_relu", y)
            y = p.conv(f"res{sfx}_branch2c", y, 4 * f, 1, bias=False)
            p.bn_scale(f"bn{sfx}_branch2c", f"scale{sfx}_branch2c", y)
            x = p.add(f"res{sfx}", "Eltwise", [sc, y])
            p.relu(f"res{sfx}_relu", x)
    x = p.add("pool5", "Pooling", x, params="pooling_param { pool: AVE global_pooling: true }")
    x = p.add("fc1000", "InnerProduct", x, params=f"inner_product_param {{ num_output: {classes} }}")
    p.add("prob", "Softmax", x)
    return p.text


def resnet_v2(h, w, *, widths=(64, 128, 256, 512), blocks=(3, 4, 6, 3), classes=1000, stem=64):
    """soeaver/caffe-model deploy_resnet101_v2 layout (pre-activation, BatchNorm + Scale)."""
    p = Proto("resnet_v2", [("data", (1, 3, h, w))])
    x = p.conv("conv1", "data", stem, 7, s=2, p=3, bias=False)
    p.bn_scale("conv1_bn", "conv1_scale", x)
    p.relu("conv1_relu", x)
    x = p.add("pool1", "Pooling", x, params="pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
    idx = 0
    for stage, (f, count) in enumerate(zip(widths, blocks)):
        for i in range(count):
            idx += 1
            r = f"res{idx}"
            stride = 2 if i == 0 and stage > 0 else 1
            if idx > 1:  # pre-activation into a new blob; the raw sum stays the identity shortcut
                pre = p.add(f"{r}_bn", "BatchNorm", x, f"{r}_bn", "batch_norm_param { use_global_stats: true }")
                p.add(f"{r}_scale", "Scale", pre, pre, "scale_param { bias_term: true }")
                p.relu(f"{r}_relu", pre)
            else:
                pre = x
            sc = p.conv(f"{r}_match_conv", pre, 4 * f, 1, s=stride, bias=False) if i == 0 else x
            y = p.conv(f"{r}_conv1", pre, f, 1, bias=False)
            p.bn_scale(f"{r}_conv1_bn", f"{r}_conv1_scale", y)
            p.relu(f"{r}_conv1_relu", y)
            y = p.conv(f"{r}_conv2", y, f, 3, s=stride, p=1, bias=False)
            p.bn_scale(f"{r}_conv2_bn", f"{r}_conv2_scale", y)
            p.relu(f"{r}_conv2_relu", y)
            y = p.conv(f"{r}_conv3", y, 4 * f, 1, bias=False)
            x = p.add(f"{r}_eletwise", "Eltwise", [sc, y])
    p.bn_scale(f"res{idx}_eletwise_bn", f"res{idx}_eletwise_scale", x)
    p.relu(f"res{idx}_eletwise_relu", x)
    x = p.add("pool5", "Pooling", x, params="pooling_param { pool: AVE global_pooling: true }")
    x = p.add("classifier", "InnerProduct", x, params=f"inner_product_param {{ num_output: {classes} }}")
    p.add("prob", "Softmax", x)
    return p.text


def fcn8s(h, w, *, widths=(64, 128, 256, 512, 512), fc=4096, classes=21, atonce=False):
    """shelhamer/fcn.berkeleyvision.org voc-fcn8s deploy (atonce: Scale 0.01 / 0.0001 on the skips)."""
    p = Proto("fcn8s", [("data", (1, 3, h, w))])
    x = "data"
    for b, (f, n) in enumerate(zip(widths, (2, 2, 3, 3, 3)), start=1):
        for i in range(1, n + 1):
            x = p.conv(f"conv{b}_{i}", x, f, 3, p=100 if (b, i) == (1, 1) else 1)
            p.relu(f"relu{b}_{i}", x)
        x = p.add(f"pool{b}", "Pooling", x, params="pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
    x = p.conv("fc6", x, fc, 7)
    p.relu("relu6", x)
    p.add("drop6", "Dropout", x, x, "dropout_param { dropout_ratio: 0.5 }")
    x = p.conv("fc7", x, fc, 1)
    p.relu("relu7", x)
    p.add("drop7", "Dropout", x, x, "dropout_param { dropout_ratio: 0.5 }")
    x = p.conv("score_fr", x, classes, 1)
    deconv = "convolution_param {{ num_output: {n} bias_term: false kernel_size: {k} stride: {s} }}"
    for up, block, off in (("upscore2", 4, 5), ("upscore_pool4", 3, 9)):
        x = p.add(up, "Deconvolution", x, params=deconv.format(n=classes, k=4, s=2))
        skip = f"pool{block}"
        if atonce:
            skip = p.add(f"scale_pool{block}", "Scale", skip, f"scale_pool{block}",
                         "scale_param { filler { type: 'constant' value: 1 } }")
        s = p.conv(f"score_pool{block}", skip, classes, 1)
        s = p.add(f"score_pool{block}c", "Crop", [s, x], params=f"crop_param {{ axis: 2 offset: {off} }}")
        x = p.add(f"fuse_pool{block}", "Eltwise", [x, s], params="eltwise_param { operation: SUM }")
    x = p.add("upscore8", "Deconvolution", x, params=deconv.format(n=classes, k=16, s=8))
    p.add("score", "Crop", [x, "data"], params="crop_param { axis: 2 offset: 31 }")
    return p.text


def cpm(h, w, *, stages=6, parts=14, width=128, mid=32, wide=512):
    """shihenw CPM pose_deploy_centerMap: 4-channel data sliced into image + center_map."""
    p = Proto("CPM", [("data", (1, 4, h, w))])
    p.add("image", "Slice", "data", ["image", "center_map"], "slice_param { slice_point: 3 axis: 1 }")
    centre = p.add("pool_center_lower", "Pooling", "center_map",
                   params="pooling_param { pool: AVE kernel_size: 9 stride: 8 }")
    pool = "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"

    def features(stage):
        x = "image"
        for i in (1, 2, 3):
            x = p.conv(f"conv{i}_stage{stage}", x, width, 9, p=4)
            p.relu(f"relu{i}_stage{stage}", x)
            x = p.add(f"pool{i}_stage{stage}", "Pooling", x, params=pool)
        return x

    x = features(1)
    for name, n, k in (("conv4_stage1", mid, 5), ("conv5_stage1", wide, 9), ("conv6_stage1", wide, 1)):
        x = p.conv(name, x, n, k, p=k // 2)
        p.relu(name.replace("conv", "relu"), x)
    beliefs = p.conv("conv7_stage1", x, parts + 1, 1)
    pool3 = features(2)
    for t in range(2, stages + 1):
        fname = "conv4_stage2" if t == 2 else f"conv1_stage{t}"
        f = p.conv(fname, pool3, mid, 5, p=2)
        p.relu(fname.replace("conv", "relu"), f)
        x = p.add(f"concat_stage{t}", "Concat", [f, beliefs, centre], params="concat_param { axis: 1 }")
        for i, k in ((1, 11), (2, 11), (3, 11), (4, 1)):
            x = p.conv(f"Mconv{i}_stage{t}", x, width, k, p=k // 2)
            p.relu(f"Mrelu{i}_stage{t}", x)
        beliefs = p.conv(f"Mconv5_stage{t}", x, parts + 1, 1)
    return p.text


# bn_param exactly as hszhao/PSPNet master's deploy files write it (eps left at its 1e-5 default) ...
HSZHAO_BN_PARAM = ('bn_param { slope_filler { type: "constant" value: 1 } bias_filler { type: "constant" value: 0 }'
                   ' frozen: true momentum: 0.95 }')
# ... and as an earlier commit's (88d0b3) did, in hszhao's own field names (var_eps left at its 1e-10 default).
HSZHAO_BN_PARAM_88D0B3 = ('bn_param { scale_filler { type: "constant" value: 1 } shift_filler { type: "constant" '
                          'value: 0 } moving_average: true decay: 0.05 }')


def pspnet50(h, w, feature, *, widths=(64, 128, 256, 512), blocks=(3, 4, 6, 3), stem=(64, 64, 128), ppm=512,
             head=512, classes=150, bn="BN", bn_form="master"):
    """hszhao/PSPNet pspnet50_ADE20K_473 layout; ``feature`` is the conv5 map size (divisible by 6).

    ``bn="BN"`` writes the fork's BN layers (what the converter reads), in master's ``bn_param`` or
    (``bn_form="88d0b3"``) the earlier commit's; ``bn="BatchNorm"`` writes each as BatchNorm + Scale
    (``<name>_scale``) with that form's epsilon, the form OpenCV reads.
    """
    p = Proto("pspnet", [("data", (1, 3, h, w))])
    param, eps = {"master": (HSZHAO_BN_PARAM, "1e-5"), "88d0b3": (HSZHAO_BN_PARAM_88D0B3, "1e-10")}[bn_form]

    def norm(name, blob):
        if bn == "BN":
            p.add(name, "BN", blob, blob, param)
        else:  # eps = the fork's default (eps, or the earlier var_eps), as bn_layer.cpp adds it
            p.add(name, "BatchNorm", blob, blob, f"batch_norm_param {{ use_global_stats: true eps: {eps} }}")
            p.add(name + "_scale", "Scale", blob, blob, "scale_param { bias_term: true }")

    def conv_bn(name, bottom, n, k, s=1, d=1, relu=True):
        x = p.conv(name, bottom, n, k, s=s, p=d * (k // 2), d=d, bias=False)
        norm(f"{name}/bn", x)
        if relu:
            p.relu(f"{name}/relu", x)
        return x

    x = conv_bn("conv1_1_3x3_s2", "data", stem[0], 3, s=2)
    x = conv_bn("conv1_2_3x3", x, stem[1], 3)
    x = conv_bn("conv1_3_3x3", x, stem[2], 3)
    x = p.add("pool1_3x3_s2", "Pooling", x, params="pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }")
    for stage, f, count, stride, d in zip((2, 3, 4, 5), widths, blocks, (1, 2, 1, 1), (1, 1, 2, 4)):
        for i in range(1, count + 1):
            n = f"conv{stage}_{i}"
            s = stride if i == 1 else 1
            y = conv_bn(f"{n}_1x1_reduce", x, f, 1, s=s)
            y = conv_bn(f"{n}_3x3", y, f, 3, d=d)
            y = conv_bn(f"{n}_1x1_increase", y, 4 * f, 1, relu=False)
            sc = conv_bn(f"{n}_1x1_proj", x, 4 * f, 1, s=s, relu=False) if i == 1 else x
            x = p.add(n, "Eltwise", [sc, y])
            p.relu(f"{n}/relu", x)
    branches = []
    for b in (6, 3, 2, 1):
        if feature % b:
            raise ValueError(f"feature size {feature} is not divisible by {b}")
        k = feature // b
        y = p.add(f"conv5_3_pool{b}", "Pooling", x, params=f"pooling_param {{ pool: AVE kernel_size: {k} stride: {k} }}")
        y = conv_bn(f"conv5_3_pool{b}_conv", y, ppm, 1)
        branches.append(p.add(f"conv5_3_pool{b}_interp", "Interp", y,
                              params=f"interp_param {{ height: {feature} width: {feature} }}"))
    x = p.add("conv5_3_concat", "Concat", [x] + branches)
    x = conv_bn("conv5_4", x, head, 3)
    p.add("conv5_4_dropout", "Dropout", x, x, "dropout_param { dropout_ratio: 0.1 }")
    x = p.conv("conv6", x, classes, 1)
    p.add("conv6_interp", "Interp", x, params="interp_param { zoom_factor: 8 }")
    return p.text
