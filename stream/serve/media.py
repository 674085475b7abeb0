"""A live session as WebRTC media: one video and one audio track, both fed by one pump that pulls
the session at the pace of its own sample clock (tick k leaves at start + k / fps), so the two
tracks cannot drift apart.

Video goes one of two ways (`video=`): `lipstream` encodes with lipstream's libx264 (zerolatency,
an IDR with SPS/PPS every second, and one at once when a viewer asks) and hands aiortc the
packets; `aiortc` hands aiortc raw frames and lets its own encoder (VP8 or H.264) do the rest.

WebRTC and RTMP carry no alpha: `alpha="stacked"` sends the avatar's colour above its matte (grey),
one ordinary opaque picture twice as tall, for a page (`/?transparent=1`) or a compositor to draw the
colour through the matte; `flat` (the default) sends the colour alone.
"""
from __future__ import annotations

import asyncio
import fractions
import logging
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import torch
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from kernels import stacked_alpha

from ..errors import one_line
from ..live.session import Frame, SegmentEnd, Session
from ..video.encode import VideoFormat, X264Encoder

log = logging.getLogger("lipstream")
VIDEO_RATE = 90_000  # RTP video clock
AUDIO_CHUNK = 960  # 20 ms at 48 kHz: aiortc sends one encoded frame's payloads under one timestamp, so one Opus packet each
VIDEO_MODES = ("lipstream", "aiortc")
ALPHA_MODES = ("flat", "stacked")
_RESYNC = 0.5  # seconds behind its clock after which the pump stops catching up (a stalled loop must not burst)


