import os

# Before any kernel module is decorated: triton.jit reads this then (see kernels/testing.py).
os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib

import numpy as np
import pytest
import torch
from triton.runtime.interpreter import InterpretedFunction

from kernels.testing import compile_kernels, interpreted_or_skip

# import_module, not `import kernels.prepare`: the package attribute `prepare` is the function.
MOD = "kernels.prepare"
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def kp():
    return interpreted_or_skip(MOD)


def _inputs(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    crops = torch.randint(0, 256, (n, 96, 96, 3), dtype=torch.uint8, generator=g)
    idx = torch.tensor([3, 0, 3, n - 1], dtype=torch.int64)
    return crops, idx


def _numpy_truth(crops, idx):
    x = crops.numpy()[idx.numpy()].transpose(0, 3, 1, 2).astype(np.float64) / 255.0
    masked = x.copy()
    masked[:, :, 48:] = 0.0
    return np.concatenate([masked, x], axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ref_matches_numpy(dtype):
    crops, idx = _inputs()
    out = importlib.import_module(MOD).prepare_ref(crops, idx, dtype)
    assert out.shape == (4, 6, 96, 96) and out.dtype == dtype and out.is_contiguous()
    truth = torch.from_numpy(_numpy_truth(crops, idx)).to(dtype)
    assert torch.equal(out, truth)


def test_kernel_is_interpreted(kp):
    assert isinstance(kp._prepare_kernel, InterpretedFunction)
    crops, idx = _inputs()
    assert kp.prepare_triton(crops, idx).device.type == "cpu"


@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_matches_ref(kp, dtype):
    crops, idx = _inputs()
    out = kp.prepare_triton(crops, idx, dtype)
    ref = kp.prepare_ref(crops, idx, dtype)
    assert out.shape == ref.shape and out.dtype == dtype and out.is_contiguous()
    if dtype == torch.bfloat16:
        # The interpreter truncates fp32→bf16 where the GPU rounds to nearest: ≤ 1 bf16 ulp.
        torch.testing.assert_close(out, ref, rtol=2**-7, atol=0)
    else:
        assert torch.equal(out, ref)


def test_dispatch_cpu_uses_ref():
    crops, idx = _inputs()
    mod = importlib.import_module(MOD)
    assert torch.equal(mod.prepare(crops, idx, torch.float16), mod.prepare_ref(crops, idx, torch.float16))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_compiled_matches_ref(monkeypatch, dtype):
    mod = importlib.import_module(MOD)
    compile_kernels(mod, monkeypatch)
    crops, _ = _inputs(n=40)
    idx = torch.tensor([39, 0, 7, 7])
    out = mod.prepare(crops.cuda(), idx.cuda(), dtype)
    assert out.is_cuda
    # div_rn and round-to-nearest casts: bit-exact with the CPU reference.
    assert torch.equal(out.cpu(), mod.prepare_ref(crops, idx, dtype))
