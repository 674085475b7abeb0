"""`lipstream doctor`: what this machine offers each stage, then a short render that shows where
every stage actually ran."""
from __future__ import annotations

import importlib
import os
import platform
import tempfile

import torch

from .lipsync.inference import cpu_has_bf16


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "present")
    except Exception as e:  # noqa: BLE001 - a missing or broken optional package is a finding, not a crash
        return f"missing ({type(e).__name__})"


def facts() -> list[tuple[str, str]]:
    rows = [("python", platform.python_version()), ("torch", torch.__version__),
            ("cpu bf16", "native" if cpu_has_bf16() else "no (float32 on the CPU)"),
            ("cuda", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible")]
    for label, module in (("triton", "triton"), ("pyav", "av"), ("opencv", "cv2"), ("espeak-ng", "espeakng_loader"),
                          ("nvenc (PyNvVideoCodec)", "PyNvVideoCodec"), ("nvml", "pynvml"), ("coqui-tts", "TTS")):
        rows.append((label, _version(module)))
    return rows


def run(args) -> int:
    from .render_file import render

    for name, value in facts():
        print(f"{name:>24}: {value}")
    with tempfile.TemporaryDirectory() as tmp:
        result = render(os.path.join(tmp, "doctor.mp4"), text="Testing, one, two.", device=args.device,
                        checkpoint=args.checkpoint, cache=False)
    print(f"\nrender on {args.device}: {result.frames} frames in {result.wall_seconds:.2f} s; stages ran on:")
    for stage in result.stages:
        print(f"  {stage}")
    return 0


def add_args(p) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--checkpoint", help="also load and run this Wav2Lip checkpoint")
