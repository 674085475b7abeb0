"""The avatar, prepared once: frames, face boxes, 96×96 crops and the blend mask, as device tensors.

Detection is the slow part, so boxes, crops and mask are cached on disk, keyed by the file's
content, the options that change them and the mask itself (the lower-face decoder relies on it).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..errors import LipstreamError
from ..files import cache_root, write_atomically
from ..sources import media
from . import face

log = logging.getLogger("lipstream")
CROP = 96
_CACHE_VERSION = 3  # bump when detection or cropping changes


@dataclass
class Avatar:
    frames: torch.Tensor  # N×H×W×3 uint8 BGR, on the device
    crops: torch.Tensor  # N×96×96×3 uint8 BGR
    boxes: torch.Tensor  # N×4 int64 (top, bottom, left, right), end exclusive
    mask: torch.Tensor  # 96×96 float32 feather mask on the crop grid
    loop: torch.Tensor  # avatar frame for output frame i is loop[i % len(loop)]
    source: str

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def frame_index(self, i: torch.Tensor | int):
        return self.loop[torch.as_tensor(i, device=self.loop.device) % len(self.loop)]


def feather_mask(size: int = CROP) -> np.ndarray:
    """1 over the mouth and jaw, easing to 0 well inside the crop's edges so the paste has no seam."""
    t = np.arange(size, dtype=np.float64) + 0.5

    def ramp(x, a, b):
        u = np.clip((x - a) / (b - a), 0.0, 1.0)
        return u * u * (3 - 2 * u)

    s = size / 96.0
    rows = ramp(t, 44 * s, 58 * s) * (1 - ramp(t, 84 * s, 95 * s))
    cols = ramp(t, 6 * s, 24 * s) * (1 - ramp(t, 72 * s, 90 * s))
    return np.outer(rows, cols).astype(np.float32)


def loop_order(n: int) -> np.ndarray:
    """Forward then backward without repeating the ends, so a looping video never jumps."""
    return np.arange(n) if n <= 2 else np.concatenate([np.arange(n), np.arange(n - 2, 0, -1)])


def _cache_dir() -> str:
    return os.path.join(cache_root(), "avatars")


def _key(path: str, box) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(repr((_CACHE_VERSION, tuple(box) if box is not None else None, face.PADS, face.SMOOTH)).encode())
    h.update(feather_mask().tobytes())
    return h.hexdigest()[:32]


def _crops(frames: list[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(f[t:b, l:r], (CROP, CROP), interpolation=cv2.INTER_LINEAR)
                     for f, (t, b, l, r) in zip(frames, boxes)])


def _load_cached(path: str) -> dict | None:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in ("boxes", "crops", "mask")}
    except Exception:  # noqa: BLE001 - a missing or damaged entry is just recomputed
        return None


def _save_cached(path: str, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomically(path, buf.getvalue())
    except (OSError, LipstreamError) as e:  # a read-only or full cache only costs time
        log.warning("avatar cache not written (%s)", e)


def load_avatar(path: str, device: torch.device, box=None, use_cache: bool = True) -> Avatar:
    frames = media.read_avatar(path)
    cache_file = os.path.join(_cache_dir(), _key(path, box) + ".npz") if use_cache else None
    cached = _load_cached(cache_file) if use_cache else None
    if cached is not None and len(cached["boxes"]) == len(frames):
        boxes, crops, mask = cached["boxes"], cached["crops"], cached["mask"]
    else:
        started = time.perf_counter()
        boxes = face.face_boxes(frames, box, source=path)
        crops, mask = _crops(frames, boxes), feather_mask()
        if use_cache:
            _save_cached(cache_file, boxes=boxes, crops=crops, mask=mask)
        log.info("avatar %s: %d frame(s) prepared in %.2f s%s", os.path.basename(path), len(frames),
                 time.perf_counter() - started, ", cached" if use_cache else "")
    # The one upload of the avatar: from here on frames only move on the device.
    return Avatar(
        frames=torch.from_numpy(np.stack(frames)).to(device),
        crops=torch.from_numpy(crops).to(device),
        boxes=torch.from_numpy(boxes.astype(np.int64)).to(device),
        mask=torch.from_numpy(mask).to(device),
        loop=torch.from_numpy(loop_order(len(frames))).to(device),
        source=path,
    )
