"""A learned model's precision: `auto` is bf16 on CUDA and on CPUs with native bf16, float32 elsewhere."""
from __future__ import annotations

import torch

from .. import config

PRECISIONS = {name: getattr(torch, name) for name in config.PRECISIONS}


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX); oneDNN would emulate it, slower than float32, elsewhere."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on CUDA and on CPUs with native bf16, float32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda" or cpu_has_bf16():
            return torch.bfloat16
        return torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, {', '.join(PRECISIONS)}; not {precision!r}")
    return PRECISIONS[precision]
