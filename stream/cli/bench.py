"""`lipstream bench lipsync|kernels|sessions|serve|soak|tts`: tables and the same numbers as JSON. Each kind
is a module of `stream.bench`, imported when asked for, so the command line starts without torch."""
from __future__ import annotations

import importlib
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout (examples/)
KINDS = ("lipsync", "kernels", "sessions", "serve", "soak", "tts")


def run(args) -> int:
    from ..device import resolve_device

    device = resolve_device(args.device)
    return importlib.import_module(f"..bench.{args.what}", __package__).run(args, device)


def add_args(p) -> None:
    p.add_argument("what", choices=KINDS,
                   help="the lip-sync stage (and a whole render), the frame-path kernels, concurrent live sessions, "
                        "lipstream serve with WebRTC viewers, the same for minutes or hours (soak), or the speech engines")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--lipsync", choices=["procedural", "wav2lip", "musetalk"],
                   help="lipsync: the model to measure (default wav2lip); sessions: the model the sessions run "
                        "(default procedural)")
    p.add_argument("--checkpoint", help="Wav2Lip checkpoint (default: random weights, same cost)")
    p.add_argument("--musetalk-models", metavar="DIR", help="MuseTalk models folder (default: random weights of "
                   "the public shapes, same cost)")
    p.add_argument("--tiny", action="store_true", help="with MuseTalk's random weights: small networks instead of "
                   "the public shapes (a quick structural run)")
    p.add_argument("--render-text", default="Hello there, this is a short test of the whole render.",
                   help="lipsync --lipsync musetalk: what the whole render says (MuseTalk is slow on a CPU)")
    p.add_argument("--precisions", help="comma list of float32,bfloat16,float16 (default: all this device runs)")
    p.add_argument("--batches", help="comma list of batch sizes")
    p.add_argument("--engine", default="graphs", choices=["graphs", "compile", "eager"],
                   help="graphs: CUDA graphs per bucket (eager on the CPU); compile: torch.compile reduce-overhead")
    p.add_argument("--seconds", type=float, help="time per measurement (default 2; sessions: 10)")
    p.add_argument("--text-file", default=os.path.join(ROOT, "examples", "bench.txt"), help="text for the whole render")
    p.add_argument("--no-render", action="store_true", help="skip the whole-render measurement")
    p.add_argument("--kernel-batch", type=int, default=32, help="frames per kernel call (bench kernels)")
    p.add_argument("--sessions", default="1,2,4", help="sessions, serve: comma list of concurrent session counts "
                   "(default 1,2,4); soak: the viewers (the largest of a list: 4)")
    p.add_argument("--video", default="lipstream,aiortc", help="serve: comma list of video modes to measure (default both); "
                   "soak: the first")
    p.add_argument("--minutes", type=int, default=30, help="soak: how long (default 30)")
    p.add_argument("--seed", type=int, default=0, help="soak: the viewers' random loops (default 0)")
    p.add_argument("--plot", metavar="FILE.png", help="soak: RSS and frames on time per minute (default: beside --json)")
    p.add_argument("--max", action="store_true", help="sessions: also search for the largest count kept on time")
    p.add_argument("--wav2lip", action="store_true", help="sessions: Wav2Lip with random weights (--lipsync wav2lip)")
    p.add_argument("--box", nargs=4, type=int, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="sessions: the face box of the bundled avatar, skipping detection")
    p.add_argument("--lead", type=float, help="sessions: seconds of frames kept ready ahead (default 0.2)")
    p.add_argument("--batch-size", type=int, help="sessions: the lip-sync worker's largest batch (default 16)")
    p.add_argument("--tts-model", help="tts: a Coqui model to measure (default: a tiny random VITS)")
    p.add_argument("--tts-config", help="tts: its config.json")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
