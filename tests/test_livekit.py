"""The LiveKit Agents adapter, driven through its public interface with real `rtc` frames (no server:
nothing here connects to LiveKit; the worker and the in-room path are not exercised)."""
import asyncio
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

rtc = pytest.importorskip("livekit.rtc", reason="the livekit extra is not installed (pip install 'lipstream[livekit]')")


@pytest.fixture(scope="module")
def lk():
    """livekit.agents and the adapter, imported by the tests that use them (1.4 s: not at collection)."""
    from livekit.agents.voice.avatar import AudioSegmentEnd, AvatarRunner, QueueAudioOutput, VideoGenerator

    from stream.adapters.livekit import LipstreamVideoGenerator

    return SimpleNamespace(AudioSegmentEnd=AudioSegmentEnd, AvatarRunner=AvatarRunner, QueueAudioOutput=QueueAudioOutput,
                           VideoGenerator=VideoGenerator, LipstreamVideoGenerator=LipstreamVideoGenerator)

BOX = (67, 170, 177, 270)
SPF = 48000 // 25  # samples per tick at 25 fps


def frames_of(pcm: np.ndarray, rate: int, ms: int = 10, channels: int = 1):
    """`pcm` (float32 mono) as LiveKit TTS frames: int16, `ms` each, `channels` identical channels."""
    pcm16 = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
    step = rate * ms // 1000
    for at in range(0, len(pcm16), step):
        chunk = np.repeat(pcm16[at : at + step, None], channels, axis=1)
        yield rtc.AudioFrame(chunk.tobytes(), rate, channels, len(chunk))


async def take(it, n):
    return [await it.__anext__() for _ in range(n)]


async def until_end(it, limit=2000):
    from livekit.agents.voice.avatar import AudioSegmentEnd

    items = []
    for _ in range(limit):
        items.append(await it.__anext__())
        if isinstance(items[-1], AudioSegmentEnd):
            return items
    raise AssertionError("no AudioSegmentEnd")


def check_ticks(items):
    """Per tick one video frame, then (speaking) one audio frame of exactly 48000/fps samples."""
    for k, item in enumerate(items):
        if isinstance(item, rtc.AudioFrame):
            assert isinstance(items[k - 1], rtc.VideoFrame), "an audio frame follows its video frame"
            assert (item.sample_rate, item.num_channels, item.samples_per_channel) == (48000, 1, SPF)


def test_idle_speech_end(lk, speech_22k):
    ends = []
    gen = lk.LipstreamVideoGenerator(box=BOX, cache=False, on_segment_end=ends.append)
    assert isinstance(gen, lk.VideoGenerator)
    opts = gen.options
    assert (opts.video_fps, opts.audio_sample_rate, opts.audio_channels) == (25, 48000, 1)

    async def main():
        it = gen.__aiter__()
        idle = await take(it, 10)  # before any audio: idle video frames alone
        assert all(isinstance(f, rtc.VideoFrame) for f in idle)
        assert {(f.width, f.height, f.type) for f in idle} == {(opts.video_width, opts.video_height,
                                                                rtc.VideoBufferType.RGB24)}
        for frame in frames_of(speech_22k, 22050):
            await gen.push_audio(frame)
        await gen.push_audio(lk.AudioSegmentEnd())
        items = await until_end(it)
        check_ticks(items)
        audio = [f for f in items if isinstance(f, rtc.AudioFrame)]
        assert len(audio) == math.ceil(len(speech_22k) * 48000 / 22050 / SPF)
        out = np.concatenate([np.frombuffer(f.data, np.int16) for f in audio]).astype(np.float32) / 32768
        assert np.abs(out).max() > 0.1  # the speech, not silence
        after = await take(it, 5)
        assert all(isinstance(f, rtc.VideoFrame) for f in after)
        return len(audio)

    try:
        n = asyncio.run(main())
    finally:
        gen.session.close()
    assert len(ends) == 1 and not ends[0].interrupted
    assert ends[0].playback_position == pytest.approx(len(speech_22k) / 22050, abs=1 / 48000 * 2)
    assert n * SPF / 48000 >= ends[0].playback_position


def test_clear_buffer_ends_interrupted_at_once(lk, speech_22k):
    ends = []
    gen = lk.LipstreamVideoGenerator(box=BOX, cache=False, on_segment_end=ends.append)

    async def main():
        it = gen.__aiter__()
        for frame in frames_of(speech_22k, 22050, ms=100, channels=2):  # stereo, 100 ms frames
            await gen.push_audio(frame)
        spoken = 0
        while spoken < 10:
            item = await it.__anext__()
            spoken += isinstance(item, rtc.AudioFrame)
        t0 = time.perf_counter()
        gen.clear_buffer()
        item = await it.__anext__()
        waited = time.perf_counter() - t0
        assert isinstance(item, lk.AudioSegmentEnd), "the next item after clear_buffer is the segment's end"
        assert waited < 0.1
        after = await take(it, 5)
        assert all(isinstance(f, rtc.VideoFrame) for f in after), "idle at once"
        # A new utterance afterwards: speech again, its own position from zero.
        for frame in frames_of(speech_22k[:22050], 22050, ms=20):
            await gen.push_audio(frame)
        await gen.push_audio(lk.AudioSegmentEnd())
        items = await until_end(it)
        check_ticks(items)
        assert sum(isinstance(f, rtc.AudioFrame) for f in items) == 25

    try:
        asyncio.run(main())
    finally:
        gen.session.close()
    assert [e.interrupted for e in ends] == [True, False]
    assert ends[0].playback_position == pytest.approx(10 * SPF / 48000)
    assert ends[1].playback_position == pytest.approx(1.0)


