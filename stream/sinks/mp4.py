"""The file sink: encoded packets and 48 kHz audio muxed into an MP4 in memory, moved into place whole."""
from __future__ import annotations

import fractions
import io
import os
import time

import av
import numpy as np

from ..audio.schedule import OUT_RATE, Progress
from ..errors import LipstreamError
from ..files import write_atomically
from ..frames import FrameBatch
from ..pipeline import Stage
from ..video.encode import VideoFormat


def check_writable(path: str) -> None:
    """Fail before any work if `path` cannot be created."""
    if os.path.isdir(path):
        raise LipstreamError(f"output {path} is a directory")
    if not path.lower().endswith((".mp4", ".m4v", ".mov")):
        raise LipstreamError(f"output {path} must end in .mp4")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LipstreamError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise LipstreamError(f"cannot write {path}: permission denied")


class Mp4Sink(Stage):
    name = "mp4"
    engine = "pyav mp4 + aac"

    def __init__(self, path: str, video: VideoFormat, progress: Progress):
        self.path, self.progress = path, progress
        self._buf = io.BytesIO()
        self._out = av.open(self._buf, "w", format="mp4")
        # PyAV opens this track's own libx264 to write the avcC header: configured as the real
        # encoder, its SPS/PPS are the ones in the packets.
        self._video = self._out.add_stream("libx264", rate=video.fps)
        video.configure(self._video.codec_context)
        self._video.time_base = fractions.Fraction(1, video.fps)
        self._audio = self._out.add_stream("aac", rate=OUT_RATE)
        self._audio.layout = "mono"
        self._audio_pts = 0
        self.frames = 0

    def process(self, item: FrameBatch, emit) -> None:
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
        for packet in self._audio.encode(None):
            self._out.mux(packet)
        self._out.close()
        if self.frames == 0:
            raise LipstreamError("nothing to render: the speech is empty")
        write_atomically(self.path, self._buf.getvalue())
