"""What a live session yields: a `Frame` per tick and a `SegmentEnd` after each utterance; and the
PCM it accepts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import LipstreamError

if TYPE_CHECKING:
    import torch

PCM_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)


@dataclass(frozen=True, eq=False)
class Frame:
    """One tick: a video frame and exactly sample_rate / fps samples of the audio that goes with it."""

    index: int  # ticks since the session opened
    pts: int  # first audio sample of the tick on the session's clock (seconds: pts / sample_rate)
    image: torch.Tensor  # H×W×3 uint8 BGR on the session's device; read-only (idle frames share the avatar's)
    audio: np.ndarray  # float32 mono at sample_rate; zeros when idle
    sample_rate: int
    segment: int | None = None  # the utterance being spoken, None when idle
    error: str | None = None  # on the first frame of a failed lip-sync batch: why its frames show the idle face
    matte: torch.Tensor | None = None  # H×W uint8 on the device (255 opaque): the avatar's own, where it has one

    @property
    def speaking(self) -> bool:
        return self.segment is not None

    @property
    def time(self) -> float:
        return self.pts / self.sample_rate

    def bgr(self) -> np.ndarray:
        return self.image.cpu().numpy()

    def rgb(self) -> np.ndarray:
        return self.image.flip(-1).cpu().numpy()

    def rgba(self) -> np.ndarray:
        """H×W×4 uint8 RGBA on the host: the matte as alpha (opaque where the avatar has none)."""
        import torch

        matte = self.matte if self.matte is not None else torch.full(self.image.shape[:2], 255, dtype=torch.uint8,
                                                                     device=self.image.device)
        return torch.cat([self.image.flip(-1), matte.unsqueeze(-1)], -1).cpu().numpy()

    def pcm16(self) -> bytes:
        return (np.clip(self.audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


@dataclass(frozen=True)
class SegmentEnd:
    """An utterance is over: every `say` and every `push_audio` … `end_segment` ends exactly once, in order."""

    segment: int
    playback_position: float  # seconds of the utterance's audio that were yielded
    interrupted: bool
    error: str | None = None  # why it ended early when its speech synthesis failed (then interrupted too)


def as_float32(pcm) -> np.ndarray:
    """int16 bytes, or an int16 / float array, as float32 mono."""
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        data = bytes(pcm)
        if len(data) % 2:
            raise LipstreamError(f"int16 PCM has an odd number of bytes ({len(data)})")
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    a = np.asarray(pcm)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise LipstreamError(f"PCM must be mono (one channel), not an array of shape {a.shape}")
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if a.dtype.kind == "f":
        return a.astype(np.float32, copy=False)
    raise LipstreamError(f"PCM must be int16 bytes or an int16 / float32 array, not {a.dtype}")
