"""The avatar, prepared once: its frames, their face boxes, the loop order and its matte where it
has one (its own alpha, or keyed out of a green screen), as device tensors.

Detection is the slow part, so the boxes are cached on disk, keyed by the file's content and the
options that change them. What a lip-sync model paints from (crops, latents, blend masks) is that
model's own preparation (`LipSyncModel.prepare`), made from this.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..files import cache_root, save_cache
from ..sources import media
from . import face, matte

log = logging.getLogger("lipstream")
_CACHE_VERSION = 4  # bump when detection or padding changes


@dataclass(eq=False)  # one avatar object is one avatar (identity, hashable: a weak key of the runtime)
class Avatar:
    frames: torch.Tensor  # N×H×W×3 uint8 BGR, on the device
    boxes: torch.Tensor  # N×4 int64 face boxes (top, bottom, left, right), end exclusive: detected, padded, smoothed
    loop: torch.Tensor  # avatar frame for output frame i is loop[i % len(loop)]
    source: str
    key: str  # the file's content and the box options: what a model's prepared face is cached under
    matte: torch.Tensor | None = None  # N×H×W uint8 (255 opaque) where the avatar has alpha or was keyed; loops with frames
    faces: dict = field(default_factory=dict, repr=False)  # model identity → its `Face` of this avatar (runtime.shared_face)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def frame_index(self, i: torch.Tensor | int):
        return self.loop[torch.as_tensor(i, device=self.loop.device) % len(self.loop)]


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
    return h.hexdigest()[:32]


def _load_cached(path: str) -> dict | None:
    try:
        with np.load(path) as z:
            return {"boxes": z["boxes"]}
    except Exception:  # noqa: BLE001 - a missing or damaged entry is just recomputed
        return None


def load_avatar(path: str, device: torch.device, box=None, use_cache: bool = True,
                screen: tuple[int, int, int] | None = None) -> Avatar:
    """`screen`: a green screen's colour (r, g, b) to key out (an avatar with alpha of its own keeps that)."""
    frames, alphas = media.read_avatar(path)
    key = _key(path, box)
    cache_file = os.path.join(_cache_dir(), key + ".npz") if use_cache else None
    cached = _load_cached(cache_file) if use_cache else None
    if cached is not None and len(cached["boxes"]) == len(frames):
        boxes = cached["boxes"]
    else:
        started = time.perf_counter()
        boxes = face.face_boxes(frames, box, source=path)
        if use_cache:
            save_cache(cache_file, "avatar", boxes=boxes)
        log.info("avatar %s: %d frame(s) prepared in %.2f s%s", os.path.basename(path), len(frames),
                 time.perf_counter() - started, ", cached" if use_cache else "")
    # The one upload of the avatar: from here on frames only move on the device.
    colour = torch.from_numpy(np.stack(frames)).to(device)
    alpha = torch.from_numpy(np.stack(alphas)).to(device) if alphas is not None else None
    if screen is not None and alpha is None:
        colour, alpha = matte.chroma_key(colour, screen)
    return Avatar(
        frames=colour,
        matte=alpha,
        boxes=torch.from_numpy(boxes.astype(np.int64)).to(device),
        loop=torch.from_numpy(loop_order(len(frames))).to(device),
        source=path,
        key=key,
    )
