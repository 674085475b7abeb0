"""A live session: speech in at any pace (text through its TTS, or PCM), one video frame with its
audio per tick out, idle between utterances, interrupted at once.

The output is one queue of ticks ("slots") in presentation order. Slot k shows avatar frame
`loop[k]` whether it is idle or speaking, so speech starts and ends without a jump. Speech frames
enter the queue at most `lead` ahead of the consumer: each is a lip-sync request on the process's
shared worker, due when the consumer will want it (estimated from its last pull). The session has
no thread and never sleeps: the consumer's pulls pace it, and a pull with nothing queued gets an
idle frame at once. An interrupt empties the queue, so the next pull is idle.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future

import numpy as np
import torch

from ..audio.schedule import OUT_RATE, SpeechClock
from ..config import RenderConfig, as_config
from ..device import resolve_device
from ..errors import LipstreamError
from ..graphs import runtime
from ..tts.registry import make_tts
from ..video.background import make_background
from .items import PCM_RATES, Frame, SegmentEnd, as_float32
from .output import OutputQueue, _Entry, _Marker, _Segment
from .text import TextIntake, _Text

log = logging.getLogger("lipstream")
_ids = itertools.count(1)
__all__ = ["Frame", "SegmentEnd", "Session"]


class Session(TextIntake, OutputQueue):
    """A live avatar. Created with the same settings as `render`; runs until `close()`.

    Input from any thread: `say(text)`, `push_audio(pcm, sample_rate)` + `end_segment()`,
    `interrupt()`. Output: `get()` / iteration (blocking) or `aget()` / `async for`, giving `Frame`
    and `SegmentEnd` items in presentation order.
    """

    def __init__(self, config: RenderConfig | str | None = None, **settings):
        cfg = as_config(config, **settings)
        if OUT_RATE % cfg.fps:
            good = ", ".join(str(f) for f in (20, 24, 25, 30, 40, 48, 50, 60))
            raise LipstreamError(f"fps {cfg.fps} does not divide the 48 kHz audio clock; a live session needs e.g. {good}")
        self.config, self.fps, self.sample_rate = cfg, cfg.fps, OUT_RATE
        self.samples_per_frame = OUT_RATE // cfg.fps
        self.lead_frames = max(1, round(cfg.lead * cfg.fps))
        self.device = resolve_device(cfg.device)
        self.id = next(_ids)
        if cfg.max_sessions is not None:
            runtime.check_room(cfg.max_sessions)  # before any loading
        self._tts = make_tts(cfg, self.device)
        self.worker = runtime.acquire_worker(cfg, self.device)
        try:
            self.avatar = runtime.shared_avatar(cfg, self.device)
            self.face = runtime.shared_face(self.avatar, self.worker)  # the model's preparation of the avatar
            self._background = make_background(cfg.background, self.avatar, self.device)  # frames then leave flat
            limit = cfg.max_sessions or max(1, int(runtime.CAPACITY_SHARE * runtime.capacity(
                cfg, self.device, self.worker, self.avatar, self.face) / cfg.fps))
            runtime.admit(self, limit)
        except BaseException:
            runtime.leave(self)
            runtime.release_worker(self.worker)
            raise
        self.max_sessions = limit
        self._loop = self.avatar.loop.cpu().numpy()  # on the host: an idle frame needs no device sync
        self._silence = np.zeros(self.samples_per_frame, np.float32)
        self._silence.flags.writeable = False
        self._lock = threading.Lock()
        self._push_lock = threading.Lock()  # one feature computation at a time per session
        self._queue: deque[_Entry | _Marker] = deque()
        self._segments: deque[_Segment] = deque()  # not yet wholly queued, in order
        self._open: list[_Segment] = []  # SegmentEnd not yet yielded, in order
        self._audio_seg: _Segment | None = None  # the segment push_audio feeds
        self._tts_todo: deque[_Text] = deque()  # utterances to synthesise, in order
        self._text: _Text | None = None  # the utterance `say(..., flush=False)` is adding to
        self._tts_running = False  # a sentence task is scheduled or running
        self._tts_parked = False  # text waits until playback comes within TTS_AHEAD
        self._seg_ids = itertools.count(1)
        self._slot = 0  # next slot to yield
        self._pulled: tuple[float, int] | None = None  # (time of the consumer's last pull, its slot)
        self._failure = 0  # the worker's failed batch this session last reported (`worker.failed`)
        self._closed = False
        log.info("session %d: lipsync %s (%s) on the shared worker, tts %s (%s), %d fps, lead %d frames, "
                 "%d of %d sessions open", self.id, self.worker.describe(), self.device, self._tts.name,
                 self._tts.device, self.fps, self.lead_frames, runtime.open_sessions(), limit)

    # Input (`say` is TextIntake's).

    def push_audio(self, pcm, sample_rate: int) -> int:
        """Add speech to the current utterance (opened by the first push); returns its segment id."""
        if sample_rate not in PCM_RATES:
            raise LipstreamError(f"sample rate {sample_rate} is not supported (one of {', '.join(map(str, PCM_RATES))})")
        samples = as_float32(pcm)
        with self._lock:
            self._check_open()
            if self._text is not None:  # text still being written ends where the audio starts
                job, self._text = self._text, None
                job.parts.extend(job.chunker.flush())
                job.open = False
            if self._audio_seg is None:
                self._audio_seg = self._new_segment()
            seg = self._audio_seg
        self._push(seg, samples, sample_rate)
        return seg.id

    def end_segment(self) -> int | None:
        """The utterance being fed (by `push_audio`, or by `say(..., flush=False)`) is complete; its
        SegmentEnd follows its last frame. Returns its id, or None when none was open."""
        with self._lock:
            seg, self._audio_seg = self._audio_seg, None
            job, self._text = self._text, None
            if job is not None:
                job.parts.extend(job.chunker.flush())
                job.open = False
                start = not (self._tts_running or self._tts_parked)
                self._tts_running = self._tts_running or start
        if seg is not None:
            self._end(seg)
            return seg.id
        if job is not None:
            if start:
                self._schedule_tts()
            return job.segment.id
        return None

    def interrupt(self) -> None:
        """Stop speaking now: everything queued is dropped and the next frame is idle."""
        with self._lock:
            if not self._closed:
                self._drop(end_markers=True)

    def close(self) -> None:
        """End the session and release what it holds; iteration stops."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._drop(end_markers=False)
            self.avatar = self.face = None  # the shared avatar is freed once no session holds it
        runtime.leave(self)
        runtime.release_worker(self.worker)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Output.

    def get(self) -> Frame | SegmentEnd | None:
        """The next item; waits only while a speech frame is still in the model. None once closed."""
        asked = time.perf_counter()
        while (ready := self._poll(asked)) is not None and isinstance(ready, Future):
            ready.result()
        return ready

    async def aget(self) -> Frame | SegmentEnd | None:
        asked = time.perf_counter()
        while (ready := self._poll(asked)) is not None and isinstance(ready, Future):
            await asyncio.wrap_future(ready)
        return ready

    def _poll(self, asked: float):
        """The next item, or the future of the speech frame it waits for (its job is then hurried)."""
        with self._lock:
            item, wait = self._next(asked)
        if wait is None:
            return item
        self.worker.hurry(wait.job)
        return wait.ready

    def __iter__(self):
        while (item := self.get()) is not None:
            yield item

    async def __aiter__(self):
        while (item := await self.aget()) is not None:
            yield item

    # Internals; `_lock` guards the queue, the segments and the slot counter.

    def _check_open(self) -> None:
        if self._closed:
            raise LipstreamError(f"session {self.id} is closed")

    def _new_segment(self) -> _Segment:
        seg = _Segment(next(self._seg_ids))
        self._segments.append(seg)
        self._open.append(seg)
        return seg

    def _push(self, seg: _Segment, samples: np.ndarray, rate: int) -> bool:
        with self._push_lock, torch.inference_mode():
            if seg.cancelled:
                return False
            if seg.speech is None:
                seg.speech = SpeechClock(rate, self.fps, self.device, self.worker.model.features(self.fps, live=True))
            elif rate != seg.speech.sample_rate:
                raise LipstreamError(f"sample rate changed within an utterance ({seg.speech.sample_rate} → {rate}); "
                                     "call end_segment() first")
            seg.speech.push(samples)
        with self._lock:
            self._fill()
        return True

    def _end(self, seg: _Segment) -> None:
        with self._push_lock, torch.inference_mode():
            if seg.speech is not None and not seg.cancelled:
                seg.speech.finish()
        with self._lock:
            seg.ended = True
            self._fill()
