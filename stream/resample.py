"""Streaming resampling with torchaudio's kernel: chunked output equals resampling the whole signal."""
from __future__ import annotations

import math

import torch
import torchaudio


class StreamResampler:
    """torchaudio's polyphase resampler is shift-invariant in blocks of `orig/gcd` input samples, so
    each block is resampled with enough left history and right look-ahead to cover the kernel."""

    def __init__(self, orig: int, new: int, device: torch.device | str = "cpu"):
        g = math.gcd(orig, new)
        self.orig, self.new = orig, new
        self._o, self._n = orig // g, new // g
        self.identity = orig == new
        self._kernel = torchaudio.transforms.Resample(self._o, self._n).to(device)  # built once, not per chunk
        # torchaudio's kernel reaches ceil(6 · orig / (0.99 · min(orig, new))) input samples each side.
        reach = math.ceil(6 * self._o / (0.99 * min(self._o, self._n))) + 1
        self._ctx = self._o * math.ceil(reach / self._o)
        self._hist = torch.zeros(self._ctx, device=device)
        self._pending = torch.zeros(0, device=device)
        self.n_in = 0
        self.n_out = 0

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return self._kernel(x)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().reshape(-1).to(self._pending.device)
        self.n_in += x.numel()
        if self.identity:
            self.n_out += x.numel()
            return x
        self._pending = torch.cat([self._pending, x])
        blocks = (self._pending.numel() - self._ctx) // self._o
        if blocks <= 0:
            return self._pending[:0]
        used = blocks * self._o
        y = self._run(torch.cat([self._hist, self._pending[: used + self._ctx]]))
        skip = self._ctx // self._o * self._n
        out = y[skip : skip + blocks * self._n]
        self._hist = torch.cat([self._hist, self._pending[:used]])[-self._ctx :]
        self._pending = self._pending[used:]
        self.n_out += out.numel()
        return out

    def finish(self) -> torch.Tensor:
        """Flush: the total output is ceil(n_in · new / orig) samples, as for the whole signal."""
        if self.identity:
            return self._pending[:0]
        total = -(-self.n_in * self._n // self._o)
        want = total - self.n_out
        if want <= 0:
            return self._pending[:0]
        tail = torch.zeros(self._ctx + self._o, device=self._pending.device)
        y = self._run(torch.cat([self._hist, self._pending, tail]))
        skip = self._ctx // self._o * self._n
        out = y[skip : skip + want]
        self.n_out += out.numel()
        self._pending = self._pending[:0]
        return out
