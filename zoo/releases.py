"""The original public releases, registered as weights tags (``zoo.get("cpm", weights="mpii")``).

Each tag's :class:`~zoo.records.WeightsRecord` names the authors' files (:class:`SourceFile`: the
original name, URL, archive member) and how to use the weights (input size, channel order,
mean/scale, classes or keypoints, flip pairs, output stride, the paper's metric, license, page).
:mod:`zoo.pretrained` fetches, verifies and converts them once.

No sha256 is pinned here: none has been computed from the real files by this project yet (the
machines that built it had no internet). The first download records each file's hash locally and
prints it; ``zoo.info`` / ``kerazoo list --pretrained`` say which hashes are pinned or recorded.
Two files are checked on their first download too, against the SHA-1 that OpenCV's test-data
downloader (opencv_extra ``testdata/dnn/download_models.py``) checks them with in OpenCV's CI, so
computed from the real files: ``fcn8s-heavy-pascal.caffemodel`` (fcn8s:voc, the same URL) and
``ResNet-50-model.caffemodel`` (resnet50:imagenet, the member of ``models.zip``; OpenCV fetches the
same release file on its own). (An md5 for the hourglass zip circulates in third-party scripts
copied from a Caffe download script; it is not used, since nothing shows it was computed from that
file.)
"""

from __future__ import annotations

from zoo.registry import register_weights
from zoo.records import SourceFile, WeightsRecord

__all__ = ["MPII_JOINTS", "CPM_PARTS", "VOC_CLASSES", "CITYSCAPES_CLASSES"]

MPII_JOINTS = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax", "upper_neck",
               "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist")
MPII_FLIP = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
# CPM MPI/LSP models: 14 parts (+ a background map), testing/python/config_reader part_str.
CPM_PARTS = ("head", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
             "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle")
CPM_FLIP = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13))
# the FLIC model's 9 parts (testing/config.m, model(4).part_str: Lsho Lelb Lwri Rsho Relb Rwri Lhip Rhip head; bkg last)
CPM_FLIC_PARTS = ("l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist", "l_hip", "r_hip", "head")
CPM_FLIC_FLIP = ((0, 3), (1, 4), (2, 5), (6, 7))
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")

_GH = "https://raw.githubusercontent.com"
_BGR_IMAGENET = dict(channel_order="BGR", mean=(103.939, 116.779, 123.68))  # VGG's ILSVRC mean (PSPNet's pre_img.m)
# the per-channel average of Kaiming He's ResNet_mean.binaryproto (BGR), as chainercv records it; the authors subtract
# the whole 224 x 224 mean image
_KAIMING_MEAN = (103.0626238, 115.90288257, 123.15163084)
# SHA-1s OpenCV's CI checks its downloads of these release files with (opencv_extra testdata/dnn/download_models.py)
_OPENCV_SHA1 = {"ResNet-50-model.caffemodel": "b7c79ccc21ad0479cddc0dd78b1d20c4d722908d",
                "fcn8s-heavy-pascal.caffemodel": "c449ea74dd7d83751d1357d6a8c323fcf4038962"}


def _published(provides: str) -> dict:
    """SourceFile's sha1/sha1_from for the file ``provides`` (an archive's member) where OpenCV published one."""
    sha1 = _OPENCV_SHA1.get(provides)
    return {"sha1": sha1, "sha1_from": "OpenCV, opencv_extra testdata/dnn/download_models.py"} if sha1 else {}


