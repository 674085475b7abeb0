"""The pipecat video service inside a real pipecat pipeline (pipecat's own `run_test`)."""
import asyncio
import math
import time

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="the pipecat extra is not installed (pip install 'lipstream[pipecat]')")

from pipecat.frames.frames import (  # noqa: E402
    InterruptionFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402

from stream.adapters.pipecat import LipstreamVideoService  # noqa: E402

BOX = (67, 170, 177, 270)
SPF = 48000 // 25


class Pushed(BaseObserver):
    """When the service pushed each frame downstream."""

    def __init__(self, service):
        super().__init__()
        self.service, self.log = service, []

    async def on_push_frame(self, data: FramePushed):
        if data.source is self.service:
            self.log.append((time.perf_counter(), data.frame))


def tts_frames(pcm: np.ndarray, rate: int, ms: int = 20):
    pcm16 = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
    step = rate * ms // 1000
    return [TTSAudioRawFrame(audio=pcm16[at : at + step].tobytes(), sample_rate=rate, num_channels=1)
            for at in range(0, len(pcm16), step)]


def test_speech_in_images_and_delayed_audio_out(speech_22k):
    speech = speech_22k[: 22050 * 3 // 2]  # 1.5 s
    service = LipstreamVideoService(session_settings=dict(box=BOX, cache=False))
    pushed = Pushed(service)
    down, _ = asyncio.run(run_test(service, observers=[pushed], frames_to_send=[
        TTSStartedFrame(), *tts_frames(speech, 22050), TTSStoppedFrame(), SleepFrame(sleep=2.5)]))
    kinds = [type(f) for f in down]
    assert kinds.index(TTSStartedFrame) < kinds.index(TTSAudioRawFrame)  # idle images may come first
    images = [f for f in down if isinstance(f, OutputImageRawFrame)]
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    w, h = images[0].size
    assert all(f.format == "RGB" and f.size == (w, h) and len(f.image) == w * h * 3 for f in images)
    # The delayed audio: 48 kHz mono ticks, each right after its image; none of the input passed on.
    assert all((f.sample_rate, f.num_channels, f.num_frames) == (48000, 1, SPF) for f in audio)
    assert len(audio) == math.ceil(len(speech) * 48000 / 22050 / SPF)
    for k, f in enumerate(down):
        if isinstance(f, TTSAudioRawFrame):
            assert isinstance(down[k - 1], OutputImageRawFrame)
    # The utterance's end goes on after its last audio, not when the TTS said it.
    stop = kinds.index(TTSStoppedFrame)
    assert stop > max(k for k, f in enumerate(down) if isinstance(f, TTSAudioRawFrame))
    # In real time at the fps: images 40 ms apart (idle ones too).
    times = [t for t, f in pushed.log if isinstance(f, OutputImageRawFrame)]
    gaps = np.diff(times)
    assert np.median(gaps) == pytest.approx(0.04, abs=0.005)
    assert len(times) / (times[-1] - times[0]) == pytest.approx(25, rel=0.15)
    assert len(service.segment_ends) == 1 and not service.segment_ends[0].interrupted


def test_interruption(speech_22k):
    service = LipstreamVideoService(session_settings=dict(box=BOX, cache=False))
    pushed = Pushed(service)
    speech = np.concatenate([speech_22k, speech_22k])  # long enough to be cut
    # The first second, a pause in which it starts speaking (the session opens then: slow on a loaded
    # machine), the rest, and the interruption while the rest is still queued.
    first = 22050 // 20 * 20
    down, _ = asyncio.run(run_test(service, observers=[pushed], frames_to_send=[
        TTSStartedFrame(), *tts_frames(speech[:first], 22050), SleepFrame(sleep=1.0),
        *tts_frames(speech[first:], 22050), SleepFrame(sleep=0.8), InterruptionFrame(), SleepFrame(sleep=0.6)]))
    assert any(isinstance(f, InterruptionFrame) for f in down), "the interruption is passed on"
    t_int = next(t for t, f in pushed.log if isinstance(f, InterruptionFrame))
    audio_t = [t for t, f in pushed.log if isinstance(f, TTSAudioRawFrame)]
    assert audio_t, "it spoke before the interruption"
    assert all(t < t_int + 0.05 for t in audio_t), "no speech after the interruption"
    images_after = [t for t, f in pushed.log if isinstance(f, OutputImageRawFrame) and t > t_int]
    assert len(images_after) >= 10, "idle images go on"
    assert len(audio_t) * SPF / 48000 < len(speech) / 22050 / 2
    assert [e.interrupted for e in service.segment_ends] == [True]


def test_example_bot_over_smallwebrtc():
    """`examples/pipecat_avatar.py`'s bot with a real SmallWebRTC connection, an aiortc peer on
    loopback in the browser's place: it greets, and the peer receives the avatar's video at the fps
    and its speech (pipecat's runner, its HTTP server and web page are not part of this)."""
    import importlib.util
    import os

    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from pipecat.runner.types import SmallWebRTCRunnerArguments
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

    from stream.serve.ice import offer_loopback

    offer_loopback(only=True)  # WebRTC never leaves this machine
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "pipecat_avatar.py")
    spec = importlib.util.spec_from_file_location("pipecat_avatar", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.SETTINGS.update(box=tuple(BOX), cache=False)

    async def main():
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer.addTransceiver("audio", direction="sendrecv")
        peer.addTransceiver("video", direction="sendrecv")
        peer.createDataChannel("chat")
        got = {"video": [], "audio": []}
        pulls = []

        @peer.on("track")
        def on_track(track):
            async def pull():
                while True:
                    frame = await track.recv()
                    got[track.kind].append((time.perf_counter(), frame))
            pulls.append(asyncio.ensure_future(pull()))

        await peer.setLocalDescription(await peer.createOffer())
        connection = SmallWebRTCConnection()
        await connection.initialize(sdp=peer.localDescription.sdp, type="offer")
        answer = connection.get_answer()
        await peer.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        bot = asyncio.create_task(example.bot(SmallWebRTCRunnerArguments(webrtc_connection=connection)))
        try:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 20 and len(got["video"]) < 100:
                await asyncio.sleep(0.1)
        finally:
            for task in pulls:
                task.cancel()
            await peer.close()
            await connection.disconnect()
            await asyncio.wait_for(bot, 10)  # the client left: the bot's pipeline ends
        return got

    got = asyncio.run(main())
    video, audio = got["video"], got["audio"]
    assert len(video) >= 100
    assert {(f.width, f.height) for _, f in video} == {(512, 512)}
    assert (len(video) - 1) / (video[-1][0] - video[0][0]) == pytest.approx(25, rel=0.15)
    assert audio and audio[0][1].sample_rate == 48000
    pcm = np.concatenate([f.to_ndarray().ravel() for _, f in audio])
    assert np.abs(pcm).max() > 3000, "the greeting is heard"
