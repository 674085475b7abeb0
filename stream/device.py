"""Choose the one device, once; nothing below it falls back silently."""
from __future__ import annotations

import os

import torch

from .errors import LipstreamError
from .files import cache_root


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LipstreamError(f"device {name!r} requested but no CUDA GPU is available (use --device cpu or auto)")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise LipstreamError(f"unknown device {name!r}: use cuda or cuda:N") from None
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise LipstreamError(f"{name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        # Compiled Triton kernels are kept with lipstream's cache, so the next process starts warm.
        os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(cache_root(), "triton"))
        return torch.device("cuda", index)
    if name == "cpu":
        return torch.device("cpu")
    raise LipstreamError(f"unknown device {name!r}: use auto, cpu or cuda")


def cuda_index(device) -> int | None:
    """The CUDA device a new thread must switch to (each starts on device 0), or None off CUDA.
    Plain `cuda` means the caller's current device, so call this in the thread that made the work
    (an index-less device made `torch.cuda.set_device` fail on the H100)."""
    if not isinstance(device, torch.device) or device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()