class QueueTrack(MediaStreamTrack):
    """A track whose `recv` returns what the pump put, each item not before `due(item)` (loop time)
    when `due` is given; a full queue drops its oldest item (live media)."""

    def __init__(self, kind: str, depth: int, due=None, on_drop=None):
        super().__init__()
        self.kind, self._due, self._on_drop = kind, due, on_drop
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=depth)

    async def recv(self):
        item = await self._queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        if self._due is not None:
            wait = self._due(item) - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
        return item

    def put(self, item) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            if self._on_drop is not None:
                self._on_drop()
        self._queue.put_nowait(item)

    def clear(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def end(self) -> None:
        self.clear()
        self._queue.put_nowait(None)


class SessionMedia:
    """Pumps `session` into `video` and `audio` tracks in real time; `events(name, data)` hears
    `speaking`, `segment_end` and `error`, `on_frame(frame, late_seconds)` every tick."""

    def __init__(self, session: Session, video: str = "lipstream", events=None, on_frame=None,
                 preset: str = "veryfast", crf: int = 23, video_format: VideoFormat | None = None,
                 alpha: str = "flat"):
        if video not in VIDEO_MODES:
            raise ValueError(f"video must be one of {VIDEO_MODES}, not {video!r}")
        if alpha not in ALPHA_MODES:
            raise ValueError(f"alpha must be one of {ALPHA_MODES}, not {alpha!r}")
        self.stacked = alpha == "stacked"
        self.session, self.mode = session, video
        self.new_tracks()
        self._start = 0.0  # loop time of tick 0
        self._events = events or (lambda name, data: None)
        self._on_frame = on_frame or (lambda frame, late: None)
        self._keyframe = False
        self._drops = 0  # times queued video was dropped (an encode in flight then is stale)
        self._speaking: int | None = None
        self._audio_pts = 0
        self._pending = np.zeros(0, np.int16)
        self._task: asyncio.Task | None = None
        h, w = session.avatar.size
        h *= 2 if self.stacked else 1
        self.format = video_format or VideoFormat(w, h, session.fps, preset, crf, tune="zerolatency", keyint=session.fps)
        self._encoder = X264Encoder(self.format) if video == "lipstream" else None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")  # one encoder, in order

    def new_tracks(self) -> None:
        """Fresh `video` and `audio` tracks, for a new peer (a closed peer connection ends its tracks);
        the pump feeds whichever are current."""
        # A dropped H.264 packet breaks the frames that refer to it: the next one is then an IDR.
        self.video = QueueTrack("video", depth=4, on_drop=self.request_keyframe if self.mode == "lipstream" else None)
        # A tick's audio is more than one 20 ms packet: each leaves at its own time on the sample
        # clock, so the RTP timestamps of both tracks map to send times alike (RTCP SR, lip sync).
        self.audio = QueueTrack("audio", depth=4 * 48000 // self.session.fps // AUDIO_CHUNK + 2,
                                due=lambda frame: self._start + frame.pts / 48000)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def request_keyframe(self) -> None:
        """A viewer lost packets or joined: the next frame is an IDR."""
        self._keyframe = True

    def drop_queued(self) -> None:
        """What waits in the tracks is dropped (an interrupt must not play it); lipstream's video
        goes on with an IDR, since the dropped packets may be what the next frame refers to."""
        self.video.clear()
        self._keyframe = self._keyframe or self.mode == "lipstream"
        self._drops += 1
        self.audio.clear()
        self._pending = self._pending[:0]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.video.end()
        self.audio.end()
        self._thread.shutdown(wait=False)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        fps, k = self.session.fps, 0
        self._start = loop.time()
        try:
            while True:
                due = self._start + k / fps
                now = loop.time()
                if now < due:
                    await asyncio.sleep(due - now)
                elif now - due > _RESYNC:
                    log.warning("session %d: media %.2f s behind its clock; skipping ahead", self.session.id, now - due)
                    self._start, due = now - k / fps, now
                item = await self.session.aget()
                while isinstance(item, SegmentEnd):
                    if item.error is not None:  # the utterance failed; the session goes on
                        self._events("error", {"error": item.error, "segment": item.segment})
                    self._events("segment_end", {"segment": item.segment, "playback_position": round(item.playback_position, 4),
                                                 "interrupted": item.interrupted})
                    item = await self.session.aget()
                if item is None:  # the session was closed
                    return
                if item.error is not None:  # a lip-sync batch failed: its frames show the idle face
                    self._events("error", {"error": item.error, "segment": item.segment})
                late = max(0.0, loop.time() - due)
                if item.segment is not None and item.segment != self._speaking:
                    self._events("speaking", {"segment": item.segment})
                self._speaking = item.segment
                self._send_audio(item)
                await self._send_video(item)
                self._on_frame(item, late)
                k += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - reported to the viewer (no segment: the session's media end)
            log.error("session %d: media stopped: %s", self.session.id, e)
            self._events("error", {"error": one_line(e)})

    def _send_audio(self, frame: Frame) -> None:
        pcm = (np.clip(frame.audio, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        self._pending = np.concatenate([self._pending, pcm])
        while len(self._pending) >= AUDIO_CHUNK:
            chunk, self._pending = self._pending[:AUDIO_CHUNK], self._pending[AUDIO_CHUNK:]
            out = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            out.sample_rate, out.pts, out.time_base = 48000, self._audio_pts, fractions.Fraction(1, 48000)
            self._audio_pts += AUDIO_CHUNK
            self.audio.put(out)

    async def _send_video(self, frame: Frame) -> None:
        pts = frame.index * VIDEO_RATE // self.session.fps
        image = self.picture(frame)
        if self._encoder is None:
            out = av.VideoFrame.from_ndarray(image, format="bgr24")
            out.pts, out.time_base = pts, fractions.Fraction(1, VIDEO_RATE)
            self.video.put(out)
            return
        drops = self._drops
        packets = await self._encode(frame, image)
        if self._drops != drops and not any(p.is_keyframe for p in packets):
            return  # encoded while a drop cleared what it refers to: the viewer would decode garbage
        for packet in packets:
            packet.pts = packet.pts * VIDEO_RATE // self.session.fps
            packet.time_base = fractions.Fraction(1, VIDEO_RATE)
            self.video.put(packet)

    async def _encode(self, frame: Frame, image: np.ndarray | None = None) -> list[av.Packet]:
        """The tick's H.264 packets from lipstream's encoder (pts in frames), an IDR if one was asked for."""
        keyframe, self._keyframe = self._keyframe, False
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._encoder.encode, self.picture(frame) if image is None else image, frame.index, "bgr24",
            keyframe)

    def picture(self, frame: Frame) -> np.ndarray:
        """What the video shows of `frame`, on the host: its colour, or colour above matte (opaque
        where the avatar has none: the page then shows it whole)."""
        if not self.stacked:
            return frame.bgr()
        matte = frame.matte if frame.matte is not None else torch.full(frame.image.shape[:2], 255, dtype=torch.uint8,
                                                                       device=frame.image.device)
        return stacked_alpha(frame.image[None], matte[None])[0].cpu().numpy()
