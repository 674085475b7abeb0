"""AAC at 48 kHz mono from the clock's float samples (Opus for WebM, 16-bit PCM for ProRes QuickTime).

A file render encodes its audio in a stage of its own, beside the frames. In the muxer's thread,
the pipeline's last stage, it was nearly all of that thread's work: the file stage was busy 1.36 s
for bench.txt's 472 frames on the 2-core CPU, 0.01 s without it; on the H100 that stage (1.17 s)
was the render's longest."""
from __future__ import annotations

import fractions

import av
import numpy as np

from ..frames import FrameBatch
from ..stage import Stage
from .schedule import OUT_RATE

BIT_RATE = 128_000


def pcm_frame(samples: np.ndarray, pts: int) -> av.AudioFrame:
    """48 kHz float mono samples as a PyAV frame starting at sample `pts`."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate, frame.time_base, frame.pts = OUT_RATE, fractions.Fraction(1, OUT_RATE), pts
    return frame


def configure_aac(ctx) -> None:
    """The settings of the encoder and of the muxer's AAC track alike (so the track's header
    describes the packets it holds, as `VideoFormat.configure` does for H.264)."""
    ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = OUT_RATE, "mono", "fltp", BIT_RATE
    ctx.time_base = fractions.Fraction(1, OUT_RATE)


def configure_audio(ctx, codec: str = "aac") -> None:
    """`configure_aac`'s counterpart for each codec a file holds (encoder and muxer's track alike)."""
    if codec == "aac":
        return configure_aac(ctx)
    ctx.sample_rate, ctx.layout, ctx.time_base = OUT_RATE, "mono", fractions.Fraction(1, OUT_RATE)
    ctx.format = "s16" if codec == "pcm_s16le" else "flt"
    if codec == "libopus":
        ctx.bit_rate = OPUS_BIT_RATE


OPUS_BIT_RATE = 96_000


class AacStage(Stage):
    """Each batch's audio → AAC (or `codec`'s) packets on `item.audio_packets`; the encoder's tail at the end."""

    name = "aac"
    engine = "ffmpeg aac"

    def __init__(self, codec: str = "aac"):
        self.ctx = av.CodecContext.create(codec, "w")
        configure_audio(self.ctx, codec)
        if codec != "aac":
            self.name, self.engine = codec.removeprefix("lib").split("_")[0], f"ffmpeg {codec}"
        self.ctx.open()
        self._pts = 0
        self._next = 0

    def process(self, item: FrameBatch, emit) -> None:
        if len(item.audio):
            item.audio_packets = list(self.ctx.encode(pcm_frame(item.audio, self._pts)))
            self._pts += len(item.audio)
        self._next = item.start + item.count
        emit(item)

    def finish(self, emit) -> None:
        emit(FrameBatch(start=self._next, count=0, audio=np.zeros(0, np.float32), audio_packets=list(self.ctx.encode(None))))
