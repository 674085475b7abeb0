"""The pump between a session and the screen: pulls the session at the speaker's pace (or the
session's clock) and hands out each frame when its sound is heard."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..live.session import Frame, SegmentEnd, Session
from .speaker import BLOCK, Speaker

BUFFER_BLOCKS = 3  # blocks the pump keeps ahead of the speaker


@dataclass
class PreviewResult:
    frames: int = 0  # frames shown
    speaking_frames: int = 0
    audio_played: bool = False
    samples_played: int = 0  # session samples handed to the speaker
    underruns: int = 0  # callbacks that found the buffer short while speaking
    offsets_ms: list = field(default_factory=list)  # per shown frame: (DAC position − its first sample) in ms
    where: str = ""  # "window", "page http://…", or "headless"
    first_speaking_seconds: float | None = None  # from the start to the first speaking frame shown
    window_size: tuple | None = None
    speech_seconds: float = 0.0  # the utterances' playback positions at their SegmentEnds
    wall_seconds: float = 0.0  # from the start of playback to the end

    def summary(self) -> str:
        off = ""
        if self.offsets_ms:
            o = np.asarray(self.offsets_ms)
            off = f", frame shown after its sound by median {np.median(o):.1f} ms (p95 |offset| {np.percentile(np.abs(o), 95):.1f} ms)"
        audio = f"{self.samples_played / 48000:.2f} s of audio played" if self.audio_played else "audio not played"
        return (f"preview ({self.where}): {self.speech_seconds:.2f} s of speech in {self.wall_seconds:.2f} s, "
                f"{self.frames} frames shown, {self.speaking_frames} speaking, {audio}{off}")


class Player:
    """Pulls `session` at the speaker's pace (or the session's clock) and hands each frame to `show`
    at the moment its audio is heard. Ends after `segments` SegmentEnds (None: when stopped)."""

    def __init__(self, session: Session, speaker: Speaker | None, segments: int | None):
        self.session, self.speaker, self.want = session, speaker, segments
        self.result = PreviewResult(audio_played=speaker is not None)
        self._frames: deque[Frame] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = 0
        self._end_sample: int | None = None
        self._k = 0  # the next tick the pump will take  # the samples of the last segment have all been queued here
        self.error: BaseException | None = None
        self.t0 = time.monotonic()
        self.expect_more = segments is None  # with the mic: a segment end is the end once the mic has stopped
        self._pump = threading.Thread(target=self._run, name="preview-pump", daemon=True)

    def start(self) -> Player:
        self.t0 = time.monotonic()
        self._pump.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def clock(self) -> float:
        """The session sample being heard (or due, without a speaker) now."""
        if self.speaker is not None:
            return self.speaker.position()
        return (time.monotonic() - self.t0) * self.session.sample_rate

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.speaker is not None:
                    if self.speaker.buffered >= BUFFER_BLOCKS * BLOCK:
                        time.sleep(0.002)
                        continue
                else:
                    wait = self.t0 + self._k / self.session.fps - time.monotonic() - 0.05  # a little ahead of its time
                    if wait > 0:
                        time.sleep(min(wait, 0.01))
                        continue
                item = self.session.get()
                if item is None:
                    break
                if isinstance(item, SegmentEnd):
                    self.result.speech_seconds += item.playback_position
                    with self._lock:
                        self._ended += 1
                        if self.want is not None and self._ended >= self.want:
                            self._end_sample = self._k * self.session.samples_per_frame
                            return
                    continue
                if self.speaker is not None:
                    self.speaker.speaking = item.speaking
                    self.speaker.push(item.audio)
                with self._lock:
                    self._frames.append(item)
                    self._k = item.index + 1
        except BaseException as e:  # noqa: BLE001 - raised by the display loop
            self.error = e

    def finish_after(self, segments: int) -> None:
        """End once `segments` SegmentEnds have come (0: now); those already come count."""
        with self._lock:
            if self.want is not None:
                return
            self.want = segments
            if self._ended >= segments:
                self._end_sample = self._k * self.session.samples_per_frame
                self._stop.set()

    @property
    def done(self) -> bool:
        if self.error is not None:
            return True
        if self._end_sample is None:
            return self._stop.is_set()
        return self.clock() >= self._end_sample and not self._frames

    def due(self) -> Frame | None:
        """The newest frame whose first sample has reached the speaker (older ones are dropped)."""
        pos = self.clock()
        shown = None
        with self._lock:
            while self._frames and self._frames[0].pts <= pos:
                shown = self._frames.popleft()
        if shown is not None:
            r = self.result
            r.frames += 1
            if shown.speaking:
                r.speaking_frames += 1
                if r.first_speaking_seconds is None:
                    r.first_speaking_seconds = time.monotonic() - self.t0
            r.offsets_ms.append((pos - shown.pts) / self.session.sample_rate * 1000.0)
        return shown

    def close(self) -> None:
        self.result.wall_seconds = time.monotonic() - self.t0
        self._stop.set()
        self._pump.join(timeout=2.0)
        if self.speaker is not None:
            self.result.samples_played = self.speaker.taken
            self.result.underruns = self.speaker.underruns
            self.speaker.close()
