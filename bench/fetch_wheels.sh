#!/usr/bin/env bash
# On the CPU machine, before borrowing a GPU: fetch the wheels the GPU image lacks (it has Python
# 3.12 with torch 2.11+cu130, torchaudio, triton, numpy, OpenCV, PyYAML, pytest and nvidia-ml-py,
# and no internet: only PyAV and eSpeak NG are missing) into bench/wheels/ (ignored by git, about
# 46 MB). Then: run(command="bench/gpu.sh", carry=["bench/wheels"]).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf bench/wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d bench/wheels "av==18.*" "espeakng-loader==0.2.*"
du -sh bench/wheels
