#!/usr/bin/env bash
# Downloads, into .whl/, the wheels the GPU machine lacks (it has JAX, PyTorch, numpy, h5py, protobuf,
# scipy and OpenCV on Python 3.12, no Keras and no network): run once here, then
#   device run, carry [".whl"]: bash benchmarks/device_run.sh
# .whl/ and .site/ are kept out of git through .git/info/exclude (../shared/GPU.md).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qs '^/.whl/$' .git/info/exclude || printf "/.whl/\n/.site/\n" >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex optree tqdm
ls .whl
