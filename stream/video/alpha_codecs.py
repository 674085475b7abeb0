"""The video codecs of files that are not H.264: VP9 for `.webm` and ProRes 4444 for an alpha `.mov`,
each with the matte as its alpha plane where the frames carry one (libvpx-vp9 `yuva420p`: VP9's
alpha is a second VP9 stream in WebM's BlockAdditional, which the libvpx decoder reads; prores_ks
`yuva444p10le`, the QuickTime alpha format editors read). Same contract as `X264Encoder`:
`encode(image, pts, fmt, keyframe)` and `flush()` return PyAV packets; `input` "bgra" takes
H×W×4 host images (the matte as the fourth channel), "host" plain BGR."""
from __future__ import annotations

import fractions
from dataclasses import dataclass

import av

from ..errors import LipstreamError
from .encode import VideoFormat, X264Encoder


@dataclass(frozen=True)
class Codec:
    name: str  # FFmpeg's encoder
    pix_fmt: str  # opaque frames
    alpha_pix_fmt: str  # frames with a matte
    options: dict
    label: str
    frame_threads: int = 0  # FFmpeg frame threads (0: the codec's default)

    def configure(self, ctx, fmt: VideoFormat, alpha: bool) -> None:
        """The encoder's settings, and the muxer's track's alike (its header describes the stream)."""
        ctx.width, ctx.height = fmt.width, fmt.height
        ctx.pix_fmt = self.alpha_pix_fmt if alpha else self.pix_fmt
        ctx.time_base = fractions.Fraction(1, fmt.fps)
        ctx.framerate = fractions.Fraction(fmt.fps, 1)
        ctx.colorspace, ctx.color_range = av.video.reformatter.Colorspace.ITU601, av.video.reformatter.ColorRange.MPEG
        ctx.color_primaries, ctx.color_trc = 6, 6  # SMPTE 170M, as swscale converts
        ctx.options = dict(self.options)
        if self.frame_threads:
            ctx.thread_type, ctx.thread_count = "FRAME", self.frame_threads


# VP9: realtime deadline, speed 8 and row threads (measured on the 2-core CPU, the astronaut's 512² frames
# with alpha: 'good' speed 4 63 frames/s, realtime speed 8 131; libx264 veryfast 233).
# crf 31 is libvpx's suggestion for this size; b 0 makes it constant quality.
VP9 = Codec("libvpx-vp9", "yuv420p", "yuva420p",
            {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "31", "b": "0"}, "vp9")
# ProRes 4444 (profile 4), 16-bit alpha as Apple's encoder writes it; 'apl0' as vendor so Final Cut reads it.
# Two frame threads: 40 frames/s instead of 32 (same frames; prores_aw would give 114, at half the bits).
PRORES = Codec("prores_ks", "yuv444p10le", "yuva444p10le", {"profile": "4", "alpha_bits": "16", "vendor": "apl0"},
               "prores 4444", frame_threads=2)
CODECS = {"vp9": VP9, "prores": PRORES}


class AlphaFileEncoder(X264Encoder):
    """VP9 or ProRes through PyAV; with `alpha` the images are BGRA (the matte last). `encode` and
    `flush` are libx264's: PyAV converts each frame to the codec's YUV(A) (swscale)."""

    def __init__(self, codec: Codec, fmt: VideoFormat, alpha: bool):
        self.codec, self.format, self.alpha = codec, fmt, alpha
        self.name = codec.name + (f" {codec.alpha_pix_fmt}" if alpha else "")
        self.input = "bgra" if alpha else "host"
        self.ctx = av.CodecContext.create(codec.name, "w")
        codec.configure(self.ctx, fmt, alpha)
        try:
            self.ctx.open()
        except av.FFmpegError as e:
            raise LipstreamError(f"{codec.name} refused the settings {fmt}: {e}") from None
