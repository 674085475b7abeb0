#!/usr/bin/env bash
# On the CPU machine, before borrowing a GPU: fetch the wheels the GPU machine lacks (it has Python
# 3.12, torch 2.11+cu130, triton, numpy, OpenCV, NVML and no internet) into bench/wheels/ (ignored
# by git, about 49 MB), then carry that folder to the GPU run: run(command="bench/gpu.sh",
# carry=["bench/wheels"]).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf bench/wheels
pip download -q --only-binary=:all: --python-version 3.12 --implementation cp --no-deps \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d bench/wheels "av==18.*" pyyaml espeakng-loader "torchaudio==2.11.0" nvidia-ml-py pytest pluggy iniconfig packaging pygments
du -sh bench/wheels
