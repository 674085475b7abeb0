"""`lipstream serve`: live sessions over WebRTC, a page to talk to them, and an HTTP API.

    GET  /                        the page (video, audio, a text box, Speak and Stop)
    POST /offer                   {"sdp", "type": "offer"} → {"sdp", "type", "session"}: a new idle session
    POST /sessions/{id}/say       {"text"} → 202 {"segment"}
    POST /sessions/{id}/audio     int16 PCM (?rate=) or a 16-bit WAV, spoken as it arrives → 202 {"segment"}
                                  (Content-Type application/octet-stream or audio/wav; the others' application/json)
    POST /sessions/{id}/interrupt → 200
    DELETE /sessions/{id}         → 200
    GET  /sessions/{id}/events    server-sent events: speaking, segment_end, error
    GET  /healthz, GET /metrics

With a token every endpoint but /healthz needs `Authorization: Bearer TOKEN` (or `?token=`, for the
page and EventSource, which cannot send headers). Errors are JSON `{"error": …}` with their status.
Other web pages cannot drive it (Host, Origin and Content-Type rules: guard.py).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from importlib import resources

from aiohttp import ClientPayloadError, web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from ..errors import LipstreamError, one_line
from ..graphs import runtime
from ..graphs.runtime import SessionLimitError
from ..live.session import Frame, Session
from .guard import Guard
from .media import ALPHA_MODES, SessionMedia
from .metrics import CONTENT_TYPE, Metrics
from .wav import PcmStream

log = logging.getLogger("lipstream")
MAX_JSON = 256 * 1024  # bytes of an offer or a say request
MAX_TEXT = 5000  # characters one say may speak
MAX_AUDIO = 64 * 1024 * 1024  # bytes of one audio body (about 35 min of 16 kHz int16)
CONNECT_TIMEOUT = 30.0  # seconds for a new peer to connect before its session is freed
SILENT_TIMEOUT = 15.0  # seconds without RTCP from a connected viewer before its session is freed: its receivers
# report every second or so, and ICE's own consent check (aioice) takes 30 to 45 s to notice a vanished peer


class Viewer:
    """One session with its peer connection, media pump and event subscribers."""

    def __init__(self, sid: str, session: Session, pc: RTCPeerConnection, media: SessionMedia):
        self.id, self.session, self.pc, self.media = sid, session, pc, media
        self.subscribers: list[asyncio.Queue] = []
        self.said: dict[int, float] = {}  # segment → when its say arrived
        self.interrupted_at: float | None = None
        self.heard = time.monotonic()  # the viewer's last RTCP packet
        self.closed = False

    def emit(self, name: str, data: dict) -> None:
        for q in self.subscribers:
            q.put_nowait((name, data))


class Server:
    def __init__(self, config, token: str | None = None, ice_servers: list[str] = (), video: str = "lipstream",
                 host: str = "127.0.0.1", allow_origins=()):
        """`host`: the address it is bound to; `allow_origins`: other pages' origins that may drive it."""
        self.config, self.token, self.ice_servers, self.video = config, token, list(ice_servers), video
        self.guard = Guard(host, allow_origins)
        self.viewers: dict[str, Viewer] = {}
        self.metrics = Metrics(runtime.workers)

    def control_app(self) -> web.Application:
        """The API without the page and offers (health, metrics, say, audio, interrupt, delete, events),
        with the token, limits and JSON errors: `lipstream stream --control` serves this alone."""
        app = web.Application(middlewares=[self.guard.middleware, self._errors, self._auth], client_max_size=MAX_JSON)
        app.add_routes([
            web.get("/healthz", self.healthz),
            web.get("/metrics", self.metrics_text),
            web.post("/sessions/{id}/say", self.say),
            web.post("/sessions/{id}/audio", self.audio),
            web.post("/sessions/{id}/interrupt", self.interrupt),
            web.delete("/sessions/{id}", self.delete),
            web.get("/sessions/{id}/events", self.events),
        ])
        return app

    def app(self) -> web.Application:
        app = self.control_app()
        app.add_routes([web.get("/", self.page), web.post("/offer", self.offer)])
        app.on_startup.append(self._warm)
        app.on_shutdown.append(self._close_all)
        return app

    # Middleware.

    @web.middleware
    async def _errors(self, request, handler):
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.content_type == "application/json":
                raise
            reason = e.text if e.text and not e.text.startswith(f"{e.status}:") else e.reason
            return web.json_response({"error": reason}, status=e.status)
        except SessionLimitError as e:
            return web.json_response({"error": str(e)}, status=503)
        except LipstreamError as e:
            return web.json_response({"error": str(e)}, status=400)
        except Exception:  # noqa: BLE001 - one line in the log, a JSON 500 to the client
            log.exception("%s %s failed", request.method, request.path)
            return web.json_response({"error": "internal error"}, status=500)

    @web.middleware
    async def _auth(self, request, handler):
        if self.token and request.path != "/healthz":
            header = request.headers.get("Authorization", "")
            given = header[7:] if header.startswith("Bearer ") else request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return web.json_response({"error": "a valid token is needed (Authorization: Bearer …)"}, status=401)
        return await handler(request)

    # Helpers.

    async def _json(self, request) -> dict:
        try:
            body = await request.json()
        except web.HTTPRequestEntityTooLarge:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON, actual_size=request.content_length or 0,
                                                text=f"request body over {MAX_JSON} bytes") from None
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        return body

    def _viewer(self, request) -> Viewer:
        viewer = self.viewers.get(request.match_info["id"])
        if viewer is None:
            raise web.HTTPNotFound(text="no such session")
        return viewer

    async def _warm(self, app) -> None:
        """Load the model, the avatar and the session limit before the first viewer waits for them."""
        await asyncio.get_running_loop().run_in_executor(None, lambda: Session(self.config).close())

    async def _close_all(self, app) -> None:
        await asyncio.gather(*(self.close(v) for v in list(self.viewers.values())))

    async def close(self, viewer: Viewer) -> None:
        if viewer.closed:
            return
        viewer.closed = True
        self.viewers.pop(viewer.id, None)
        self.metrics.sessions.set(len(self.viewers))
        await viewer.media.stop()
        viewer.session.close()
        await viewer.pc.close()
        viewer.emit(None, None)
        log.info("session %s closed", viewer.id)

    # Endpoints.

    async def page(self, request):
        html = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")
        ice = json.dumps([{"urls": u} for u in self.ice_servers])
        return web.Response(text=html.replace("__ICE_SERVERS__", ice), content_type="text/html")

    async def healthz(self, request):
        return web.json_response({"status": "ok", "sessions": len(self.viewers)})

    async def metrics_text(self, request):
        return web.Response(body=self.metrics.text(), headers={"Content-Type": CONTENT_TYPE})

    async def offer(self, request):
        body = await self._json(request)
        if not isinstance(body.get("sdp"), str) or body.get("type") != "offer":
            raise web.HTTPBadRequest(text='expected {"sdp": "...", "type": "offer"}')
        if "m=video" not in body["sdp"] or "m=audio" not in body["sdp"]:
            raise web.HTTPBadRequest(text="the offer must receive both video and audio")
        alpha = body.get("alpha", "flat")
        if alpha not in ALPHA_MODES:
            raise web.HTTPBadRequest(text=f"alpha must be one of {', '.join(ALPHA_MODES)}, not {alpha!r}")
        loop = asyncio.get_running_loop()
        session = await loop.run_in_executor(None, lambda: Session(self.config))
        sid = secrets.token_urlsafe(16)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(urls=u) for u in self.ice_servers]))
        viewer = Viewer(sid, session, pc, None)
        viewer.media = SessionMedia(session, self.video, events=viewer.emit,
                                    on_frame=lambda f, late: self._on_frame(viewer, f, late),
                                    preset=self.config.preset, alpha=alpha)
        try:
            self.attach(pc, viewer.media, viewer)  # first: the codec preferences apply when the offer is read
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:  # noqa: BLE001 - aiortc's many ways of refusing an SDP all mean a bad offer
            session.close()
            await pc.close()
            raise web.HTTPBadRequest(text=f"cannot use this offer: {one_line(e, 200)}") from None

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState == "connected":
                viewer.media.start()
            elif pc.connectionState in ("failed", "closed"):
                await self.close(viewer)

        self.viewers[sid] = viewer
        self.metrics.sessions.set(len(self.viewers))
        asyncio.ensure_future(self._watch(viewer))
        log.info("session %s: offer answered (%s video)", sid, self.video)
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "session": sid})

    @staticmethod
    def attach(pc: RTCPeerConnection, media: SessionMedia, viewer: Viewer | None = None) -> None:
        """Adds the media's tracks to `pc` (H.264 only with lipstream's encoder, whose IDRs answer keyframe
        requests); the viewer's RTCP, when given, marks it alive."""
        for kind, track in (("audio", media.audio), ("video", media.video)):
            sender = pc.addTrack(track)
            if viewer is not None:
                _hear_rtcp(sender, viewer)
            if kind == "video" and media.mode == "lipstream":
                transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
                h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/H264", "video/rtx")]
                transceiver.setCodecPreferences(h264)
                # aiortc packs pre-encoded packets as they are and ignores keyframe requests for them:
                # the request is passed on to lipstream's encoder.
                forward = sender._send_keyframe

                def on_keyframe_request(forward=forward):
                    forward()
                    media.request_keyframe()

                sender._send_keyframe = on_keyframe_request

    async def _watch(self, viewer: Viewer) -> None:
        """Frees the session of a peer that does not connect in time, or that falls silent once connected
        (gone without closing: its socket dropped, no RTCP)."""
        connected, deadline = False, time.monotonic() + CONNECT_TIMEOUT
        while not viewer.closed:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if not connected and viewer.pc.connectionState == "connected":
                connected, viewer.heard = True, max(viewer.heard, now)
            if not connected and now > deadline:
                log.info("session %s: no connection after %.0f s", viewer.id, CONNECT_TIMEOUT)
                await self.close(viewer)
            elif connected and now - viewer.heard > SILENT_TIMEOUT:
                log.info("session %s: no word from the viewer for %.0f s; freed", viewer.id, now - viewer.heard)
                await self.close(viewer)

    def _on_frame(self, viewer: Viewer, frame: Frame, late: float) -> None:
        self.metrics.frames.inc()
        if late > 1 / viewer.session.fps:
            self.metrics.late.inc()
        if frame.segment is not None and frame.segment in viewer.said:
            self.metrics.say_latency.observe(time.perf_counter() - viewer.said.pop(frame.segment))
        if viewer.interrupted_at is not None and not frame.speaking:
            self.metrics.interrupt_latency.observe(time.perf_counter() - viewer.interrupted_at)
            viewer.interrupted_at = None

    async def say(self, request):
        viewer = self._viewer(request)
        body = await self._json(request)
        text = body.get("text")
        if not isinstance(text, str):
            raise web.HTTPBadRequest(text='expected {"text": "..."}')
        if len(text) > MAX_TEXT:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_TEXT, actual_size=len(text),
                                                text=f"text over {MAX_TEXT} characters")
        asked = time.perf_counter()
        segment = viewer.session.say(text)
        viewer.said[segment] = asked
        return web.json_response({"segment": segment}, status=202)

    async def audio(self, request):
        viewer = self._viewer(request)
        rate = request.query.get("rate")
        try:
            stream = PcmStream(int(rate) if rate is not None else None)
        except ValueError:
            raise web.HTTPBadRequest(text=f"rate must be a whole number, not {rate!r}") from None
        loop, size, segment = asyncio.get_running_loop(), 0, None
        asked = time.perf_counter()
        try:
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_AUDIO:
                    raise web.HTTPRequestEntityTooLarge(max_size=MAX_AUDIO, actual_size=size,
                                                        text=f"audio body over {MAX_AUDIO} bytes")
                samples = stream.feed(chunk)
                if len(samples):
                    segment = await loop.run_in_executor(None, viewer.session.push_audio, samples, stream.rate)
                    viewer.said.setdefault(segment, asked)
        except (ClientPayloadError, ConnectionError) as e:  # the client went away mid-body: no one reads an answer
            log.info("session %s: audio upload cut after %d bytes (%s); what arrived is spoken", viewer.id, size,
                     one_line(e))
        finally:
            if segment is not None:  # the utterance ends with what arrived, however the body ended
                viewer.session.end_segment()
        if segment is None:
            raise web.HTTPBadRequest(text="the body holds no audio samples")
        return web.json_response({"segment": segment}, status=202)

    async def interrupt(self, request):
        viewer = self._viewer(request)
        viewer.interrupted_at = time.perf_counter()
        viewer.session.interrupt()
        viewer.media.drop_queued()
        return web.json_response({"interrupted": True})

    async def delete(self, request):
        viewer = self._viewer(request)
        await self.close(viewer)
        return web.json_response({"closed": viewer.id})

    async def events(self, request):
        viewer = self._viewer(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue()
        viewer.subscribers.append(queue)
        try:
            while not viewer.closed:
                try:
                    name, data = await asyncio.wait_for(queue.get(), timeout=15)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if name is None:
                    break
                await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        finally:
            viewer.subscribers.remove(queue)
        return response


def _hear_rtcp(sender: RTCRtpSender, viewer: Viewer) -> None:
    """Every RTCP packet from the viewer (receiver reports, NACKs, PLIs) marks it alive."""
    handle = sender._handle_rtcp_packet

    async def on_rtcp(packet):
        viewer.heard = time.monotonic()
        await handle(packet)

    sender._handle_rtcp_packet = on_rtcp
