"""The clock: one utterance's PCM in, each video frame's lip-sync features and audio out.

Frame i shows audio samples [i·sr/fps, (i+1)·sr/fps) and gets the features its model computes for
that frame from the 16 kHz audio (Wav2Lip: the mel window from frame i−1); at the end of the speech
the audio is padded with silence to the frame boundary, so video and audio end together. `SpeechClock` does this for any consumer (a render's `FrameScheduler`, a live
session's segment); `FrameScheduler` is the render's stage around it.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from ..frames import FrameBatch, PcmChunk
from ..stage import Stage
from .clock import Clock
from .mel import SAMPLE_RATE
from .resample import StreamResampler

OUT_RATE = 48_000


class SpeechClock:
    """PCM of one utterance → frames, each with the lip-sync model's features (on `device`) and its
    out-rate audio. `features` is the model's `FeatureStream` for this utterance.

    `push` may run in one thread while another calls `ready`/`take`: the feature computation runs
    outside the lock, only the hand-over is guarded.
    """

    def __init__(self, sample_rate: int, fps: int, device: torch.device, features, out_rate: int = OUT_RATE):
        self.clock = Clock(sample_rate, fps)
        self.device, self.out_rate, self.features = device, out_rate, features
        self._r16 = StreamResampler(sample_rate, SAMPLE_RATE, device)
        self._rout = StreamResampler(sample_rate, out_rate, "cpu")
        self._lock = threading.Lock()
        self._audio = np.zeros(0, np.float32)
        self._audio0 = 0  # out-rate sample index of _audio[0]
        self._ready_to = 0  # frames before this one have their features and audio
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
        """Mono float32 PCM: a host array, or a tensor (a GPU engine's: resampled for the features where it is)."""
        if isinstance(pcm, torch.Tensor):
            x = pcm.detach().reshape(-1).float()
        else:
            x = torch.from_numpy(np.ascontiguousarray(pcm, dtype=np.float32))
        self.features.push(self._r16.push(x))
        self._add(self._rout.push(x), len(x), final=False)

    def finish(self) -> None:
        if self.n_samples == 0:
            self.final = True
            return
        self.features.push(self._r16.finish())
        self.features.finish()
        self._add(self._rout.finish(), 0, final=True)

    def _add(self, audio: torch.Tensor, n: int, final: bool) -> None:
        with self._lock:
            self._audio = np.concatenate([self._audio, audio.numpy()])
            self.n_samples += n
            self.final = final
            total = self.total
            have_audio = self._audio0 + len(self._audio)
            featured = self.next + self.features.ready()
            while (self._ready_to < total and (final or (self._ready_to < featured and
                   self.clock.frame_start(self._ready_to + 1, self.out_rate) <= have_audio))):
                self._ready_to += 1

    def ready(self) -> int:
        """Frames that can be taken now."""
        return self._ready_to - self.next

    def take(self, n: int) -> tuple[torch.Tensor, np.ndarray]:
        """The next n ready frames: their features (n × the model's shape) and their audio, exactly the frames' span."""
        with self._lock:
            a, b = self.next, self.next + n
            if n <= 0 or b > self._ready_to:
                raise ValueError(f"take({n}): only {self._ready_to - self.next} frame(s) ready")
            features = self.features.take(n)
            lo = self.clock.frame_start(a, self.out_rate) - self._audio0
            hi = self.clock.frame_start(b, self.out_rate) - self._audio0
            audio = self._audio[lo:hi]
            if len(audio) < hi - lo:
                audio = np.concatenate([audio, np.zeros(hi - lo - len(audio), np.float32)])
            self._audio, self._audio0 = self._audio[hi:], self._audio0 + hi
            self.next = b
            return features, audio


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

    def __init__(self, fps: int, avatar, device: torch.device, batch_size: int, progress: Progress, features,
                 engine: str = "torch"):
        """`features(fps)`: the lip-sync model's feature stream for one utterance; `engine` names it."""
        self.fps, self.avatar, self.device, self.batch_size, self.progress = fps, avatar, device, batch_size, progress
        self.features, self.engine = features, engine
        self.speech: SpeechClock | None = None
        # Batches start small and double up to batch_size: the first frame leaves after a couple
        # of frames of speech, the rest go in the batches the model runs fastest.
        self._limit = min(2, batch_size)

    def process(self, item: PcmChunk, emit) -> None:
        if self.speech is None:
            self.speech = SpeechClock(item.sample_rate, self.fps, self.device, self.features(self.fps))
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
            features, audio = s.take(min(self._limit, s.ready()))
            idx = self.avatar.frame_index(torch.arange(a, s.next, device=self.device))
            emit(FrameBatch(start=a, count=s.next - a, audio=audio, avatar_idx=idx, features=features))
            self._limit = min(2 * self._limit, self.batch_size)
