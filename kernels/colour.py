"""BGR → YUV 4:2:0 (NV12 / I420), limited range, for the video encoders."""

import torch
import triton
import triton.language as tl

_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def _coeffs(matrix: str) -> tuple[float, ...]:
    """(B, G, R) weights of Y, U, V for 8-bit input and limited-range 8-bit output."""
    if matrix not in _KR_KB:
        raise ValueError(f"matrix must be one of {sorted(_KR_KB)}, got {matrix!r}")
    kr, kb = _KR_KB[matrix]
    kg = 1.0 - kr - kb
    ys, cs = 219.0 / 255.0, 224.0 / 255.0
    us, vs = cs / (2.0 * (1.0 - kb)), cs / (2.0 * (1.0 - kr))
    return (
        ys * kb, ys * kg, ys * kr,
        us * (1.0 - kb), -us * kg, -us * kr,
        -vs * kb, -vs * kg, vs * (1.0 - kr),
    )


def _check(frames):
    assert frames.dtype == torch.uint8 and frames.dim() == 4 and frames.shape[3] == 3, frames.shape
    assert frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0, "H and W must be even"


def _to_u8(v: torch.Tensor) -> torch.Tensor:
    # Round half up: +0.5 then truncation, exactly as the kernel's float→uint8 cast does.
    return (v + 0.5).clamp_(0.0, 255.0).to(torch.uint8)


def _yuv420_ref(frames: torch.Tensor, matrix: str, nv12: bool) -> torch.Tensor:
    _check(frames)
    yb, yg, yr, ub, ug, ur, vb, vg, vr = _coeffs(matrix)
    n, h, w, _ = frames.shape
    f = frames.float()
    b, g, r = f.unbind(-1)
    y = _to_u8(b * yb + g * yg + r * yr + 16.0)
    # 2×2 box average of BGR before the matrix; the matrix is linear so this equals averaging U and V.
    q = f.view(n, h // 2, 2, w // 2, 2, 3)
    q = (q[:, :, 0, :, 0] + q[:, :, 0, :, 1] + q[:, :, 1, :, 0] + q[:, :, 1, :, 1]) * 0.25
    b, g, r = q.unbind(-1)
    u = _to_u8(b * ub + g * ug + r * ur + 128.0)
    v = _to_u8(b * vb + g * vg + r * vr + 128.0)
    out = torch.empty((n, h * 3 // 2, w), dtype=torch.uint8, device=frames.device)
    out[:, :h] = y
    if nv12:
        out[:, h:] = torch.stack([u, v], dim=-1).view(n, h // 2, w)
    else:
        flat = out.view(n, -1)
        flat[:, h * w : h * w * 5 // 4] = u.reshape(n, -1)
        flat[:, h * w * 5 // 4 :] = v.reshape(n, -1)
    return out


def bgr_to_nv12_ref(frames: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    return _yuv420_ref(frames, matrix, nv12=True)


def bgr_to_i420_ref(frames: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    return _yuv420_ref(frames, matrix, nv12=False)


@triton.jit
def _yuv420_kernel(
    src_ptr, dst_ptr, H, W,
    yb, yg, yr, ub, ug, ur, vb, vg, vr,
    NV12: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    # Each lane owns one 2×2 pixel block: four Y samples and one U/V pair.
    n = tl.program_id(0).to(tl.int64)
    i = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    j = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)
    hh = H // 2
    hw = W // 2
    live = (i < hh)[:, None] & (j < hw)[None, :]
    src = src_ptr + n * H * W * 3
    dst = dst_ptr + n * H * W * 3 // 2
    sb = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)
    sg = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)
    sr = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)
    for dy in tl.static_range(2):
        for dx in tl.static_range(2):
            pix = (2 * i + dy)[:, None] * W + (2 * j + dx)[None, :]
            b = tl.load(src + pix * 3 + 0, mask=live, other=0).to(tl.float32)
            g = tl.load(src + pix * 3 + 1, mask=live, other=0).to(tl.float32)
            r = tl.load(src + pix * 3 + 2, mask=live, other=0).to(tl.float32)
            y = tl.minimum(tl.maximum(b * yb + g * yg + r * yr + 16.0 + 0.5, 0.0), 255.0)
            tl.store(dst + pix, y.to(tl.uint8), mask=live)
            sb += b
            sg += g
            sr += r
    # Sums of four 8-bit values are exact in fp32, so summation order cannot differ from the reference.
    b = sb * 0.25
    g = sg * 0.25
    r = sr * 0.25
    u = tl.minimum(tl.maximum(b * ub + g * ug + r * ur + 128.0 + 0.5, 0.0), 255.0).to(tl.uint8)
    v = tl.minimum(tl.maximum(b * vb + g * vg + r * vr + 128.0 + 0.5, 0.0), 255.0).to(tl.uint8)
    chroma = dst + H * W
    if NV12:
        uv = i[:, None] * W + 2 * j[None, :]
        tl.store(chroma + uv, u, mask=live)
        tl.store(chroma + uv + 1, v, mask=live)
    else:
        p = i[:, None] * hw + j[None, :]
        tl.store(chroma + p, u, mask=live)
        tl.store(chroma + hh * hw + p, v, mask=live)


def _yuv420_triton(frames: torch.Tensor, matrix: str, nv12: bool) -> torch.Tensor:
    _check(frames)
    coeffs = _coeffs(matrix)
    frames = frames.contiguous()
    n, h, w, _ = frames.shape
    out = torch.empty((n, h * 3 // 2, w), dtype=torch.uint8, device=frames.device)
    if out.numel() == 0:
        return out
    bh, bw = 16, 32
    grid = (n, triton.cdiv(h // 2, bh), triton.cdiv(w // 2, bw))
    _yuv420_kernel[grid](frames, out, h, w, *coeffs, NV12=nv12, BLOCK_H=bh, BLOCK_W=bw)
    return out


def bgr_to_nv12_triton(frames: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    return _yuv420_triton(frames, matrix, nv12=True)


def bgr_to_i420_triton(frames: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    return _yuv420_triton(frames, matrix, nv12=False)


def bgr_to_nv12(frames: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    """B×H×W×3 BGR uint8 → B×(3H/2)×W NV12 (Y plane, then interleaved UV), limited range."""
    if frames.is_cuda:
        return bgr_to_nv12_triton(frames, matrix)
    return bgr_to_nv12_ref(frames, matrix)


def bgr_to_i420(frames: torch.Tensor, matrix: str = "bt601") -> torch.Tensor:
    """B×H×W×3 BGR uint8 → B×(3H/2)×W I420 / yuv420p (Y, U, V planes back to back), limited range."""
    if frames.is_cuda:
        return bgr_to_i420_triton(frames, matrix)
    return bgr_to_i420_ref(frames, matrix)
