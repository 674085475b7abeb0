"""Paste generated faces back into the full avatar frames through a blend mask: one mask shared by
every frame (S×S, Wav2Lip's feather) or one per frame (B×S×S, MuseTalk's face parsing). A face
may carry a fourth channel, an alpha that scales the mask (the procedural mouth: zero where nothing
moved, so the avatar's own pixels stay exactly)."""

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


def _check(frames, mouths, boxes, mask):
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be B×H×W×3 uint8, not {tuple(frames.shape)} {frames.dtype}")
    if mouths.dim() != 4 or mouths.shape[1] not in (3, 4) or mouths.shape[0] != frames.shape[0]:
        raise ValueError(f"faces must be B×3×S×S (or B×4×S×S with alpha) for {frames.shape[0]} frames, "
                         f"not {tuple(mouths.shape)}")
    if tuple(boxes.shape) != (frames.shape[0], 4):
        raise ValueError(f"boxes must be {frames.shape[0]}×4, not {tuple(boxes.shape)}")
    if tuple(mask.shape[-2:]) != tuple(mouths.shape[2:]) or mask.dim() not in (2, 3) or (
            mask.dim() == 3 and mask.shape[0] != frames.shape[0]):
        raise ValueError(f"the mask must be S×S or B×S×S on the faces' grid {tuple(mouths.shape[2:])}, "
                         f"not {tuple(mask.shape)}")


def _per_frame(mask: torch.Tensor, n: int) -> torch.Tensor:
    return mask.expand(n, *mask.shape) if mask.dim() == 2 else mask


