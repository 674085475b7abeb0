"""Text into a session: utterances cut into sentences and clauses, synthesised one piece per task on
the shared TTS threads, never more than `TTS_AHEAD` seconds ahead of playback. `TextIntake` is a
part of `Session` and works under the session's `_lock`."""
from __future__ import annotations

import logging
from collections import deque

import numpy as np

from ..errors import one_line
from ..graphs import runtime
from ..tts.chunker import Chunker, check_text
from .output import TTS_AHEAD, _Segment

log = logging.getLogger("lipstream")


class TextIntake:
    def say(self, text: str, flush: bool = True) -> int:
        """Speak `text` through the session's TTS, a sentence or clause at a time; returns its segment id.

        `flush=False` adds to an utterance still being written (an LLM's tokens): speech starts as
        soon as a first clause is complete, and the utterance ends with a flushing `say` or
        `end_segment()`. No text is lost, repeated or reordered, however it is split.
        """
        if flush or text.strip():
            self._tts.check(text)
        with self._lock:
            self._check_open()
            pending_audio, self._audio_seg = self._audio_seg, None  # an open audio utterance ends here
            job = self._text
            if job is None:
                job = self._text = _Text(self._new_segment())
                self._tts_todo.append(job)
            job.words = job.words or any(ch.isalnum() for ch in text)
            job.parts.extend(job.chunker.feed(text))
            if flush:
                if not job.words:
                    self._text = None
                    self._drop_text(job)
                    check_text(text)  # the clear error for text with nothing to say
                job.parts.extend(job.chunker.flush())
                job.open, self._text = False, None
            start = not (self._tts_running or self._tts_parked)
            self._tts_running = self._tts_running or start
        if pending_audio is not None:
            self._end(pending_audio)
        if start:
            self._schedule_tts()
        return job.segment.id

    def _schedule_tts(self) -> None:
        try:
            runtime.tts_pool().submit(self._tts_step)
        except RuntimeError:  # the interpreter is shutting down
            self._tts_running = False

    def _drop_text(self, job: "_Text") -> None:
        """An utterance with no words: it never began (no SegmentEnd)."""
        self._tts_todo.remove(job)
        self._segments.remove(job.segment)
        self._open.remove(job.segment)

    def _tts_step(self) -> None:
        with self._lock:
            while self._tts_todo and self._tts_todo[0].segment.cancelled:
                self._tts_todo.popleft()
            if self._closed or not self._tts_todo or (self._tts_todo[0].open and not self._tts_todo[0].parts):
                self._tts_running = False  # a later say or end_segment schedules the rest
                return
            if self._ahead() > TTS_AHEAD * self.fps:  # resumed by _next as playback catches up
                self._tts_running, self._tts_parked = False, True
                return
            job = self._tts_todo[0]
            seg = job.segment
            piece = job.parts.popleft() if job.parts else None
            last = not job.parts and not job.open
            if last:
                self._tts_todo.popleft()

        def on_audio(pcm: np.ndarray) -> bool:
            return self._push(seg, pcm, self._tts.sample_rate)  # False: cancelled, synthesis stops

        if piece is not None:
            try:
                self._tts.speak(piece, on_audio)
            except Exception as e:  # noqa: BLE001 - the utterance ends early, interrupted; the session lives on
                log.warning("session %d: speech synthesis failed (%s); utterance %d ends here", self.id, one_line(e), seg.id)
                with self._lock:
                    seg.error = f"speech synthesis failed: {one_line(e)}"
                    if self._tts_todo and self._tts_todo[0] is job:
                        self._tts_todo.popleft()
                    if self._text is job:
                        self._text = None
                last = True
        if last:
            self._end(seg)
        self._schedule_tts()


class _Text:
    """An utterance of text: its chunks waiting for the TTS, and whether more text may come."""

    def __init__(self, segment: _Segment):
        self.segment = segment
        self.chunker = Chunker()
        self.parts: deque[str] = deque()
        self.open = True
        self.words = False
