"""H.264 through PyAV's libx264: frames in, Annex B packets out (SPS/PPS in band, as WebRTC wants)."""
from __future__ import annotations

import fractions

import av
import numpy as np
import torch

from kernels import bgr_to_i420

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

    def encode(self, image, pts: int, fmt: str = "bgr24") -> list[av.Packet]:
        """`image`: H×W×3 BGR (`bgr24`) or (H·3/2)×W I420 (`yuv420p`), host memory."""
        frame = av.VideoFrame.from_ndarray(image, format=fmt)
        frame.pts = pts
        return list(self.ctx.encode(frame))

    def flush(self) -> list[av.Packet]:
        return list(self.ctx.encode(None))


class EncodeStage(Stage):
    """On CUDA the frames become I420 on the GPU first, so half the bytes cross to the CPU encoder;
    on the CPU swscale's BGR conversion measures faster (1.1 ms vs 3.9 ms a 512² frame) than the
    torch reference."""

    name = "encode"
    device = "cpu"

    def __init__(self, encoder: X264Encoder, source_device: torch.device):
        self.encoder = encoder
        self.on_gpu = source_device.type == "cuda"
        self.engine = encoder.name + (" (i420 triton on cuda)" if self.on_gpu else " (swscale bgr24)")
        self._next = 0

    def process(self, item: FrameBatch, emit) -> None:
        if self.on_gpu:
            images, fmt = bgr_to_i420(item.frames).cpu().numpy(), "yuv420p"  # the host copy for libx264
        else:
            images, fmt = item.frames.numpy(), "bgr24"
        for k in range(item.count):
            item.packets.extend(self.encoder.encode(images[k], item.start + k, fmt))
        self._next = item.start + item.count
        item.frames = None
        emit(item)

    def finish(self, emit) -> None:
        emit(FrameBatch(start=self._next, count=0, audio=np.zeros(0, np.float32), packets=self.encoder.flush()))
