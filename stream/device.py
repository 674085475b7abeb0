"""Choose the one device, once; nothing below it falls back silently."""
from __future__ import annotations

import torch

from .errors import LipstreamError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
        return torch.device("cuda", index)
    if name == "cpu":
        return torch.device("cpu")
    raise LipstreamError(f"unknown device {name!r}: use auto, cpu or cuda")
