"""Paste each generated face back into its full avatar frame with the feathered mask."""
from __future__ import annotations

from kernels import compose

from .frames import FrameBatch
from .pipeline import Stage


class ComposeStage(Stage):
    name = "compose"

    def __init__(self, avatar):
        self.avatar = avatar
        self.device = avatar.frames.device
        self.engine = "triton" if self.device.type == "cuda" else "torch"

    def process(self, item: FrameBatch, emit) -> None:
        idx = item.avatar_idx
        item.frames = compose(self.avatar.frames[idx], item.mouths, self.avatar.boxes[idx], self.avatar.mask)
        item.mouths = None
        emit(item)
