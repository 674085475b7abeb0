"""Wav2Lip's audio features per frame (also the procedural mouth's): the 16-column window of the
normalised mel that `Clock.mel_start` gives frame i, from frame i − 1 on, as Wav2Lip was trained.

Columns are computed as the audio arrives (`MelStream`: a column is released once its window is
complete, equal to the whole signal's); a frame is ready once its window's columns are. At the end
of the utterance the last full window is reused, and an utterance under 0.2 s is padded with
silence (−4 is the floor).
"""
from __future__ import annotations

import threading

import torch

from ..audio.clock import MEL_WINDOW, Clock
from ..audio.mel import SAMPLE_RATE, MelStream
from .contract import FeatureStream

SHAPE = (1, 80, MEL_WINDOW)
UNLIMITED = 1 << 62  # after finish: every frame the clock asks for


class MelWindows(FeatureStream):
    def __init__(self, fps: int, device: torch.device):
        self.clock = Clock(SAMPLE_RATE, fps)
        self.device = device
        self._mel = MelStream(device)
        self._lock = threading.Lock()  # the pushing thread appends columns, the taking thread slices them
        self._cols = torch.zeros(80, 0, device=device)
        self._col0 = 0  # mel column index of _cols[:, 0]
        self._next = 0  # next frame to take
        self._final = False

    def push(self, wave_16k: torch.Tensor) -> None:
        self._add(self._mel.push(wave_16k), final=False)

    def finish(self) -> None:
        self._add(self._mel.finish(), final=True)

    def _add(self, cols: torch.Tensor, final: bool) -> None:
        with self._lock:
            self._cols = torch.cat([self._cols, cols], dim=1)
            self._final = final

    def ready(self) -> int:
        with self._lock:
            if self._final:
                return UNLIMITED
            have = self._col0 + self._cols.shape[1]
            n = 0
            while self.clock.mel_start(self._next + n) + MEL_WINDOW <= have:
                n += 1
            return n

    def take(self, n: int) -> torch.Tensor:
        with self._lock:
            a, b = self._next, self._next + n
            n_cols = self._col0 + self._cols.shape[1]
            if self._final and n_cols < MEL_WINDOW:  # under 0.2 s of speech: pad with silence
                pad = torch.full((80, MEL_WINDOW - n_cols), -4.0, device=self.device)
                self._cols, n_cols = torch.cat([self._cols, pad], dim=1), MEL_WINDOW
            starts = [min(self.clock.mel_start(i), n_cols - MEL_WINDOW) - self._col0 for i in range(a, b)]
            if starts and min(starts) < 0:
                raise ValueError(f"take({n}): frames from {a} were already taken")
            mel = torch.stack([self._cols[:, s : s + MEL_WINDOW] for s in starts]).unsqueeze(1)
            # Forget what no later frame needs (the last window is kept for reuse at the end).
            keep = min(self.clock.mel_start(b), n_cols - MEL_WINDOW) - self._col0
            if keep > 0:
                self._cols, self._col0 = self._cols[:, keep:], self._col0 + keep
            self._next = b
            return mel
