"""`lipstream bench kernels`: each frame-path kernel against its torch reference, on 512×512 frames."""
from __future__ import annotations

import importlib

import torch

from .machine import machine, seconds_per_call
from .report import table, write


def bench_kernels(device: torch.device, batch: int, seconds: float) -> list[dict]:
    """Each frame-path kernel against its torch reference, on 512×512 frames."""
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
            t = seconds_per_call(lambda: getattr(mod, f"{fn}_{impl}")(*args), device, seconds)
            row[f"{impl}_ms"] = round(1000 * t, 3)
            row[f"{impl}_frames_per_s"] = round(batch / t, 1)
        rows.append(row)
    return rows


def run(args, device: torch.device) -> int:
    seconds = args.seconds if args.seconds is not None else 2.0
    result = {"machine": machine(device), "kernels": bench_kernels(device, args.kernel_batch, seconds)}
    keys = ["kernel", "batch", "ref_ms", "ref_frames_per_s"] + (["triton_ms", "triton_frames_per_s"] if device.type == "cuda" else [])
    print(table(result["kernels"], keys))
    write(args.json, result)
    return 0
