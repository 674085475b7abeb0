"""Paste each painted face back into its full avatar frame, through the model's blend mask."""
from __future__ import annotations

import torch

from kernels import compose

from ..frames import FrameBatch
from ..stage import Stage


class ComposeStage(Stage):
    name = "compose"

    def __init__(self, avatar, face, face_dtype: torch.dtype = torch.float32):
        """`face`: the lip-sync model's preparation of `avatar` (its paste boxes and masks)."""
        self.avatar, self.face, self.face_dtype = avatar, face, face_dtype
        self.device = avatar.frames.device
        self.engine = "triton" if self.device.type == "cuda" else "torch"

    def warmup(self) -> None:
        if self.device.type == "cuda":  # Triton compiles `compose` on its first call, per dtype and face size
            a, f = self.avatar, self.face
            s = f.masks.shape[-1]
            idx = torch.zeros(1, dtype=torch.long, device=self.device)
            compose(a.frames[:1], torch.zeros(1, 3, s, s, device=self.device, dtype=self.face_dtype), f.boxes[:1],
                    f.mask(idx))

    def process(self, item: FrameBatch, emit) -> None:
        idx = item.avatar_idx
        item.frames = compose(self.avatar.frames[idx], item.faces, self.face.boxes[idx], self.face.mask(idx))
        item.faces = None
        if self.avatar.matte is not None:  # the avatar's matte, whatever the model painted
            item.mattes = self.avatar.matte[idx]
        emit(item)
