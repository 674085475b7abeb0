"""The clock: one utterance's PCM in, each video frame's mel window and audio out.

Frame i shows audio samples [i·sr/fps, (i+1)·sr/fps) and gets the 16 mel columns that
`Clock.mel_start` gives (from frame i−1, as Wav2Lip was trained); at the end of the speech the last
full window is reused and the audio is padded with silence to the frame boundary, so video and
audio end together. `SpeechClock` does this for any consumer (a render's `FrameScheduler`, a live
session's segment); `FrameScheduler` is the render's stage around it.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from ..frames import FrameBatch, PcmChunk
from ..stage import Stage
from .clock import MEL_WINDOW, Clock
from .mel import SAMPLE_RATE, MelStream
from .resample import StreamResampler

OUT_RATE = 48_000


class SpeechClock:
    """PCM of one utterance → frames, each a 1×80×16 mel window (on `device`) and its out-rate audio.

    `push` may run in one thread while another calls `ready`/`take`: the feature computation runs
    outside the lock, only the hand-over is guarded.
    """

    def __init__(self, sample_rate: int, fps: int, device: torch.device, out_rate: int = OUT_RATE):
        self.clock = Clock(sample_rate, fps)
        self.device, self.out_rate = device, out_rate
        self._r16 = StreamResampler(sample_rate, SAMPLE_RATE, device)
        self._rout = StreamResampler(sample_rate, out_rate, "cpu")
        self._mel = MelStream(device)
        self._lock = threading.Lock()
        self._cols = torch.zeros(80, 0, device=device)
        self._col0 = 0  # mel column index of _cols[:, 0]
        self._audio = np.zeros(0, np.float32)
        self._audio0 = 0  # out-rate sample index of _audio[0]
        self._ready_to = 0  # frames before this one have their window and audio
        self.next = 0  # next frame to take
        self.n_samples = 0  # source samples pushed
        self.final = False

    @property
    def sample_rate(self) -> int:
        return self.clock.sample_rate

    @property
    def total(self) -> int:
        """Frames the speech pushed so far needs (all of them once `final`)."""
        return self.clock.frames_for(self.n_samples)

    @property
    def out_samples(self) -> int:
        """Out-rate samples of real speech (the padding of the last frame excluded)."""
        return -(-self.n_samples * self.out_rate // self.sample_rate)

    @property
    def exhausted(self) -> bool:
        return self.final and self.next >= self.total

    def push(self, pcm: "np.ndarray | torch.Tensor") -> None:
        """Mono float32 PCM: a host array, or a tensor (a GPU engine's: resampled for the mel where it is)."""
        if isinstance(pcm, torch.Tensor):
            x = pcm.detach().reshape(-1).float()
        else:
            x = torch.from_numpy(np.ascontiguousarray(pcm, dtype=np.float32))
        cols, audio = self._mel.push(self._r16.push(x)), self._rout.push(x)
        self._add(cols, audio, len(x), final=False)

    def finish(self) -> None:
        if self.n_samples == 0:
            self.final = True
            return
        cols = torch.cat([self._mel.push(self._r16.finish()), self._mel.finish()], dim=1)
        self._add(cols, self._rout.finish(), 0, final=True)

    def _add(self, cols: torch.Tensor, audio: torch.Tensor, n: int, final: bool) -> None:
        with self._lock:
            self._cols = torch.cat([self._cols, cols], dim=1)
            self._audio = np.concatenate([self._audio, audio.numpy()])
            self.n_samples += n
            self.final = final
            total = self.total
            while self._ready_to < total and (final or self._complete(self._ready_to)):
                self._ready_to += 1

    def _complete(self, i: int) -> bool:
        have_cols = self._col0 + self._cols.shape[1]
        have_audio = self._audio0 + len(self._audio)
        return (self.clock.mel_start(i) + MEL_WINDOW <= have_cols
                and self.clock.frame_start(i + 1, self.out_rate) <= have_audio)

    def ready(self) -> int:
        """Frames that can be taken now."""
        return self._ready_to - self.next

    def take(self, n: int) -> tuple[torch.Tensor, np.ndarray]:
        """The next n ready frames: mel n×1×80×16 and their audio, exactly the frames' span."""
        with self._lock:
            a, b = self.next, self.next + n
            if n <= 0 or b > self._ready_to:
                raise ValueError(f"take({n}): only {self._ready_to - self.next} frame(s) ready")
            n_cols = self._col0 + self._cols.shape[1]
            if self.final and n_cols < MEL_WINDOW:  # under 0.2 s of speech: pad with silence (−4 is the floor)
                pad = torch.full((80, MEL_WINDOW - n_cols), -4.0, device=self.device)
                self._cols, n_cols = torch.cat([self._cols, pad], dim=1), MEL_WINDOW
            starts = [min(self.clock.mel_start(i), n_cols - MEL_WINDOW) - self._col0 for i in range(a, b)]
            mel = torch.stack([self._cols[:, s : s + MEL_WINDOW] for s in starts]).unsqueeze(1)
            lo = self.clock.frame_start(a, self.out_rate) - self._audio0
            hi = self.clock.frame_start(b, self.out_rate) - self._audio0
            audio = self._audio[lo:hi]
            if len(audio) < hi - lo:
                audio = np.concatenate([audio, np.zeros(hi - lo - len(audio), np.float32)])
            # Forget what no later frame needs (the last window is kept for reuse at the end).
            keep_col = min(self.clock.mel_start(b), n_cols - MEL_WINDOW) - self._col0
            if keep_col > 0:
                self._cols, self._col0 = self._cols[:, keep_col:], self._col0 + keep_col
            self._audio, self._audio0 = self._audio[hi:], self._audio0 + hi
            self.next = b
            return mel, audio


class Progress:
    """Shared counters for a progress display; `total` is known once the speech has ended."""

    def __init__(self):
        self.done = 0
        self.total: int | None = None
        self.speech_samples = 0
        self.sample_rate = 0
        self.first_frame_at: float | None = None  # perf_counter() when the sink got its first frame


class FrameScheduler(Stage):
    """The render's clock stage: PCM chunks in, `FrameBatch`es out."""

    name = "schedule"
    engine = "torch mel"

    def __init__(self, fps: int, avatar, device: torch.device, batch_size: int, progress: Progress):
        self.fps, self.avatar, self.device, self.batch_size, self.progress = fps, avatar, device, batch_size, progress
        self.speech: SpeechClock | None = None
        # Batches start small and double up to batch_size: the first frame leaves after a couple
        # of frames of speech, the rest go in the batches the model runs fastest.
        self._limit = min(2, batch_size)

    def process(self, item: PcmChunk, emit) -> None:
        if self.speech is None:
            self.speech = SpeechClock(item.sample_rate, self.fps, self.device)
            self.progress.sample_rate = item.sample_rate
        elif item.sample_rate != self.speech.sample_rate:
            raise ValueError(f"sample rate changed mid-stream ({self.speech.sample_rate} → {item.sample_rate})")
        self.speech.push(item.samples)
        self.progress.speech_samples = self.speech.n_samples
        self._emit_ready(emit)

    def finish(self, emit) -> None:
        if self.speech is None:
            return
        self.speech.finish()
        self.progress.total = self.speech.total
        self._emit_ready(emit)

    def _emit_ready(self, emit) -> None:
        s = self.speech
        while s.ready() >= self._limit or (s.final and s.ready()):
            a = s.next
            mel, audio = s.take(min(self._limit, s.ready()))
            idx = self.avatar.frame_index(torch.arange(a, s.next, device=self.device))
            emit(FrameBatch(start=a, count=s.next - a, audio=audio, avatar_idx=idx, mel=mel))
            self._limit = min(2 * self._limit, self.batch_size)
