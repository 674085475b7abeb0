import os

# Before any kernel module is decorated: triton.jit reads this then (see kernels/testing.py).
os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib

import cv2
import numpy as np
import pytest
import torch
from triton.runtime.interpreter import InterpretedFunction

from kernels.testing import compile_kernels, interpreted_or_skip

# import_module, not `import kernels.compose`: the package attribute `compose` is the function.
MOD = "kernels.compose"
H, W = 160, 176
# (y1, y2, x1, x2): identity, downscale, upscale, and non-square both ways, one at the frame corner.
BOXES = [(10, 106, 20, 116), (0, 40, 0, 56), (5, 155, 30, 150), (100, 160, 40, 170), (20, 130, 120, 176)]


@pytest.fixture(scope="module")
def kc():
    return interpreted_or_skip(MOD)


def _inputs(seed=0, mouth_dtype=torch.float32, size=96, per_frame=False, alpha=False):
    g = torch.Generator().manual_seed(seed)
    b = len(BOXES)
    frames = torch.randint(0, 256, (b, H, W, 3), dtype=torch.uint8, generator=g)
    mouths_u8 = torch.randint(0, 256, (b, size, size, 3), dtype=torch.uint8, generator=g)
    mouths = (mouths_u8.permute(0, 3, 1, 2).float() / 255.0).to(mouth_dtype)
    if alpha:
        mouths = torch.cat([mouths, torch.rand(b, 1, size, size, generator=g).to(mouth_dtype)], dim=1)
    mask = torch.rand(*((b,) if per_frame else ()), size, size, generator=g)
    return frames, mouths_u8, mouths, torch.tensor(BOXES, dtype=torch.int32), mask


def _outside(boxes):
    keep = torch.ones(len(boxes), H, W, 3, dtype=torch.bool)
    for i, (y1, y2, x1, x2) in enumerate(boxes):
        keep[i, y1:y2, x1:x2] = False
    return keep


def _feather(border=2, ramp=16):
    """Smooth mask: 0 on an outer ring of `border` px, smoothstep up to 1 over `ramp` px."""
    d = torch.arange(96, dtype=torch.float32)
    edge = torch.minimum(d, 95 - d)
    t = ((edge - border + 1) / ramp).clamp(0, 1)
    s = t * t * (3 - 2 * t)
    return s[:, None] * s[None, :]


def test_kernel_is_interpreted(kc):
    assert isinstance(kc._compose_kernel, InterpretedFunction)
    assert isinstance(kc._lerp2, InterpretedFunction)


@pytest.mark.parametrize("mouth_dtype", [torch.float32, torch.bfloat16])
# Wav2Lip's shared feather; MuseTalk's parsing masks; the procedural face's alpha
@pytest.mark.parametrize("size, per_frame, alpha", [(96, False, False), (256, True, False), (128, False, True)])
def test_triton_matches_ref(kc, mouth_dtype, size, per_frame, alpha):
    frames, _, mouths, boxes, mask = _inputs(mouth_dtype=mouth_dtype, size=size, per_frame=per_frame, alpha=alpha)
    out = kc.compose_triton(frames, mouths, boxes, mask)
    ref = kc.compose_ref(frames, mouths, boxes, mask)
    assert out.device.type == "cpu" and out.dtype == torch.uint8 and out.shape == frames.shape
    diff = (out.int() - ref.int()).abs()
    # Different float evaluation order flips a rare exact .5 tie.
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    keep = _outside(BOXES)
    assert torch.equal(out[keep], frames[keep]) and torch.equal(ref[keep], frames[keep])


