"""The clock stage: PCM in, batches of frames out, each with its mel window and its audio.

Frame i shows audio samples [i·sr/fps, (i+1)·sr/fps) and gets the 16 mel columns that
`Clock.mel_start` gives (from frame i−1, as Wav2Lip was trained); at the end of the speech the last
full window is reused and the audio is padded with silence to the frame boundary, so video and
audio end together.
"""
from __future__ import annotations

import numpy as np
import torch

from .clock import MEL_WINDOW, Clock
from .frames import FrameBatch, PcmChunk
from .mel import SAMPLE_RATE, MelStream
from .pipeline import Stage
from .resample import StreamResampler

OUT_RATE = 48_000


class Progress:
    """Shared counters for a progress display; `total` is known once the speech has ended."""

    def __init__(self):
        self.done = 0
        self.total: int | None = None
        self.speech_samples = 0
        self.sample_rate = 0
        self.first_frame_at: float | None = None  # perf_counter() when the sink got its first frame


class FrameScheduler(Stage):
    name = "schedule"
    engine = "torch mel"

    def __init__(self, fps: int, avatar, device: torch.device, batch_size: int, progress: Progress):
        self.fps, self.avatar, self.device, self.batch_size, self.progress = fps, avatar, device, batch_size, progress
        self.clock: Clock | None = None
        self._mel = MelStream(device)
        self._cols = torch.zeros(80, 0, device=device)
        self._col0 = 0  # mel column index of _cols[:, 0]
        self._audio = np.zeros(0, np.float32)
        self._audio0 = 0  # 48 kHz sample index of _audio[0]
        self._next = 0  # next frame to emit
        # Batches start small and double up to batch_size: the first frame leaves after a couple
        # of frames of speech, the rest go in the batches the model runs fastest.
        self._limit = min(2, batch_size)
        self._n_src = 0

    def _start(self, rate: int) -> None:
        self.clock = Clock(rate, self.fps)
        self._r16 = StreamResampler(rate, SAMPLE_RATE, self.device)
        self._r48 = StreamResampler(rate, OUT_RATE, "cpu")
        self.progress.sample_rate = rate

    def process(self, item: PcmChunk, emit) -> None:
        if self.clock is None:
            self._start(item.sample_rate)
        elif item.sample_rate != self.clock.sample_rate:
            raise ValueError(f"sample rate changed mid-stream ({self.clock.sample_rate} → {item.sample_rate})")
        pcm = torch.from_numpy(np.ascontiguousarray(item.samples, dtype=np.float32))
        self._n_src += len(pcm)
        self.progress.speech_samples = self._n_src
        self._add(self._mel.push(self._r16.push(pcm)), self._r48.push(pcm))
        self._emit_ready(emit, final=False)

    def finish(self, emit) -> None:
        if self.clock is None:
            return
        tail = torch.cat([self._mel.push(self._r16.finish()), self._mel.finish()], dim=1)
        self._add(tail, self._r48.finish())
        self.progress.total = self.clock.frames_for(self._n_src)
        self._emit_ready(emit, final=True)

    def _add(self, cols: torch.Tensor, audio: torch.Tensor) -> None:
        self._cols = torch.cat([self._cols, cols], dim=1)
        self._audio = np.concatenate([self._audio, audio.numpy()])

    def _ready(self, i: int) -> bool:
        have_cols = self._col0 + self._cols.shape[1]
        have_audio = self._audio0 + len(self._audio)
        return self.clock.mel_start(i) + MEL_WINDOW <= have_cols and self.clock.frame_start(i + 1, OUT_RATE) <= have_audio

    def _emit_ready(self, emit, final: bool) -> None:
        total = self.clock.frames_for(self._n_src)
        while True:
            stop = self._next
            while stop < total and stop - self._next < self._limit and (final or self._ready(stop)):
                stop += 1
            if stop == self._next or (not final and stop - self._next < self._limit):
                return
            emit(self._batch(self._next, stop, final))
            self._next = stop
            self._limit = min(2 * self._limit, self.batch_size)

    def _batch(self, a: int, b: int, final: bool) -> FrameBatch:
        n_cols = self._col0 + self._cols.shape[1]
        if final and n_cols < MEL_WINDOW:  # under 0.2 s of speech: pad with silence (−4 is the floor)
            pad = torch.full((80, MEL_WINDOW - n_cols), -4.0, device=self.device)
            self._cols, n_cols = torch.cat([self._cols, pad], dim=1), MEL_WINDOW
        starts = [min(self.clock.mel_start(i), n_cols - MEL_WINDOW) - self._col0 for i in range(a, b)]
        mel = torch.stack([self._cols[:, s : s + MEL_WINDOW] for s in starts]).unsqueeze(1)
        lo, hi = self.clock.frame_start(a, OUT_RATE) - self._audio0, self.clock.frame_start(b, OUT_RATE) - self._audio0
        audio = self._audio[lo:hi]
        if len(audio) < hi - lo:
            audio = np.concatenate([audio, np.zeros(hi - lo - len(audio), np.float32)])
        # Forget what no later frame needs (the last window is kept for reuse at the end).
        keep_col = min(self.clock.mel_start(b), n_cols - MEL_WINDOW) - self._col0
        if keep_col > 0:
            self._cols, self._col0 = self._cols[:, keep_col:], self._col0 + keep_col
        self._audio, self._audio0 = self._audio[hi:], self._audio0 + hi
        idx = self.avatar.frame_index(torch.arange(a, b, device=self.device))
        return FrameBatch(start=a, count=b - a, audio=audio, avatar_idx=idx, mel=mel)
