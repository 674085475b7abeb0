"""MuseTalk 1.5's audio features: whisper-tiny encoder states, ten per video frame.

For a file (as MuseTalk computes it): the 16 kHz audio in 30-s segments, each through
`WhisperFeatureExtractor` (padded to 30 s) and the encoder with every hidden state (the embedding
and the four layers' outputs, the last after its LayerNorm) stacked → 1500 × 5 × 384 per segment;
the segments concatenated and trimmed to floor(seconds · 50) steps; 2p zero steps in front and 6p
behind (p = ceil(50 / fps)); frame i takes the ten steps from floor(i · 50 / fps) of that → 10 × 5 ×
384, flattened time-major to 50 × 384. At 25 fps frame i sees whisper steps [2i − 4, 2i + 6), i.e.
80 ms before its start to 120 ms after.

`WhisperFeatures` computes them as the audio arrives. For a render (`lookahead=None`) a segment is
computed once its 30 s have arrived or the utterance has ended: exactly the file's features. Live,
frames are served in groups of `GROUP`, each from one encoder pass over its segment's audio up to
exactly the group's last window (plus `lookahead`), padded to 30 s as the file's last segment would
be: the encoder is global over its window, so those frames see less future audio than the file's,
and that is the whole deviation (measured by `lipstream bench lipsync --lipsync musetalk`). The cut
depends on the audio only, so a session's features do not depend on how its audio was pushed.
"""
from __future__ import annotations

import math
import threading

import numpy as np
import torch

from ..contract import FeatureStream

RATE = 16_000
STEPS = 50  # whisper encoder steps per second
HOP = RATE // STEPS  # 320 samples a step
SEGMENT = 30 * RATE
WINDOW = 10  # steps per frame
LAYERS = 5  # hidden states stacked
DIM = 384
SHAPE = (WINDOW * LAYERS, DIM)
LOOKAHEAD = 0.0  # live: seconds heard beyond a group's last window before it is served
GROUP = 3  # live: frames served by one encoder pass. Frame 0 waits for 120 + 2·40 = 200 ms of audio;
# a group of g frames costs 25/g passes a second of speech and (g − 1)·40 ms of start latency.


def _pads(fps: int) -> tuple[float, int]:
    mult = STEPS / int(fps)
    return mult, math.ceil(mult)


def segment_states(wave_16k: torch.Tensor, whisper) -> torch.Tensor:
    """One segment (≤ 30 s of 16 kHz audio) → 1500 × 5 × 384 encoder states (float32, on the encoder's device)."""
    encoder, extractor = whisper
    audio = wave_16k.detach().float().cpu().numpy()
    feats = extractor(audio, sampling_rate=RATE, return_tensors="pt").input_features
    param = next(encoder.parameters())
    with torch.inference_mode():
        out = encoder(feats.to(param.device, param.dtype), output_hidden_states=True)
    return torch.stack(out.hidden_states, dim=2)[0].float()


def frame_windows(states: torch.Tensor, first: int, frames: range, fps: int) -> torch.Tensor:
    """Frames' 50 × 384 features from `states`, whose row 0 is whisper step `first`; steps outside
    `states` are the zero padding."""
    mult, p = _pads(fps)
    out = states.new_zeros(len(frames), WINDOW, LAYERS, DIM)
    for k, i in enumerate(frames):
        a = math.floor(i * mult) - 2 * p - first  # the window's first step, in rows of `states`
        lo, hi = max(a, 0), min(a + WINDOW, states.shape[0])
        if lo < hi:
            out[k, lo - a : hi - a] = states[lo:hi]
    return out.reshape(len(frames), *SHAPE)


