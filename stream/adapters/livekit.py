"""LiveKit Agents: a lipstream session as the avatar of a voice agent (extra `livekit`).

- `LipstreamVideoGenerator`: the `livekit.agents.voice.avatar.VideoGenerator` over a session. Agent
  audio (`rtc.AudioFrame`, any channel count, the session's PCM rates) goes to `push_audio`;
  `AudioSegmentEnd` ends the utterance; `clear_buffer()` interrupts. Iterating it gives, per tick, one
  `rtc.VideoFrame` (RGB24) and, while speaking, one `rtc.AudioFrame` of exactly 48000/fps samples
  (48 kHz mono) right after it; an idle tick is a video frame alone, so `AvatarRunner` counts only
  speech as playback. After an utterance's last tick comes an `AudioSegmentEnd` (`on_segment_end`
  gets the session's `SegmentEnd`: playback position, interrupted). It is paced by its consumer
  (`AvatarRunner`'s `AVSynchronizer`), as a session is.
- `LipstreamAvatar`: in process, one call in an agent entrypoint: `await LipstreamAvatar().start(
  session, ctx.room)` before `session.start(...)`. The agent's audio goes to a `QueueAudioOutput`,
  and an `AvatarRunner` publishes the avatar's video and audio from the agent's own participant.
- `LipstreamRemoteAvatar` + `lipstream worker`: the avatar in another process or machine. The agent
  dispatches the worker to its room and sends its audio over a data stream; the worker joins as
  the avatar and publishes on the agent's behalf. Its load is open sessions / max_sessions of the
  process's shared lip-sync worker.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable

import numpy as np

try:
    from livekit import rtc
    from livekit.agents.voice.avatar import (
        AudioSegmentEnd,
        AvatarOptions,
        AvatarRunner,
        AvatarSession,
        DataStreamAudioOutput,
        DataStreamAudioReceiver,
        QueueAudioOutput,
        VideoGenerator,
    )
except ImportError as e:  # pragma: no cover - depends on the extra
    raise ImportError(f"the LiveKit adapter needs the livekit extra: pip install 'lipstream[livekit]' ({e})") from e

from ..live.session import PCM_RATES, Frame, SegmentEnd, Session
from . import AGENT_NAME

log = logging.getLogger("lipstream")


class LipstreamVideoGenerator(VideoGenerator):
    """A `VideoGenerator` over a lipstream `Session` (given, or opened from `settings`)."""

    def __init__(self, session: Session | None = None, *, idle_audio: bool = False,
                 on_segment_end: Callable[[SegmentEnd], object] | None = None, **settings):
        self.session = session if session is not None else Session(**settings)
        self._owned = session is None
        self.idle_audio = idle_audio  # also give idle ticks their silence (a consumer other than AvatarRunner)
        self.on_segment_end = on_segment_end
        self._resampler: rtc.AudioResampler | None = None
        self._resampler_rate = 0
        self.last_segment_end: SegmentEnd | None = None

    @property
    def options(self) -> AvatarOptions:
        """What this generator yields, for `AvatarRunner`: the avatar's size, the fps, 48 kHz mono."""
        h, w = self.session.avatar.size
        return AvatarOptions(video_width=w, video_height=h, video_fps=self.session.fps,
                             audio_sample_rate=self.session.sample_rate, audio_channels=1)

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            if self._resampler is not None:
                for out in self._resampler.flush():
                    self._push(out)
                self._resampler = None
            self.session.end_segment()
            return
        if frame.samples_per_channel == 0:
            return
        if frame.sample_rate in PCM_RATES:
            self._push(frame)
            return
        # A rate the session does not take: LiveKit's resampler brings it to 48 kHz.
        if self._resampler is None or self._resampler_rate != frame.sample_rate:
            self._resampler = rtc.AudioResampler(frame.sample_rate, self.session.sample_rate,
                                                 num_channels=frame.num_channels)
            self._resampler_rate = frame.sample_rate
        for out in self._resampler.push(frame):
            self._push(out)

    def _push(self, frame: rtc.AudioFrame) -> None:
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:  # mono: the mean of the channels
            pcm = pcm.reshape(-1, frame.num_channels).astype(np.float32).mean(axis=1) / 32768.0
        self.session.push_audio(pcm, frame.sample_rate)

    def clear_buffer(self) -> None:
        """Stop now: the session drops what it holds; its next item is the utterance's end (interrupted)."""
        self._resampler = None
        self.session.interrupt()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    async def _stream(self):
        while (item := await self.session.aget()) is not None:
            if isinstance(item, SegmentEnd):
                self.last_segment_end = item
                if self.on_segment_end is not None:
                    self.on_segment_end(item)
                yield AudioSegmentEnd()
                continue
            yield video_frame(item)
            if item.speaking or self.idle_audio:
                yield audio_frame(item)

    async def aclose(self) -> None:
        if self._owned:
            self.session.close()


def video_frame(frame: Frame) -> rtc.VideoFrame:
    image = frame.rgb()
    return rtc.VideoFrame(image.shape[1], image.shape[0], rtc.VideoBufferType.RGB24, image.tobytes())


def audio_frame(frame: Frame) -> rtc.AudioFrame:
    return rtc.AudioFrame(frame.pcm16(), frame.sample_rate, 1, len(frame.audio))


