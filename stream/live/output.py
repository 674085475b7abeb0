"""The session's output queue: one slot per tick in presentation order, idle or a speech frame
that is ready once the shared worker has painted its face and it is composed.

Speech frames enter at most `lead` ahead of the consumer, each batch a job on the worker due when
the consumer will want it (estimated from its last pull); an interrupt empties the queue.
`OutputQueue` is a part of `Session` and works under the session's `_lock`.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from functools import partial

import numpy as np
import torch

from kernels import compose, over

from ..audio.schedule import OUT_RATE, SpeechClock
from ..errors import one_line
from ..lipsync.worker import MARGIN, SAFETY, Job
from .items import Frame, SegmentEnd

TTS_AHEAD = 6.0  # seconds of speech synthesised ahead of playback: a reply is made at once, a long text as it plays


class _Segment:
    def __init__(self, sid: int):
        self.id = sid
        self.speech: SpeechClock | None = None  # made by the first audio, at its rate
        self.ended = False  # no more audio will come
        self.cancelled = False
        self.error: str | None = None  # its speech synthesis failed: it ends early, interrupted
        self.queued = 0  # frames taken into the output queue
        self.played = 0  # frames yielded

    @property
    def complete(self) -> bool:
        return self.ended and (self.speech is None or self.speech.exhausted) and self.played == self.queued


class _Entry:
    """One slot of the output queue: idle, or a speech frame that is ready once its face is composed."""

    __slots__ = ("slot", "segment", "audio", "frame", "ready", "job", "dropped")

    def __init__(self, slot: int, segment: _Segment | None = None, audio: np.ndarray | None = None):
        self.slot, self.segment, self.audio = slot, segment, audio
        self.frame: Frame | None = None
        self.ready: Future | None = Future() if segment is not None else None
        self.job: Job | None = None
        self.dropped = False


class _Marker:
    __slots__ = ("segment", "interrupted")

    def __init__(self, segment: _Segment, interrupted: bool):
        self.segment, self.interrupted = segment, interrupted


class OutputQueue:
    def _next(self, asked: float) -> tuple[Frame | SegmentEnd | None, _Entry | None]:
        if self._closed:
            return None, None
        self._fill()
        if self._queue and isinstance(self._queue[0], _Marker):
            m = self._queue.popleft()
            self._open.remove(m.segment)
            return SegmentEnd(m.segment.id, self._position(m.segment), m.interrupted, m.segment.error), None
        if self._queue:
            entry = self._queue[0]
            if entry.ready is not None and entry.frame is None:
                return None, entry
            self._queue.popleft()
            frame = entry.frame or self._idle(entry.slot)
            if entry.segment is not None:
                entry.segment.played += 1
        else:
            frame = self._idle(self._slot)
        self._slot = frame.index + 1
        self._pulled = (asked, frame.index)
        self._fill()
        if self._tts_parked and self._ahead() <= TTS_AHEAD * self.fps:
            self._tts_parked, self._tts_running = False, True
            self._schedule_tts()
        return frame, None

    def _ahead(self) -> int:
        """Frames of speech made but not yet yielded."""
        return sum((s.speech.total if s.speech is not None else 0) - s.played for s in self._open)

    def _idle(self, slot: int, entry: _Entry | None = None, error: str | None = None) -> Frame:
        """The idle face of `slot`, with silence, or with `entry`'s speech when its mouth could not be made."""
        j = int(self._loop[slot % len(self._loop)])
        images, mattes = self._matted(self.avatar.frames[j : j + 1], self.avatar, slice(j, j + 1), slot)
        image, matte = images[0], mattes[0] if mattes is not None else None
        if entry is None:
            return Frame(slot, slot * self.samples_per_frame, image, self._silence, OUT_RATE, matte=matte)
        return Frame(slot, slot * self.samples_per_frame, image, entry.audio, OUT_RATE, entry.segment.id, error,
                     matte=matte)

    def _matted(self, images, avatar, idx, slot: int):
        """`images` of avatar frames `idx` from output slot `slot` on, with the avatar's own mattes; over
        the session's background (then flat) where it has one."""
        if avatar.matte is None:
            return images, None
        mattes = avatar.matte[idx]
        if self._background is None:
            return images, mattes
        return over(images, mattes, self._background.behind(slot, len(images))), None

    def _position(self, seg: _Segment) -> float:
        speech = seg.speech.out_samples if seg.speech is not None else 0
        return min(seg.played * self.samples_per_frame, speech) / OUT_RATE

    def _fill(self) -> None:
        """Queue the head utterance's ready frames, up to `lead` frames ahead of the consumer."""
        while not self._closed and self._segments:
            room = self.lead_frames - sum(isinstance(e, _Entry) for e in self._queue)
            seg = self._segments[0]
            ready = seg.speech.ready() if seg.speech is not None else 0
            if room > 0 and ready > 0:
                self._queue_speech(seg, min(ready, room))
            elif seg.ended and (seg.speech is None or seg.speech.exhausted):
                self._segments.popleft()
                self._queue.append(_Marker(seg, seg.error is not None))
            else:
                return

    def _queue_speech(self, seg: _Segment, n: int) -> None:
        entries = [e for e in self._queue if isinstance(e, _Entry)]
        if entries:
            slot = entries[-1].slot + 1
        else:  # the first frame after idle: late enough for the model to have it ready
            slot = self._start_slot()
            self._queue.extend(_Entry(s) for s in range(self._slot, slot))
            n = min(n, self.lead_frames - (slot - self._slot))
        features, audio = seg.speech.take(n)
        spf = self.samples_per_frame
        new = [_Entry(slot + k, seg, audio[k * spf : (k + 1) * spf]) for k in range(n)]
        idx = self.avatar.frame_index(torch.arange(slot, slot + n, device=self.device))  # no host→device copy
        job = Job(features, self.face, idx, self._due(slot) - MARGIN, partial(self._composed, new))
        for e in new:
            e.job = job
        self._queue.extend(new)
        seg.queued += n
        self.worker.submit(job)

    def _due(self, slot: int) -> float:
        """When the consumer will ask for `slot`, from its last pull; now if it has not pulled yet."""
        if self._pulled is None:
            return time.perf_counter()
        t, k = self._pulled
        return t + (slot - k) / self.fps

    def _start_slot(self) -> int:
        slot, last = self._slot, self._slot + self.lead_frames - 1
        # The worker takes all it has waiting: the first frames may go with a full lead and the backlog.
        batch = min(self.worker.max_batch, self.worker.backlog() + self.lead_frames)
        need = time.perf_counter() + SAFETY * (self.worker.estimate(batch) or 0.0) + MARGIN
        while self._pulled is not None and slot < last and self._due(slot) < need:
            slot += 1
        return slot

    def _composed(self, entries: list[_Entry], faces: torch.Tensor | None, error: BaseException | None) -> None:
        """Worker thread: paste the faces into their frames and hand them to the queue. A failed
        batch's frames show the idle face with their speech; the first of them says why, once per
        failed batch however many of this session's jobs it held (the session lives on)."""
        with self._lock:
            avatar, face = self.avatar, self.face
            live = avatar is not None and not all(e.dropped for e in entries)
            report = None
            if error is not None and live and self._failure != self.worker.failed:
                self._failure, report = self.worker.failed, one_line(error)
        if error is None and live:
            idx = entries[0].job.idx
            images = compose(avatar.frames[idx], faces, face.boxes[idx], face.mask(idx))
            images, mattes = self._matted(images, avatar, idx, entries[0].slot)
        with self._lock:
            for k, e in enumerate(entries):
                if live and not e.dropped and self.avatar is not None:
                    if error is None:
                        e.frame = Frame(e.slot, e.slot * self.samples_per_frame, images[k], e.audio, OUT_RATE,
                                        e.segment.id, matte=mattes[k] if mattes is not None else None)
                    else:
                        e.frame, report = self._idle(e.slot, e, report), None
                if not e.ready.done():
                    e.ready.set_result(None)

    def _drop(self, end_markers: bool) -> None:
        jobs = {}
        for e in self._queue:
            if isinstance(e, _Entry) and e.ready is not None:
                e.dropped = True
                jobs[id(e.job)] = e.job
                if not e.ready.done():
                    e.ready.set_result(None)
        self.worker.cancel(jobs.values())
        kept = [m for m in self._queue if isinstance(m, _Marker) and m.segment.complete] if end_markers else []
        done = {id(m.segment) for m in kept}
        self._queue = deque(kept)
        for seg in self._open:
            if id(seg) not in done:
                seg.cancelled = True
                if end_markers:
                    self._queue.append(_Marker(seg, True))
        if not end_markers:
            self._open.clear()
        self._segments.clear()
        self._tts_todo.clear()
        self._text = None
        self._tts_parked = False
        self._audio_seg = None
