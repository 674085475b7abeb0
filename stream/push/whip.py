"""WHIP out (RFC 9725): an aiortc peer fed by serve's pump and tracks, signalled by one HTTP POST.

The offer goes whole (aiortc gathers every candidate before it is made: no trickle) as
`application/sdp`, with `Authorization: Bearer` when a token is given; the endpoint answers 201
with the SDP answer and the session's URL in `Location`, which is DELETEd at the end. ICE servers
are used only when configured. A peer that fails or cannot be set up is replaced after a backoff
(fresh tracks, same pump: the session keeps its clock); a refusal no retry can change (401, 403,
404 and other 4xx but 408/409/425/429) ends the push.
"""
from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from ..errors import one_line
from ..serve.app import Server
from ..serve.media import SessionMedia
from .retry import Backoff, Refused

log = logging.getLogger("lipstream")
CONNECT_TIMEOUT = 15.0  # seconds from the answer to a connected peer
HTTP_TIMEOUT = 10.0
RETRYABLE = {408, 409, 425, 429}  # 4xx that may pass; every 5xx may too
HINTS = {401: " (check --push-token)", 403: " (check --push-token)", 404: " (check the URL)"}


class _Lost(Exception):
    pass


class WhipPusher:
    kind = "whip"

    def __init__(self, url: str, token: str | None = None, ice_servers=(), on_fatal=None):
        self.url, self.shown, self.token, self.ice_servers = url, url, token, list(ice_servers)
        self.media: SessionMedia | None = None
        self.connections = 0
        self.connected = False
        self.resource: str | None = None  # the WHIP session's URL (Location)
        self._on_fatal = on_fatal or (lambda error: None)
        self._pc: RTCPeerConnection | None = None
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None
        self._closing = False

    @property
    def connectionState(self) -> str:  # noqa: N802 - serve's Viewer reads its peer's state
        return self._pc.connectionState if self._pc is not None else "new"

    def start(self, media: SessionMedia) -> None:
        self.media = media
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT))
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """DELETE the WHIP session, close the peer."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._hang_up()
        if self._http is not None:
            await self._http.close()

    async def _run(self) -> None:
        backoff = Backoff()
        while not self._closing:
            lost = asyncio.Event()
            try:
                await self._connect(lost)
            except Refused as e:
                await self._hang_up()
                self._on_fatal(e)
                return
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, _Lost, ValueError) as e:
                await self._hang_up()
                await self._retry(backoff, f"cannot connect ({one_line(e, 200)})")
                continue
            began = time.monotonic()
            await lost.wait()
            self.connected = False
            backoff.held(time.monotonic() - began)
            await self._hang_up()
            await self._retry(backoff, "connection lost")

    async def _connect(self, lost: asyncio.Event) -> None:
        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(urls=u) for u in self.ice_servers]))
        self.media.new_tracks()  # a closed peer ends its tracks; the pump feeds the new ones
        Server.attach(pc, self.media)
        for t in pc.getTransceivers():
            t.direction = "sendonly"

        @pc.on("connectionstatechange")
        def on_state():
            if pc.connectionState in ("failed", "closed"):
                lost.set()

        await pc.setLocalDescription(await pc.createOffer())
        async with self._http.post(self.url, data=pc.localDescription.sdp.encode(),
                                   headers={"Content-Type": "application/sdp"}) as r:
            body = await r.text()
            if r.status != 201:
                reason = f"{r.status} {r.reason}" + (f": {body.strip()[:200]}" if body.strip() else "")
                if 400 <= r.status < 500 and r.status not in RETRYABLE:
                    raise Refused(f"the WHIP endpoint {self.url} refused the stream: {r.status} {r.reason}"
                                  f"{HINTS.get(r.status, '')}")
                raise _Lost(reason)
            if "Location" not in r.headers:
                log.warning("push: %s gave no Location: the session cannot be ended with DELETE", self.shown)
            else:
                self.resource = urljoin(str(r.url), r.headers["Location"])
            if not body.startswith("v="):
                raise _Lost("the answer is not SDP")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while pc.connectionState != "connected":
            if lost.is_set() or time.monotonic() > deadline:
                raise _Lost(f"ICE {pc.iceConnectionState}, peer {pc.connectionState}")
            await asyncio.sleep(0.02)
        self.media.request_keyframe()
        self.connections += 1
        self.connected = True
        log.info("push: on air at %s (connection %d)", self.shown, self.connections)

    async def _hang_up(self) -> None:
        pc, self._pc = self._pc, None
        resource, self.resource = self.resource, None
        self.connected = False
        if resource is not None and self._http is not None and not self._http.closed:
            try:
                async with self._http.delete(resource) as r:
                    if r.status >= 400:
                        log.warning("push: DELETE %s: %d %s", resource, r.status, r.reason)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                log.warning("push: DELETE %s failed (%s)", resource, one_line(e, 200))
        if pc is not None:
            await pc.close()

    async def _retry(self, backoff: Backoff, what: str) -> None:
        delay = backoff.next()
        log.warning("push: %s: %s; retrying in %.1f s", self.shown, what, delay)
        await asyncio.sleep(delay)