def compose_ref(frames: torch.Tensor, mouths: torch.Tensor, boxes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Blend each resized mouth into its (y1, y2, x1, x2) box: round(m·mouth·255 + (1−m)·frame)."""
    _check(frames, mouths, boxes, mask)
    out = frames.clone()
    # Mouth and mask go through one interpolate call; resizing is per item as box sizes differ.
    m = _per_frame(mask.float(), mouths.shape[0]).unsqueeze(1)
    if mouths.shape[1] == 4:
        m = m * mouths[:, 3:4].float()
    src = torch.cat([mouths[:, :3].float() * 255.0, m], dim=1)
    for b, (y1, y2, x1, x2) in enumerate(boxes.tolist()):
        r = F.interpolate(src[b : b + 1], size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)
        r = r[0].permute(1, 2, 0)
        mouth, m = r[..., :3], r[..., 3:]
        region = out[b, y1:y2, x1:x2]
        f = region.float()
        # +0.5 then truncation = round half up; values are ≥ 0 after the clamp.
        region.copy_((m * (mouth - f) + f).clamp_(0.0, 255.0).add_(0.5).to(torch.uint8))
    return out


@triton.jit
def _compose_kernel(
    out_ptr, mouth_ptr, mask_ptr, box_ptr,
    H, W, MASK_STRIDE,
    SH: tl.constexpr, SW: tl.constexpr, CHANNELS: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    b = tl.program_id(0)
    y1 = tl.load(box_ptr + 4 * b + 0).to(tl.int32)
    y2 = tl.load(box_ptr + 4 * b + 1).to(tl.int32)
    x1 = tl.load(box_ptr + 4 * b + 2).to(tl.int32)
    x2 = tl.load(box_ptr + 4 * b + 3).to(tl.int32)
    bh = y2 - y1
    bw = x2 - x1
    # Tiles are in box coordinates; the grid is sized by the frame so the host never reads the boxes.
    r0 = tl.program_id(1) * BLOCK_H
    c0 = tl.program_id(2) * BLOCK_W
    if (r0 >= bh) | (c0 >= bw):
        return
    r = r0 + tl.arange(0, BLOCK_H)
    c = c0 + tl.arange(0, BLOCK_W)
    live = (r < bh)[:, None] & (c < bw)[None, :]

    # Half-pixel centres, clamped at 0 like cv2 INTER_LINEAR / interpolate(align_corners=False).
    # div_rn: Triton's `/` is approximate (div.full.f32); the reference's scale is IEEE-rounded.
    sy = tl.maximum((r.to(tl.float32) + 0.5) * tl.math.div_rn(SH * 1.0, bh.to(tl.float32)) - 0.5, 0.0)
    sx = tl.maximum((c.to(tl.float32) + 0.5) * tl.math.div_rn(SW * 1.0, bw.to(tl.float32)) - 0.5, 0.0)
    iy0 = tl.minimum(sy.to(tl.int32), SH - 1)
    ix0 = tl.minimum(sx.to(tl.int32), SW - 1)
    iy1 = tl.minimum(iy0 + 1, SH - 1)
    ix1 = tl.minimum(ix0 + 1, SW - 1)
    wy = (sy - iy0.to(tl.float32))[:, None]
    wx = (sx - ix0.to(tl.float32))[None, :]
    p00 = iy0[:, None] * SW + ix0[None, :]
    p01 = iy0[:, None] * SW + ix1[None, :]
    p10 = iy1[:, None] * SW + ix0[None, :]
    p11 = iy1[:, None] * SW + ix1[None, :]

    mask = mask_ptr + b.to(tl.int64) * MASK_STRIDE
    if CHANNELS == 4:  # the face's own alpha scales the mask, before resizing as in the reference
        m = _lerp2_product(mask, mouth_ptr + (b * 4 + 3).to(tl.int64) * (SH * SW), p00, p01, p10, p11, wy, wx, live)
    else:
        m = _lerp2(mask, p00, p01, p10, p11, wy, wx, live)
    pix = (((b * H + y1 + r)[:, None]).to(tl.int64) * W + (x1 + c)[None, :]) * 3
    for ch in tl.static_range(3):
        plane = mouth_ptr + (b * CHANNELS + ch).to(tl.int64) * (SH * SW)
        mouth = _lerp2(plane, p00, p01, p10, p11, wy, wx, live) * 255.0
        f = tl.load(out_ptr + pix + ch, mask=live, other=0).to(tl.float32)
        v = tl.minimum(tl.maximum(m * (mouth - f) + f, 0.0), 255.0) + 0.5
        tl.store(out_ptr + pix + ch, v.to(tl.uint8), mask=live)


@triton.jit
def _lerp2(ptr, p00, p01, p10, p11, wy, wx, live):
    v00 = tl.load(ptr + p00, mask=live, other=0.0).to(tl.float32)
    v01 = tl.load(ptr + p01, mask=live, other=0.0).to(tl.float32)
    v10 = tl.load(ptr + p10, mask=live, other=0.0).to(tl.float32)
    v11 = tl.load(ptr + p11, mask=live, other=0.0).to(tl.float32)
    top = v00 + (v01 - v00) * wx
    bot = v10 + (v11 - v10) * wx
    return top + (bot - top) * wy


@triton.jit
def _lerp2_product(ptr_a, ptr_b, p00, p01, p10, p11, wy, wx, live):
    v00 = tl.load(ptr_a + p00, mask=live, other=0.0).to(tl.float32) * tl.load(ptr_b + p00, mask=live, other=0.0).to(tl.float32)
    v01 = tl.load(ptr_a + p01, mask=live, other=0.0).to(tl.float32) * tl.load(ptr_b + p01, mask=live, other=0.0).to(tl.float32)
    v10 = tl.load(ptr_a + p10, mask=live, other=0.0).to(tl.float32) * tl.load(ptr_b + p10, mask=live, other=0.0).to(tl.float32)
    v11 = tl.load(ptr_a + p11, mask=live, other=0.0).to(tl.float32) * tl.load(ptr_b + p11, mask=live, other=0.0).to(tl.float32)
    top = v00 + (v01 - v00) * wx
    bot = v10 + (v11 - v10) * wx
    return top + (bot - top) * wy


def compose_triton(frames: torch.Tensor, mouths: torch.Tensor, boxes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    _check(frames, mouths, boxes, mask)
    out = frames.contiguous().clone()
    mouths = mouths.to(frames.device).contiguous()
    mask = mask.to(device=frames.device, dtype=torch.float32).contiguous()
    boxes = boxes.to(frames.device).contiguous()
    b, h, w, _ = frames.shape
    if b == 0:
        return out
    bh, bw = 32, 32
    grid = (b, triton.cdiv(h, bh), triton.cdiv(w, bw))
    _compose_kernel[grid](
        out, mouths, mask, boxes, h, w, 0 if mask.dim() == 2 else mask.shape[1] * mask.shape[2],
        SH=mouths.shape[2], SW=mouths.shape[3], CHANNELS=mouths.shape[1], BLOCK_H=bh, BLOCK_W=bw,
    )
    return out


def compose(frames: torch.Tensor, mouths: torch.Tensor, boxes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """New frames with `mouths` (B×3×S×S in [0,1]) blended into `boxes` (y1, y2, x1, x2) through `mask`
    (S×S for every frame, or B×S×S)."""
    if frames.is_cuda:
        return compose_triton(frames, mouths, boxes, mask)
    return compose_ref(frames, mouths, boxes, mask)
