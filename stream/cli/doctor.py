"""`lipstream doctor`: what this machine offers each stage, then a short render that shows where
every stage actually ran. Package versions come from their metadata, so they print at once; the
device facts need torch, and follow."""
from __future__ import annotations

import os
import platform
import sys
import tempfile
from importlib import metadata

PACKAGES = (("torch", "torch"), ("triton", "triton"), ("pyav", "av"), ("opencv", "opencv-python-headless"),
            ("diffusers (MuseTalk)", "diffusers"), ("transformers", "transformers"),
            ("espeak-ng", "espeakng-loader"), ("aiortc", "aiortc"), ("nvenc (PyNvVideoCodec)", "PyNvVideoCodec"),
            ("nvml", "nvidia-ml-py"), ("coqui-tts", "coqui-tts"))


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def facts() -> list[tuple[str, str]]:
    from ctypes.util import find_library

    portaudio = find_library("portaudio")
    return ([("python", platform.python_version())] + [(label, _installed(d)) for label, d in PACKAGES]
            + [("portaudio (mic, preview)", portaudio or "not found (apt-get install libportaudio2)")])


def device_facts() -> list[tuple[str, str]]:
    import torch

    from ..lipsync.precision import cpu_has_bf16

    return [("cpu bf16", "native" if cpu_has_bf16() else "no (float32 on the CPU)"),
            ("cuda", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible")]


def _show(rows) -> None:
    for name, value in rows:
        print(f"{name:>24}: {value}")
    sys.stdout.flush()


def run(args) -> int:
    _show(facts())
    _show(device_facts())
    from ..device import resolve_device
    from ..graphs.render import render
    from ..video.encode import encoder_choice

    _show([("video encoder", encoder_choice(resolve_device(args.device)))])

    with tempfile.TemporaryDirectory() as tmp:
        result = render(os.path.join(tmp, "doctor.mp4"), text="Testing, one, two.", device=args.device,
                        checkpoint=args.checkpoint, musetalk_models=args.musetalk_models, tts_model=args.tts_model,
                        tts_config=args.tts_config, cache=False)
    print(f"\nrender on {args.device}: {result.frames} frames in {result.wall_seconds:.2f} s; stages ran on:")
    for stage in result.stages:
        print(f"  {stage}")
    return 0


def add_args(p) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--checkpoint", help="also load and run this Wav2Lip checkpoint")
    p.add_argument("--musetalk-models", metavar="DIR", help="also load and run MuseTalk from this models folder")
    p.add_argument("--tts-model", help="also load and run this Coqui TTS model (a path or a cached model name)")
    p.add_argument("--tts-config", help="the Coqui model's config.json")