@pytest.mark.parametrize("impl", ["ref", "triton"])
def test_mask_one_gives_cv2_resized_mouth(kc, impl):
    frames, mouths_u8, mouths, boxes, _ = _inputs(seed=1)
    out = getattr(kc, f"compose_{impl}")(frames, mouths, boxes, torch.ones(96, 96))
    for i, (y1, y2, x1, x2) in enumerate(BOXES):
        want = cv2.resize(mouths_u8[i].numpy(), (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
        got = out[i, y1:y2, x1:x2].numpy()
        # cv2 uses 11-bit fixed-point weights for uint8: one level apart at most.
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, (impl, y2 - y1, x2 - x1)
    keep = _outside(BOXES)
    assert torch.equal(out[keep], frames[keep])


@pytest.mark.parametrize("impl", ["ref", "triton"])
def test_feather_has_no_seam(kc, impl):
    # A smooth bright frame and a black mouth: a hard paste would jump by ~200 levels at the edge.
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    base = (180 + 20 * torch.sin(yy / 17.0) * torch.cos(xx / 23.0)).round().to(torch.uint8)
    frames = base[None, :, :, None].expand(len(BOXES), H, W, 3).contiguous()
    mouths = torch.zeros(len(BOXES), 3, 96, 96)
    out = getattr(kc, f"compose_{impl}")(frames, mouths, torch.tensor(BOXES), _feather())
    for i, (y1, y2, x1, x2) in enumerate(BOXES):
        o, f = out[i, :, :, 0].int(), frames[i, :, :, 0].int()
        ring = torch.cat([o[y1, x1:x2] - f[y1, x1:x2], o[y2 - 1, x1:x2] - f[y2 - 1, x1:x2],
                          o[y1:y2, x1] - f[y1:y2, x1], o[y1:y2, x2 - 1] - f[y1:y2, x2 - 1]])
        assert ring.abs().max() <= 1, (impl, i)
        # Inside the box the blend ramps: no neighbour-to-neighbour step anywhere near a hard edge.
        box = o[y1:y2, x1:x2]
        steps = max((box[1:] - box[:-1]).abs().max().item(), (box[:, 1:] - box[:, :-1]).abs().max().item())
        assert steps < 60, (impl, i, steps)


def test_a_faces_alpha_scales_the_mask(kc):
    frames, _, mouths, boxes, mask = _inputs(seed=4)
    for impl in ("ref", "triton"):
        compose = getattr(kc, f"compose_{impl}")
        opaque = compose(frames, torch.cat([mouths, torch.ones_like(mouths[:, :1])], dim=1), boxes, mask)
        assert torch.equal(opaque, compose(frames, mouths, boxes, mask)), impl
        assert torch.equal(compose(frames, torch.cat([mouths, torch.zeros_like(mouths[:, :1])], dim=1), boxes, mask),
                           frames), impl  # alpha 0: the frame's own pixels, exactly


def test_each_frame_gets_its_own_mask(kc):
    frames, _, mouths, boxes, _ = _inputs(seed=3)
    masks = torch.zeros(len(BOXES), 96, 96)
    masks[1] = 1.0  # only the second frame is painted
    for impl in ("ref", "triton"):
        out = getattr(kc, f"compose_{impl}")(frames, mouths, boxes, masks)
        assert torch.equal(out[0], frames[0]) and torch.equal(out[2:], frames[2:]), impl
        assert not torch.equal(out[1], frames[1]), impl


@pytest.mark.parametrize("bad, message", [
    ("mask", "the mask must be S×S or B×S×S on the faces' grid (96, 96), not (3, 96, 96)"),
    ("boxes", "boxes must be 5×4, not (4, 4)"),
    ("frames", "frames must be B×H×W×3 uint8, not (5, 160, 176, 3) torch.float32"),
])
def test_bad_inputs_are_value_errors(kc, bad, message):
    frames, _, mouths, boxes, mask = _inputs()
    args = {"frames": frames, "mouths": mouths, "boxes": boxes, "mask": mask}
    args[bad] = {"mask": torch.rand(3, 96, 96), "boxes": boxes[:4], "frames": frames.float()}[bad]
    for impl in ("ref", "triton"):
        with pytest.raises(ValueError) as e:
            getattr(kc, f"compose_{impl}")(**args)
        assert str(e.value) == message


def test_dispatch_cpu_uses_ref():
    frames, _, mouths, boxes, mask = _inputs()
    mod = importlib.import_module(MOD)
    assert torch.equal(mod.compose(frames, mouths, boxes, mask), mod.compose_ref(frames, mouths, boxes, mask))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mouth_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_compiled_matches_ref(monkeypatch, mouth_dtype):
    mod = importlib.import_module(MOD)
    compile_kernels(mod, monkeypatch)
    frames, _, mouths, boxes, mask = _inputs(seed=2, mouth_dtype=mouth_dtype)
    out = mod.compose(frames.cuda(), mouths.cuda(), boxes.cuda(), mask.cuda())
    assert out.is_cuda
    ref = mod.compose_ref(frames, mouths, boxes, mask)
    diff = (out.cpu().int() - ref.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    keep = _outside(BOXES)
    assert torch.equal(out.cpu()[keep], frames[keep])