# --- ResNet v1: Kaiming He's Caffe models (MSR models.zip) -------------------------------------------------
_KAIMING = "https://github.com/KaimingHe/deep-residual-networks"
for _depth, _top1, _top5 in ((50, 24.7, 7.8), (101, 23.6, 7.1), (152, 23.0, 6.7)):
    register_weights(f"resnet{_depth}", "imagenet", WeightsRecord(
        source_format="caffe",
        sources=(
            SourceFile("models.zip", "http://research.microsoft.com/en-us/um/people/kahe/resnet/models.zip",
                       member=f"ResNet-{_depth}-model.caffemodel", page=_KAIMING + "#models",
                       **_published(f"ResNet-{_depth}-model.caffemodel")),
            SourceFile(f"ResNet-{_depth}-deploy.prototxt",
                       f"{_GH}/KaimingHe/deep-residual-networks/master/prototxt/ResNet-{_depth}-deploy.prototxt"),
        ),
        source_page=_KAIMING, paper="Deep Residual Learning for Image Recognition (He et al., CVPR 2016)",
        license="MIT (repository license; see source page)",
        description=f"ResNet-{_depth} ImageNet, the MSRA Caffe release. The authors subtract a mean image "
                    f"(ResNet_mean.binaryproto); the per-channel BGR mean here is that image's average (it was "
                    f"VGG's ILSVRC mean, as keras.applications uses: B 0.9 and R 0.5 away).",
        input_size=(224, 224), channel_order="BGR", mean=_KAIMING_MEAN, num_classes=1000, output_stride=32,
        builder_kwargs={"classes": 1000},
        metrics={"ImageNet val top-1 error, 1 crop (%)": _top1, "ImageNet val top-5 error, 1 crop (%)": _top5},
    ))

# --- ResNet v2 (pre-activation): soeaver/caffe-model, BatchNorm + Scale ------------------------------------
_SOEAVER = "https://github.com/soeaver/caffe-model/tree/master/cls"
for _depth, _drive, _top1, _top5 in ((101, "0B9mkjlmP0d7zRlhISks0VktGOGs", 78.05, 93.88),
                                     (152, "0B9mkjlmP0d7zOXhrb1EyYVRHOEk", 79.15, 94.58)):
    register_weights(f"resnet{_depth}v2", "imagenet", WeightsRecord(
        source_format="caffe",
        sources=(
            SourceFile(f"resnet{_depth}_v2.caffemodel", f"https://drive.google.com/uc?export=download&id={_drive}",
                       page=f"https://drive.google.com/open?id={_drive}"),
            SourceFile(f"deploy_resnet{_depth}_v2.prototxt",
                       f"{_GH}/soeaver/caffe-model/master/cls/resnet-v2/deploy_resnet{_depth}_v2.prototxt"),
        ),
        source_page=_SOEAVER, paper="Identity Mappings in Deep Residual Networks (He et al., ECCV 2016)",
        license="see source page",
        description=f"Pre-activation ResNet-{_depth} ImageNet, as listed by soeaver/caffe-model (its cls/README "
                    f"names craftGBD as the models' source). Google Drive asks for confirmation on large files: if the download returns a web "
                    f"page, fetch the file by hand and use the offline folder.",
        input_size=(224, 224), channel_order="BGR", mean=(102.98, 115.947, 122.772), num_classes=1000,
        output_stride=32, builder_kwargs={"classes": 1000},
        metrics={"ImageNet val top-1, 224 single crop (%)": _top1, "ImageNet val top-5 (%)": _top5},
    ))

# --- FCN: PASCAL VOC "heavy" models (shelhamer/fcn.berkeleyvision.org) ---------------------------------------
_FCN = "https://github.com/shelhamer/fcn.berkeleyvision.org"
for _arch, _folder, _file, _miou in (("fcn32s", "voc-fcn32s", "fcn32s-heavy-pascal", 63.6),
                                     ("fcn16s", "voc-fcn16s", "fcn16s-heavy-pascal", 65.0),
                                     ("fcn8s", "voc-fcn8s", "fcn8s-heavy-pascal", 65.5),
                                     ("fcn8s_atonce", "voc-fcn8s-atonce", "fcn8s-atonce-pascal", 65.4)):
    register_weights(_arch, "voc", WeightsRecord(
        source_format="caffe",
        sources=(
            SourceFile(f"{_file}.caffemodel", f"http://dl.caffe.berkeleyvision.org/{_file}.caffemodel",
                       page=f"{_FCN}/tree/master/{_folder}", **_published(f"{_file}.caffemodel")),
            SourceFile(f"{_folder}/deploy.prototxt", f"{_GH}/shelhamer/fcn.berkeleyvision.org/master/{_folder}/deploy.prototxt"),
        ),
        source_page=_FCN, paper="Fully Convolutional Networks for Semantic Segmentation (Shelhamer, Long & Darrell, PAMI 2016)",
        license="models: BVLC model license (unrestricted use); code: BSD-2-Clause",
        description=f"{_arch} trained online with high momentum on PASCAL VOC with the extra SBD data (Hariharan et "
                    f"al.) but excluding SBD val, scored on seg11valid (the repository's 'heavy' models). Any input size; "
                    f"outputs the input's size.",
        input_size=(500, 500), channel_order="BGR", mean=(104.00699, 116.66877, 122.67892),
        num_classes=21, class_names=VOC_CLASSES, output_stride=1, builder_kwargs={"classes": 21},
        metrics={"VOC seg11valid mean IU (%)": _miou},
    ))

