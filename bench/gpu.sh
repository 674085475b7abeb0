#!/usr/bin/env bash
# Every CUDA-only check and benchmark, in one command, on a GPU machine:
#   the CUDA-marked tests (compiled Triton kernels against their references, CUDA graphs),
#   a whole render on CUDA, `lipstream bench kernels`, `lipstream bench lipsync`,
#   `lipstream bench sessions` (N concurrent live sessions on the shared worker) and
#   `lipstream bench serve` (WebRTC viewers of `lipstream serve` on loopback) and
#   `lipstream bench tts` (the speech engines; Coqui only where coqui-tts is importable).
# Results go to bench/results/<date>-<gpu>/ and, on the device tool's machine, also to
# $OUT/gpu-results.tgz (only $OUT comes back). bench/wheels (bench/fetch_wheels.sh) holds what the
# GPU image lacks. DEVICE=cpu SECONDS_EACH=0.3 SESSIONS=1 SERVE_SESSIONS=1 SESSION_SECONDS=3 runs the
# same steps on a CPU, to check the script. ONLY=musetalk runs MuseTalk's steps alone (its wheels,
# `bench/fetch_wheels.sh musetalk`, do not fit in one call beside the serve stack's).
set -uo pipefail
cd "$(dirname "$0")/.."
device=${DEVICE:-cuda}
secs=${SECONDS_EACH:-2}
export PYTHONUNBUFFERED=1
python() { "${PYTHON:-python3}" "$@"; }
if [ -d bench/wheels ]; then
  # --no-deps into a side folder: the image's torch, torchaudio and pytest stay exactly as they are.
  python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    bench/wheels/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$device" = cuda ]; then
  gpu=$(python -c "import torch; print(torch.cuda.get_device_name(0))" 2>/dev/null | tr -c 'A-Za-z0-9.\n-' '-' | head -1)
  [ -n "$gpu" ] || { echo "gpu.sh: no CUDA GPU visible"; exit 1; }
else
  gpu="dry-run-$device"
