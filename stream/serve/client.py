"""A real aiortc viewer of `lipstream serve`, for tests and `lipstream bench serve`: it connects,
drives the session over HTTP and records each decoded video and audio frame: when it arrived, its
RTP timestamp, the mouth region's change or the audio's loudness. The sender reports (RTCP SR) map
each stream's RTP timestamps to the sender's wall clock, as a browser's lip sync does, so the A/V
offset and the time speech stopped are measured on the received media, apart from this client's
own audio jitter buffer (aiortc holds 4 packets, 80 ms, before playing audio)."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtcpSrPacket

_NTP_EPOCH = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


async def session_events(base: str, session: str, on_event, headers: dict | None = None) -> None:
    """`on_event(name, data)` for each server-sent event of `session`, until the stream ends."""
    forever = aiohttp.ClientTimeout(total=None, sock_read=None)  # a stream outlives aiohttp's 5-minute default
    async with aiohttp.ClientSession(headers=headers, timeout=forever) as http, \
            http.get(f"{base.rstrip('/')}/sessions/{session}/events") as r:
        name = None
        async for line in r.content:
            line = line.decode().strip()
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                on_event(name, json.loads(line[6:]))


class PeerClient:
    def __init__(self, base: str, token: str | None = None, mouth: tuple[int, int, int, int] | None = None):
        """`mouth`: (top, bottom, left, right) of the region between the lips, whose darkening is the mouth opening."""
        self.base, self.mouth = base.rstrip("/"), mouth
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.video: list[tuple[float, int, float]] = []  # (arrival, pts, mouth change against the first frame)
        self.audio: list[tuple[float, int, float]] = []  # (arrival, pts, RMS of the frame)
        self._sr: dict[str, tuple[float, int]] = {}  # kind → (sender's time.time(), RTP timestamp) of its last report
        self.session: str | None = None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._http: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._first: float | None = None

    async def connect(self) -> None:
        self._http = aiohttp.ClientSession(headers=self.headers)
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")

        @self.pc.on("track")
        def on_track(track):
            self._tasks.append(asyncio.ensure_future(self._read(track)))

        self._receivers = {t.kind: t.receiver for t in self.pc.getTransceivers()}
        for kind, receiver in self._receivers.items():
            self._hear_reports(receiver, kind)

        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await self.post("/offer", {"sdp": self.pc.localDescription.sdp, "type": "offer"})
        self.session = answer["session"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    async def post(self, path: str, body: dict | None = None, expect: int | None = None) -> dict:
        async with self._http.post(self.base + path, json=body or {}) as r:
            reply = await r.json()
            if r.status >= 400 if expect is None else r.status != expect:
                raise RuntimeError(f"{path}: {r.status} {reply}")
            return reply

    async def say(self, text: str) -> int:
        return (await self.post(f"/sessions/{self.session}/say", {"text": text}))["segment"]

    async def interrupt(self) -> None:
        await self.post(f"/sessions/{self.session}/interrupt")

    async def close(self) -> None:
        if self._http is not None and self.session is not None:
            async with self._http.delete(f"{self.base}/sessions/{self.session}"):
                pass
        await self.pc.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def events(self, on_event) -> None:
        """`on_event(name, data)` for each of the session's server-sent events, until the stream ends."""
        await session_events(self.base, self.session, on_event, self.headers)

    def forget(self, before: float) -> None:
        """Drops the frames that arrived before `before` (a long run keeps only what it still measures)."""
        self.video = [v for v in self.video if v[0] >= before]
        self.audio = [a for a in self.audio if a[0] >= before]

    def _hear_reports(self, receiver, kind: str) -> None:
        handle = receiver._handle_rtcp_packet

        async def on_rtcp(packet):
            if isinstance(packet, RtcpSrPacket):
                ntp = packet.sender_info.ntp_timestamp
                self._sr[kind] = ((ntp >> 32) - _NTP_EPOCH + (ntp & 0xFFFFFFFF) / 2**32, packet.sender_info.rtp_timestamp)
            await handle(packet)

        receiver._handle_rtcp_packet = on_rtcp

    async def _read(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.time()
                if track.kind == "audio":
                    pcm = frame.to_ndarray().astype(np.float32) / 32768.0
                    self.audio.append((now, frame.pts, float(np.sqrt(np.mean(pcm ** 2)))))
                else:
                    self.video.append((now, frame.pts, self._motion(frame)))
        except MediaStreamError:
            return

    def sent_at(self, kind: str, pts: int) -> float:
        """The sender's time.time() when the frame with this decoded pts left it."""
        wall, ref = self._sr[kind]
        # aiortc's receiver rebases RTP timestamps on the stream's first packet; undo that.
        origin = getattr(self._receivers[kind], "_RTCRtpReceiver__timestamp_mapper")._origin
        delta = (pts + origin - ref + 2**31) % 2**32 - 2**31
        return wall + delta / (90000 if kind == "video" else 48000)

    def _motion(self, frame) -> float:
        """How much darker the mouth region is than in the first frame: the gap between the lips."""
        if self.mouth is None:
            return 0.0
        t, b, l, r = self.mouth
        plane = frame.planes[0]
        level = float(np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[t:b, l:r].mean())
        if self._first is None:
            self._first = level
        return self._first - level

    # Measurements at the receiving end; times are time.time(), `sent` ones by the sender reports.

    def first_audio(self, after: float, loud: bool, sent: bool = True, threshold: float = 0.01) -> float | None:
        """When the first audio frame after `after` that is loud (or silent) was sent (or arrived)."""
        return self._first_of("audio", after, lambda rms: (rms > threshold) == loud, sent)

    def first_video(self, after: float, moving: bool, sent: bool = True, threshold: float = 2.0) -> float | None:
        """When the first frame after `after` whose mouth is open (or closed) was sent (or arrived)."""
        return self._first_of("video", after, lambda opening: (opening > threshold) == moving, sent)

    def _first_of(self, kind: str, after: float, wanted, sent: bool) -> float | None:
        for arrived, pts, value in self.video if kind == "video" else self.audio:
            t = self.sent_at(kind, pts) if sent else arrived
            if t > after and wanted(value):
                return t
        return None

    def av_offset_frames(self, start: float, end: float, fps: int, reach: int = 3) -> int | None:
        """The lag (in frames) at which the mouth's motion best follows the audio's loudness between
        `start` and `end` (sender times): 0 when they are in sync, > 0 when the picture is late."""
        frames = [(self.sent_at("video", rtp), m) for _, rtp, m in self.video]
        frames = [(t, m) for t, m in frames if start <= t < end]
        sound = [(self.sent_at("audio", rtp), rms) for _, rtp, rms in self.audio]
        if len(frames) < 4 * reach:
            return None
        motion = np.array([m for _, m in frames])
        loud = np.array([np.mean([r for t, r in sound if v <= t < v + 1 / fps] or [0.0]) for v, _ in frames])
        if motion.std() == 0 or loud.std() == 0:
            return None
        n = len(motion)

        def corr(lag):
            a, b = motion[max(0, lag) : n + min(0, lag)], loud[max(0, -lag) : n - max(0, lag)]
            return np.corrcoef(a, b)[0, 1]

        scores = {lag: corr(lag) for lag in range(-reach, reach + 1)}
        return max(scores, key=scores.get)
