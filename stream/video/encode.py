"""H.264: frames in, Annex B packets out (SPS/PPS in band, as WebRTC wants). The encoder contract is
`X264Encoder`'s: `encode(image, pts, fmt, keyframe)` and `flush()` return PyAV packets, and `input`
says what the image is (host BGR/I420 here; NV12 on the GPU for `nvenc.NvencEncoder`)."""
from __future__ import annotations

import contextlib
import fractions
import io
import logging
from dataclasses import dataclass

import av
import numpy as np
import torch

from kernels import bgr_to_i420, bgr_to_nv12

from ..config import PRESETS
from ..errors import LipstreamError
from ..frames import FrameBatch
from ..stage import Stage

log = logging.getLogger("lipstream")


@dataclass(frozen=True)
class VideoFormat:
    """Everything that shapes the H.264 parameter sets; the encoder and the MP4 track both use it,
    so the file's avcC header describes exactly the stream it holds."""

    width: int
    height: int
    fps: int
    preset: str = "veryfast"
    crf: int = 20
    tune: str | None = None
    keyint: int | None = None  # frames between IDRs (live streams: one a second, so a viewer joins cleanly)

    def configure(self, ctx) -> None:
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, "yuv420p"
        ctx.time_base = fractions.Fraction(1, self.fps)
        ctx.framerate = fractions.Fraction(self.fps, 1)
        # BT.601 limited range is what swscale and kernels.colour produce; say so in the stream.
        ctx.colorspace, ctx.color_range = av.video.reformatter.Colorspace.ITU601, av.video.reformatter.ColorRange.MPEG
        ctx.color_primaries, ctx.color_trc = 6, 6  # SMPTE 170M
        if self.keyint:
            ctx.gop_size = self.keyint
        # forced-idr: a frame forced to I (a viewer's keyframe request) is an IDR, with SPS/PPS before it.
        options = {"preset": self.preset, "crf": str(self.crf), "forced-idr": "1"}
        if self.tune:
            options["tune"] = self.tune
        ctx.options = options


@contextlib.contextmanager
def h264_template(first: av.Packet):
    """A stream described by the H.264 stream itself: the first packet's in-band SPS and PPS (from
    whichever encoder made it), parsed by FFmpeg's H.264 demuxer, as a template for a muxer's track
    (`add_stream_from_template`; MP4 turns them into its avcC header)."""
    with av.open(io.BytesIO(bytes(first)), format="h264") as src:
        stream = src.streams.video[0]
        if not (first.is_keyframe and stream.codec_context.width and stream.codec_context.extradata):
            raise LipstreamError("the video stream does not start with a key frame and its parameter sets")
        yield stream


class X264Encoder:
    name = "libx264"
    input = "host"  # bgr24 or yuv420p arrays in host memory

    def __init__(self, fmt: VideoFormat):
        if fmt.preset not in PRESETS:
            raise LipstreamError(f"unknown x264 preset {fmt.preset!r} (one of {', '.join(PRESETS)})")
        self.format = fmt
        self.ctx = av.CodecContext.create("libx264", "w")
        fmt.configure(self.ctx)
        try:
            self.ctx.open()  # fail here, before any work, on settings libx264 refuses
        except av.FFmpegError as e:
            raise LipstreamError(f"libx264 refused the settings {fmt}: {e}") from None

    def encode(self, image, pts: int, fmt: str = "bgr24", keyframe: bool = False) -> list[av.Packet]:
        """`image`: H×W×3 BGR (`bgr24`) or (H·3/2)×W I420 (`yuv420p`), host memory; `keyframe`: an IDR now."""
        frame = av.VideoFrame.from_ndarray(image, format=fmt)
        frame.pts = pts
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        return list(self.ctx.encode(frame))

    def flush(self) -> list[av.Packet]:
        return list(self.ctx.encode(None))


_told: set = set()  # devices whose encoder choice was logged


def make_video_encoder(fmt: VideoFormat, device: torch.device, choice: str = "auto"):
    """NVENC where the frames are on a GPU that has it (`choice` auto or nvenc), else libx264; the
    reason is logged once per device, and `nvenc` asked for where it cannot run is an error."""
    from .nvenc import NvencEncoder, unavailable

    if choice == "libx264":
        return X264Encoder(fmt)
    why = unavailable(device)
    if why is None:
        return NvencEncoder(fmt, device)
    if choice == "nvenc":
        raise LipstreamError(f"encoder nvenc: {why}")
    if device.type == "cuda" and device not in _told:
        _told.add(device)
        log.info("video encoder: libx264, not NVENC: %s", why)
    return X264Encoder(fmt)


def encoder_choice(device: torch.device, choice: str = "auto") -> str:
    """What `make_video_encoder` would pick, and why (for `doctor`)."""
    from .nvenc import unavailable

    why = "asked for" if choice == "libx264" else unavailable(device)
    return "nvenc" if why is None else f"libx264 (NVENC: {why})"


class EncodeStage(Stage):
    """On CUDA the frames become I420 on the GPU first, so half the bytes cross to the CPU encoder;
    on the CPU swscale's BGR conversion measures faster (1.1 ms vs 3.9 ms a 512² frame) than the
    torch reference."""

    name = "encode"

    def __init__(self, encoder, source_device: torch.device):
        self.encoder = encoder
        self.on_gpu = source_device.type == "cuda"
        # The thread's device is the frames' (for the colour kernel); libx264 itself runs on the CPU.
        self.device = source_device if self.on_gpu else "cpu"
        if encoder.input == "nv12":
            self._convert, self.engine = bgr_to_nv12, f"{encoder.name}, nv12 by triton, no host copy"
        elif encoder.input == "bgra":  # the matte rides as the fourth channel to the codec's alpha plane
            self._convert, self.engine = None, f"{encoder.name} (swscale bgra)"
        elif self.on_gpu:
            self._convert, self.engine = bgr_to_i420, f"{encoder.name} on cpu, i420 by triton"
        else:
            self._convert, self.engine = None, f"{encoder.name} (swscale bgr24)"
        self._next = 0

    def warmup(self) -> None:
        if self._convert is not None:  # Triton compiles the colour kernel on its first call
            f = self.encoder.format
            self._convert(torch.zeros(1, f.height, f.width, 3, dtype=torch.uint8, device=self.device))

    def process(self, item: FrameBatch, emit) -> None:
        if self._convert is bgr_to_nv12:
            images, fmt = self._convert(item.frames), "nv12"  # stays on the GPU, read on this stream
        elif self._convert is not None:
            images, fmt = self._convert(item.frames).cpu().numpy(), "yuv420p"  # the host copy for libx264
        elif self.encoder.input == "bgra":
            images, fmt = torch.cat([item.frames, item.mattes.unsqueeze(-1)], -1).cpu().numpy(), "bgra"
        else:
            images, fmt = item.frames.numpy(), "bgr24"
        for k in range(item.count):
            item.packets.extend(self.encoder.encode(images[k], item.start + k, fmt))
        self._next = item.start + item.count
        item.frames = item.mattes = None
        emit(item)

    def finish(self, emit) -> None:
        emit(FrameBatch(start=self._next, count=0, audio=np.zeros(0, np.float32), packets=self.encoder.flush()))
