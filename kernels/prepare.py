"""Wav2Lip model input: gather avatar face crops and stack masked + unmasked copies."""

import torch
import triton
import triton.language as tl


def prepare_ref(crops: torch.Tensor, idx: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """B×6×S×S `dtype` from N×S×S×3 uint8 crops: channels 0-2 lower half zeroed, 3-5 whole crop, /255."""
    x = crops.index_select(0, idx.to(crops.device)).permute(0, 3, 1, 2)
    # Divide in float32 and round to `dtype` once, so bf16/fp16 match the kernel exactly.
    x = x.to(torch.float32).div_(255.0)
    b, c, h, w = x.shape
    out = torch.empty((b, 2 * c, h, w), dtype=dtype, device=crops.device)
    out[:, c:] = x
    out[:, :c] = x
    out[:, :c, h // 2 :] = 0
    return out


@triton.jit
def _prepare_kernel(crops_ptr, idx_ptr, out_ptr, H: tl.constexpr, W: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    # One program covers BLOCK elements of the 3×H×W CHW image and writes them to both halves.
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    n = 3 * H * W
    live = offs < n
    c = offs // (H * W)
    hw = offs % (H * W)
    row = hw // W
    # int64: N crops × 27 KiB overflows int32 offsets beyond ~77k crops.
    src = tl.load(idx_ptr + b).to(tl.int64) * n + hw * 3 + c
    # div_rn, not `/` (approximate div.full.f32 on NVIDIA), to equal the reference's IEEE division.
    x = tl.math.div_rn(tl.load(crops_ptr + src, mask=live, other=0).to(tl.float32), 255.0)
    y = x.to(out_ptr.dtype.element_ty)
    base = out_ptr + b.to(tl.int64) * 2 * n
    tl.store(base + n + offs, y, mask=live)
    tl.store(base + offs, tl.where(row < H // 2, y, 0.0).to(out_ptr.dtype.element_ty), mask=live)


def prepare_triton(crops: torch.Tensor, idx: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    assert crops.dtype == torch.uint8 and crops.dim() == 4 and crops.shape[3] == 3, crops.shape
    crops = crops.contiguous()
    idx = idx.to(device=crops.device, dtype=torch.int64).contiguous()
    _, h, w, _ = crops.shape
    b = idx.numel()
    out = torch.empty((b, 6, h, w), dtype=dtype, device=crops.device)
    if b == 0:
        return out
    block = 1024
    grid = (b, triton.cdiv(3 * h * w, block))
    _prepare_kernel[grid](crops, idx, out, H=h, W=w, BLOCK=block)
    return out


def prepare(crops: torch.Tensor, idx: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Wav2Lip face input (B×6×96×96, values crop/255) for frames `idx` of the avatar's crops."""
    if crops.is_cuda:
        return prepare_triton(crops, idx, dtype)
    return prepare_ref(crops, idx, dtype)
