"""A lip-sync model that needs no weights: the jaw drops with the audio's smoothed loudness.

It exists so the main job works on a fresh machine; with a learned model's weights configured that
model is used instead. It reads Wav2Lip's mel windows and paints Wav2Lip's 96×96 face.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels import prepare

from ..audio.clock import MEL_FPS, MEL_LEAD
from .contract import Face, LipSyncModel
from .face96 import CROP, prepare_face96
from .mel_windows import SHAPE, MelWindows

MOUTH_ROW, MOUTH_COL = 71.0, 48.0  # mouth centre in a Wav2Lip-padded 96×96 face crop
MAX_DROP = 7.0  # pixels the lower lip moves at full opening
SILENT, LOUD = -3.0, -0.4  # mean normalised mel level of silence and of loud speech


class ProceduralLipSync(LipSyncModel):
    name = "procedural"
    face_size = CROP
    feature_shape = SHAPE

    def __init__(self, device: torch.device, fps: int = 25):
        self.device, self.fps = device, fps
        self.dtype = torch.float32
        t = torch.arange(CROP, dtype=torch.float32, device=device)
        self._rows = t.view(1, CROP, 1)
        self._cols = t.view(1, 1, CROP)
        # The frame's own span sits one frame into its window (clock.MEL_LEAD): weight around it.
        centre = min(15.0, (MEL_LEAD + 0.5) * MEL_FPS / fps)  # below 8 fps the frame outlasts the window
        w = torch.exp(-0.5 * ((torch.arange(16, dtype=torch.float32, device=device) - centre) / 2.0) ** 2)
        self._time_w = (w / w.sum()).view(1, 1, 16)
        self._bands = slice(8, 64)

    def identity(self) -> tuple:
        return (self.name, str(self.device), self.fps)  # its window weights depend on fps

    def features(self, fps: int, live: bool = False) -> MelWindows:
        return MelWindows(fps, self.device)  # the same live or not: a window needs 0.2 s of audio

    def prepare(self, avatar) -> Face:
        return prepare_face96(avatar, self.device)

    def gather(self, face: Face, idx: torch.Tensor) -> torch.Tensor:
        return prepare(face.inputs, idx, self.dtype)

    def openness(self, mel: torch.Tensor) -> torch.Tensor:
        """B×1×80×16 mel windows → B openings in [0, 1]."""
        level = (mel[:, 0, self._bands, :].mean(dim=1, keepdim=True) * self._time_w).sum(dim=(1, 2))
        return ((level - SILENT) / (LOUD - SILENT)).clamp(0, 1)

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        ref = faces[:, 3:6].float()
        o = self.openness(mel.float()).view(-1, 1, 1)
        dy = self._rows - MOUTH_ROW
        across = torch.exp(-(((self._cols - MOUTH_COL) / 17.0) ** 2))
        # Below the lips content slides down, fading out towards the chin; the upper lip lifts a little.
        below = (dy > 0).float() * torch.exp(-((dy / 26.0) ** 2)) * torch.clamp(dy / 3.0, max=1.0)
        above = (dy <= 0).float() * 0.3 * torch.exp(-((dy / 6.0) ** 2))
        shift = o * MAX_DROP * across * (below - above)  # B×96×96, source row offset
        src_y = (self._rows - shift).expand(len(o), CROP, CROP)
        src_x = self._cols.expand(len(o), CROP, CROP)
        grid = torch.stack([src_x, src_y], dim=-1) * (2.0 / CROP) - 1.0 + 1.0 / CROP
        warped = F.grid_sample(ref, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # The gap between the lips is dark: an ellipse whose height follows the opening.
        half_h = o * MAX_DROP * 0.5 + 1e-3
        inside = ((self._cols - MOUTH_COL) / 13.0) ** 2 + ((self._rows - MOUTH_ROW - half_h) / half_h) ** 2
        gap = torch.sigmoid((1.0 - inside) * 4.0) * (o > 0.05).float()
        mouth = warped * (1 - 0.7 * gap.unsqueeze(1)) + 0.06 * gap.unsqueeze(1)
        return mouth.clamp(0, 1)
