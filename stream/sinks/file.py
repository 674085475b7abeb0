"""The file sink: H.264 packets (any encoder's: the track's header is made from their own SPS/PPS)
and AAC packets muxed as they come, by the output's name (VP9 and ProRes with alpha: `alpha_codecs`):

- `.mp4` / `.m4v` / `.mov`: written to a temporary name beside the output (memory stays flat however
  long the render), the index moved to the front at the end (faststart, for players that stream),
  then renamed into place whole;
- `.mkv`: Matroska, H.264 and AAC, the same way;
- `.webm`: VP9 (with alpha where the frames carry a matte) and Opus, the same way;
- `.mov` of frames with a matte: ProRes 4444 with alpha and 16-bit PCM, the same way;
- `.h264`: the Annex B video stream alone (no audio), the same way;
- `-`: fragmented MP4 on standard output, a fragment a second, playable while it is written.
"""
from __future__ import annotations

import fractions
import logging
import sys
import time
from dataclasses import dataclass

import av

from ..audio.aac import configure_audio
from ..audio.schedule import OUT_RATE, Progress
from ..errors import LipstreamError
from ..files import commit, discard, output_kind, temporary_beside
from ..frames import FrameBatch
from ..stage import Stage
from ..video.alpha_codecs import CODECS
from ..video.encode import VideoFormat, h264_template

log = logging.getLogger("lipstream")


@dataclass(frozen=True)
class Container:
    format: str  # FFmpeg's muxer
    options: dict
    audio: bool = True
    keyint_seconds: float | None = None  # a key frame this often (fragments start at key frames)
    video: str = "h264"  # or a key of alpha_codecs.CODECS
    audio_codec: str = "aac"


CONTAINERS = {
    ".mp4": Container("mp4", {"movflags": "+faststart"}),
    ".m4v": Container("mp4", {"movflags": "+faststart"}),
    ".mov": Container("mov", {"movflags": "+faststart"}),
    ".mkv": Container("matroska", {}),
    ".webm": Container("webm", {}, video="vp9", audio_codec="libopus"),
    ".h264": Container("h264", {}, audio=False),
    # delay_moov: the header waits for the first fragment, so its edit list can take out the
    # B-frames' delay (without it the video starts two frames, 80 ms, after the audio).
    "-": Container("mp4", {"movflags": "frag_keyframe+empty_moov+default_base_moof+delay_moov"}, keyint_seconds=1.0),
}

# QuickTime with alpha: ProRes 4444 (H.264 has no alpha); PCM, as editors expect beside ProRes.
ALPHA_MOV = Container("mov", {"movflags": "+faststart"}, video="prores", audio_codec="pcm_s16le")


def container_for(path: str, alpha: bool) -> Container:
    """The container and codecs of `path`; `alpha`: the frames carry a matte (only .webm and .mov keep it)."""
    kind = output_kind(path)
    return ALPHA_MOV if alpha and kind == ".mov" else CONTAINERS[kind]


def keeps_alpha(path: str) -> bool:
    return output_kind(path) in (".webm", ".mov")


class FileSink(Stage):
    name = "file"

    def __init__(self, path: str, video: VideoFormat, progress: Progress, alpha: bool = False):
        """`alpha`: the video packets carry a matte (VP9 yuva420p, ProRes yuva444p10le)."""
        self.path, self.video, self.progress, self.alpha = path, video, progress, alpha
        self.container = container_for(path, alpha)
        c = self.container
        self.engine = f"pyav {c.format}" + (f" {CODECS[c.video].label}" if c.video != "h264" else "") + (
            " with alpha" if alpha else "") + ("" if c.audio else " (video only)") + (" to stdout" if path == "-" else "")
        self._tmp: str | None = None  # made by the first item, in the pipeline's run: its close() removes it
        self._opened = False
        self._done = False
        self._held: list = []  # audio packets that came before the first video packet
        self.frames = 0

    def _open(self, first: av.Packet) -> None:
        c = self.container
        if self.path == "-":
            target = sys.stdout.buffer
        else:
            target = self._tmp = temporary_beside(self.path)
        try:
            self._out = av.open(target, "w", format=c.format, options=c.options)
        except av.FFmpegError as e:
            if self._tmp is not None:
                discard(self._tmp)
            raise LipstreamError(f"cannot write {self.path}: {e}") from None
        self._opened = True
        if c.video == "h264":
            with h264_template(first) as template:  # the track's header from the packets' own SPS/PPS
                self._video = self._out.add_stream_from_template(template)
        else:  # configured as the encoder is (`AlphaFileEncoder`); WebM marks a yuva420p track AlphaMode
            codec = CODECS[c.video]
            self._video = self._out.add_stream(codec.name, rate=self.video.fps)
            codec.configure(self._video.codec_context, self.video, self.alpha)
        self._video.time_base = fractions.Fraction(1, self.video.fps)
        self._audio = None
        if c.audio:  # its packets come from `AacStage`, configured alike
            self._audio = self._out.add_stream(c.audio_codec, rate=OUT_RATE)
            configure_audio(self._audio.codec_context, c.audio_codec)

    def process(self, item: FrameBatch, emit) -> None:
        if not self._opened and item.packets:
            self._open(item.packets[0])
        self._held.extend(item.audio_packets)  # until the video track exists (the encoder's first packets lag)
        if self._opened:
            for packet in item.packets:
                packet.stream = self._video
                self._written(self._out.mux, packet)
            for packet in self._held if self._audio is not None else ():
                packet.stream = self._audio
                self._written(self._out.mux, packet)
            self._held = []
        if self.progress.first_frame_at is None and item.count:
            self.progress.first_frame_at = time.perf_counter()
        self.frames += item.count
        self.progress.done = self.frames
        emit(item)

    def finish(self, emit) -> None:
        if not self._opened or self.frames == 0:
            raise LipstreamError("nothing to render: the speech is empty")
        self._written(self._out.close)  # the index, and with faststart a second pass over the file
        self._done = True
        if self._tmp is not None:
            commit(self._tmp, self.path)
        else:
            sys.stdout.flush()

    def _written(self, write, *args) -> None:
        """A write to the output; one that fails (a full disk, a file size limit, a closed pipe) is one
        clear error, and `close` removes what was written."""
        try:
            write(*args)
        except (av.FFmpegError, OSError) as e:
            where = "standard output" if self.path == "-" else self.path
            raise LipstreamError(f"cannot write {where}: {getattr(e, 'strerror', None) or e}") from None

    def close(self) -> None:
        """A render that failed or was interrupted leaves nothing behind (on stdout: what was sent stays sent)."""
        if not self._done and self._opened:
            self._done = True
            try:
                self._out.close()
            except Exception:  # noqa: BLE001 - the half-written file is removed whatever state it is in
                pass
            if self._tmp is not None:
                discard(self._tmp)