fi
out="bench/results/$(date +%F)-$gpu"
mkdir -p "$out"
status=0
{
  echo "# $(date -u +%FT%TZ) on $gpu"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  # Every import the steps below need, against the version pyproject.toml pins (the image's own
  # packages come first where bench/wheels has none): a mismatch is named, not discovered mid-run.
  python - <<'PY'
import importlib.metadata as md, tomllib
from pip._vendor.packaging.requirements import Requirement
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for dep in deps:
    req = Requirement(dep)
    try:
        have = md.version(req.name)
    except md.PackageNotFoundError:
        have = None
    print(f"{req.name:24} {str(req.specifier) or 'any':14} {have or '-':14}",
          "ok" if have and req.specifier.contains(have, prereleases=True) else "MISMATCH")
import cv2
print("cv2", cv2.__version__, "Haar face detector:", "yes" if hasattr(cv2, "CascadeClassifier") else "NO (renders need --box)")
PY
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"
only=${ONLY:-all}
musetalk() {
  echo "== bench lipsync --lipsync musetalk (random weights of the public shapes)" | tee "$out/musetalk-lipsync.txt"
  python -m stream.cli -q bench lipsync --lipsync musetalk --device "$device" --seconds "$secs" --box 67 170 177 270 \
    ${MUSETALK_BATCHES:+--batches $MUSETALK_BATCHES} --json "$out/musetalk-lipsync.json" 2>&1 | tee -a "$out/musetalk-lipsync.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  echo "== bench sessions --lipsync musetalk" | tee "$out/musetalk-sessions.txt"
  python -m stream.cli -q bench sessions --lipsync musetalk --device "$device" --box 67 170 177 270 --batch-size 64 \
    --sessions "${MUSETALK_SESSIONS:-8,30}" --seconds "${SESSION_SECONDS:-8}" --json "$out/musetalk-sessions.json" 2>&1 \
    | tee -a "$out/musetalk-sessions.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
}
if [ "$only" = musetalk ]; then
  echo "== MuseTalk tests" | tee "$out/musetalk-tests.txt"
  python -m pytest -q -o addopts= -p no:cacheprovider tests/test_musetalk_features.py tests/test_musetalk_blend.py \
    2>&1 | tee -a "$out/musetalk-tests.txt"
  musetalk
  echo "results in $out (status $status)"
  [ -z "${OUT:-}" ] || tar czf "$OUT/gpu-results.tgz" "$out"
  exit $status
fi
echo "== CUDA tests" | tee "$out/cuda-tests.txt"
# -o addopts=: the image has no pytest-xdist, which pyproject's `--dist` needs
python -m pytest -q -o addopts= -m cuda -p no:cacheprovider tests 2>&1 | tee -a "$out/cuda-tests.txt"
[ "${PIPESTATUS[0]}" = 0 ] || [ "$device" != cuda ] || status=1
echo "== whole render on CUDA (random-weight Wav2Lip)" | tee "$out/render.txt"
DEVICE=$device python - <<'PY' 2>&1 | tee -a "$out/render.txt"
import os, tempfile, stream
from stream.lipsync.wav2lip.checkpoint import save_random_wav2lip
import cv2
# Face detection where this OpenCV has the Haar detector (the H100 image's had none); else the box.
box = None if hasattr(cv2, "CascadeClassifier") else (67, 170, 177, 270)
print("face:", "detected" if box is None else f"box {box} (this OpenCV has no Haar detector)")
with tempfile.TemporaryDirectory() as d:
    ckpt = os.path.join(d, "w.pth"); save_random_wav2lip(ckpt)
    for precision in ("bfloat16", "float16") if os.environ["DEVICE"] == "cuda" else ("bfloat16",):
        for run in ("first", "warm"):  # the first pays set-up and compilation; the second is the render alone
            r = stream.render(os.path.join(d, "out.mp4"), text_file="examples/bench.txt", checkpoint=ckpt,
                              device=os.environ["DEVICE"], precision=precision, batch_size=64, box=box)
            print(run, r.summary()); print("busy", r.busy)
PY
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "== bench kernels" | tee "$out/kernels.txt"
python -m stream.cli bench kernels --device "$device" --seconds "$secs" --json "$out/kernels.json" 2>&1 | tee -a "$out/kernels.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "== bench lipsync (CUDA graphs)" | tee "$out/lipsync.txt"
python -m stream.cli -q bench lipsync --device "$device" --seconds "$secs" --json "$out/lipsync.json" 2>&1 | tee -a "$out/lipsync.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "== bench lipsync (torch.compile reduce-overhead, for comparison)" | tee "$out/lipsync-compile.txt"
python -m stream.cli -q bench lipsync --device "$device" --seconds "$secs" --engine compile --precisions bfloat16 \
  --batches 64,256 --no-render --json "$out/lipsync-compile.json" 2>&1 | tee -a "$out/lipsync-compile.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
if python -c "import diffusers" 2>/dev/null; then musetalk; else
  echo "== MuseTalk: skipped (no diffusers here: run ONLY=musetalk with bench/fetch_wheels.sh musetalk)"; fi
echo "== bench sessions (live sessions on the shared worker, random-weight Wav2Lip bf16)" | tee "$out/sessions.txt"
python -m stream.cli -q bench sessions --device "$device" --wav2lip --box 67 170 177 270 --batch-size 128 \
  --sessions "${SESSIONS:-16,64,200}" --seconds "${SESSION_SECONDS:-8}" --json "$out/sessions.json" 2>&1 | tee -a "$out/sessions.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "== bench serve (WebRTC viewers on loopback, random-weight Wav2Lip bf16)" | tee "$out/serve.txt"
python -m stream.cli -q bench serve --device "$device" --wav2lip --video lipstream \
  --sessions "${SERVE_SESSIONS:-4,16}" --seconds "${SESSION_SECONDS:-8}" --json "$out/serve.json" 2>&1 | tee -a "$out/serve.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "== bench tts (eSpeak NG; Coqui VITS, a tiny random one, where coqui-tts is importable)" | tee "$out/tts.txt"
python -m stream.cli -q bench tts --device "$device" --json "$out/tts.json" 2>&1 | tee -a "$out/tts.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "results in $out (status $status)"
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/gpu-results.tgz" "$out"
fi
exit $status
