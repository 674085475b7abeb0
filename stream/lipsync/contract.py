"""The lip-sync contract: what a model declares, so that the clock, the shared worker, compose,
renders and live sessions work with any model and assume none.

A model says
- which audio features a frame needs (`features(fps, live)`: a stream that turns one utterance's
  16 kHz audio into per-frame feature tensors of `feature_shape`, as the audio arrives);
- how it prepares an avatar, once (`prepare(avatar)` → `Face`: the per-frame inputs it paints from,
  the box each generated face is pasted into, and the blend masks on the face's own grid);
- how it paints (`gather(face, idx)` picks the inputs of some avatar frames, `__call__(features,
  inputs)` returns B×3×S×S faces, BGR in [0, 1], S = `face_size`).
Compose pastes what a model returns with that model's boxes and masks. The registry beside the
models (`registry.py`) picks one by name; this module knows none of them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


class FeatureStream(ABC):
    """One utterance's audio features, frame by frame: `push` 16 kHz mono audio as it arrives (from
    one thread), `finish` at its end; `ready`/`take` may be called from another thread."""

    @abstractmethod
    def push(self, wave_16k: torch.Tensor) -> None:
        """More audio (1-D float32 at 16 kHz, on any device)."""

    @abstractmethod
    def finish(self) -> None:
        """No more audio: every frame the clock asks for becomes ready."""

    @abstractmethod
    def ready(self) -> int:
        """Frames from the first not yet taken whose features are complete (after `finish`: any number)."""

    @abstractmethod
    def take(self, n: int) -> torch.Tensor:
        """The next n frames' features, n × `feature_shape`, in order."""


@dataclass
class Face:
    """A model's preparation of one avatar, on the device, made once and shared by every user."""

    inputs: torch.Tensor  # per avatar frame: what the model paints from (e.g. crops, latents)
    boxes: torch.Tensor  # N×4 int64 paste boxes (top, bottom, left, right) in frame pixels, end exclusive
    masks: torch.Tensor  # 1×S×S (shared) or N×S×S float32 blend masks on the face's grid

    def mask(self, idx: torch.Tensor) -> torch.Tensor:
        """The blend mask of each of these avatar frames (S×S when all share one)."""
        return self.masks[0] if self.masks.shape[0] == 1 else self.masks.index_select(0, idx)


class LipSyncModel(ABC):
    name: str = "lipsync"
    device: torch.device
    dtype: torch.dtype = torch.float32  # of the faces it returns
    face_size: int  # S: faces are B×3×S×S
    feature_shape: tuple[int, ...]  # one frame's features

    @abstractmethod
    def features(self, fps: int, live: bool = False) -> FeatureStream:
        """A new stream for one utterance at `fps`. `live`: a session's, whose frames are due as the
        audio arrives (a model whose features look far ahead may then serve an approximation early)."""

    @abstractmethod
    def prepare(self, avatar) -> Face:
        """This model's preparation of `avatar` (a `stream.video.avatar.Avatar`), on the model's device."""

    @abstractmethod
    def gather(self, face: Face, idx: torch.Tensor) -> torch.Tensor:
        """The model inputs of avatar frames `idx`."""

    @abstractmethod
    def __call__(self, features: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """B × `feature_shape` features and B gathered inputs → B×3×S×S faces, BGR in [0, 1], in `dtype`."""

    def describe(self) -> str:
        return f"{self.name} {str(self.dtype).removeprefix('torch.')}"

    def warmup(self, max_batch: int) -> None:
        """One-off work (graph capture, compilation) before the first batch, off the clock."""

    def identity(self) -> tuple:
        """What makes two models the same for the process's worker and the avatar caches."""
        return (self.name, str(self.device))
