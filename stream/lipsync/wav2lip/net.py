"""The Wav2Lip generator, laid out so the public `wav2lip.pth` / `wav2lip_gan.pth` load unchanged."""
from __future__ import annotations

import torch
from torch import nn


class Conv(nn.Module):
    """Conv → BatchNorm → ReLU; a residual block adds its input before the ReLU."""

    def __init__(self, cin, cout, k, s, p, residual=False, transpose=False, output_padding=0):
        super().__init__()
        if transpose:
            conv = nn.ConvTranspose2d(cin, cout, k, s, p, output_padding)
        else:
            conv = nn.Conv2d(cin, cout, k, s, p)
        self.conv_block = nn.Sequential(conv, nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x):
        out = self.conv_block(x)
        return torch.relu(out + x if self.residual else out)


def _res(c):
    return Conv(c, c, 3, 1, 1, residual=True)


def _up(cin, cout, n_res):
    return nn.Sequential(Conv(cin, cout, 3, 2, 1, transpose=True, output_padding=1), *[_res(cout) for _ in range(n_res)])


class Wav2Lip(nn.Module):
    """forward(mel B×1×80×16, faces B×6×96×96 BGR in [0,1]) → mouths B×3×96×96 BGR in [0,1]."""

    def __init__(self):
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(Conv(6, 16, 7, 1, 3)),
            nn.Sequential(Conv(16, 32, 3, 2, 1), _res(32), _res(32)),
            nn.Sequential(Conv(32, 64, 3, 2, 1), _res(64), _res(64), _res(64)),
            nn.Sequential(Conv(64, 128, 3, 2, 1), _res(128), _res(128)),
            nn.Sequential(Conv(128, 256, 3, 2, 1), _res(256), _res(256)),
            nn.Sequential(Conv(256, 512, 3, 2, 1), _res(512)),
            nn.Sequential(Conv(512, 512, 3, 1, 0), Conv(512, 512, 1, 1, 0)),
        ])
        self.audio_encoder = nn.Sequential(
            Conv(1, 32, 3, 1, 1), _res(32), _res(32),
            Conv(32, 64, 3, (3, 1), 1), _res(64), _res(64),
            Conv(64, 128, 3, 3, 1), _res(128), _res(128),
            Conv(128, 256, 3, (3, 2), 1), _res(256),
            Conv(256, 512, 3, 1, 0), Conv(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(Conv(512, 512, 1, 1, 0)),
            nn.Sequential(Conv(1024, 512, 3, 1, 0, transpose=True), _res(512)),
            _up(1024, 512, 2),
            _up(768, 384, 2),
            _up(512, 256, 2),
            _up(320, 128, 2),
            _up(160, 64, 2),
        ])
        self.output_block = nn.Sequential(Conv(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def encode(self, mel: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The audio embedding (B×512×1×1) and each face encoder block's output, shallowest first."""
        feats = []
        f = faces
        for block in self.face_encoder_blocks:
            f = block(f)
            feats.append(f)
        return self.audio_encoder(mel), feats

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        check_inputs(mel, faces)
        x, feats = self.encode(mel, faces)
        for block in self.face_decoder_blocks:
            x = torch.cat([block(x), feats.pop()], dim=1)
        return self.output_block(x)


def check_inputs(mel: torch.Tensor, faces: torch.Tensor) -> None:
    """The shapes the public weights were trained on; others would run and give nonsense."""
    if mel.dim() != 4 or tuple(mel.shape[1:]) != (1, 80, 16):
        raise ValueError(f"mel windows must be B×1×80×16, not {'×'.join(map(str, mel.shape))}")
    if faces.dim() != 4 or tuple(faces.shape[1:]) != (6, 96, 96):
        raise ValueError(f"faces must be B×6×96×96, not {'×'.join(map(str, faces.shape))}")
    if mel.shape[0] != faces.shape[0]:
        raise ValueError(f"{mel.shape[0]} mel windows for {faces.shape[0]} faces")
