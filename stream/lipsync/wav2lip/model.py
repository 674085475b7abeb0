"""Wav2Lip behind the lip-sync contract: the mel window of each frame in, the 96×96 face out,
pasted through the shared feather mask."""
from __future__ import annotations

import os

import torch

from kernels import prepare

from ..contract import Face, LipSyncModel
from ..face96 import CROP, prepare_face96
from ..mel_windows import SHAPE, MelWindows
from .checkpoint import load_wav2lip
from .inference import InferenceWav2Lip


class Wav2LipModel(LipSyncModel):
    name = "wav2lip"
    face_size = CROP
    feature_shape = SHAPE

    def __init__(self, checkpoint: str, device: torch.device, precision: str = "auto", max_batch: int = 16):
        self.device, self.checkpoint, self.precision = device, checkpoint, precision
        # Loaded and folded on the CPU, so the GPU never holds two copies.
        self.model = InferenceWav2Lip(load_wav2lip(checkpoint, "cpu"), device, precision)
        self.model.warmup(max_batch)
        self.dtype = self.model.dtype

    def describe(self) -> str:
        return f"wav2lip {self.model.describe()}"

    def identity(self) -> tuple:
        return (self.name, os.path.realpath(self.checkpoint), str(self.device), self.precision)

    def features(self, fps: int, live: bool = False) -> MelWindows:
        return MelWindows(fps, self.device)  # the same live or not: a window needs 0.2 s of audio

    def prepare(self, avatar) -> Face:
        return prepare_face96(avatar, self.device)

    def gather(self, face: Face, idx: torch.Tensor) -> torch.Tensor:
        """B×6×96×96: the crops with their lower half zeroed, then whole (kernels.prepare)."""
        return prepare(face.inputs, idx, self.dtype)

    def __call__(self, features: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(features, inputs)
