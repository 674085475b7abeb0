"""The one clock: every frame boundary and mel window derives from the audio sample count."""
from __future__ import annotations

from dataclasses import dataclass

MEL_FPS = 80  # mel columns per second: hop 200 at 16 kHz
MEL_WINDOW = 16  # columns per video frame window (0.2 s)


@dataclass(frozen=True)
class Clock:
    sample_rate: int
    fps: int = 25

    def frames_for(self, n_samples: int) -> int:
        """Frames needed to show n_samples of audio: ceil(n · fps / sr), in exact integers."""
        return -(-n_samples * self.fps // self.sample_rate)

    def frame_start(self, i: int, rate: int | None = None) -> int:
        """First sample (at `rate`, default the clock's own) of video frame i."""
        return i * (rate or self.sample_rate) // self.fps

    def mel_start(self, i: int) -> int:
        return int(i * MEL_FPS / self.fps)
