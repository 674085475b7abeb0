"""A lip-sync model that needs no weights: the avatar's own jaw and lips move with the sound.

It exists so the main job works on a fresh machine; with a learned model's weights configured that
model is used instead. It reads Wav2Lip's mel windows: their smoothed loudness opens the mouth,
and their balance of low to mid formant energy (rounded vowels, o and u, put F2 low) rounds it.

The face is warped, not painted over. Per avatar frame, once, the mouth line is found: the row
where, across the mouth, the picture turns darker going down (upper teeth or lip onto the lower
lip, or the lips onto their seam). Everything above it stays where it is, the upper teeth with it;
the lower lip and the chin move down (fading out towards the bottom of the face box), and only the
gap that opens between them is dark. Rounded sounds pull the corners in. Closed (silent, m, b, p)
is the source itself: the painted face carries an alpha that is zero wherever nothing moved, so
idle and the start and end of speech show the avatar's pixels, not a resampled copy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..audio.clock import MEL_FPS, MEL_LEAD
from .contract import Face, LipSyncModel
from .face96 import crops, feather_mask
from .mel_windows import SHAPE, MelWindows

SIZE = 128  # the face's grid: the bundled avatar's 103-px box is painted above its own resolution
SILENT, LOUD = -3.0, -0.4  # mean normalised mel level of silence and of loud speech
LOW, MID = slice(5, 26), slice(37, 57)  # mel bands ~250–1000 Hz and ~1500–3200 Hz (Slaney, 55–7600 Hz)
ROUND_FROM, ROUND_SPAN = -1.1, 1.2  # low − mid level: "ee" ≈ −1.5, "oh" ≈ +0.5 … +1.7 (eSpeak, measured)
MOUTH = (0.28, 0.73)  # the mouth's corners, as fractions of the face box's width
SEAM = (0.70, 0.86)  # rows searched for the mouth line, as fractions of its height (the box padded below the chin)
DROP = 0.09  # the lower lip's travel at full opening, in face heights
LIFT = 0.12  # the upper lip's, as a fraction of the drop
CORNERS = 0.05  # corners pulled in at full rounding, in face widths
GAP_TINT = (0.16, 0.17, 0.30)  # the open mouth's dark red relative to the mouth region's median colour (B, G, R)


def mouth_line(crop: np.ndarray) -> np.ndarray:
    """Per column of a SIZE² BGR crop, the row (float) of the mouth line; a smooth curve across the mouth.

    Only the mouth's middle votes: towards the corners the cheeks' shadows make stronger edges than
    the lips (the bundled avatar's corners pulled the line 4 px up, into her teeth). A vote more than
    2.5 px off the first fit is dropped, and the curve fitted again."""
    luma = crop.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)
    lo, hi = (int(f * SIZE) for f in SEAM)
    a, b = (int(f * SIZE) for f in MOUTH)
    mid, half = (a + b) / 2, 0.3 * (b - a)
    cols = np.arange(int(mid - half), int(mid + half) + 1)
    band = luma[lo - 1 : hi + 2, cols]
    band = (band[:-2] + band[1:-1] + band[2:]) / 3  # a row's neighbours: teeth have fine vertical texture
    drop = band[:-1] - band[1:]  # brighter above than below
    rows = lo + np.argmax(drop, axis=0) + 0.5
    weight = np.sqrt(np.maximum(drop.max(axis=0), 1e-3))  # columns with a clear edge count more
    fit = np.polyfit(cols, rows, 2, w=weight)  # a smile is a curve, not a jagged line
    kept = np.abs(np.polyval(fit, cols) - rows) <= 2.5
    if kept.sum() >= 5:
        fit = np.polyfit(cols[kept], rows[kept], 2, w=weight[kept])
    line = np.polyval(fit, np.arange(SIZE))
    return np.clip(line, lo, hi).astype(np.float32)


class ProceduralLipSync(LipSyncModel):
    name = "procedural"
    face_size = SIZE
    feature_shape = SHAPE

    def __init__(self, device: torch.device, fps: int = 25):
        self.device, self.fps = device, fps
        self.dtype = torch.float32
        # The frame's own span sits one frame into its window (clock.MEL_LEAD): weight around it.
        centre = min(15.0, (MEL_LEAD + 0.5) * MEL_FPS / fps)  # below 8 fps the frame outlasts the window
        w = torch.exp(-0.5 * ((torch.arange(16, dtype=torch.float32, device=device) - centre) / 2.0) ** 2)
        self._time_w = (w / w.sum()).view(1, 16)
        t = (torch.arange(SIZE, dtype=torch.float32, device=device) + 0.5) / SIZE
        a, b = MOUTH
        across = ((t - a) / (b - a)).clamp(0, 1)
        self._across = torch.sin(np.pi * across).clamp(min=0) ** 1.5  # 1 mid-mouth, 0 at the corners (sin(π) < 0 in float32)
        self._side = torch.where(t < (a + b) / 2, -1.0, 1.0)  # left or right of the mouth's centre
        self._near_corner = torch.exp(-(((across - 0.5).abs() - 0.42) / 0.12) ** 2) * (across > 0) * (across < 1)
        self._rows = torch.arange(SIZE, dtype=torch.float32, device=device).view(1, SIZE, 1)
        self._cols = torch.arange(SIZE, dtype=torch.float32, device=device).view(1, 1, SIZE)

    def identity(self) -> tuple:
        return (self.name, str(self.device), self.fps)  # its window weights depend on fps

    def features(self, fps: int, live: bool = False) -> MelWindows:
        return MelWindows(fps, self.device)  # the same live or not: a window needs 0.2 s of audio

    def prepare(self, avatar) -> Face:
        """Per avatar frame: the crop (BGR in [0, 1]) and, as a fourth channel, its mouth line's row."""
        frames, boxes = avatar.frames.cpu().numpy(), avatar.boxes.cpu().numpy()
        faces = crops(frames, boxes, SIZE)
        lines = np.stack([mouth_line(c) for c in faces])
        inputs = np.concatenate([faces.astype(np.float32) / 255.0,
                                 np.broadcast_to(lines[:, None, :, None], (len(faces), SIZE, SIZE, 1))], axis=-1)
        return Face(inputs=torch.from_numpy(inputs).permute(0, 3, 1, 2).to(self.device, torch.float16).contiguous(),
                    boxes=avatar.boxes.to(self.device), masks=torch.from_numpy(feather_mask(SIZE)).to(self.device)[None])

    def gather(self, face: Face, idx: torch.Tensor) -> torch.Tensor:
        return face.inputs.index_select(0, idx).float()

    def _levels(self, mel: torch.Tensor, bands: slice) -> torch.Tensor:
        return (mel[:, 0, bands, :].mean(dim=1) * self._time_w).sum(dim=1)

    def openness(self, mel: torch.Tensor) -> torch.Tensor:
        """B×1×80×16 mel windows → B openings in [0, 1]."""
        return ((self._levels(mel, slice(8, 64)) - SILENT) / (LOUD - SILENT)).clamp(0, 1)

    def roundness(self, mel: torch.Tensor) -> torch.Tensor:
        """B roundings in [0, 1]: low formant energy over mid (o, u against i, e)."""
        return ((self._levels(mel, LOW) - self._levels(mel, MID) - ROUND_FROM) / ROUND_SPAN).clamp(0, 1)

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """B×4×S×S: the warped face (BGR) and where it differs from the source (alpha)."""
        mel = mel.float()
        o = self.openness(mel).view(-1, 1, 1)
        r = self.roundness(mel).view(-1, 1, 1) * (o > 0.15)
        src, line = inputs[:, :3], inputs[:, 3:4, 0, :]  # B×3×S×S, B×1×S (the mouth line's row per column)
        across = self._across * (1 - 0.35 * r)  # a rounded mouth opens narrower
        drop = o * DROP * SIZE * across  # B×1×S: how far the lower lip moves down, per column
        below = self._rows - line  # rows under the line are > 0
        to_bottom = (SIZE - line).clamp(min=1)
        # Under the line everything moves down by `drop`, fading out over the last 40 % to the box's bottom.
        fade = (1 - ((below / to_bottom - 0.6) / 0.4).clamp(0, 1)) ** 2
        down = torch.where(below > 0, drop * fade, -LIFT * drop * torch.exp(-(below / (0.04 * SIZE)) ** 2))
        src_y = self._rows - down
        inside = (below > 0) & (below < drop)  # the gap that opened: no source pixel lands there
        src_y = torch.where(inside, line - 0.5, src_y)  # (its colour is replaced below; sampled anyway)
        band = torch.exp(-(below / (0.08 * SIZE)) ** 2)
        pull = r * CORNERS * SIZE * self._near_corner * band  # rounded: the corners come in
        src_x = self._cols - self._side * pull
        grid = torch.stack([src_x.expand_as(src_y), src_y], dim=-1) * (2.0 / SIZE) - 1.0 + 1.0 / SIZE
        warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # The open mouth: dark, tinted from the source's lips, shading lighter towards the upper teeth.
        lo, hi = (int(f * SIZE) for f in SEAM)
        a, b = (int(f * SIZE) for f in MOUTH)
        lips = src[:, :, lo:hi, a:b].flatten(2).median(dim=2).values[..., None, None]  # the lips' and teeth's colour
        tint = torch.tensor(GAP_TINT, device=src.device).view(1, 3, 1, 1)
        depth = ((below - 0.5) / drop.clamp(min=1e-3)).clamp(0, 1)  # 0 at the upper edge of the gap
        dark = lips * tint * (0.6 + 0.4 * (1 - depth)).unsqueeze(1)
        edge = (below.clamp(min=0) - drop).neg().clamp(0, 1) * below.clamp(0, 1)  # antialiased gap, 1 px edges
        out = warped * (1 - edge.unsqueeze(1)) + dark * edge.unsqueeze(1)
        moved = ((down.abs() + pull) / 0.5).clamp(0, 1)  # where a pixel moved by half a pixel or more
        alpha = torch.maximum(moved, edge).unsqueeze(1)
        return torch.cat([out.clamp(0, 1), alpha], dim=1)
