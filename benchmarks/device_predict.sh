#!/usr/bin/env bash
# Optional second GPU call of issue #7, right after device_run.sh while the machine is still warm (~2 min):
#   bash benchmarks/device_predict.sh
# Batched prediction on the card (predict in a loop against predict_batch at 8 and 32 images per call) for the
# 8-stack 256 px hourglass and a 2-stack one, JAX; the CPU figures are in the README. Tables go to $OUT.
set -u
if [ ! -d .site/keras ]; then  # a fresh machine: the carried wheels, as device_run.sh installs them
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl || exit 1
fi
export PYTHONPATH="$PWD/.site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/kerazoo_bench}"
mkdir -p "$OUT"
nvidia-smi -L
timeout 150 python3 benchmarks/predict_batch.py --model hourglass --images 64 --batch-sizes 1,8,32 --repeats 3 \
    --out "$OUT/predict_batch_hg8.txt"
timeout 100 python3 benchmarks/predict_batch.py --model hourglass --model-arg stacks=2 --images 64 \
    --batch-sizes 1,8,32 --repeats 3 --out "$OUT/predict_batch_hg2.txt"
