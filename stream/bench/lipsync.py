"""`lipstream bench lipsync`: frames per second of the lip-sync stage by batch size and precision, and
of a whole render."""
from __future__ import annotations

import os
import tempfile

import torch

from ..lipsync.precision import cpu_has_bf16
from ..lipsync.wav2lip.checkpoint import load_wav2lip, save_random_wav2lip
from ..lipsync.wav2lip.inference import InferenceWav2Lip
from .machine import GpuSampler, machine, seconds_per_call
from .report import table, write


def bench_lipsync(model, device: torch.device, precisions: list[str], batches: list[int], seconds: float,
                  engine: str = "graphs") -> list[dict]:
    from kernels import prepare

    crops = torch.randint(0, 256, (64, 96, 96, 3), dtype=torch.uint8, device=device)
    rows = []
    for precision in precisions:
        fast = InferenceWav2Lip(model, device, precision, engine=engine)
        fast.warmup(max(batches))
        for b in batches:
            mel = torch.randn(b, 1, 80, 16, device=device)
            idx = torch.arange(b, device=device) % len(crops)

            def step():
                return fast(mel, prepare(crops, idx, fast.dtype))

            step()  # cuDNN / oneDNN algorithm choice (graphs are already captured)
            with GpuSampler(device) as gpu:
                # Synchronising only every 4 batches keeps work queued, as in the pipeline.
                t = seconds_per_call(step, device, seconds, sync_every=4)
            rows.append({"precision": precision, "engine": fast.describe().split()[-1], "batch": b,
                         "fps": round(b / t, 1), "ms_per_batch": round(1000 * t, 2), "gpu_util": gpu.mean})
    return rows


def bench_render(checkpoint: str, device: torch.device, precision: str, text_file: str, batch: int) -> dict:
    from ..graphs.render import render

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.mp4")
        render(out, text_file=text_file, checkpoint=checkpoint, device=str(device), precision=precision,
               batch_size=batch, cache=True)  # a first run fills the avatar cache and warms the kernels
        with GpuSampler(device) as gpu:
            r = render(out, text_file=text_file, checkpoint=checkpoint, device=str(device), precision=precision,
                       batch_size=batch)
    return {"frames": r.frames, "speech_s": round(r.speech_seconds, 2), "wall_s": round(r.wall_seconds, 2),
            "fps": round(r.frames / r.wall_seconds, 1), "realtime_factor": round(r.realtime_factor, 2),
            "first_frame_s": round(r.first_frame_seconds, 3) if r.first_frame_seconds is not None else None,
            "precision": precision, "batch": batch, "gpu_util": gpu.mean, "stages": r.stages, "busy_s": r.busy}


def run(args, device: torch.device) -> int:
    if args.lipsync == "musetalk":
        from .musetalk import run as run_musetalk

        return run_musetalk(args, device)
    seconds = args.seconds if args.seconds is not None else 2.0
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:  # same shapes and FLOPs as the public model; speed does not depend on weights
            checkpoint = os.path.join(tmp, "random_wav2lip.pth")
            save_random_wav2lip(checkpoint)
        model = load_wav2lip(checkpoint, "cpu")
        precisions = args.precisions.split(",") if args.precisions else (
            ["float32", "bfloat16", "float16"] if device.type == "cuda" else
            ["float32", "bfloat16"] if cpu_has_bf16() else ["float32"])
        batches = [int(b) for b in args.batches.split(",")] if args.batches else (
            [8, 32, 64, 128, 256, 512] if device.type == "cuda" else [1, 8, 16, 32])
        result = {"machine": machine(device), "weights": "given" if args.checkpoint else "random",
                  "lipsync": bench_lipsync(model, device, precisions, batches, seconds, args.engine)}
        print(table(result["lipsync"], ["precision", "engine", "batch", "fps", "ms_per_batch", "gpu_util"]))
        if not args.no_render:
            best = max(result["lipsync"], key=lambda r: r["fps"])
            # Capped so the render still streams: one batch of 512 would be the whole clip.
            render_batch = min(best["batch"], 64 if device.type == "cpu" else 128)
            result["render"] = bench_render(checkpoint, device, best["precision"], args.text_file, render_batch)
            r = result["render"]
            print(f"\nwhole render of {os.path.relpath(args.text_file)}: {r['frames']} frames, {r['speech_s']} s of speech "
                  f"in {r['wall_s']} s = {r['fps']} frames/s ({r['realtime_factor']}× real time), "
                  f"{r['precision']} batch {r['batch']}, first frame at {r['first_frame_s']} s, gpu util {r['gpu_util']}\nbusy seconds per stage: {r['busy_s']}")
    write(args.json, result)
    return 0


