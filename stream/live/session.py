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
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from kernels import compose

from ..graphs import runtime
from ..audio.schedule import OUT_RATE, SpeechClock
from ..config import RenderConfig, as_config
from ..device import resolve_device
from ..errors import LipstreamError
from ..lipsync.worker import MARGIN, SAFETY, Job
from ..tts.chunker import Chunker, check_text
from ..tts.registry import make_tts

log = logging.getLogger("lipstream")
PCM_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
_ids = itertools.count(1)
TTS_AHEAD = 6.0  # seconds of speech synthesised ahead of playback: a reply is made at once, a long text as it plays


@dataclass(frozen=True, eq=False)
class Frame:
    """One tick: a video frame and exactly sample_rate / fps samples of the audio that goes with it."""

    index: int  # ticks since the session opened
    pts: int  # first audio sample of the tick on the session's clock (seconds: pts / sample_rate)
    image: torch.Tensor  # H×W×3 uint8 BGR on the session's device; read-only (idle frames share the avatar's)
    audio: np.ndarray  # float32 mono at sample_rate; zeros when idle
    sample_rate: int
    segment: int | None = None  # the utterance being spoken, None when idle

    @property
    def speaking(self) -> bool:
        return self.segment is not None

    @property
    def time(self) -> float:
        return self.pts / self.sample_rate

    def bgr(self) -> np.ndarray:
        return self.image.cpu().numpy()

    def rgb(self) -> np.ndarray:
        return self.image.flip(-1).cpu().numpy()

    def pcm16(self) -> bytes:
        return (np.clip(self.audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


@dataclass(frozen=True)
class SegmentEnd:
    """An utterance is over: every `say` and every `push_audio` … `end_segment` ends exactly once, in order."""

    segment: int
    playback_position: float  # seconds of the utterance's audio that were yielded
    interrupted: bool


class _Segment:
    def __init__(self, sid: int):
        self.id = sid
        self.speech: SpeechClock | None = None  # made by the first audio, at its rate
        self.ended = False  # no more audio will come
        self.cancelled = False
        self.queued = 0  # frames taken into the output queue
        self.played = 0  # frames yielded

    @property
    def complete(self) -> bool:
        return self.ended and (self.speech is None or self.speech.exhausted) and self.played == self.queued


class _Entry:
    """One slot of the output queue: idle, or a speech frame that is ready once its mouth is composed."""

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


def _as_float32(pcm) -> np.ndarray:
    """int16 bytes, or an int16 / float array, as float32 mono."""
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        data = bytes(pcm)
        if len(data) % 2:
            raise LipstreamError(f"int16 PCM has an odd number of bytes ({len(data)})")
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    a = np.asarray(pcm)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise LipstreamError(f"PCM must be mono (one channel), not an array of shape {a.shape}")
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if a.dtype.kind == "f":
        return a.astype(np.float32, copy=False)
    raise LipstreamError(f"PCM must be int16 bytes or an int16 / float32 array, not {a.dtype}")


class Session:
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
            limit = cfg.max_sessions or max(1, int(runtime.CAPACITY_SHARE * runtime.capacity(
                cfg, self.device, self.worker, self.avatar) / cfg.fps))
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
        self._error: BaseException | None = None
        self._closed = False
        log.info("session %d: lipsync %s (%s) on the shared worker, tts %s (%s), %d fps, lead %d frames, "
                 "%d of %d sessions open", self.id, self.worker.describe(), self.device, self._tts.name,
                 self._tts.device, self.fps, self.lead_frames, runtime.open_sessions(), limit)

    # Input.

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

    def push_audio(self, pcm, sample_rate: int) -> int:
        """Add speech to the current utterance (opened by the first push); returns its segment id."""
        if sample_rate not in PCM_RATES:
            raise LipstreamError(f"sample rate {sample_rate} is not supported (one of {', '.join(map(str, PCM_RATES))})")
        samples = _as_float32(pcm)
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
            self.avatar = None  # the shared avatar is freed once no session holds it
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
                seg.speech = SpeechClock(rate, self.fps, self.device)
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

    def _next(self, asked: float) -> tuple[Frame | SegmentEnd | None, _Entry | None]:
        if self._error is not None:
            raise self._error
        if self._closed:
            return None, None
        self._fill()
        if self._queue and isinstance(self._queue[0], _Marker):
            m = self._queue.popleft()
            self._open.remove(m.segment)
            return SegmentEnd(m.segment.id, self._position(m.segment), m.interrupted), None
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

    def _idle(self, slot: int) -> Frame:
        image = self.avatar.frames[int(self._loop[slot % len(self._loop)])]
        return Frame(slot, slot * self.samples_per_frame, image, self._silence, OUT_RATE)

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
                self._queue.append(_Marker(seg, False))
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
        mel, audio = seg.speech.take(n)
        spf = self.samples_per_frame
        new = [_Entry(slot + k, seg, audio[k * spf : (k + 1) * spf]) for k in range(n)]
        idx = self.avatar.frame_index(torch.arange(slot, slot + n, device=self.device))  # no host→device copy
        job = Job(mel, self.avatar, idx, self._due(slot) - MARGIN, partial(self._composed, new))
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

    def _composed(self, entries: list[_Entry], mouths: torch.Tensor | None, error: BaseException | None) -> None:
        """Worker thread: paste the mouths into their frames and hand them to the queue."""
        with self._lock:
            avatar = self.avatar
            live = avatar is not None and not all(e.dropped for e in entries)
            if error is not None and live:
                self._error = error
        if error is None and live:
            idx = entries[0].job.idx
            images = compose(avatar.frames[idx], mouths, avatar.boxes[idx], avatar.mask)
        with self._lock:
            for k, e in enumerate(entries):
                if error is None and live and not e.dropped:
                    e.frame = Frame(e.slot, e.slot * self.samples_per_frame, images[k], e.audio, OUT_RATE, e.segment.id)
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

    # Text to speech, a sentence per task on the shared TTS threads.

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
            except Exception as e:  # noqa: BLE001 - the utterance ends early; the session lives on
                log.warning("session %d: speech synthesis failed (%s); the utterance ends here", self.id, e)
                with self._lock:
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
