"""An avatar's matte: the alpha it carries (an RGBA image, a VP9 or ProRes 4444 video with alpha), or
one keyed out of a green screen (`--key COLOR`). Made once with the avatar, on its device.

Colours are straight (not premultiplied), as PNG, VP9 alpha and ProRes 4444 store them; the matte is
uint8, 255 opaque.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import LipstreamError

NAMED = {"green": (0, 255, 0), "blue": (0, 0, 255), "black": (0, 0, 0), "white": (255, 255, 255),
         "red": (255, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128), "magenta": (255, 0, 255)}
# The key's matte is Vlahos's: how far a pixel's key channel (green for a green screen) stands above
# the larger of the other two, against how far the key colour's does. It is linear in the cover, so
# an edge pixel a·F + (1 − a)·K gives back a exactly for a grey or white F, and a little more where F
# leans away from the key (skin on green: about 1.14·a, clamped to 1). Below KEY_NEAR it is the
# screen (compression noise and uneven light), above KEY_FAR the subject.
KEY_NEAR, KEY_FAR = 0.04, 0.96
MIN_KEY_LEAD = 64  # the key channel must stand this far above the others, or there is nothing to key on


def parse_colour(text: str) -> tuple[int, int, int] | None:
    """`#RRGGBB`, `RRGGBB` or a name (green, blue, …) as (r, g, b); None if it is none of these."""
    t = text.strip().lower()
    if t in NAMED:
        return NAMED[t]
    m = re.fullmatch(r"#?([0-9a-f]{6})", t)
    if m is None:
        return None
    v = int(m.group(1), 16)
    return (v >> 16) & 255, (v >> 8) & 255, v & 255


def key_colour(text: str) -> tuple[int, int, int]:
    colour = parse_colour(text)
    if colour is None:
        raise LipstreamError(f"--key {text}: not a colour (#RRGGBB, or one of {', '.join(NAMED)})")
    if _lead(np.array(colour, np.float32), int(np.argmax(colour))) < MIN_KEY_LEAD:
        raise LipstreamError(f"--key {text}: a grey has no chroma to key on; give the screen's colour (green: #00ff00)")
    return colour


def _lead(rgb, c: int):
    """How far channel `c` stands above the larger of the other two (NumPy or torch, last axis)."""
    o1, o2 = [rgb[..., k] for k in range(3) if k != c]
    big = np.maximum(o1, o2) if isinstance(rgb, np.ndarray) else _torch_max(o1, o2)
    return rgb[..., c] - big


def _torch_max(a, b):
    import torch

    return torch.maximum(a, b)


def chroma_key(frames, colour: tuple[int, int, int]):
    """`frames` (N×H×W×3 uint8 BGR, torch, any device) keyed on `colour` (r, g, b): the matte from
    how far each pixel leans to the key's dominant channel (see KEY_NEAR; soft, so hair and motion
    blur keep their partial cover), and the colours with the screen taken out: a partly covered
    pixel p = a·F + (1 − a)·K is unmixed to F, then what still leans to the key channel (green
    light bounced onto the face) is clamped to the larger of the other two."""
    import torch

    rgb = frames.flip(-1).float()
    key = torch.tensor(colour, dtype=torch.float32, device=frames.device)
    c = int(np.argmax(colour))
    raw = 1 - _lead(rgb, c) / float(_lead(key, c))
    a = ((raw - KEY_NEAR) / (KEY_FAR - KEY_NEAR)).clamp(0.0, 1.0)
    fg = torch.where(a[..., None] > 0, (rgb - (1 - a[..., None]) * key) / a[..., None].clamp_min(1e-3), rgb)
    fg[..., c] -= _lead(fg, c).clamp_min(0)  # the key channel no higher than the larger other
    out = fg.clamp(0, 255).add_(0.5).to(torch.uint8).flip(-1).contiguous()
    return out, a.mul(255).add_(0.5).to(torch.uint8)
