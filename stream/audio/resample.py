"""Streaming resampling with torchaudio's kernel: chunked output equals resampling the whole signal,
to the bit, however the input is chunked."""
from __future__ import annotations

import math

import torch
import torchaudio

from .exact import grouped_matmul


class StreamResampler:
    """torchaudio's polyphase resampler computes output block j (`new/gcd` samples) from the
    `orig/gcd + 2·width` input samples around input block j (zero padded at both ends); here each
    block is computed as soon as its window has arrived, as one row of a fixed-shape product."""

    def __init__(self, orig: int, new: int, device: torch.device | str = "cpu"):
        g = math.gcd(orig, new)
        self.orig, self.new = orig, new
        self._o, self._n = orig // g, new // g
        self.identity = orig == new
        self.n_in = 0
        self.n_out = 0
        if self.identity:
            self._buf = torch.zeros(0, device=device)
            return
        r = torchaudio.transforms.Resample(self._o, self._n)  # its kernel, built once, not per chunk
        self._basis = r.kernel[:, 0, :].T.contiguous().to(device)  # window × new/gcd
        self._width = r.width
        self._window = self._basis.shape[0]
        self._buf = torch.zeros(self._width, device=device)  # the zero padding before the signal
        self._done = 0  # output blocks computed; block j's window starts at _buf[(j − _done) · orig]

    def _blocks(self, upto: int) -> torch.Tensor:
        """Output blocks from `_done` up to `upto` (exclusive) whose windows are in `_buf`."""
        k = upto - self._done
        if k <= 0:
            return self._buf[:0]
        windows = self._buf[: (k - 1) * self._o + self._window].unfold(0, self._window, self._o)
        out = grouped_matmul(windows, self._basis).reshape(-1)
        self._buf = self._buf[k * self._o :]
        self._done = upto
        return out

    def push(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().reshape(-1).to(self._buf.device)
        self.n_in += x.numel()
        if self.identity:
            self.n_out += x.numel()
            return x
        self._buf = torch.cat([self._buf, x])
        ready = self._done + max(0, (self._buf.numel() - self._window) // self._o + 1)
        out = self._blocks(ready)
        self.n_out += out.numel()
        return out

    def finish(self) -> torch.Tensor:
        """Flush: the total output is ceil(n_in · new / orig) samples, as for the whole signal."""
        if self.identity:
            return self._buf[:0]
        total = -(-self.n_in * self._n // self._o)
        want = total - self.n_out
        if want <= 0:
            return self._buf[:0]
        self._buf = torch.cat([self._buf, torch.zeros(self._width + self._o, device=self._buf.device)])
        out = self._blocks(self._done + -(-want // self._n))[:want]
        self.n_out += out.numel()
        return out