def test_other_rates_are_resampled(lk, speech_22k):
    """A rate the session does not take (20 kHz) goes through LiveKit's resampler to 48 kHz."""
    ends = []
    gen = lk.LipstreamVideoGenerator(box=BOX, cache=False, on_segment_end=ends.append)
    pcm = np.interp(np.arange(0, len(speech_22k), 22050 / 20000), np.arange(len(speech_22k)), speech_22k)

    async def main():
        it = gen.__aiter__()
        for frame in frames_of(pcm.astype(np.float32), 20000):
            await gen.push_audio(frame)
        await gen.push_audio(lk.AudioSegmentEnd())
        check_ticks(await until_end(it))

    try:
        asyncio.run(main())
    finally:
        gen.session.close()
    assert ends[0].playback_position == pytest.approx(len(pcm) / 20000, abs=0.02)


class _Publication:
    async def wait_for_subscription(self):
        pass


class _Participant:
    identity = "agent"

    async def publish_track(self, track, options):
        return _Publication()


class _Room(rtc.EventEmitter):
    """Only what AvatarRunner asks of a connected room (it publishes two tracks); everything else
    — the runner, its AVSynchronizer pacing, the audio source, QueueAudioOutput — is LiveKit's own."""

    local_participant = _Participant()

    def isconnected(self):
        return True


def test_under_avatar_runner(lk, speech_22k):
    """The in-process path of `LipstreamAvatar`: QueueAudioOutput → AvatarRunner → this generator,
    paced in real time by LiveKit's AVSynchronizer; the agent hears playback started and finished."""
    gen = lk.LipstreamVideoGenerator(box=BOX, cache=False)

    async def main():
        audio = lk.QueueAudioOutput(sample_rate=48000, wait_playback_start=True)
        events = []
        audio.on("playback_started", lambda ev: events.append(("started", time.perf_counter())))
        audio.on("playback_finished", lambda ev: events.append(("finished", ev.playback_position, ev.interrupted)))
        runner = lk.AvatarRunner(_Room(), audio_recv=audio, video_gen=gen, options=gen.options)
        await runner.start()
        try:
            half = speech_22k[: 22050 // 2]
            for frame in frames_of(half, 22050):
                await audio.capture_frame(frame)
            audio.flush()
            for _ in range(100):
                await asyncio.sleep(0.05)
                if any(e[0] == "finished" for e in events):
                    break
            assert events[0][0] == "started"
            assert events[1][0] == "finished" and not events[1][2]
            assert events[1][1] == pytest.approx(0.52, abs=0.001)  # 13 ticks of 40 ms: 0.5 s rounded up
            # Barge-in: the agent clears the buffer while the avatar speaks.
            for frame in frames_of(speech_22k, 22050):
                await audio.capture_frame(frame)
            for _ in range(200):  # until the avatar has spoken a while
                await asyncio.sleep(0.05)
                if len(events) >= 3 and time.perf_counter() - events[2][1] > 0.4:
                    break
            assert events[2][0] == "started"
            audio.clear_buffer()
            t0 = time.perf_counter()
            for _ in range(100):
                await asyncio.sleep(0.005)
                if len(events) >= 4:
                    break
            assert time.perf_counter() - t0 < 0.1
            assert events[3][0] == "finished" and events[3][2], events
            assert 0.2 < events[3][1] < 2.0
        finally:
            await runner.aclose()

    try:
        asyncio.run(main())
    finally:
        gen.session.close()


def test_worker_load_is_the_share_of_open_sessions(lk):
    """`lipstream worker`'s load as LiveKit sees it: open sessions / max_sessions (registering with a
    server is not exercised here)."""
    from stream.adapters.livekit import make_server
    from stream.cli.main import main
    from stream.config import make_config

    server = make_server(make_config(box=BOX, max_sessions=4), url="ws://127.0.0.1:9", api_key="k", api_secret="s",
                         max_sessions=4)
    assert server.load_fnc() == 0
    gen = lk.LipstreamVideoGenerator(box=BOX, cache=False)
    try:
        assert server.load_fnc() == 0.25
    finally:
        gen.session.close()
    assert server.load_fnc() == 0
    assert main(["worker", "--livekit-url", "", "--api-key", "", "--api-secret", ""]) == 2


def test_lipstream_avatar_takes_the_agents_audio(lk, speech_22k):
    """`LipstreamAvatar.start(agent_session, room)`, the one call in an entrypoint, with a real
    `AgentSession` (no models) and the stand-in room: the agent's audio output becomes the avatar's
    queue, and what the agent plays is reported back as played."""
    from livekit.agents import AgentSession

    from stream.adapters.livekit import LipstreamAvatar

    async def main():
        agent = AgentSession()
        room = _Room()
        room.remote_participants = {}
        avatar = LipstreamAvatar(box=BOX, cache=False)
        await avatar.start(agent, room)
        try:
            out = agent.output.audio
            assert isinstance(out, lk.QueueAudioOutput) and out.sample_rate == 48000
            events = []
            out.on("playback_started", lambda ev: events.append("started"))
            out.on("playback_finished", lambda ev: events.append((ev.playback_position, ev.interrupted)))
            second = speech_22k[:22050]
            for frame in frames_of(second, 22050):
                await out.capture_frame(frame)  # the agent's TTS audio, as AgentSession plays it
            out.flush()
            for _ in range(200):
                await asyncio.sleep(0.05)
                if len(events) >= 2:
                    break
            assert events == ["started", (pytest.approx(1.0), False)]
        finally:
            await avatar.aclose()
        assert avatar.session is None  # closed with the avatar

    asyncio.run(main())
