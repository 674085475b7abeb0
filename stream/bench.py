"""`lipstream bench lipsync|kernels|sessions|serve|tts`: tables and the same numbers as JSON. Each kind
lives in its own module, imported when asked for, so the command line starts without torch."""
from __future__ import annotations

import json
import os

from .files import write_atomically

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def table(rows: list[dict], keys: list[str]) -> str:
    widths = [max(len(k), *(len(str(r.get(k))) for r in rows)) for k in keys]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(str(r.get(k)).ljust(w) for k, w in zip(keys, widths)) for r in rows]
    return "\n".join(lines)


def run(args) -> int:
    from .bench_lipsync import machine
    from .device import resolve_device

    device = resolve_device(args.device)
    if args.what == "sessions":
        from .bench_sessions import run as run_sessions

        return run_sessions(args, device, machine, table, _write)
    if args.what == "tts":
        from .bench_tts import run as run_tts

        return run_tts(args, device, machine, table, _write)
    if args.what == "serve":
        from .bench_serve import run as run_serve

        return run_serve(args, device, machine, table, _write)
    from .bench_lipsync import run as run_lipsync

    return run_lipsync(args, device, table, _write)


def _write(path: str | None, result: dict) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_atomically(path, json.dumps(result, indent=2).encode())
        print(f"\nwrote {path}")


def add_args(p) -> None:
    p.add_argument("what", choices=["lipsync", "kernels", "sessions", "serve", "tts"],
                   help="the lip-sync stage (and a whole render), the frame-path kernels, concurrent live sessions, "
                        "lipstream serve with WebRTC viewers, or the speech engines")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--checkpoint", help="Wav2Lip checkpoint (default: random weights, same cost)")
    p.add_argument("--precisions", help="comma list of float32,bfloat16,float16 (default: all this device runs)")
    p.add_argument("--batches", help="comma list of batch sizes")
    p.add_argument("--engine", default="graphs", choices=["graphs", "compile", "eager"],
                   help="graphs: CUDA graphs per bucket (eager on the CPU); compile: torch.compile reduce-overhead")
    p.add_argument("--seconds", type=float, help="time per measurement (default 2; sessions: 10)")
    p.add_argument("--text-file", default=os.path.join(ROOT, "examples", "bench.txt"), help="text for the whole render")
    p.add_argument("--no-render", action="store_true", help="skip the whole-render measurement")
    p.add_argument("--kernel-batch", type=int, default=32, help="frames per kernel call (bench kernels)")
    p.add_argument("--sessions", default="1,2,4", help="sessions, serve: comma list of concurrent session counts (default 1,2,4)")
    p.add_argument("--video", default="lipstream,aiortc", help="serve: comma list of video modes to measure (default both)")
    p.add_argument("--max", action="store_true", help="sessions: also search for the largest count kept on time")
    p.add_argument("--wav2lip", action="store_true", help="sessions: Wav2Lip with random weights (default: the procedural mouth)")
    p.add_argument("--box", nargs=4, type=int, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                   help="sessions: the face box of the bundled avatar, skipping detection")
    p.add_argument("--lead", type=float, help="sessions: seconds of frames kept ready ahead (default 0.2)")
    p.add_argument("--batch-size", type=int, help="sessions: the lip-sync worker's largest batch (default 16)")
    p.add_argument("--tts-model", help="tts: a Coqui model to measure (default: a tiny random VITS)")
    p.add_argument("--tts-config", help="tts: its config.json")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
