"""RTMP(S) out: the session's ticks as FLV, H.264 from lipstream's libx264 (the same encoder serve
uses, here with a key frame every 2 s and a baseline or main profile) and AAC at 48 kHz.

serve's pump pulls the session at its own sample clock (tick k leaves at start + k / fps); each
tick's packets and audio go to a writer thread that owns the connection, so a stalled or dropped
ingest never holds the pump: the session keeps its clock and idles while the writer reconnects.
The connection itself lives in a process of its own (flv_out.py), because PyAV holds the GIL while
it connects: an ingest that stops answering (while connecting or later) costs that process, which
is killed once a tick has waited `STALL_LIMIT` seconds, and never this one's clock.
Each connection's timestamps start at its first tick (an IDR) and follow the tick index from
there, video and audio alike, so they stay together however long the stream runs.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import av
import numpy as np

from ..serve.media import SessionMedia
from ..video.encode import VideoFormat
from .flv_link import STALL_LIMIT, Connection, Lost
from .retry import Backoff, Refused, redact

log = logging.getLogger("lipstream")
PROFILES = ("main", "baseline")
KEY_SECONDS = 2  # ingests (YouTube, Twitch …) want a key frame at least every 2 s
CLOSE_WAIT = STALL_LIMIT + 1.0  # seconds close() waits for the writer


@dataclass(frozen=True)
class FlvFormat(VideoFormat):
    """serve's live H.264 settings with an H.264 profile RTMP ingests accept."""

    profile: str = "main"

    def configure(self, ctx) -> None:
        super().configure(ctx)
        ctx.options = {**ctx.options, "profile": self.profile}


def flv_format(session, preset: str, crf: int, profile: str = "main", stacked: bool = False) -> FlvFormat:
    h, w = session.avatar.size
    h *= 2 if stacked else 1  # colour above matte (serve/media.py)
    return FlvFormat(w, h, session.fps, preset, crf, tune="zerolatency", keyint=KEY_SECONDS * session.fps, profile=profile)


class FlvMedia(SessionMedia):
    """serve's pump and encoder; each tick's packets and audio go to `pusher.put` instead of WebRTC tracks."""

    def __init__(self, session, pusher: "RtmpPusher", video_format: FlvFormat, **kw):
        super().__init__(session, "lipstream", video_format=video_format, **kw)
        self.pusher = pusher

    def _send_audio(self, frame) -> None:
        pass  # the tick's audio goes with its video, in one item

    async def _send_video(self, frame) -> None:
        self.pusher.put(frame.index, await self._encode(frame), frame.audio)


class RtmpPusher:
    """Owns the RTMP connection in its own thread: connects, writes each tick as it comes, and on a
    drop or refusal logs one line and tries again after a backoff. `close()` ends the stream cleanly."""

    kind = "rtmp"

    def __init__(self, url: str, fps: int, on_fatal=None):
        self.url, self.shown, self.fps = url, redact(url), fps
        self.media: FlvMedia | None = None
        self.connections = 0  # made so far
        self.connected = False
        self.last = -1  # the session frame last sent
        self._on_fatal = on_fatal or (lambda error: None)
        self._queue: queue.Queue = queue.Queue(maxsize=fps)  # a second of ticks while a write is slow
        self._gap = False
        self._conn: Connection | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtmp", daemon=True)

    def start(self, media: FlvMedia) -> None:
        self.media = media
        self._thread.start()

    def put(self, index: int, packets: list, audio: np.ndarray) -> None:
        """From the pump, each tick; never blocks (a full queue drops its oldest tick)."""
        self._put((index, packets, audio))

    def _put(self, item) -> None:
        while True:
            try:
                return self._queue.put_nowait(item)
            except queue.Full:
                self._gap = True
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass

    async def close(self) -> None:
        """The pump has stopped: what it queued goes out, then the FLV trailer, then the connection closes."""
        import asyncio

        self._stop.set()
        self._put(None)
        if self._thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, CLOSE_WAIT)
        if self._conn is not None:
            self._conn.kill()  # whatever it was waiting for

    def _run(self) -> None:
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                conn = self._conn = Connection(self.url, self.media.format)
            except (Lost, OSError) as e:
                if self._refused(e):
                    return
                self._retry(backoff, f"cannot connect ({_reason(e)})")
                continue
            self.connections += 1
            self.connected, began = True, time.monotonic()
            self._drain()  # ticks from before this connection are stale
            self.media.request_keyframe()
            try:
                self._write(conn)
            except (Lost, av.FFmpegError, OSError) as e:
                self.connected = False
                conn.kill()
                backoff.held(time.monotonic() - began)
                self._retry(backoff, f"connection lost at session frame {self.last} ({_reason(e)})")
                continue
            self.connected = False
            try:
                conn.close()
                log.info("push: %s ended after %d frames", self.shown, conn.frames)
            except (Lost, av.FFmpegError, OSError) as e:
                log.warning("push: %s: the stream's end was not delivered (%s)", self.shown, _reason(e))
            return

    def _write(self, conn: Connection) -> None:
        waiting = True
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._gap:  # ticks were dropped: go on from the next key frame
                self._gap, waiting = False, True
                self.media.request_keyframe()
            index, packets, audio = item
            if waiting and conn.base is not None and not (packets and packets[0].is_keyframe):
                continue
            waiting = not conn.send(index, packets, audio)
            if not waiting:
                if conn.frames == 1:
                    log.info("push: on air at %s from session frame %d (connection %d)", self.shown, index, self.connections)
                self.last = index

    def _drain(self) -> None:
        self._gap = False
        while True:
            try:
                if self._queue.get_nowait() is None:
                    self._put(None)
                    return
            except queue.Empty:
                return

    def _retry(self, backoff: Backoff, what: str) -> None:
        delay = backoff.next()
        log.warning("push: %s: %s; retrying in %.1f s", self.shown, what, delay)
        self._stop.wait(delay)

    def _refused(self, error: Exception) -> bool:
        """An error no retry can fix ends the push (the caller exits 2)."""
        if getattr(error, "refused", False):
            self._on_fatal(Refused(f"{self.shown} refused the stream: {_reason(error)}"))
            return True
        return False


def _reason(error: Exception) -> str:
    if isinstance(error, Lost):
        return str(error)
    text = getattr(error, "strerror", None) or str(error)
    return text.split(":")[0].strip() if text else type(error).__name__
