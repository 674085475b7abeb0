"""pipecat: a lipstream session as a video service between TTS and the output transport (extra `pipecat`).

    pipeline = Pipeline([transport.input(), stt, context_aggregator.user(), llm, tts,
                         LipstreamVideoService(), transport.output(), context_aggregator.assistant()])

with the output transport's `video_out_enabled=True, video_out_is_live=True`, `video_out_width`/
`video_out_height` the avatar's size (`service.size` once started; other sizes are resized by the
transport) and `video_out_framerate` its fps.

- `TTSAudioRawFrame` (16-bit PCM, any channel count, the session's rates) is lip-synced and not
  passed on; `TTSStoppedFrame` ends the utterance and is passed on after its last audio, in order.
- Per tick (at the session's fps, in real time) it pushes an `OutputImageRawFrame(image, size,
  format="RGB")` and, while speaking, the tick's `TTSAudioRawFrame` (48 kHz mono, 48000/fps samples):
  the audio delayed to match its mouth. Idle ticks push the image alone, so the transport's
  bot-speaking detection sees only speech.
- `InterruptionFrame` interrupts the session (its queue is dropped, the next tick is idle) and is
  passed on.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np

try:
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        Frame,
        InterruptionFrame,
        OutputImageRawFrame,
        StartFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
except ImportError as e:  # pragma: no cover - depends on the extra
    raise ImportError(f"the pipecat adapter needs the pipecat extra: pip install 'lipstream[pipecat]' ({e})") from e

from ..live.session import Frame as LipFrame
from ..live.session import SegmentEnd, Session

RESYNC = 0.5  # seconds behind its clock after which the pump starts a new one instead of catching up


class LipstreamVideoService(FrameProcessor):
    """A pipecat video service over a lipstream `Session` (given, or opened at StartFrame from `settings`)."""

    def __init__(self, session: Session | None = None, *, session_settings: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.session = session
        self._owned = session is None
        self._settings = session_settings or {}
        self._ready = asyncio.Event()
        self._pump: asyncio.Task | None = None
        self._held: dict[int, deque[Frame]] = {}  # TTSStoppedFrames waiting for their utterance's end
        self.segment_ends: list[SegmentEnd] = []

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames it pushes."""
        h, w = self.session.avatar.size
        return w, h

    @property
    def fps(self) -> int:
        return self.session.fps

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._start()
        elif isinstance(frame, TTSAudioRawFrame):
            await self._ready.wait()
            self.session.push_audio(_mono(frame), frame.sample_rate)
        elif isinstance(frame, TTSStoppedFrame):
            await self._ready.wait()
            segment = self.session.end_segment()
            if segment is None:
                await self.push_frame(frame, direction)
            else:
                self._held.setdefault(segment, deque()).append(frame)
        elif isinstance(frame, InterruptionFrame):
            if self.session is not None:
                self.session.interrupt()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):  # an orderly end: what was said is played first
            await self._drain()
            await self._stop()
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._stop()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    def open(self) -> Session:
        """Open the session now (it opens at StartFrame otherwise): loads the model and the avatar,
        so `size` and `fps` are known before the transport is made. Blocking: call it off the event loop."""
        if self.session is None:
            self.session = Session(**self._settings)
        return self.session

    async def _start(self) -> None:
        if self.session is None:  # the model and the avatar load off the event loop
            await asyncio.to_thread(self.open)
        self._ready.set()
        if self._pump is None:
            self._pump = self.create_task(self._run(), name="lipstream-pump")

    async def _drain(self, timeout: float = 60.0) -> None:
        if self.session is None:
            return
        self.session.end_segment()
        deadline = time.perf_counter() + timeout
        while self._held and self._pump is not None and time.perf_counter() < deadline:
            await asyncio.sleep(1.0 / self.session.fps)

    async def _stop(self) -> None:
        if self._pump is not None:
            await self.cancel_task(self._pump)
            self._pump = None
        if self.session is not None and self._owned:
            self.session.close()
            self.session = None
            self._ready.clear()

    async def cleanup(self):
        await super().cleanup()
        await self._stop()

    async def _run(self) -> None:
        """Pull the session at its fps, in real time, and push each tick's image and audio."""
        session = self.session
        period = 1.0 / session.fps
        start, ticks = time.perf_counter(), 0
        while True:
            delay = start + ticks * period - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > RESYNC:  # stalled (a busy machine): start a new clock rather than rush
                start, ticks = time.perf_counter(), 0
            item = await session.aget()
            if item is None:
                return
            if isinstance(item, SegmentEnd):
                self.segment_ends.append(item)
                for held in self._held.pop(item.segment, ()):
                    await self.push_frame(held)
                continue
            ticks += 1
            await self.push_frame(image_frame(item))
            if item.speaking:
                await self.push_frame(audio_frame(item))


def _mono(frame: TTSAudioRawFrame) -> np.ndarray:
    pcm = np.frombuffer(frame.audio, dtype=np.int16)
    if frame.num_channels > 1:
        pcm = pcm.reshape(-1, frame.num_channels).astype(np.float32).mean(axis=1) / 32768.0
    return pcm


def image_frame(frame: LipFrame) -> OutputImageRawFrame:
    image = frame.rgb()
    return OutputImageRawFrame(image=image.tobytes(), size=(image.shape[1], image.shape[0]), format="RGB")


def audio_frame(frame: LipFrame) -> TTSAudioRawFrame:
    return TTSAudioRawFrame(audio=frame.pcm16(), sample_rate=frame.sample_rate, num_channels=1)