def file_features(wave_16k: torch.Tensor, whisper, fps: int = 25) -> torch.Tensor:
    """T × 50 × 384 for a whole file, T = floor(seconds · fps), as MuseTalk 1.5 computes it."""
    n = wave_16k.numel()
    states = torch.cat([segment_states(wave_16k[s : s + SEGMENT], whisper) for s in range(0, max(n, 1), SEGMENT)])
    states = states[: n * STEPS // RATE]
    return frame_windows(states, 0, range(n * int(fps) // RATE), fps)


def musetalk_features(wave_16k, models_dir: str, fps: int = 25) -> torch.Tensor:
    """MuseTalk 1.5's audio features of a 16 kHz mono waveform (tensor or array): T × 50 × 384 float32."""
    from .files import resolve
    from .load import load_whisper

    wave = torch.as_tensor(np.asarray(wave_16k, dtype=np.float32) if not isinstance(wave_16k, torch.Tensor) else wave_16k)
    if wave.dim() != 1:
        raise ValueError(f"musetalk_features expects a 1-D waveform, not shape {tuple(wave.shape)}")
    return file_features(wave, load_whisper(resolve(models_dir), torch.device("cpu")), fps)


class WhisperFeatures(FeatureStream):
    """One utterance's features as its audio arrives (see the module's notes). Frames are served in
    groups whose features depend on the audio only, never on how it was cut into pushes: a live group
    is computed on the audio up to exactly its last frame's need, a render's on whole segments."""

    def __init__(self, whisper, fps: int, device: torch.device, lookahead: float | None = LOOKAHEAD,
                 group: int = GROUP):
        """`lookahead`: seconds heard beyond a group's last window before it is served (None: a render,
        served segment by segment, exactly the file's features)."""
        self.whisper, self.fps, self.device = whisper, int(fps), device
        self.mult, self.p = _pads(fps)
        self.lookahead = None if lookahead is None else round(lookahead * RATE)
        self.group = group
        self._seg = 0  # first sample of the segment being heard
        self._audio = torch.zeros(0)  # that segment's audio so far (16 kHz)
        self._n = 0  # samples pushed
        self._prev = torch.zeros(0, LAYERS, DIM, device=device)  # the last steps of finished segments
        self._cur = torch.zeros(0, LAYERS, DIM, device=device)  # the current segment's latest computation
        self._cut = -1  # the audio length (in the segment) `_cur` was computed on
        self._served = 0  # frames whose features are made
        self._lock = threading.Lock()  # `push` computes; `ready`/`take` (another thread) read
        self._made: list[torch.Tensor] = []  # features made and not yet taken, in order
        self._next = 0
        self._final = False
        self.computations = 0  # encoder passes (a live utterance needs more than its file)

    def _need(self, frame: int) -> int:
        """Samples frame `frame`'s window needs: up to the end of its last whisper step."""
        return (math.floor(frame * self.mult) - 2 * self.p + WINDOW) * HOP

    def push(self, wave_16k: torch.Tensor) -> None:
        x = wave_16k.detach().float().reshape(-1).cpu()
        if not x.numel():
            return
        self._audio = torch.cat([self._audio, x])
        self._n += x.numel()
        if self.lookahead is None:  # a render: each whole segment, once
            while self._audio.numel() >= SEGMENT:
                self._compute(SEGMENT)
                self._serve_upto(self._seg + SEGMENT)
                self._next_segment()
            return
        while True:
            last = self._served + self.group - 1
            need = self._need(last) + self.lookahead
            if need > self._n:
                return
            while need > self._seg + SEGMENT:  # the group reaches into the next segment
                self._compute(SEGMENT)
                self._next_segment()
            self._compute(need - self._seg)
            self._add(range(self._served, last + 1))

    def finish(self) -> None:
        if self._audio.numel():
            self._compute(self._audio.numel())
        with self._lock:
            self._final = True

    def _compute(self, cut: int) -> None:
        """The current segment's states from its first `cut` samples (trimmed to the whole steps heard)."""
        if cut != self._cut:
            states = segment_states(self._audio[:cut], self.whisper).to(self.device)
            self._cur, self._cut = states[: cut * STEPS // RATE], cut
            self.computations += 1

    def _next_segment(self) -> None:
        keep = WINDOW + 4 * self.p  # later windows reach this far back
        self._prev = torch.cat([self._prev, self._cur])[-keep:]
        self._cur, self._cut = self._cur[:0], -1
        self._audio = self._audio[SEGMENT:]
        self._seg += SEGMENT

    def _states(self) -> tuple[torch.Tensor, int]:
        """The steps known now and the whisper step of the first."""
        return torch.cat([self._prev, self._cur]), self._seg // HOP - self._prev.shape[0]

    def _add(self, frames: range) -> None:
        states, first = self._states()
        out = frame_windows(states, first, frames, self.fps)
        with self._lock:
            self._made.append(out)
            self._served = frames.stop

    def _serve_upto(self, samples: int) -> None:
        """A render: every frame whose window lies within the first `samples` samples."""
        end = self._served
        while self._need(end) <= samples:
            end += 1
        if end > self._served:
            self._add(range(self._served, end))

    def ready(self) -> int:
        with self._lock:
            return (1 << 62) if self._final else self._served - self._next

    def take(self, n: int) -> torch.Tensor:
        with self._lock:
            have = sum(len(m) for m in self._made)
            if have < n:  # after finish: the rest, from the final states
                if not self._final:
                    raise ValueError(f"take({n}): only {have} frame(s) ready")
                states, first = self._states()
                states = states[: max(0, self._n * STEPS // RATE - first)]
                self._made.append(frame_windows(states, first, range(self._served, self._next + n), self.fps))
                self._served = self._next + n
            out = torch.cat(self._made) if len(self._made) > 1 else self._made[0]
            taken, rest = out[:n], out[n:]
            self._made = [rest] if len(rest) else []
            self._next += n
            return taken
