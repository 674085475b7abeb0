"""The typed items that flow one way through the pipeline."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the microphone's checks import this before torch is needed (1.5 s)
    import torch


@dataclass
class TextChunk:
    text: str


@dataclass
class PcmChunk:
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int


@dataclass
class FrameBatch:
    """Consecutive output frames [start, start + count) and the audio they cover; stages fill the rest."""

    start: int
    count: int
    audio: np.ndarray  # 48 kHz float32 mono, exactly count · 48000 / fps samples
    avatar_idx: torch.Tensor | None = None  # avatar frame shown by each output frame
    features: torch.Tensor | None = None  # count × the lip-sync model's feature shape (Wav2Lip: 1×80×16)
    faces: torch.Tensor | None = None  # count×3×S×S painted faces, BGR in [0, 1]
    frames: torch.Tensor | None = None  # count×H×W×3 uint8 BGR
    mattes: torch.Tensor | None = None  # count×H×W uint8: the avatar's own matte (never the model's), where it has one
    packets: list = field(default_factory=list)  # encoded video packets
    audio_packets: list = field(default_factory=list)  # encoded audio packets (AAC, for a file)
