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
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise LipstreamError(f"unknown device {name!r}: use auto, cpu or cuda")
