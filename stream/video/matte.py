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
# Chroma distances (BT.601 CbCr, 0–255 scale) over which the key ramps from transparent to opaque:
# a pixel within KEY_NEAR of the key colour's chroma is background, one beyond KEY_FAR is foreground.
# A face on a pure green screen lies about 150 away; a compression-noisy screen within 15.
KEY_NEAR, KEY_FAR = 20.0, 80.0


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
    if np.hypot(*_chroma(np.array(colour, np.float32))) < KEY_FAR:
        raise LipstreamError(f"--key {text}: a grey has no chroma to key on; give the screen's colour (green: #00ff00)")
    return colour


def _chroma(rgb):
    """BT.601 Cb, Cr (centred on 0) of RGB values in the last axis (NumPy or torch)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.stack([cb, cr], -1) if isinstance(rgb, np.ndarray) else _torch_stack(cb, cr)


def _torch_stack(cb, cr):
    import torch

    return torch.stack([cb, cr], -1)


def chroma_key(frames, colour: tuple[int, int, int]):
    """`frames` (N×H×W×3 uint8 BGR, torch, any device) keyed on `colour` (r, g, b): the matte from the
    distance of each pixel's chroma to the key's (a soft ramp from KEY_NEAR to KEY_FAR, so hair and
    motion blur keep their partial cover), and the colours with the screen taken out: a partly
    covered pixel p = a·F + (1 − a)·K is unmixed to F, then what still leans to the key's dominant
    channel (green light bounced onto the face) is clamped to the larger of the other two."""
    import torch

    rgb = frames.flip(-1).float()
    key = torch.tensor(colour, dtype=torch.float32, device=frames.device)
    d = (_chroma(rgb) - _chroma(key)).norm(dim=-1)
    a = ((d - KEY_NEAR) / (KEY_FAR - KEY_NEAR)).clamp(0.0, 1.0)
    fg = torch.where(a[..., None] > 0, (rgb - (1 - a[..., None]) * key) / a[..., None].clamp_min(1e-3), rgb)
    c = int(np.argmax(colour))
    others = [k for k in range(3) if k != c]
    fg[..., c] = torch.minimum(fg[..., c], torch.maximum(fg[..., others[0]], fg[..., others[1]]))
    out = fg.clamp(0, 255).add_(0.5).to(torch.uint8).flip(-1).contiguous()
    return out, a.mul(255).add_(0.5).to(torch.uint8)
