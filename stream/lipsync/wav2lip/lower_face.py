"""Wav2Lip's decoder on the lower face only: the rows the blend can use, bit for bit, for less work.

The feather mask is zero above row 44 of the 96×96 crop, so everything the model draws up there is
thrown away, yet the decoder's high-resolution blocks hold 84 % of the model's 7.9 GFLOP.
Convolutions are local: a stride-2 transposed convolution fed input rows [i, H) gives exactly
output rows [2i, 2H), and each 3×3 convolution after it spoils one more row at the top of a
slice. Planning backwards from the first row needed gives where each block may start.
"""
from __future__ import annotations

import torch
from torch import nn

ROWS_FROM = 40  # first output row computed; the blend mask starts at 44 (stream/avatar.py)


def _is_upsampling(block: nn.Sequential) -> bool:
    conv = block[0].conv_block[0]
    return isinstance(conv, nn.ConvTranspose2d) and conv.stride[0] == 2


def plan(model, rows_from: int = ROWS_FROM) -> list[int]:
    """Global input row at which each decoder block starts (0: the whole map)."""
    starts = [0] * len(model.face_decoder_blocks)
    need = rows_from - 1  # the output block's 3×3 conv spoils one row
    for j in range(len(model.face_decoder_blocks) - 1, -1, -1):
        block = model.face_decoder_blocks[j]
        if not _is_upsampling(block):
            break
        start = (need - (len(block) - 1)) // 2  # each residual 3×3 conv after the upsampling spoils a row
        if start <= 0:
            break
        starts[j] = need = start
    return starts


class LowerFaceWav2Lip(nn.Module):
    """forward(mel, faces) → B×3×96×96 whose rows from `rows_from` equal Wav2Lip's; the rows above
    are the reference face (channels 3–5 of the input), which the blend never shows."""

    def __init__(self, model, rows_from: int = ROWS_FROM):
        super().__init__()
        self.model, self.rows_from = model, rows_from
        self.starts = plan(model, rows_from)

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        m = self.model
        x, feats = m.encode(mel, faces)
        top = 0  # global row of x[:, :, 0]
        for block, start in zip(m.face_decoder_blocks, self.starts):
            if start:
                x, top = x[:, :, start - top :], start
            x = block(x)
            if start:
                top *= 2
            x = torch.cat([x, feats.pop()[:, :, top:]], dim=1)
        x = m.output_block(x[:, :, self.rows_from - 1 - top :])[:, :, 1:]
        return torch.cat([faces[:, 3:6, : self.rows_from].to(x.dtype), x], dim=2)
