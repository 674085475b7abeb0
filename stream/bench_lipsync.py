"""`lipstream bench lipsync|kernels`: frames per second of the lip-sync stage by batch size and
precision and of a whole render, or of each frame-path kernel; and what every bench shares: the
machine's description and GPU utilisation."""
from __future__ import annotations

import datetime
import os
import platform
import tempfile
import threading
import time

import torch

from .lipsync.checkpoint import load_wav2lip, save_random_wav2lip
from .lipsync.inference import InferenceWav2Lip, cpu_has_bf16


class GpuSampler:
    """Mean GPU utilisation (NVML) while a block runs; None where NVML is absent."""

    def __init__(self, device: torch.device):
        self.handle, self.samples = None, []
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        except Exception:  # noqa: BLE001 - NVML is optional: the number is then simply missing
            self.handle = None

    def __enter__(self):
        self.samples, self._stop = [], threading.Event()
        if self.handle is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def __exit__(self, *exc):
        self._stop.set()
        if self.handle is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> dict:
    info = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "device": str(device),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cpu_bf16": cpu_has_bf16()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _time(fn, device: torch.device, seconds: float, sync_every: int = 1) -> float:
    """Seconds per call of `fn`, after one warm-up call, over at least `seconds`."""
    fn()
    _sync(device)
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n % sync_every == 0:
            _sync(device)
            if time.perf_counter() - start >= seconds:
                return (time.perf_counter() - start) / n


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
                t = _time(step, device, seconds, sync_every=4)
            rows.append({"precision": precision, "engine": fast.describe().split()[-1], "batch": b,
                         "fps": round(b / t, 1), "ms_per_batch": round(1000 * t, 2), "gpu_util": gpu.mean})
    return rows


def bench_render(checkpoint: str, device: torch.device, precision: str, text_file: str, batch: int) -> dict:
    from .render_file import render

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


def bench_kernels(device: torch.device, batch: int, seconds: float) -> list[dict]:
    """Each frame-path kernel against its torch reference, on 512×512 frames."""
    import importlib

    g = torch.Generator().manual_seed(0)
    crops = torch.randint(0, 256, (64, 96, 96, 3), dtype=torch.uint8, generator=g).to(device)
    idx = torch.arange(batch, device=device) % 64
    frames = torch.randint(0, 256, (batch, 512, 512, 3), dtype=torch.uint8, generator=g).to(device)
    mouths = torch.rand(batch, 3, 96, 96, generator=g).to(device, torch.bfloat16)
    boxes = torch.tensor([[67, 170, 177, 270]] * batch, device=device)
    mask = torch.rand(96, 96, generator=g).to(device)
    cases = {
        "prepare": ("kernels.prepare", "prepare", (crops, idx, torch.bfloat16)),
        "compose": ("kernels.compose", "compose", (frames, mouths, boxes, mask)),
        "bgr_to_i420": ("kernels.colour", "bgr_to_i420", (frames,)),
        "bgr_to_nv12": ("kernels.colour", "bgr_to_nv12", (frames,)),
    }
    rows = []
    for name, (module, fn, args) in cases.items():
        mod = importlib.import_module(module)
        row = {"kernel": name, "batch": batch}
        for impl in ("ref", "triton") if device.type == "cuda" else ("ref",):
            t = _time(lambda: getattr(mod, f"{fn}_{impl}")(*args), device, seconds)
            row[f"{impl}_ms"] = round(1000 * t, 3)
            row[f"{impl}_frames_per_s"] = round(batch / t, 1)
        rows.append(row)
    return rows


def run(args, device, table, write) -> int:
    seconds = args.seconds if args.seconds is not None else 2.0
    if args.what == "kernels":
        result = {"machine": machine(device), "kernels": bench_kernels(device, args.kernel_batch, seconds)}
        keys = ["kernel", "batch", "ref_ms", "ref_frames_per_s"] + (["triton_ms", "triton_frames_per_s"] if device.type == "cuda" else [])
        print(table(result["kernels"], keys))
        write(args.json, result)
        return 0
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