# --- CPM (shihenw/convolutional-pose-machines-release) -------------------------------------------------------
_CPM = "https://github.com/shihenw/convolutional-pose-machines-release"
_CPM_FILES = "http://posefs1.perception.cs.cmu.edu/CPM/caffe_model_github/model"
for _tag, _folder, _weights, _deploy, _stages, _parts, _names, _flip, _metric in (
        ("mpii", "_trained_MPI", "pose_iter_985000_addLEEDS", "pose_deploy_centerMap", 6, 14, CPM_PARTS, CPM_FLIP,
         {"MPII test PCKh@0.5 (%)": 88.5}),
        ("lsp", "_trained_LEEDS_PC", "pose_iter_395000", "pose_deploy_centerMap", 6, 14, CPM_PARTS, CPM_FLIP,
         {"LSP test PCK@0.2, LSP training only (%)": 84.32}),
        ("flic", "_trained_FLIC", "pose_iter_40000", "pose_deploy", 4, 9, CPM_FLIC_PARTS, CPM_FLIC_FLIP, {})):
    register_weights("cpm", _tag, WeightsRecord(
        source_format="caffe",
        sources=(
            SourceFile(f"{_folder}/{_weights}.caffemodel", f"{_CPM_FILES}/{_folder}/{_weights}.caffemodel",
                       page=f"{_CPM}/blob/master/testing/get_model.sh"),
            SourceFile(f"{_folder}/{_deploy}.prototxt", f"{_GH}/shihenw/convolutional-pose-machines-release/master/model/{_folder}/{_deploy}.prototxt"),
        ),
        source_page=_CPM, paper="Convolutional Pose Machines (Wei et al., CVPR 2016)", license="BSD-3-Clause",
        description=f"CPM {_stages} stages, {_parts} parts + background, person-centred 368x368 crops with a "
                    f"Gaussian centre map (zoo.cpm_center_map, sigma 21)."
                    + (" Trained on MPII + LSP (pose_iter_985000_addLEEDS; testing/config.m: 'MPII+LSP 6-stage CPM')."
                       if _tag == "mpii" else ""),
        input_size=(368, 368), channel_order="BGR", scale=1 / 256, mean=(0.5, 0.5, 0.5),
        num_keypoints=_parts, keypoint_names=_names, flip_pairs=_flip, output_stride=8,
        heatmap_offset=3.5,  # cpm_data_transformer.cpp putGaussianMaps: x = stride/2.0 - 0.5 + g_x * stride
        # training/genProto.py leaves cpm_transform_param's sigma at the proto's default, 7 input px (CMU caffe_train
        # caffe.proto): 7 / stride 8 heatmap px, cut where exp() < 1% (3.03 sigma)
        heatmap_sigma=7 / 8,
        builder_kwargs={"stages": _stages, "num_keypoints": _parts}, metrics=_metric,
    ))

