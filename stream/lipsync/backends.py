"""Lip-sync backends behind one call: `backend(mel B×1×80×16, faces B×6×96×96) → mouths B×3×96×96`."""
from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Protocol

import torch

from kernels import prepare

from ..frames import FrameBatch
from ..stage import Stage
from .checkpoint import load_wav2lip
from .inference import InferenceWav2Lip
from .procedural import ProceduralLipSync
from .worker import Job


class LipSyncBackend(Protocol):
    name: str
    device: torch.device
    dtype: torch.dtype

    def __call__(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor: ...


class Wav2LipBackend:
    name = "wav2lip"

    def __init__(self, checkpoint: str, device: torch.device, precision: str = "auto", max_batch: int = 16):
        self.device = device
        # Loaded and folded on the CPU, so the GPU never holds two copies.
        self.model = InferenceWav2Lip(load_wav2lip(checkpoint, "cpu"), device, precision)
        self.model.warmup(max_batch)
        self.dtype = self.model.dtype

    def describe(self) -> str:
        return f"wav2lip {self.model.describe()}"

    def __call__(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        return self.model(mel, faces)


def make_backend(checkpoint: str | None, device: torch.device, precision: str = "auto",
                 max_batch: int = 16, fps: int = 25) -> LipSyncBackend:
    """Wav2Lip when a checkpoint is configured, the procedural mouth otherwise."""
    if checkpoint:
        return Wav2LipBackend(checkpoint, device, precision, max_batch)
    return ProceduralLipSync(device, fps)


class LipSyncStage(Stage):
    """A render's lip-sync: each batch of frames goes to the process's shared worker as one job."""

    name = "lipsync"

    def __init__(self, worker, avatar):
        self.worker, self.avatar = worker, avatar
        self.device = worker.device
        self.engine = worker.describe()

    def warmup(self) -> None:
        if self.device.type == "cuda":  # Triton compiles `prepare` on its first call
            idx = torch.zeros(1, dtype=torch.long, device=self.device)
            prepare(self.avatar.crops, idx, self.worker.dtype)

    def process(self, item: FrameBatch, emit) -> None:
        result: Future = Future()
        self.worker.submit(Job(item.mel.to(self.device), self.avatar, item.avatar_idx, time.perf_counter(),
                               lambda mouths, error: result.set_exception(error) if error else result.set_result(mouths)))
        item.mouths = result.result()
        emit(item)
