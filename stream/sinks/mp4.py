"""The file sink: encoded packets and 48 kHz audio muxed into an MP4 written as it comes to a
temporary name beside the output (memory stays flat however long the render), the index moved to
the front at the end (faststart, for players that stream), then renamed into place whole."""
from __future__ import annotations

import fractions
import time

import av
import numpy as np

from ..audio.schedule import OUT_RATE, Progress
from ..errors import LipstreamError
from ..files import commit, discard, temporary_beside
from ..frames import FrameBatch
from ..pipeline import Stage
from ..video.encode import VideoFormat


class Mp4Sink(Stage):
    name = "mp4"
    engine = "pyav mp4 + aac"

    def __init__(self, path: str, video: VideoFormat, progress: Progress):
        self.path, self.video, self.progress = path, video, progress
        self._tmp: str | None = None  # made by the first item, in the pipeline's run: its close() removes it
        self._done = False
        self._audio_pts = 0
        self.frames = 0

    def _open(self) -> None:
        self._tmp = temporary_beside(self.path)
        try:
            self._out = av.open(self._tmp, "w", format="mp4", options={"movflags": "+faststart"})
        except av.FFmpegError as e:
            discard(self._tmp)
            raise LipstreamError(f"cannot write {self.path}: {e}") from None
        # PyAV opens this track's own libx264 to write the avcC header: configured as the real
        # encoder, its SPS/PPS are the ones in the packets.
        self._video = self._out.add_stream("libx264", rate=self.video.fps)
        self.video.configure(self._video.codec_context)
        self._video.time_base = fractions.Fraction(1, self.video.fps)
        self._audio = self._out.add_stream("aac", rate=OUT_RATE)
        self._audio.layout = "mono"

    def process(self, item: FrameBatch, emit) -> None:
        if self._tmp is None:
            self._open()
        for packet in item.packets:
            packet.stream = self._video
            self._out.mux(packet)
        if len(item.audio):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(item.audio).reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate, frame.pts = OUT_RATE, self._audio_pts
            self._audio_pts += len(item.audio)
            for packet in self._audio.encode(frame):
                self._out.mux(packet)
        if self.progress.first_frame_at is None and item.count:
            self.progress.first_frame_at = time.perf_counter()
        self.frames += item.count
        self.progress.done = self.frames
        emit(item)

    def finish(self, emit) -> None:
        if self._tmp is None:
            raise LipstreamError("nothing to render: the speech is empty")
        for packet in self._audio.encode(None):
            self._out.mux(packet)
        if self.frames == 0:
            raise LipstreamError("nothing to render: the speech is empty")
        self._out.close()
        self._done = True
        commit(self._tmp, self.path)

    def close(self) -> None:
        """A render that failed or was interrupted leaves nothing behind."""
        if not self._done and self._tmp is not None:
            self._done = True
            try:
                self._out.close()
            except Exception:  # noqa: BLE001 - the half-written file is removed whatever state it is in
                pass
            discard(self._tmp)
