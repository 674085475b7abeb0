"""`--background COLOR|IMAGE|VIDEO`: the avatar composited over it, through its matte, for every
output (the frames leave flat). An image or video is scaled to cover the avatar's frame and
centred; a video loops forward, frame i of the output over background frame i mod its length."""
from __future__ import annotations

import os

import av
import cv2
import numpy as np
import torch

from kernels import over

from ..errors import LipstreamError
from ..frames import FrameBatch
from ..sources.media import IMAGE_EXTS, MAX_AVATAR_FRAMES
from ..stage import Stage
from .matte import parse_colour

NO_ALPHA = ("--background needs an avatar with alpha: an RGBA image, a video with alpha (WebM VP9, ProRes 4444), "
            "or --key COLOR for a green-screen avatar")


class Background:
    def __init__(self, spec: str, size: tuple[int, int], device: torch.device):
        h, w = size
        self.spec = spec
        colour = parse_colour(spec)
        if colour is not None:
            frames = [np.full((h, w, 3), colour[::-1], np.uint8)]
            self.kind = f"colour #{colour[0]:02x}{colour[1]:02x}{colour[2]:02x}"
        else:
            frames = [_cover(f, h, w) for f in _read(spec)]
            self.kind = f"{'image' if len(frames) == 1 else f'video of {len(frames)} frames'} {os.path.basename(spec)}"
        self.frames = torch.from_numpy(np.stack(frames)).to(device)  # N×H×W×3 BGR, uploaded once

    def behind(self, start: int, count: int) -> torch.Tensor:
        """The background of output frames [start, start + count): H×W×3, or count×H×W×3 for a video."""
        n = len(self.frames)
        if n == 1:
            return self.frames[0]
        return self.frames[torch.arange(start, start + count, device=self.frames.device) % n]


def _read(path: str) -> list[np.ndarray]:
    if os.path.splitext(path)[1].lower() in IMAGE_EXTS:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise LipstreamError(f"cannot read background image {path} (unsupported or corrupt)")
        return [image]
    frames = []
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise LipstreamError(f"background {path} is neither an image nor a video")
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="bgr24"))
                if len(frames) == MAX_AVATAR_FRAMES:
                    break
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise LipstreamError(f"cannot read background {path}: {e}") from None
    if not frames:
        raise LipstreamError(f"background video {path} has no frames")
    return frames


def _cover(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Scaled to cover h×w (no bars), the middle kept."""
    ih, iw = image.shape[:2]
    s = max(h / ih, w / iw)
    rh, rw = max(h, round(ih * s)), max(w, round(iw * s))
    resized = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    y, x = (rh - h) // 2, (rw - w) // 2
    return np.ascontiguousarray(resized[y : y + h, x : x + w])


def make_background(spec: str | None, avatar, device: torch.device) -> Background | None:
    if spec is None:
        return None
    if avatar.matte is None:
        raise LipstreamError(NO_ALPHA)
    return Background(spec, avatar.size, device)


class BackgroundStage(Stage):
    """Each batch's frames over the background through their mattes; the frames leave flat."""

    name = "background"

    def __init__(self, background: Background, device: torch.device):
        self.background, self.device = background, device
        self.engine = f"{background.kind}, {'triton' if device.type == 'cuda' else 'torch'}"

    def warmup(self) -> None:
        if self.device.type == "cuda":  # Triton compiles `over` on its first call
            f = self.background.frames
            over(f[:1], torch.zeros(1, *f.shape[1:3], dtype=torch.uint8, device=f.device), f[0])

    def process(self, item: FrameBatch, emit) -> None:
        if item.count:
            item.frames = over(item.frames, item.mattes, self.background.behind(item.start, item.count))
        item.mattes = None
        emit(item)
