"""Speech bodies as they arrive: raw int16 PCM, or a 16-bit PCM WAV read chunk by chunk."""
from __future__ import annotations

import struct

import numpy as np

from ..errors import LipstreamError


class PcmStream:
    """`feed(bytes)` → float32 mono samples ready so far; the WAV header, when there is one, sets the
    rate and channels (`rate` is None until it is known)."""

    def __init__(self, rate: int | None):
        self.rate, self.channels = rate, 1
        self._wav: bool | None = None  # undecided until four bytes arrived
        self._head = b""
        self._data_left: int | None = None
        self._rest = b""

    def feed(self, data: bytes) -> np.ndarray:
        if self._wav is None:
            self._head += data
            if len(self._head) < 4:
                return np.zeros(0, np.float32)
            self._wav, data, self._head = self._head.startswith(b"RIFF"), self._head, b""
            if not self._wav and self.rate is None:
                raise LipstreamError("raw PCM needs ?rate= (or send a WAV file)")
        if self._wav and self._data_left is None:
            self._head += data
            data = self._parse_header()
            if data is None:
                return np.zeros(0, np.float32)
        if self._data_left is not None:
            data = data[: self._data_left]
            self._data_left -= len(data)
        return self._samples(data)

    def _parse_header(self) -> bytes | None:
        """The data chunk's first bytes once the header is complete, else None."""
        h = self._head
        if len(h) < 12:
            return None
        if h[8:12] != b"WAVE":
            raise LipstreamError("the body starts with RIFF but is not a WAV file")
        at, fmt = 12, None
        while len(h) >= at + 8:
            tag, size = h[at : at + 4], struct.unpack("<I", h[at + 4 : at + 8])[0]
            if tag == b"data":
                if fmt is None:
                    raise LipstreamError("WAV file has no fmt chunk before its data")
                self._data_left = size if size not in (0, 0xFFFFFFFF) else 1 << 62  # streamed WAVs leave it open
                self._head = b""
                return h[at + 8 :]
            if len(h) < at + 8 + size:
                return None
            if tag == b"fmt ":
                code, channels, rate, _, _, bits = struct.unpack("<HHIIHH", h[at + 8 : at + 24])
                if code not in (1, 0xFFFE) or bits != 16:
                    raise LipstreamError(f"WAV must be 16-bit PCM (format {code}, {bits} bits given)")
                if not 1 <= channels <= 8:
                    raise LipstreamError(f"WAV has {channels} channels")
                fmt, self.rate, self.channels = True, rate, channels
            at += 8 + size + (size & 1)
        return None

    def _samples(self, data: bytes) -> np.ndarray:
        data, self._rest = self._rest + data, b""
        step = 2 * self.channels
        cut = len(data) - len(data) % step
        data, self._rest = data[:cut], data[cut:]
        x = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
        return x.reshape(-1, self.channels).mean(axis=1) if self.channels > 1 else x
