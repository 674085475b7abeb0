"""Load a public Wav2Lip checkpoint (torch.save dict with `state_dict`) into `Wav2Lip`."""
from __future__ import annotations

import logging
import os

import torch

from ...device import resolve_device
from ...errors import LipstreamError
from .net import Wav2Lip

log = logging.getLogger("lipstream")
UNTRAINED_STEPS = 1000  # the public checkpoints were saved after far more steps than this


def _read(path: str) -> dict:
    if not os.path.isfile(path):
        raise LipstreamError(f"Wav2Lip checkpoint not found: {path}")
    try:
        # weights_only: the public files hold tensors, dicts and ints only; anything else is refused.
        # mmap: two thirds of the public file is optimizer state, which is then never read (0.6 → 0.2 s).
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):  # only the pre-zip (legacy) format cannot be mapped
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways; all mean the same to the user
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:100]
        raise LipstreamError(f"{path} is not a readable torch checkpoint (truncated or another format?): {reason}") from None


def wav2lip_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The checkpoint's parameters with any `module.` (DataParallel) prefix stripped."""
    ckpt = _read(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LipstreamError(f"{path} is not a Wav2Lip checkpoint: no `state_dict` of tensors")
    steps = ckpt.get("global_step") if isinstance(ckpt, dict) else None
    if isinstance(steps, int) and steps < UNTRAINED_STEPS:
        log.warning("%s was saved after %d training step(s): an untrained Wav2Lip gives a flat, grey mouth "
                    "(the public wav2lip.pth / wav2lip_gan.pth are the trained ones)", os.path.basename(path), steps)
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_wav2lip(path: str, device: str | torch.device = "auto") -> Wav2Lip:
    """The public checkpoint at `path`, on `device`, in eval mode."""
    state = wav2lip_state_dict(path)
    with torch.device("meta"):  # no random initialisation of 36 M parameters that are replaced anyway
        model = Wav2Lip()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise LipstreamError(
            f"{path} is not a Wav2Lip checkpoint: {len(missing)} parameters missing, "
            f"{len(unexpected)} unexpected (e.g. {example!r})"
        )
    wrong = [k for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        k = wrong[0]
        raise LipstreamError(
            f"{path} is not a Wav2Lip checkpoint: {k} has shape {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}"
        )
    model.load_state_dict(state, assign=True)
    return model.to(resolve_device(device)).eval()


def save_random_wav2lip(path: str, seed: int = 0, prefix: str = "", responsive: bool = False) -> None:
    """A random-weight Wav2Lip in the public training script's format, for tests and benchmarks.

    BatchNorm statistics are randomised too, so a wrong layout or a bad fold shows in the outputs.
    With `responsive` they are measured on random inputs instead: random statistics leave a mouth
    that ignores the audio (0.0002 levels between two mel windows), measured ones one that follows
    it (tens of levels), for tests that check which window reached which frame.
    """
    torch.manual_seed(seed)
    model = Wav2Lip()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                if responsive:
                    m.momentum = None  # a plain average over the batches below
                    m.reset_running_stats()
        if responsive:
            model.train()
            for _ in range(2):
                model(torch.rand(8, 1, 80, 16) * 8 - 4, torch.rand(8, 6, 96, 96))
            model.eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "optimizer": optimizer.state_dict(), "global_step": 1, "global_epoch": 0}, path)
