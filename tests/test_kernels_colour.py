import os

# Before any kernel module is decorated: triton.jit reads this then (see kernels/testing.py).
os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib

import av
import cv2
import numpy as np
import pytest
import torch
from triton.runtime.interpreter import InterpretedFunction

from kernels.testing import compile_kernels, interpreted_or_skip

MOD = "kernels.colour"
MATRICES = {"bt601": "itu601", "bt709": "itu709"}  # ours → PyAV/swscale colorspace name
LAYOUTS = {"i420": "yuv420p", "nv12": "nv12"}  # ours → FFmpeg pixel format
# H/2 odd (so the I420 U/V planes end mid-row) and W/2 not a multiple of the kernel tile.
H, W = 38, 70


@pytest.fixture(scope="module")
def kc():
    return interpreted_or_skip(MOD)


def _random(seed=0, b=2):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (b, H, W, 3), dtype=np.uint8)


def _smooth(seed=0, b=2):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (b, 4, 7, 3), dtype=np.uint8)
    up = [cv2.resize(c, (W, H), interpolation=cv2.INTER_CUBIC) for c in coarse]
    return np.stack([cv2.GaussianBlur(u, (0, 0), 3.0) for u in up])


def _ffmpeg(img, layout, matrix, interpolation=None):
    frame = av.VideoFrame.from_ndarray(img, format="bgr24")
    out = frame.reformat(
        format=LAYOUTS[layout], dst_colorspace=MATRICES[matrix], dst_color_range="MPEG",
        interpolation=interpolation,
    )
    return out.to_ndarray()


def test_kernel_is_interpreted(kc):
    assert isinstance(kc._yuv420_kernel, InterpretedFunction)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("matrix", MATRICES)
def test_triton_matches_ref(kc, layout, matrix):
    frames = torch.from_numpy(_random(seed=1))
    out = getattr(kc, f"bgr_to_{layout}_triton")(frames, matrix)
    ref = getattr(kc, f"bgr_to_{layout}_ref")(frames, matrix)
    assert out.device.type == "cpu" and out.shape == (2, H * 3 // 2, W) and out.dtype == torch.uint8
    assert torch.equal(out, ref)


# swscale on "area" filters 2×2 blocks like we do, so even pixel-random images agree to one level.
# With its default (bicubic) filter, bgr24→yuv420p still takes the unscaled 2×2-averaging path, but
# bgr24→nv12 goes through the scaler, whose wider chroma filter differs by up to ~25 levels on sharp
# edges: so the default-filter comparison is on smooth images only.
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("matrix", MATRICES)
@pytest.mark.parametrize("images,interpolation", [(_random, "AREA"), (_smooth, None)])
def test_ref_matches_ffmpeg(layout, matrix, images, interpolation):
    imgs = images(seed=2)
    ours = getattr(importlib.import_module(MOD), f"bgr_to_{layout}")(torch.from_numpy(imgs), matrix).numpy()
    for img, got in zip(imgs, ours):
        want = _ffmpeg(img, layout, matrix, interpolation)
        assert want.shape == got.shape
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_matrix_and_range_matter():
    # Guards the comparison above: the two matrices, and full vs limited range, really differ.
    img = _random(seed=3, b=1)
    ours = importlib.import_module(MOD).bgr_to_i420(torch.from_numpy(img), "bt601")[0].numpy().astype(int)
    assert np.abs(ours - _ffmpeg(img[0], "i420", "bt709")).max() > 10
    full = av.VideoFrame.from_ndarray(img[0], format="bgr24").reformat(
        format="yuv420p", dst_colorspace="itu601", dst_color_range="JPEG").to_ndarray()
    assert np.abs(ours - full).max() > 10
    with pytest.raises(ValueError):
        importlib.import_module(MOD).bgr_to_nv12(torch.from_numpy(img), "bt2020")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("matrix", MATRICES)
def test_cuda_compiled_matches_ref(monkeypatch, layout, matrix):
    mod = importlib.import_module(MOD)
    compile_kernels(mod, monkeypatch)
    frames = torch.from_numpy(_random(seed=4, b=3))
    out = getattr(mod, f"bgr_to_{layout}")(frames.cuda(), matrix)
    assert out.is_cuda
    ref = getattr(mod, f"bgr_to_{layout}_ref")(frames, matrix)
    # FMA contraction on the GPU can flip an exact .5 rounding tie.
    diff = (out.cpu().int() - ref.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