# --- PSPNet (hszhao/PSPNet, Google Drive) --------------------------------------------------------------------
_PSP = "https://github.com/hszhao/PSPNet"
for _arch, _tag, _file, _drive, _size, _classes, _names, _metric in (
        ("pspnet50", "ade20k", "pspnet50_ADE20K", "0BzaU285cX7TCN1R3QnUwQ0hoMTA", 473, 150, None,
         {"ADE20K val mIoU, single scale with the mirrored pass (eval_sub.m always flips) (%)": 41.68}),
        ("pspnet101", "voc", "pspnet101_VOC2012", "0BzaU285cX7TCNVhETE5vVUdMYk0", 473, 21, VOC_CLASSES,
         {"VOC2012 test mIoU, multi-scale (%)": 85.41}),
        ("pspnet101", "cityscapes", "pspnet101_cityscapes", "0BzaU285cX7TCT1M3TmNfNjlUeEU", 713, 19,
         CITYSCAPES_CLASSES,
         {"Cityscapes val mIoU, single scale with the mirrored pass (eval_sub.m always flips) (%)": 79.70})):
    register_weights(_arch, _tag, WeightsRecord(
        source_format="caffe",
        sources=(
            SourceFile(f"{_file}.caffemodel", f"https://drive.google.com/uc?export=download&id={_drive}",
                       page=f"https://drive.google.com/open?id={_drive}"),
            SourceFile(f"{_file}_{_size}.prototxt", f"{_GH}/hszhao/PSPNet/master/evaluation/prototxt/{_file}_{_size}.prototxt"),
        ),
        source_page=_PSP, paper="Pyramid Scene Parsing Network (Zhao et al., CVPR 2017)",
        license="BSD-2-Clause (the Caffe fork's license)",
        description=f"{_arch} {_tag}, {_size}x{_size} crops (sliding window at test time). Google Drive asks for "
                    f"confirmation on large files: if the download returns a web page, fetch the file by hand and "
                    f"use the offline folder." + (" Class names: ADE20K objectInfo150." if _names is None else ""),
        input_size=(_size, _size), **_BGR_IMAGENET, num_classes=_classes, class_names=_names,
        output_stride=8, metrics=_metric,
        eval_base_size=2048 if _tag == "cityscapes" else 512,  # eval_all.m: base_size per dataset
        # fixed-size: the pyramid pooling windows follow the input (713 px: a 90 px map). The 473 px tags leave out
        # the builder's default, so their conversion keys (builder_kwargs), hence cached conversions, stay valid
        builder_kwargs={"classes": _classes, **({"input_shape": (_size, _size, 3)} if _size != 473 else {})},
    ))

# --- Stacked Hourglass (Torch7, umich) --------------------------------------------------------------------------
register_weights("hourglass", "mpii", WeightsRecord(
    source_format="torch7",
    sources=(
        SourceFile("umich-stacked-hourglass.zip", "http://www-personal.umich.edu/~alnewell/pose/umich-stacked-hourglass.zip",
                   member="umich-stacked-hourglass.t7",
                   page="https://github.com/princeton-vl/pose-hg-demo"),
    ),
    source_page="https://github.com/princeton-vl/pose-hg-demo",
    paper="Stacked Hourglass Networks for Human Pose Estimation (Newell, Yang & Deng, ECCV 2016)",
    license="BSD-3-Clause",
    description="8-stack hourglass, MPII, person-centred 256x256 crops, RGB in [0, 1]; 16 heatmaps 64x64 "
                "per stack (the last is the prediction). Layout of the earlier hg.lua: a lin layer right "
                "after each hourglass, no residual (post_residuals=False; 23,717,888 parameters).",
    input_size=(256, 256), channel_order="RGB", scale=1 / 255, num_keypoints=16, keypoint_names=MPII_JOINTS,
    flip_pairs=MPII_FLIP, output_stride=4,
    # pose-hg-train (img.lua transform/crop, pose.lua generateSample): a crop pixel j sits at j + 0.5 in transform's
    # frame, so the target floor((j + 0.5) / 4) = g covers crop px 4g .. 4g + 3: pixel g is at 4g + 1.5 (postprocess'
    # g + 0.5 is in that frame). Symmetric under a mirror, hence hg-train's unshifted flip average
    heatmap_offset=1.5,
    # pose.lua/img.lua drawGaussian(sigma 1): a 7x7 torch image.gaussian(7), whose sigma is 0.25 x its size, so
    # 1.75 heatmap px cut at +-3 px (pose-hg-train issue #25)
    heatmap_sigma=1.75,
    builder_kwargs={"stacks": 8, "num_keypoints": 16, "features": 256, "modules": 1, "post_residuals": False},
    metrics={"MPII test PCKh@0.5 (%)": 90.9},
))
