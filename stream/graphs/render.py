"""`render`: the streaming graph with a file sink, run as fast as it goes."""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass

from ..audio.aac import AacStage
from ..audio.schedule import FrameScheduler, Progress
from ..config import RenderConfig, as_config
from ..device import resolve_device
from ..errors import LipstreamError
from ..files import check_writable, output_kind
from ..lipsync.stage import LipSyncStage
from ..sinks.file import FileSink, container_for, keeps_alpha
from ..sources.media import read_audio
from ..sources.speech import TTSStage, audio_source, streamed_text_source, text_source
from ..sources.stdin import read_pieces
from ..tts.chunker import read_text
from ..tts.registry import make_tts
from ..video.alpha_codecs import CODECS, AlphaFileEncoder
from ..video.background import BackgroundStage, make_background
from ..video.compose import ComposeStage
from ..video.encode import EncodeStage, VideoFormat, make_video_encoder
from . import runtime
from .pipeline import Pipeline

log = logging.getLogger("lipstream")


@dataclass
class RenderResult:
    output: str
    frames: int
    speech_seconds: float
    wall_seconds: float
    stages: list[str]
    busy: dict[str, float]  # seconds each stage spent working (an upper bound: includes blocked emits)
    first_frame_seconds: float | None = None  # from the call to the first muxed frame, set-up included
    process_seconds: float | None = None  # from the start of the process (imports included) to the end
    setup_seconds: float | None = None  # of wall_seconds: avatar, model load, graph capture, kernel compilation

    @property
    def realtime_factor(self) -> float:
        """Seconds of speech rendered per second of wall time (above 1: faster than real time)."""
        return self.speech_seconds / self.wall_seconds if self.wall_seconds else float("inf")

    def summary(self) -> str:
        first = f", first frame at {self.first_frame_seconds:.2f} s" if self.first_frame_seconds is not None else ""
        since = f", {self.process_seconds:.2f} s since the process started" if self.process_seconds is not None else ""
        setup = f", set-up and warm-up {self.setup_seconds:.2f} s" if self.setup_seconds is not None else ""
        return (f"{self.output}: {self.frames} frames, {self.speech_seconds:.2f} s of speech in "
                f"{self.wall_seconds:.2f} s ({self.realtime_factor:.2f}× real time{setup}{first}{since}) | "
                + " · ".join(self.stages))


def process_age() -> float | None:
    """Seconds since this process started (Linux), so start-up is not left out of what a user waited."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - started / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def render(output: str, *, text: str | None = None, text_file: str | None = None, audio: str | None = None,
           mic=None, config: RenderConfig | str | None = None, progress: Progress | None = None, on_tick=None,
           **settings) -> RenderResult:
    """Text, an audio file or the microphone → a lip-synced video at `output`. Settings are `RenderConfig` fields.
    `mic`: a `stream.sources.mic.Microphone` (True: the default input, until its `stop()`), rendered
    while it records; `stop()` ends the recording and the file is finished.
    `text_file="-"` reads standard input as it arrives (an LLM's tokens piped in)."""
    started = time.perf_counter()
    if sum(x is not None for x in (text, text_file, audio, mic)) != 1:
        raise LipstreamError("give exactly one of text, text_file, audio or mic")
    cfg = as_config(config, **settings)
    check_writable(output)
    if output_kind(output) == ".webm" and cfg.encoder == "nvenc":
        raise LipstreamError(f"--encoder nvenc writes H.264; {output} is WebM, VP9 by libvpx-vp9 (drop --encoder nvenc)")
    device = resolve_device(cfg.device)
    if mic is not None:
        from ..sources.mic import Microphone

        source, speech = (Microphone() if mic is True else mic).chunks(), None
    elif audio is not None:
        samples, rate = read_audio(audio)
        source, speech = audio_source(samples, rate), None
    else:
        tts = make_tts(cfg, device)
        if text_file == "-":  # spoken as it arrives: the first frames are out before the writer is done
            source = streamed_text_source(read_pieces(sys.stdin.fileno()), tts.check)
        else:
            words = read_text(text, text_file)
            tts.check(words)
            source = text_source(words)
        speech = TTSStage(tts)
    avatar = runtime.shared_avatar(cfg, device)
    background = make_background(cfg.background, avatar, device)  # no alpha: an error before any work
    alpha = avatar.matte is not None and background is None and keeps_alpha(output)
    if avatar.matte is not None and background is None and not alpha:
        log.warning("%s is opaque: the avatar's alpha is dropped (write .webm or .mov to keep it, or give "
                    "--background)", output)
    box = container_for(output, alpha)
    if box.video != "h264" and cfg.encoder == "nvenc":
        raise LipstreamError(f"--encoder nvenc writes H.264; {output} is {CODECS[box.video].label} with alpha "
                             "(drop --encoder nvenc, or give --background for an H.264 .mov)")
    worker = runtime.acquire_worker(cfg, device)  # the process's one lip-sync path, shared with live sessions
    try:
        if worker.name == "procedural":
            log.info("no lip-sync weights configured: using the procedural mouth (give --checkpoint for Wav2Lip, "
                     "--musetalk-models for MuseTalk)")
        face = runtime.shared_face(avatar, worker)
        progress = progress or Progress()
        h, w = avatar.size
        every = box.keyint_seconds  # fragments start at key frames
        video = VideoFormat(w, h, cfg.fps, cfg.preset, cfg.crf, keyint=round(every * cfg.fps) if every else None)
        if output_kind(output) == ".h264":
            log.info("%s holds the video stream alone (no audio)", output)
        stages = [s for s in (
            speech,
            FrameScheduler(cfg.fps, avatar, device, cfg.batch_size, progress, worker.model.features,
                           engine=f"{worker.name} features"),
            LipSyncStage(worker, face),
            ComposeStage(avatar, face, worker.dtype),
            BackgroundStage(background, device) if background is not None else None,
            EncodeStage(AlphaFileEncoder(CODECS[box.video], video, alpha) if box.video != "h264"
                        else make_video_encoder(video, device, cfg.encoder), device),
            AacStage(box.audio_codec) if box.audio else None,  # beside the frames, not in the muxer's thread
            FileSink(output, video, progress, alpha),
        ) if s is not None]
        for s in stages:
            log.info("stage %s", s.describe())
        loaded = time.perf_counter() - started
        pipeline = Pipeline(stages)
        pipeline.run(source, poll=on_tick)
    finally:
        runtime.release_worker(worker)
    return RenderResult(
        output=output,
        frames=progress.done,
        speech_seconds=progress.speech_samples / max(1, progress.sample_rate),
        wall_seconds=time.perf_counter() - started,
        stages=[s.describe() for s in stages],
        busy={s.name: round(s.busy, 3) for s in stages},
        first_frame_seconds=progress.first_frame_at - started if progress.first_frame_at else None,
        process_seconds=process_age(),
        setup_seconds=loaded + pipeline.warmup_seconds,
    )

