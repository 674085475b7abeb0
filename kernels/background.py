"""The avatar over a background through its matte, and the stacked-alpha picture (colour above, the
matte as grey below) for transports without alpha.

`over` is integer arithmetic, `(m·f + (255 − m)·bg + 127) // 255`, so the kernel and its reference
agree exactly and a pixel whose matte is 0 is the background's, bit for bit (255: the avatar's).
"""

import torch
import triton
import triton.language as tl


def _check(frames, matte, background):
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be B×H×W×3 uint8, not {tuple(frames.shape)} {frames.dtype}")
    if matte.dtype != torch.uint8 or tuple(matte.shape) != tuple(frames.shape[:3]):
        raise ValueError(f"the matte must be {tuple(frames.shape[:3])} uint8, not {tuple(matte.shape)} {matte.dtype}")
    if background.dtype != torch.uint8 or tuple(background.shape[-3:]) != tuple(frames.shape[1:]) or (
            background.dim() == 4 and background.shape[0] != frames.shape[0]) or background.dim() not in (3, 4):
        raise ValueError(f"the background must be H×W×3 or B×H×W×3 uint8 of the frames' size, not "
                         f"{tuple(background.shape)} {background.dtype}")


def over_ref(frames: torch.Tensor, matte: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    _check(frames, matte, background)
    m = matte.to(torch.int32).unsqueeze(-1)
    bg = background.to(torch.int32).expand(frames.shape)
    return ((m * frames.to(torch.int32) + (255 - m) * bg + 127) // 255).to(torch.uint8)


@triton.jit
def _over_kernel(out_ptr, frame_ptr, matte_ptr, bg_ptr, N, BG_PIXELS, BLOCK: tl.constexpr):
    # One program per BLOCK pixels of the flattened batch; the background repeats every BG_PIXELS
    # (H·W for one picture shared by the batch, B·H·W for one per frame).
    p = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = p < N
    m = tl.load(matte_ptr + p, mask=live, other=0).to(tl.int32)
    q = p % BG_PIXELS
    for ch in tl.static_range(3):
        f = tl.load(frame_ptr + p * 3 + ch, mask=live, other=0).to(tl.int32)
        b = tl.load(bg_ptr + q * 3 + ch, mask=live, other=0).to(tl.int32)
        v = (m * f + (255 - m) * b + 127) // 255
        tl.store(out_ptr + p * 3 + ch, v.to(tl.uint8), mask=live)


def over_triton(frames: torch.Tensor, matte: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    _check(frames, matte, background)
    frames, matte = frames.contiguous(), matte.to(frames.device).contiguous()
    background = background.to(frames.device).contiguous()
    out = torch.empty_like(frames)
    n = frames.shape[0] * frames.shape[1] * frames.shape[2]
    if n == 0:
        return out
    block = 1024
    _over_kernel[(triton.cdiv(n, block),)](out, frames, matte, background, n, background.numel() // 3, BLOCK=block)
    return out


def over(frames: torch.Tensor, matte: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """`frames` (B×H×W×3 uint8) through `matte` (B×H×W uint8, 255 opaque) over `background`
    (H×W×3 for every frame, or B×H×W×3)."""
    if frames.is_cuda:
        return over_triton(frames, matte, background)
    return over_ref(frames, matte, background)


def stacked_alpha(frames: torch.Tensor, matte: torch.Tensor) -> torch.Tensor:
    """B×2H×W×3: the colour above, the matte below as grey (Y = matte once converted to limited-range
    YUV and back, so a browser reads it from any channel): one ordinary opaque picture."""
    return torch.cat([frames, matte.unsqueeze(-1).expand(frames.shape)], dim=1)
