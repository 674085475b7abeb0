"""The speaker as the clock: the session's audio to the sound card, and the session sample at the DAC now."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

import numpy as np

from ..errors import LipstreamError, one_line

log = logging.getLogger("lipstream")
BLOCK = 960  # 20 ms at 48 kHz


class Speaker:
    """The session's audio to the sound card; `position()` is the session sample at the DAC now."""

    def __init__(self, sd, device=None, rate: int = 48000):
        self.rate = rate
        self._buf: deque[np.ndarray] = deque()
        self._off = 0  # samples of _buf[0] already played
        self.buffered = 0
        self.taken = 0  # session samples handed to the device
        self.underruns = 0
        self.speaking = False  # set by the pump: an underrun only counts while speech plays
        self._anchor: tuple[int, float, int] | None = None  # (first session sample, DAC time (monotonic), samples)
        self._lock = threading.Lock()
        self.stream = sd.OutputStream(samplerate=rate, blocksize=BLOCK, device=device, channels=1, dtype="float32",
                                      callback=self._callback, latency="low")
        self.latency = float(self.stream.latency)
        self.stream.start()

    def push(self, audio: np.ndarray) -> None:
        with self._lock:
            self._buf.append(audio)
            self.buffered += len(audio)

    def _callback(self, outdata, frames, time_info, status) -> None:
        out = outdata[:, 0]
        n = 0
        with self._lock:
            start = self.taken
            while n < frames and self._buf:
                a = self._buf[0]
                k = min(len(a) - self._off, frames - n)
                out[n : n + k] = a[self._off : self._off + k]
                n += k
                self._off += k
                if self._off == len(a):
                    self._buf.popleft()
                    self._off = 0
            self.taken += n
            self.buffered -= n
            now, dac = time_info.currentTime, time_info.outputBufferDacTime
            delay = dac - now if now > 0 and dac > now else self.latency  # ALSA's may be 0: the stream's latency
            if n or self._anchor is None:  # a block of silence only (underrun) keeps the last block's anchor
                self._anchor = (start, time.monotonic() + delay, n)
            if n < frames and self.speaking:
                self.underruns += 1
        out[n:] = 0.0

    def position(self) -> float:
        """The session sample at the DAC now (−1 before the first callback)."""
        with self._lock:
            anchor = self._anchor
        if anchor is None:
            return -1.0
        start, dac, n = anchor
        return start + min(float(n), (time.monotonic() - dac) * self.rate)

    def close(self) -> None:
        try:
            self.stream.close(ignore_errors=True)
        except Exception:  # noqa: BLE001
            pass


def open_speaker(device=None) -> Speaker | None:
    from ..sources.mic import check_device, sounddevice

    try:
        sd = sounddevice()
        check_device("output", device, rates=(48000,))
        return Speaker(sd, device)
    except LipstreamError as e:
        log.warning("the audio is not played (%s); the video is paced by the session's clock", e)
    except Exception as e:  # noqa: BLE001 - PortAudioError opening the stream
        log.warning("the audio is not played (cannot open the sound output: %s); the video is paced by the "
                    "session's clock", one_line(e))
    return None
