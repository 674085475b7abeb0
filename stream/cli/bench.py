"""`lipstream bench lipsync|kernels|sessions|serve|soak|tts|quality`: tables and the same numbers as JSON. Each kind
is a module of `stream.bench`, imported when asked for, so the command line starts without torch."""
from __future__ import annotations

import importlib
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout (examples/)
KINDS = ("lipsync", "kernels", "sessions", "serve", "soak", "tts", "quality")


def run(args) -> int:
    from ..device import resolve_device

    device = resolve_device(args.device)
    return importlib.import_module(f"..bench.{args.what}", __package__).run(args, device)


def add_args(p) -> None:
    p.add_argument("what", choices=KINDS,
                   help="the lip-sync stage (and a whole render), the frame-path kernels, concurrent live sessions, "
                        "lipstream serve with WebRTC viewers, the same for minutes or hours (soak), the speech engines, or what the viewer sees (sync, sharpness, seams, jitter, jumps)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--lipsync", choices=["procedural", "wav2lip", "musetalk"],
                   help="lipsync: the model to measure (default wav2lip); sessions: the model the sessions run "
                        "(default procedural)")
    p.add_argument("--checkpoint", help="Wav2Lip checkpoint (lipsync: default random weights, same cost; "
                   "sessions, serve, quality: default the procedural mouth)")
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
    p.add_argument("--text-file", default=os.path.join(ROOT, "examples", "bench.txt"),
                   help="text for the whole render (lipsync, quality) and the sessions (default examples/bench.txt)")
    p.add_argument("--no-render", action="store_true", help="skip the whole-render measurement")
    p.add_argument("--kernel-batch", type=int, default=32, help="frames per kernel call (bench kernels)")
    p.add_argument("--sessions", default="1,2,4", help="sessions, serve: comma list of concurrent session counts "
                   "(default 1,2,4); soak: the viewers (the largest of a list: 4)")
    p.add_argument("--video", metavar="MODES_OR_FILE", help="serve: comma list of video modes to measure (default "
                   "lipstream,aiortc); soak: the first; quality: the MP4 to measure (default: render --text-file first)")
    p.add_argument("--avatar", metavar="IMAGE_OR_VIDEO", help="quality: the avatar the video was made from "
                   "(default: the bundled astronaut)")
    p.add_argument("--syncnet", metavar="FILE", help="quality: SyncNet weights (syncnet_v2.model of the SyncNet "
                   "release), for LSE-D and LSE-C")
    p.add_argument("--minutes", type=int, default=30, help="soak: how long (default 30)")
    p.add_argument("--seed", type=int, default=0, help="soak: the viewers' random loops (default 0)")
    p.add_argument("--plot", metavar="FILE.png", help="soak: RSS and frames on time per minute (default: beside --json)")
    p.add_argument("--max", action="store_true", help="sessions: also search for the largest count kept on time")
    p.add_argument("--wav2lip", action="store_true", help="sessions, serve, quality: Wav2Lip with random weights "
                   "(--lipsync wav2lip; default: the procedural mouth)")
    p.add_argument("--box", nargs=4, type=int, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="sessions, quality: the avatar's face box, skipping detection")
    p.add_argument("--lead", type=float, help="sessions: seconds of frames kept ready ahead (default 0.2)")
    p.add_argument("--batch-size", type=int, help="sessions: the lip-sync worker's largest batch; quality: the render's batch (default 16)")
    p.add_argument("--tts-model", help="tts: a Coqui model to measure (default: a tiny random VITS); quality: the render's voice")
    p.add_argument("--tts-config", help="tts: its config.json")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
