#!/usr/bin/env bash
# The whole GPU-machine check of issue #7 in one call (../shared/GPU.md; the device tool, carry [".whl"],
# after `bash benchmarks/fetch_wheels.sh` here):
#   bash benchmarks/device_run.sh
# 1. installs the carried keras/namex/optree/tqdm wheels into .site (the machine has JAX, PyTorch,
#    numpy, OpenCV, h5py, protobuf, scipy; no TensorFlow, no network);
# 2. data_pipeline.py: hourglass pipeline with 1-8 spawned workers on the machine's 16 cores (<= 70 s);
# 3. gpu_train.py: ResNet-50, 8-stack hourglass, PSPNet-50 against the PyTorch references, the
#    product path and the jitted-step ceiling (stops starting new runs after 480 s).
# Tables go to $OUT (the device tool's output folder) or /tmp/kerazoo_bench.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl || exit 1
export PYTHONPATH="$PWD/.site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/kerazoo_bench}"
mkdir -p "$OUT"
nvidia-smi -L
timeout 70 python3 benchmarks/data_pipeline.py --workers 1,2,4,8 --modes process --skip-breakdown --batches 16 \
    --out "$OUT/pipeline.txt"
python3 benchmarks/gpu_train.py --deadline 480 --out "$OUT/gpu_train.txt"
