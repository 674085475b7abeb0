"""The face that Wav2Lip and the procedural mouth paint: the face box resized to 96×96 (BGR uint8),
pasted back through one feathered mask shared by every frame."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .contract import Face

CROP = 96


def feather_mask(size: int = CROP) -> np.ndarray:
    """1 over the mouth and jaw, easing to 0 well inside the crop's edges so the paste has no seam.
    Zero above row 44: the lower-face decoder (wav2lip/lower_face.py) relies on it."""
    t = np.arange(size, dtype=np.float64) + 0.5

    def ramp(x, a, b):
        u = np.clip((x - a) / (b - a), 0.0, 1.0)
        return u * u * (3 - 2 * u)

    s = size / 96.0
    rows = ramp(t, 44 * s, 58 * s) * (1 - ramp(t, 84 * s, 95 * s))
    cols = ramp(t, 6 * s, 24 * s) * (1 - ramp(t, 72 * s, 90 * s))
    return np.outer(rows, cols).astype(np.float32)


def crops(frames: np.ndarray, boxes: np.ndarray, size: int = CROP) -> np.ndarray:
    """N×size×size×3: each frame's face box resized (bilinear), as Wav2Lip's inference crops it."""
    return np.stack([cv2.resize(f[t:b, l:r], (size, size), interpolation=cv2.INTER_LINEAR)
                     for f, (t, b, l, r) in zip(frames, boxes)])


def prepare_face96(avatar, device: torch.device) -> Face:
    """Crops of every avatar frame and the feather mask, on `device` (milliseconds a frame: not cached)."""
    frames, boxes = avatar.frames.cpu().numpy(), avatar.boxes.cpu().numpy()
    return Face(inputs=torch.from_numpy(crops(frames, boxes)).to(device), boxes=avatar.boxes.to(device),
                masks=torch.from_numpy(feather_mask()).to(device)[None])
