"""A broadcast: one live session, always on air, pushed to one ingest.

It is a session of serve's `Server` (id `broadcast`): serve's say / audio / interrupt / events
handlers drive it, serve's metrics count it, and `Server.close` ends it (the pump, the session,
then the pusher, which sends the stream's end). `lipstream stream` runs one with a `Server` of its
own (HTTP only with `--control`); `lipstream serve --push` runs one beside the browser sessions.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time

from aiohttp import web

from ..errors import LipstreamError
from ..live.session import Session
from ..serve.app import Server, Viewer
from ..serve.media import SessionMedia
from .retry import kind_of

log = logging.getLogger("lipstream")
BROADCAST_ID = "broadcast"


class Broadcast:
    def __init__(self, server: Server, url: str, token: str | None = None, ice_servers=(), profile: str = "main",
                 keep_alive: bool = False, alpha: str = "flat"):
        """`alpha`: flat (the colour alone), or stacked (colour above matte, serve/media.py)."""
        self.server, self.url, self.kind = server, url, kind_of(url)
        self.token, self.ice_servers, self.profile, self.keep_alive = token, list(ice_servers), profile, keep_alive
        self.alpha = alpha
        self.session: Session | None = None
        self.viewer: Viewer | None = None
        self.pusher = None
        self.finished = asyncio.Event()  # input spoken, refused for good, closed, or stopped
        self.error: LipstreamError | None = None
        self.frames = 0
        self.last_index = -1
        self.speaking_at: dict[int, float] = {}  # segment → perf_counter of its first frame sent
        self._started: set[int] = set()  # utterances the input opened
        self._ended: set[int] = set()
        self._input_done = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self.session = await loop.run_in_executor(None, lambda: Session(self.server.config))
        viewer = self.viewer = Viewer(BROADCAST_ID, self.session, None, None)
        cfg = self.server.config
        events = lambda name, data: (viewer.emit(name, data), self._event(name, data))  # noqa: E731
        on_frame = lambda frame, late: self._frame(viewer, frame, late)  # noqa: E731
        try:
            if self.kind == "rtmp":
                from .rtmp import FlvMedia, RtmpPusher, flv_format

                self.pusher = RtmpPusher(self.url, self.session.fps, on_fatal=self._fatal)
                fmt = flv_format(self.session, cfg.preset, cfg.crf, self.profile, self.alpha == "stacked")
                media = FlvMedia(self.session, self.pusher, fmt, events=events, on_frame=on_frame, alpha=self.alpha)
            else:
                from .whip import WhipPusher

                self.pusher = WhipPusher(self.url, self.token, self.ice_servers, on_fatal=self._fatal)
                media = SessionMedia(self.session, "lipstream", events=events, on_frame=on_frame, preset=cfg.preset,
                                     alpha=self.alpha)
        except BaseException:
            self.session.close()
            raise
        viewer.pc, viewer.media = self.pusher, media  # Server.close: media.stop(), session.close(), pusher.close()
        self.server.viewers[BROADCAST_ID] = viewer
        self.server.metrics.sessions.set(len(self.server.viewers))
        media.start()  # on air from now: idle until there is speech, whether or not the ingest is there
        self.pusher.start(media)
        log.info("push: broadcasting to %s (%s, %d fps)", self.pusher.shown, self.kind, self.session.fps)
        asyncio.ensure_future(self._watch_close())

    async def on_air(self) -> None:
        """Until the first connection is up (or the broadcast ends): the input is not spoken to no one."""
        while not self.pusher.connected and not self.finished.is_set():
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.viewer is not None:
            await self.server.close(self.viewer)
        self.finished.set()

    # Input, from any thread.

    def feed(self, target, *args) -> None:
        """Run `target(session, *args, started, done)` in a thread of its own."""

        def run():
            try:
                target(self.session, *args, self.started, self.input_done)
            except LipstreamError as e:
                if self.session is not None and not self.viewer.closed:
                    self._loop.call_soon_threadsafe(self._fatal, e)

        threading.Thread(target=run, name="push-input", daemon=True).start()

    def started(self, segment: int | None) -> None:
        if segment is not None:
            self._loop.call_soon_threadsafe(self._started.add, segment)

    def input_done(self) -> None:
        def done():
            self._input_done = True
            self._check_done()

        self._loop.call_soon_threadsafe(done)

    # Loop thread.

    def _event(self, name: str, data: dict) -> None:
        if name == "segment_end":
            self._ended.add(data["segment"])
            self._check_done()
        elif name == "error" and "segment" not in data:  # one utterance's failure is not the broadcast's
            self._fatal(LipstreamError(f"the broadcast stopped: {data['error']}"))

    def _frame(self, viewer: Viewer, frame, late: float) -> None:
        self.server._on_frame(viewer, frame, late)  # serve's metrics
        self.frames += 1
        self.last_index = frame.index
        if frame.segment is not None and frame.segment not in self.speaking_at:
            self.speaking_at[frame.segment] = time.perf_counter()

    def _check_done(self) -> None:
        if self._input_done and not self.keep_alive and not (self._started - self._ended):
            self.finished.set()

    def _fatal(self, error: LipstreamError) -> None:
        if self.error is None:
            self.error = error
        self.finished.set()

    async def _watch_close(self) -> None:
        """DELETE /sessions/broadcast (or serve shutting down) ends the broadcast."""
        while not self.viewer.closed:
            await asyncio.sleep(0.1)
        self.finished.set()


def serve_push(app: web.Application, server: Server, url: str, token: str | None = None, profile: str = "main",
               alpha: str = "flat") -> None:
    """`lipstream serve --push URL`: one broadcast beside the browser sessions, from start-up (after
    the model is warm) to shutdown; a refusal that cannot succeed ends it with one error line."""
    kind_of(url)  # a bad URL fails before the server starts

    async def on_startup(app):
        b = app["broadcast"] = Broadcast(server, url, token, server.ice_servers, profile, keep_alive=True, alpha=alpha)
        await b.start()

        async def watch():
            await b.finished.wait()
            if b.error is not None:
                log.error("push: %s", b.error)
            await b.close()

        app["broadcast_watch"] = asyncio.ensure_future(watch())

    app.on_startup.append(on_startup)
