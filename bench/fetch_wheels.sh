#!/usr/bin/env bash
# On the CPU machine, before borrowing a GPU: fetch the wheels the GPU image lacks (it has Python
# 3.12 with torch 2.11+cu130, torchaudio, triton, numpy, OpenCV, PyYAML, pytest and nvidia-ml-py,
# and no internet: PyAV, eSpeak NG and the serve stack (aiortc, aiohttp) are missing) into
# bench/wheels/ (ignored by git). Then: run(command="bench/gpu.sh", carry=["bench/wheels"]).
# Not carried: opencv-python-headless (62 MB, over the 64 MiB a call carries with the rest); the
# image's cv2 has no Haar detector, so gpu.sh renders with the bundled avatar's box there and says so.
# `fetch_wheels.sh musetalk`: MuseTalk's set instead (diffusers, transformers and what they need:
# 22 MB, measured; with PyAV and eSpeak for its benchmarks), for `ONLY=musetalk bench/gpu.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf bench/wheels
get() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d bench/wheels "$@"
}
if [ "${1:-}" = musetalk ]; then
  get "av==18.*" "espeakng-loader==0.2.*" "diffusers==0.35.2" "transformers==4.57.*" "huggingface-hub==0.36.*" \
    "safetensors" "tokenizers==0.22.*" "regex" "filelock" "tqdm" "fsspec" "importlib-metadata" "zipp" "requests" \
    "urllib3" "certifi" "charset-normalizer" "packaging"
  du -sh bench/wheels
  exit 0
fi
get "av==18.*" "espeakng-loader==0.2.*" \
  `# lipstream serve and bench serve: aiortc, aiohttp and what they need` \
  "aiortc==1.16.*" "aioice==0.13.*" "pyee==13.*" "pylibsrtp==1.*" "cryptography==50.*" "pyopenssl==26.*" \
  "google-crc32c==1.*" "dnspython==2.*" "ifaddr==0.2.*" "cffi==2.*" "pycparser" "typing-extensions" \
  "aiohttp==3.14.*" "aiohappyeyeballs==2.*" "aiosignal==1.*" "attrs" "frozenlist==1.*" "multidict==7.*" \
  "propcache==0.5.*" "yarl==1.*" "idna" "prometheus-client==0.26.*"
du -sh bench/wheels
