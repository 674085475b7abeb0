"""SyncNet (Chung & Zisserman 2016), the network of syncnet_python's `syncnet_v2.model`, written
so that file's state dict loads unchanged: the same attribute names and Sequential indices (the
parameter-free ReLU and pooling layers keep their places), BGR 224×224 face crops in 0–255 and
13×20 MFCC windows in, raw 1024-d embeddings out (no normalisation).

The file is a plain state dict in torch's pre-zip (legacy) format; it is read with weights_only,
so nothing in it can run code. No weights are bundled or downloaded: `--syncnet FILE` names them.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import LipstreamError

log = logging.getLogger("lipstream")
# Channel widths of syncnet_v2.model (the v2 top layers are 512 wide; v1's were 2048).
AUDIO_WIDTHS = (64, 192, 384, 256, 256, 512)
LIP_WIDTHS = (96, 256, 256, 256, 256, 512)
FC_WIDTH, EMBED_WIDTH = 512, 1024
PUBLIC = (AUDIO_WIDTHS, LIP_WIDTHS, FC_WIDTH, EMBED_WIDTH)
_AUDIO_CONVS = (0, 4, 8, 11, 14, 18)  # Sequential indices of the convolutions (the same in both stacks)


def _audio_stack(w) -> nn.Sequential:
    """B×1×13×20 MFCC windows → B×w[5]×1×1."""
    return nn.Sequential(
        nn.Conv2d(1, w[0], 3, 1, 1), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True), nn.MaxPool2d(1, 1),
        nn.Conv2d(w[0], w[1], 3, 1, 1), nn.BatchNorm2d(w[1]), nn.ReLU(inplace=True), nn.MaxPool2d(3, (1, 2)),
        nn.Conv2d(w[1], w[2], 3, padding=1), nn.BatchNorm2d(w[2]), nn.ReLU(inplace=True),
        nn.Conv2d(w[2], w[3], 3, padding=1), nn.BatchNorm2d(w[3]), nn.ReLU(inplace=True),
        nn.Conv2d(w[3], w[4], 3, padding=1), nn.BatchNorm2d(w[4]), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(w[4], w[5], (5, 4), padding=0), nn.BatchNorm2d(w[5]), nn.ReLU(inplace=True),
    )


def _lip_stack(w) -> nn.Sequential:
    """B×3×5×224×224 (BGR, frames on dim 2) → B×w[5]×1×1×1; the first layer merges the 5 frames."""
    k3, p1 = (1, 3, 3), (0, 1, 1)
    return nn.Sequential(
        nn.Conv3d(3, w[0], (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(w[0]), nn.ReLU(inplace=True),
        nn.MaxPool3d(k3, (1, 2, 2)),
        nn.Conv3d(w[0], w[1], (1, 5, 5), (1, 2, 2), p1), nn.BatchNorm3d(w[1]), nn.ReLU(inplace=True),
        nn.MaxPool3d(k3, (1, 2, 2), p1),
        nn.Conv3d(w[1], w[2], k3, padding=p1), nn.BatchNorm3d(w[2]), nn.ReLU(inplace=True),
        nn.Conv3d(w[2], w[3], k3, padding=p1), nn.BatchNorm3d(w[3]), nn.ReLU(inplace=True),
        nn.Conv3d(w[3], w[4], k3, padding=p1), nn.BatchNorm3d(w[4]), nn.ReLU(inplace=True),
        nn.MaxPool3d(k3, (1, 2, 2)),
        nn.Conv3d(w[4], w[5], (1, 6, 6), padding=0), nn.BatchNorm3d(w[5]), nn.ReLU(inplace=True),
    )


def _head(width: int, fc: int, embed: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, fc), nn.BatchNorm1d(fc), nn.ReLU(), nn.Linear(fc, embed))


class SyncNet(nn.Module):
    """syncnet_python's `S`; other widths only for small test models."""

    def __init__(self, audio=AUDIO_WIDTHS, lip=LIP_WIDTHS, fc: int = FC_WIDTH, embed: int = EMBED_WIDTH):
        super().__init__()
        self.netcnnaud = _audio_stack(audio)
        self.netfcaud = _head(audio[5], fc, embed)
        self.netfclip = _head(lip[5], fc, embed)
        self.netcnnlip = _lip_stack(lip)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(path: str, device: str | torch.device = "cpu") -> SyncNet:
    """The state dict at `path` (syncnet_v2.model: legacy or zip format) in a SyncNet, in eval mode."""
    state = _read(path)
    widths = _widths(state, path)
    model = SyncNet(*widths)
    expected = model.state_dict()
    # Files older than torch 0.4.1 have no BatchNorm step counters; evaluation never reads them.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise LipstreamError(f"{path} is not a SyncNet state dict: {len(missing)} parameters missing, "
                             f"{len(unexpected)} unexpected (e.g. {(missing or unexpected)[0]!r})")
    wrong = [k for k in state if state[k].shape != expected[k].shape]
    if wrong:
        k = wrong[0]
        raise LipstreamError(f"{path} is not a SyncNet state dict: {k} has shape {tuple(state[k].shape)}, "
                             f"expected {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=False)
    if widths != PUBLIC:
        log.warning("%s is not syncnet_v2.model's size (widths %s): its LSE-D and LSE-C are not comparable "
                    "with published ones", os.path.basename(path), widths)
    return model.to(device).eval()


def _read(path: str) -> Mapping:
    if not os.path.isfile(path):
        raise LipstreamError(f"SyncNet weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file fails in many ways; one message for all
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
        raise LipstreamError(f"{path} is not a readable torch file (truncated or another format?): {reason}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LipstreamError(f"{path} is not a SyncNet state dict (syncnet_v2.model is a mapping of tensors)")
    return state


def _widths(state: Mapping, path: str):
    """The channel widths the file's weights have (the public file: PUBLIC)."""
    try:
        audio = tuple(int(state[f"netcnnaud.{i}.weight"].shape[0]) for i in _AUDIO_CONVS)
        lip = tuple(int(state[f"netcnnlip.{i}.weight"].shape[0]) for i in _AUDIO_CONVS)
        fc, embed = int(state["netfcaud.0.weight"].shape[0]), int(state["netfcaud.3.weight"].shape[0])
    except (KeyError, IndexError) as e:
        raise LipstreamError(f"{path} is not a SyncNet state dict: no {e.args[0]!r}" if isinstance(e, KeyError)
                             else f"{path} is not a SyncNet state dict: a weight has no shape") from None
    return audio, lip, fc, embed


def save_random_syncnet(path: str, seed: int = 0, widths=PUBLIC, legacy: bool = True) -> SyncNet:
    """A random SyncNet saved as syncnet_v2.model is (a state dict; `legacy`: torch's pre-zip format),
    for tests and benchmarks; BatchNorm statistics are random too, so a layer out of place shows."""
    torch.manual_seed(seed)
    model = SyncNet(*widths)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    save_syncnet(model, path, legacy)
    return model.eval()


def save_syncnet(model: SyncNet, path: str, legacy: bool = True) -> None:
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=not legacy)