class LipstreamAvatar(AvatarSession):
    """The avatar in the agent's own process: `await LipstreamAvatar(**settings).start(session, room)`
    before `session.start(...)`; the agent's participant publishes the avatar's video and audio."""

    def __init__(self, session: Session | None = None, **settings):
        super().__init__()
        self._given, self._settings = session, settings
        self.session: Session | None = session
        self.generator: LipstreamVideoGenerator | None = None
        self.runner: AvatarRunner | None = None

    @property
    def avatar_identity(self) -> str:
        return self._room.local_participant.identity if self._room is not None else ""

    @property
    def provider(self) -> str:
        return "lipstream"

    async def start(self, agent_session, room: rtc.Room) -> None:
        await super().start(agent_session, room)
        if self.session is None:  # loading the model and the avatar takes a while: not on the event loop
            self.session = await asyncio.to_thread(Session, **self._settings)
        self.generator = LipstreamVideoGenerator(self.session)
        audio = QueueAudioOutput(sample_rate=self.session.sample_rate, wait_playback_start=True)
        agent_session.output.replace_audio_tail(audio)
        self.runner = AvatarRunner(room, audio_recv=audio, video_gen=self.generator, options=self.generator.options)
        await self.runner.start()

    async def aclose(self) -> None:
        # Not AvatarSession.aclose: it removes the avatar's participant, here the agent itself.
        if self.runner is not None:
            await self.runner.aclose()
            self.runner = None
        if self.session is not None and self._given is None:
            self.session.close()
            self.session = None
        if self._agent_session is not None:
            self._agent_session.off("conversation_item_added", self._on_conversation_item_added)
            self._agent_session = None
        if self._room is not None:
            self._room.off("connection_state_changed", self._on_connection_state_changed)
            self._room = None
        if self._wait_avatar_join_task is not None:
            self._wait_avatar_join_task.cancel()
            self._wait_avatar_join_task = None


class LipstreamRemoteAvatar(AvatarSession):
    """The avatar served by a `lipstream worker` (dispatched by name into the agent's room): call
    `await LipstreamRemoteAvatar().start(session, ctx.room)` before `session.start(...)`."""

    def __init__(self, *, agent_name: str = AGENT_NAME, avatar_identity: str | None = None):
        super().__init__()
        self._agent_name = agent_name
        self._identity = avatar_identity or f"lipstream-avatar-{secrets.token_hex(4)}"

    @property
    def avatar_identity(self) -> str:
        return self._identity

    @property
    def provider(self) -> str:
        return "lipstream"

    async def start(self, agent_session, room: rtc.Room) -> None:
        from livekit import api
        from livekit.agents import get_job_context

        await super().start(agent_session, room)
        metadata = json.dumps({"avatar_identity": self._identity, "agent_identity": room.local_participant.identity})
        await get_job_context().api.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=self._agent_name, room=room.name, metadata=metadata))
        agent_session.output.replace_audio_tail(DataStreamAudioOutput(
            room, destination_identity=self._identity, wait_remote_track=rtc.TrackKind.KIND_VIDEO,
            wait_playback_start=True))


# `lipstream worker`: a LiveKit Agents worker whose jobs are avatars.

async def _accept(req) -> None:
    from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF

    meta = _metadata(req.job.metadata)
    agent = meta.get("agent_identity")
    await req.accept(name="lipstream avatar", identity=meta.get("avatar_identity") or "",
                     attributes={ATTRIBUTE_PUBLISH_ON_BEHALF: agent} if agent else None)


def _metadata(text: str) -> dict:
    try:
        meta = json.loads(text or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


async def avatar_job(ctx, config) -> None:
    """One room: the avatar joins, lip-syncs the agent's data-stream audio until the agent leaves."""
    from livekit.agents import AutoSubscribe

    await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
    agent = _metadata(ctx.job.metadata).get("agent_identity")
    session = await asyncio.to_thread(Session, config)
    generator = LipstreamVideoGenerator(session)
    runner = AvatarRunner(ctx.room, audio_recv=DataStreamAudioReceiver(ctx.room, sender_identity=agent),
                          video_gen=generator, options=generator.options)
    done = asyncio.Event()

    def left(participant) -> None:
        is_agent = participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        if participant.identity == agent or (agent is None and is_agent):
            done.set()

    ctx.room.on("participant_disconnected", left)
    ctx.room.on("disconnected", lambda *_: done.set())
    try:
        await runner.start()
        await done.wait()
    finally:
        await runner.aclose()
        session.close()
    ctx.shutdown("the agent left")


def make_server(config, *, url: str, api_key: str, api_secret: str, agent_name: str = AGENT_NAME, max_sessions: int):
    """The worker: jobs run as threads of this process, so they share its one lip-sync worker; its
    load is the share of `max_sessions` open."""
    from livekit.agents import AgentServer, JobExecutorType

    from ..graphs import runtime

    server = AgentServer(ws_url=url, api_key=api_key, api_secret=api_secret, job_executor_type=JobExecutorType.THREAD,
                         load_fnc=lambda: runtime.open_sessions() / max_sessions, load_threshold=1.0,
                         num_idle_processes=1)

    async def entry(ctx) -> None:
        await avatar_job(ctx, config)

    server.rtc_session(entry, agent_name=agent_name, on_request=_accept)
    return server


def measured_max_sessions(config) -> int:
    """`max_sessions`, or the shared worker's measured capacity (`stream.graphs.runtime.capacity`): the
    model is loaded and measured before the worker registers."""
    from ..device import resolve_device
    from ..graphs import runtime

    if config.max_sessions:
        return config.max_sessions
    device = resolve_device(config.device)
    worker = runtime.acquire_worker(config, device)
    try:
        avatar = runtime.shared_avatar(config, device)
        fps = runtime.capacity(config, device, worker, avatar, runtime.shared_face(avatar, worker))
    finally:
        runtime.release_worker(worker)
    return max(1, int(runtime.CAPACITY_SHARE * fps / config.fps))
