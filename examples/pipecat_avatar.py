"""A lipstream avatar in a pipecat pipeline, seen and heard in the browser over SmallWebRTC.

    pip install -e '.[pipecat]' 'pipecat-ai[runner]==1.14.*'
    python examples/pipecat_avatar.py          # then open http://localhost:7860/client and press Connect

No API key is needed: the avatar greets you, then says each line you type in this terminal, through
lipstream's embedded eSpeak voice. In a real agent the speech comes from your TTS service after
STT and an LLM; the avatar goes where the TTS's audio goes, right after it:

    Pipeline([transport.input(), stt, user_aggregator, llm, tts, LipstreamVideoService(), transport.output(),
              assistant_aggregator])

Settings of the avatar (`avatar=`, `checkpoint=`, `device=`, `fps=` …, those of `lipstream render`)
go in `session_settings`; LIPSTREAM_AVATAR and LIPSTREAM_CHECKPOINT set the first two here.
"""
import asyncio
import os
import sys

from pipecat.frames.frames import Frame, TTSAudioRawFrame, TTSSpeakFrame, TTSStartedFrame, TTSStoppedFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.types import RunnerArguments
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.workers.runner import WorkerRunner

from stream.adapters.pipecat import LipstreamVideoService
from stream.tts.espeak import EspeakTTS

SETTINGS = {k: v for k, v in (("avatar", os.environ.get("LIPSTREAM_AVATAR")),
                              ("checkpoint", os.environ.get("LIPSTREAM_CHECKPOINT"))) if v}


class EspeakSpeech(FrameProcessor):
    """A stand-in TTS service: each `TTSSpeakFrame` becomes TTSStarted, 16-bit PCM, TTSStopped."""

    def __init__(self):
        super().__init__()
        self.tts = EspeakTTS()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if not isinstance(frame, TTSSpeakFrame):
            await self.push_frame(frame, direction)
            return
        chunks = await asyncio.to_thread(lambda: list(self.tts.synthesize(frame.text)))
        await self.push_frame(TTSStartedFrame())
        for chunk in chunks:
            pcm = (chunk.clip(-1, 1) * 32767).astype("<i2").tobytes()
            await self.push_frame(TTSAudioRawFrame(audio=pcm, sample_rate=self.tts.sample_rate, num_channels=1))
        await self.push_frame(TTSStoppedFrame())


async def bot(runner_args: RunnerArguments):
    avatar = LipstreamVideoService(session_settings=SETTINGS)
    await asyncio.to_thread(avatar.open)  # load the model and the avatar now: the transport needs their size
    width, height = avatar.size
    transport = SmallWebRTCTransport(
        webrtc_connection=runner_args.webrtc_connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True, video_out_enabled=True,
                               video_out_is_live=True, video_out_width=width, video_out_height=height,
                               video_out_framerate=avatar.fps),
    )
    worker = PipelineWorker(Pipeline([transport.input(), EspeakSpeech(), avatar, transport.output()]),
                            params=PipelineParams(audio_out_sample_rate=48000))  # the avatar's audio is 48 kHz

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):
        await worker.queue_frame(TTSSpeakFrame("Hello! I am a lipstream avatar. Type a line in the terminal "
                                               "and I will say it."))

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        await worker.cancel()

    async def terminal_lines():
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip():
                await worker.queue_frame(TTSSpeakFrame(line.strip()))

    typing = asyncio.create_task(terminal_lines())
    try:
        runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
        await runner.add_workers(worker)
        await runner.run()
    finally:
        typing.cancel()


if __name__ == "__main__":
    from pipecat.runner.run import main

    sys.argv[1:1] = [] if "-t" in sys.argv else ["-t", "webrtc"]
    main()
