import os

# Before any kernel module is decorated: triton.jit reads this then (see kernels/testing.py).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch
from triton.runtime.interpreter import InterpretedFunction

from kernels.testing import interpreted_or_skip

MOD = "kernels.background"
B, H, W = 3, 34, 50  # a pixel count that does not fill the last block


@pytest.fixture(scope="module")
def kb():
    return interpreted_or_skip(MOD)


def _inputs(seed=0, per_frame=False):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (B, H, W, 3), dtype=torch.uint8, generator=g)
    matte = torch.randint(0, 256, (B, H, W), dtype=torch.uint8, generator=g)
    matte[:, :5] = 0
    matte[:, -5:] = 255
    bg = torch.randint(0, 256, ((B,) if per_frame else ()) + (H, W, 3), dtype=torch.uint8, generator=g)
    return frames, matte, bg


def test_kernel_is_interpreted(kb):
    assert isinstance(kb._over_kernel, InterpretedFunction)


@pytest.mark.parametrize("per_frame", [False, True])  # an image or colour shared by the batch; a video's frames
def test_triton_matches_ref_exactly(kb, per_frame):
    frames, matte, bg = _inputs(per_frame=per_frame)
    out = kb.over_triton(frames, matte, bg)
    ref = kb.over_ref(frames, matte, bg)
    assert out.dtype == torch.uint8 and out.shape == frames.shape
    assert torch.equal(out, ref)


@pytest.mark.parametrize("impl", ["ref", "triton"])
def test_background_exact_where_matte_is_zero_and_avatar_where_one(kb, impl):
    frames, matte, bg = _inputs(seed=1, per_frame=True)
    out = getattr(kb, f"over_{impl}")(frames, matte, bg)
    assert torch.equal(out[:, :5], bg[:, :5]) and torch.equal(out[:, -5:], frames[:, -5:])
    # In between, the rounded mix of the two.
    m = matte.float().unsqueeze(-1) / 255
    want = m * frames.float() + (1 - m) * bg.float()
    assert (out.float() - want).abs().max() <= 0.5 + 1e-4


def test_stacked_alpha_puts_the_matte_below_as_grey(kb):
    frames, matte, _ = _inputs(seed=2)
    s = kb.stacked_alpha(frames, matte)
    assert s.shape == (B, 2 * H, W, 3)
    assert torch.equal(s[:, :H], frames) and all(torch.equal(s[:, H:, :, c], matte) for c in range(3))


def test_bad_shapes_are_refused(kb):
    frames, matte, bg = _inputs()
    with pytest.raises(ValueError, match="the background must be"):
        kb.over_ref(frames, matte, bg[:, :10])
    with pytest.raises(ValueError, match="the matte must be"):
        kb.over_triton(frames, matte[:, :, :3], bg)
