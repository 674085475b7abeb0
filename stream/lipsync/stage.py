"""A render's lip-sync stage: each batch of frames goes to the process's shared worker as one job."""
from __future__ import annotations

import time
from concurrent.futures import Future

import torch

from ..frames import FrameBatch
from ..stage import Stage
from .worker import Job


class LipSyncStage(Stage):
    name = "lipsync"

    def __init__(self, worker, face):
        """`face`: the worker's model's preparation of the avatar (`LipSyncModel.prepare`)."""
        self.worker, self.face = worker, face
        self.device = worker.device
        self.engine = worker.describe()

    def warmup(self) -> None:
        if self.device.type == "cuda":  # Triton compiles a model's gather kernel on its first call
            self.worker.model.gather(self.face, torch.zeros(1, dtype=torch.long, device=self.device))

    def process(self, item: FrameBatch, emit) -> None:
        result: Future = Future()
        self.worker.submit(Job(item.features.to(self.device), self.face, item.avatar_idx, time.perf_counter(),
                               lambda faces, error: result.set_exception(error) if error else result.set_result(faces)))
        item.features, item.faces = None, result.result()
        emit(item)
