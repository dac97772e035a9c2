"""PyTorch reference models for the GPU benchmarks: the same architectures as the zoo's.

- ``hourglass(stacks=8, num_keypoints=16, features=256)``: Newell et al. / pose-hg-train
  (pre-activation bottlenecks, 4 downsamplings, nearest upsampling, intermediate supervision).
- ``pspnet50(classes=150)``: dilated ResNet-50 with the deep stem, pyramid pooling (1, 2, 3, 6),
  align-corners bilinear upsampling (as hszhao/semseg).
- ``resnet50``: torchvision's.

Parameter counts equal the zoo's (checked by ``python benchmarks/torch_reference.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1(n/2)-BN-ReLU-3x3(n/2)-BN-ReLU-1x1(n) + skip."""

    def __init__(self, cin, cout):
        super().__init__()
        mid = cout // 2
        self.bn1, self.conv1 = nn.BatchNorm2d(cin, eps=BN_EPS), nn.Conv2d(cin, mid, 1)
        self.bn2, self.conv2 = nn.BatchNorm2d(mid, eps=BN_EPS), nn.Conv2d(mid, mid, 3, padding=1)
        self.bn3, self.conv3 = nn.BatchNorm2d(mid, eps=BN_EPS), nn.Conv2d(mid, cout, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        y = self.conv1(F.relu(self.bn1(x)))
        y = self.conv2(F.relu(self.bn2(y)))
        y = self.conv3(F.relu(self.bn3(y)))
        return y + self.skip(x)


class Hourglass(nn.Module):
    def __init__(self, depth, f):
        super().__init__()
        self.up1 = Residual(f, f)
        self.low1 = Residual(f, f)
        self.low2 = Hourglass(depth - 1, f) if depth > 1 else Residual(f, f)
        self.low3 = Residual(f, f)

    def forward(self, x):
        up = self.up1(x)
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2))))
        return up + F.interpolate(low, scale_factor=2, mode="nearest")


class StackedHourglass(nn.Module):
    def __init__(self, stacks=8, num_keypoints=16, f=256):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3), nn.BatchNorm2d(64, eps=BN_EPS), nn.ReLU(inplace=True),
            Residual(64, 128), nn.MaxPool2d(2), Residual(128, 128), Residual(128, f))
        self.hgs = nn.ModuleList(Hourglass(4, f) for _ in range(stacks))
        self.res = nn.ModuleList(Residual(f, f) for _ in range(stacks))
        self.lin = nn.ModuleList(
            nn.Sequential(nn.Conv2d(f, f, 1), nn.BatchNorm2d(f, eps=BN_EPS), nn.ReLU(inplace=True))
            for _ in range(stacks))
        self.heads = nn.ModuleList(nn.Conv2d(f, num_keypoints, 1) for _ in range(stacks))
        self.ll_ = nn.ModuleList(nn.Conv2d(f, f, 1) for _ in range(stacks - 1))
        self.hm_ = nn.ModuleList(nn.Conv2d(num_keypoints, f, 1) for _ in range(stacks - 1))

    def forward(self, x):
        inter = self.stem(x)
        outs = []
        for i, hg in enumerate(self.hgs):
            ll = self.lin[i](self.res[i](hg(inter)))
            hm = self.heads[i](ll)
            outs.append(hm)
            if i < len(self.hgs) - 1:
                inter = inter + self.ll_[i](ll) + self.hm_[i](hm)
        return outs


def hourglass(stacks=8, num_keypoints=16, features=256):
    return StackedHourglass(stacks, num_keypoints, features)


class Bottleneck(nn.Module):
    """PSPNet bottleneck (stride on the 1x1 reduce, as the Caffe prototxt), optional dilation."""

    def __init__(self, cin, mid, stride=1, dilation=1, proj=False):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, mid, 1, stride, bias=False), nn.BatchNorm2d(mid, eps=BN_EPS)
        self.c2 = nn.Conv2d(mid, mid, 3, 1, dilation, dilation, bias=False)
        self.b2 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.c3, self.b3 = nn.Conv2d(mid, mid * 4, 1, bias=False), nn.BatchNorm2d(mid * 4, eps=BN_EPS)
        self.proj = nn.Sequential(nn.Conv2d(cin, mid * 4, 1, stride, bias=False),
                                  nn.BatchNorm2d(mid * 4, eps=BN_EPS)) if proj else None

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(y)))
        y = self.b3(self.c3(y))
        return F.relu(y + (self.proj(x) if self.proj is not None else x))


def _conv_bn(cin, cout, k, stride=1, pad=0):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, bias=False),
                         nn.BatchNorm2d(cout, eps=BN_EPS), nn.ReLU(inplace=True))


class PSPNet(nn.Module):
    def __init__(self, classes=150, blocks=(3, 4, 6, 3), bins=(1, 2, 3, 6)):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, 64, 3, 2, 1), _conv_bn(64, 64, 3, 1, 1),
                                  _conv_bn(64, 128, 3, 1, 1), nn.MaxPool2d(3, 2, 1, ceil_mode=True))
        layers, cin = [], 128
        for i, (n, mid, stride, dil) in enumerate(zip(blocks, (64, 128, 256, 512), (1, 2, 1, 1), (1, 1, 2, 4))):
            for j in range(n):
                layers.append(Bottleneck(cin, mid, stride if j == 0 else 1, dil, proj=j == 0))
                cin = mid * 4
        self.backbone = nn.Sequential(*layers)
        self.bins = bins
        self.ppm = nn.ModuleList(_conv_bn(2048, 512, 1) for _ in bins)
        self.head = nn.Sequential(_conv_bn(4096, 512, 3, 1, 1), nn.Dropout2d(0.1), nn.Conv2d(512, classes, 1))

    def forward(self, x):
        h, w = x.shape[2:]
        f = self.backbone(self.stem(x))
        size = f.shape[2:]
        feats = [f] + [F.interpolate(conv(F.adaptive_avg_pool2d(f, b)), size, mode="bilinear", align_corners=True)
                       for b, conv in zip(self.bins, self.ppm)]
        out = self.head(torch.cat(feats, 1))
        return F.interpolate(out, (h, w), mode="bilinear", align_corners=True)


def pspnet50(classes=150):
    return PSPNet(classes)


def resnet50():
    import torchvision

    return torchvision.models.resnet50()


if __name__ == "__main__":
    for name, m in (("hourglass8", hourglass()), ("pspnet50-150", pspnet50(150)), ("pspnet50-21", pspnet50(21))):
        print(name, sum(p.numel() for p in m.parameters() if p.requires_grad))
