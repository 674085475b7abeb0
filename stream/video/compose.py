"""Paste each generated face back into its full avatar frame with the feathered mask."""
from __future__ import annotations

import torch

from kernels import compose

from ..frames import FrameBatch
from ..stage import Stage


class ComposeStage(Stage):
    name = "compose"

    def __init__(self, avatar, mouth_dtype: torch.dtype = torch.float32):
        self.avatar, self.mouth_dtype = avatar, mouth_dtype
        self.device = avatar.frames.device
        self.engine = "triton" if self.device.type == "cuda" else "torch"

    def warmup(self) -> None:
        if self.device.type == "cuda":  # Triton compiles `compose` on its first call
            a = self.avatar
            mouths = torch.zeros(1, 3, 96, 96, device=self.device, dtype=self.mouth_dtype)  # kernels specialise on dtype
            compose(a.frames[:1], mouths, a.boxes[:1], a.mask)

    def process(self, item: FrameBatch, emit) -> None:
        idx = item.avatar_idx
        item.frames = compose(self.avatar.frames[idx], item.mouths, self.avatar.boxes[idx], self.avatar.mask)
        item.mouths = None
        emit(item)
