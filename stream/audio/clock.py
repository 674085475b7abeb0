"""The one clock: every frame boundary and mel window derives from the audio sample count."""
from __future__ import annotations

from dataclasses import dataclass

MEL_FPS = 80  # mel columns per second: hop 200 at 16 kHz
MEL_WINDOW = 16  # columns per video frame window (0.2 s)
MEL_LEAD = 1  # frames of audio in a frame's window before the frame itself (see Clock.mel_start)


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
        """First mel column of frame i's 16-column window.

        Wav2Lip was trained with frame f paired to the window starting one frame earlier
        (wav2lip_train.py, get_segmented_mels: crop_audio_window(spec, (f + 1) − 2)); its inference
        script starts the window at frame f, so the mouth runs a frame (40 ms) ahead of the sound.
        We follow the training alignment; frame 0 starts at column 0.
        """
        return int(max(0, i - MEL_LEAD) * MEL_FPS / self.fps)
