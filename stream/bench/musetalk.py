"""`lipstream bench lipsync --lipsync musetalk`: MuseTalk 1.5's costs and its live deviation.

- the model stage (UNet + VAE decode, what runs per frame) by precision and batch size;
- the audio features: a file's encoder passes against a live session's (one per `GROUP` frames),
  in seconds of compute per second of speech;
- the avatar's preparation (VAE encoder and face parsing), per avatar frame;
- the live features' deviation from the file's on the same speech (max abs), and the painted faces'
  PSNR, live against file, on a sample of frames;
- optionally a whole render.
Without `--musetalk-models`, random weights of the public shapes (the same cost; no meaning in the
PSNR beyond its structure). `--tiny` uses small networks instead, for a quick structural run.
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch

from ..lipsync.musetalk.features import GROUP, file_features
from ..lipsync.musetalk.model import MuseTalkModel
from ..lipsync.musetalk.random import save_random_musetalk
from ..lipsync.precision import cpu_has_bf16
from .machine import GpuSampler, machine, seconds_per_call
from .report import table, write

SAMPLE = 16  # frames whose faces are painted twice (live and file) for the PSNR


def _speech(text_file: str) -> torch.Tensor:
    """The text, spoken by the embedded voice, at 16 kHz."""
    import torchaudio

    from ..tts.espeak import EspeakTTS

    with open(text_file, encoding="utf-8") as f:
        text = f.read()
    chunks = []
    tts = EspeakTTS()
    tts.speak(text, chunks.append)
    return torchaudio.functional.resample(torch.from_numpy(np.concatenate(chunks)), tts.sample_rate, 16000)


def _live(model: MuseTalkModel, wave: torch.Tensor, fps: int = 25) -> tuple[torch.Tensor, int]:
    f = model.features(fps, live=True)
    for i in range(0, len(wave), 320):  # 20 ms pushes, as a live transport delivers them
        f.push(wave[i : i + 320])
    f.finish()
    return f.take(len(wave) * fps // 16000), f.computations


def bench_stage(model: MuseTalkModel, batches: list[int], seconds: float) -> list[dict]:
    latents = torch.randn(max(batches), 8, 32, 32, device=model.device).to(model.dtype)
    rows = []
    for b in batches:
        feats = torch.randn(b, 50, 384, device=model.device)
        with GpuSampler(model.device) as gpu:
            t = seconds_per_call(lambda: model(feats, latents[:b]), model.device, seconds)
        rows.append({"precision": str(model.dtype).removeprefix("torch."), "batch": b, "fps": round(b / t, 2),
                     "ms_per_batch": round(1000 * t, 1), "gpu_util": gpu.mean})
    return rows


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.float() - b.float()) ** 2).mean().item()
    return float("inf") if mse == 0 else round(10 * np.log10(1.0 / mse), 2)


def run(args, device: torch.device) -> int:
    seconds = args.seconds if args.seconds is not None else 2.0
    precisions = args.precisions.split(",") if args.precisions else (
        ["bfloat16", "float16"] if device.type == "cuda" else ["float32", "bfloat16"] if cpu_has_bf16() else ["float32"])
    batches = [int(b) for b in args.batches.split(",")] if args.batches else (
        [8, 32, 64, 128] if device.type == "cuda" else [1, 4])
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.musetalk_models or save_random_musetalk(os.path.join(tmp, "models"), tiny=args.tiny)
        weights = "given" if args.musetalk_models else ("random, tiny" if args.tiny else "random, public shapes")
        result = {"machine": machine(device), "model": "musetalk", "weights": weights, "stage": []}
        model = None
        for precision in precisions:
            model = MuseTalkModel(folder, device, precision)
            result["stage"] += bench_stage(model, batches, seconds)
        print(table(result["stage"], ["precision", "batch", "fps", "ms_per_batch", "gpu_util"]))

        wave = _speech(args.text_file)
        speech_s = len(wave) / 16000
        t = time.perf_counter()
        file = file_features(wave, model.whisper)
        file_s = time.perf_counter() - t
        t = time.perf_counter()
        live, passes = _live(model, wave)
        live_s = time.perf_counter() - t
        pick = torch.linspace(0, len(file) - 1, SAMPLE).long()
        latents = torch.randn(1, 8, 32, 32, device=device).to(model.dtype).expand(SAMPLE, -1, -1, -1)
        faces_file, faces_live = model(file[pick], latents), model(live[pick], latents)
        result["features"] = {
            "speech_s": round(speech_s, 2), "frames": len(file),
            "file_s": round(file_s, 3), "file_passes": -(-len(wave) // 480000),
            "live_s": round(live_s, 3), "live_passes": passes, "live_group": GROUP,
            "live_compute_per_speech_s": round(live_s / speech_s, 3),
            "first_frame_audio_ms": 200,
            "deviation_max_abs": round((live[: len(file)] - file).abs().max().item(), 4),
            "deviation_mean_abs": round((live[: len(file)] - file).abs().mean().item(), 5),
            "feature_scale_mean_abs": round(file.abs().mean().item(), 4),
            "face_psnr_live_vs_file_db": _psnr(faces_live, faces_file),
        }
        print(f"\nfeatures of {os.path.relpath(args.text_file)} ({speech_s:.1f} s of speech, {len(file)} frames): file "
              f"{file_s:.2f} s in {result['features']['file_passes']} encoder pass(es); live {live_s:.2f} s in {passes} "
              f"passes (one per {GROUP} frames); live − file: max |Δ| {result['features']['deviation_max_abs']}, "
              f"mean |Δ| {result['features']['deviation_mean_abs']} (features' mean |x| "
              f"{result['features']['feature_scale_mean_abs']}); painted faces live vs file: "
              f"{result['features']['face_psnr_live_vs_file_db']} dB PSNR on {SAMPLE} frames")

        from ..video.avatar import load_avatar

        avatar = load_avatar(os.path.join(os.path.dirname(__file__), "..", "assets", "astronaut.png"), device,
                             box=tuple(args.box) if args.box else None)
        t = time.perf_counter()
        model._latents(avatar.frames.cpu().numpy(), avatar.boxes.cpu().numpy(), avatar.source)
        latents_s = time.perf_counter() - t
        from ..lipsync.musetalk import blend

        t = time.perf_counter()
        blend.blend_masks(avatar.frames.cpu().numpy(), avatar.boxes.cpu().numpy(), model.parser, device)
        result["prepare_per_avatar_frame_s"] = {"latents": round(latents_s, 3), "mask": round(time.perf_counter() - t, 3)}
        print(f"avatar preparation per frame: latents {latents_s:.2f} s, blend mask "
              f"{result['prepare_per_avatar_frame_s']['mask']:.2f} s (once, then cached)")
        if not args.no_render:
            from ..graphs.render import render

            out = os.path.join(tmp, "bench.mp4")
            r = render(out, text=args.render_text, musetalk_models=folder, device=str(device), precision=precisions[-1],
                       box=tuple(args.box) if args.box else None)
            result["render"] = {"frames": r.frames, "speech_s": round(r.speech_seconds, 2), "wall_s": round(r.wall_seconds, 2),
                                "fps": round(r.frames / r.wall_seconds, 2), "first_frame_s": round(r.first_frame_seconds, 2),
                                "setup_s": round(r.setup_seconds, 2), "busy_s": r.busy}
            print(f"whole render of {r.speech_seconds:.1f} s of speech: {r.frames} frames in {r.wall_seconds:.1f} s = "
                  f"{result['render']['fps']} frames/s, first frame at {r.first_frame_seconds:.1f} s "
                  f"(set-up {r.setup_seconds:.1f} s)\nbusy seconds per stage: {r.busy}")
    write(args.json, result)
    return 0
