"""AAC at 48 kHz mono from the clock's float samples.

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


class AacStage(Stage):
    """Each batch's audio → AAC packets on `item.audio_packets`; the encoder's tail at the end."""

    name = "aac"
    engine = "ffmpeg aac"

    def __init__(self):
        self.ctx = av.CodecContext.create("aac", "w")
        configure_aac(self.ctx)
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
