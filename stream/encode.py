"""H.264 through PyAV's libx264: frames in, Annex B packets out (SPS/PPS in band, as WebRTC wants)."""
from __future__ import annotations

import fractions

import av
import numpy as np

from .frames import FrameBatch
from .pipeline import Stage


class X264Encoder:
    name = "libx264"

    def __init__(self, width: int, height: int, fps: int, preset: str = "veryfast", crf: int = 20,
                 tune: str | None = None):
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = fractions.Fraction(1, fps)
        ctx.framerate = fractions.Fraction(fps, 1)
        options = {"preset": preset, "crf": str(crf)}
        if tune:
            options["tune"] = tune
        ctx.options = options
        self.ctx = ctx

    def encode(self, bgr, pts: int) -> list[av.Packet]:
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        frame.pts = pts
        return list(self.ctx.encode(frame))

    def flush(self) -> list[av.Packet]:
        return list(self.ctx.encode(None))


class EncodeStage(Stage):
    name = "encode"
    device = "cpu"

    def __init__(self, encoder: X264Encoder):
        self.encoder = encoder
        self.engine = encoder.name
        self._next = 0

    def process(self, item: FrameBatch, emit) -> None:
        frames = item.frames.cpu().numpy()  # the host copy before a CPU encoder
        for k in range(item.count):
            item.packets.extend(self.encoder.encode(frames[k], item.start + k))
        self._next = item.start + item.count
        item.frames = None
        emit(item)

    def finish(self, emit) -> None:
        emit(FrameBatch(start=self._next, count=0, audio=np.zeros(0, np.float32), packets=self.encoder.flush()))
