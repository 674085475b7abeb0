"""Wav2Lip's audio features in torch, on any device, whole or streamed.

Every constant here is fixed by the public checkpoints (Wav2Lip's audio.py and hparams.py, the
recipe they were trained on; tests/test_mel.py recomputes it with librosa): change one and the
weights stop working.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from .exact import grouped_matmul

SAMPLE_RATE = 16_000
N_FFT = 800
HOP = 200
N_MELS = 80
PREEMPHASIS = 0.97
PAD = N_FFT // 2


def _slaney_hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Linear below 1 kHz, logarithmic above (Slaney's Auditory Toolbox, librosa's default).
    return np.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + 27.0 * np.log(np.maximum(f, 1e-9) / 1000.0) / np.log(6.4))


def _slaney_mel_to_hz(m: np.ndarray) -> np.ndarray:
    return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0))


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = 55.0, fmax: float = 7600.0) -> np.ndarray:
    """n_mels × (n_fft/2 + 1) triangles on the Slaney mel scale, each of unit area (float64).

    Written with NumPy rather than torchaudio so the CUDA path needs torch and NumPy only.
    """
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = _slaney_mel_to_hz(np.linspace(_slaney_hz_to_mel(np.float64(fmin)), _slaney_hz_to_mel(np.float64(fmax)), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return tri * (2.0 / (hi - lo))


@functools.lru_cache(maxsize=8)
def _basis(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32, device=device)
    return window, torch.from_numpy(mel_filterbank()).float().to(device)  # (800,), (80, 401)


def _normalise(mag: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """Magnitudes T × 401 (one row per column) → the normalised 80 × T mel."""
    mel = grouped_matmul(mag, fb.T).T
    db = 20.0 * torch.log10(torch.clamp(mel, min=1e-5)) - 20.0
    return torch.clamp(8.0 * (db + 100.0) / 100.0 - 4.0, -4.0, 4.0)


def _preemphasis(x: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
    """y[n] = x[n] − 0.97·x[n−1]; the first sample passes unchanged, as lfilter([1, −0.97]) gives."""
    before = torch.zeros_like(x[:1]) if prev is None else prev.reshape(1).to(x)
    return x - PREEMPHASIS * torch.cat([before, x[:-1]])


def _at_least(x: torch.Tensor, n: int) -> torch.Tensor:
    # Reflect padding needs more samples than the pad: a clip under 25 ms is padded with silence.
    return x if x.numel() >= n else torch.cat([x, x.new_zeros(n - x.numel())])


def wav2lip_mel(wave_16k: torch.Tensor) -> torch.Tensor:
    """1-D float waveform at 16 kHz → 80 × T mel (T = 1 + len // 200, as the public recipe)."""
    if wave_16k.dim() != 1:
        raise ValueError("wav2lip_mel expects a 1-D waveform")
    x = _at_least(wave_16k.float(), PAD + 1)
    window, fb = _basis(x.device)
    spec = torch.stft(
        _preemphasis(x), N_FFT, HOP, N_FFT, window, center=True, pad_mode="reflect", return_complex=True
    )
    return _normalise(spec.abs().T, fb)


class MelStream:
    """The same features computed as audio arrives: a column is released once its window is complete.

    Column c is centred on sample 200·c. The first columns see the reflect padding of the start, the
    last ones (released by `finish`) that of the end, so the concatenated result equals
    `wav2lip_mel` of the whole signal.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._head = torch.zeros(0, device=device)  # emphasised samples until the start can be reflected
        self._sig: torch.Tensor | None = None  # padded, emphasised signal from the start of column `_base`
        self._last: torch.Tensor | None = None
        self._base = 0
        self.n_samples = 0
        self.columns = 0

    def push(self, x: torch.Tensor) -> torch.Tensor:
        """Add samples; return the newly complete columns (80 × k)."""
        x = x.float().to(self.device).reshape(-1)
        if x.numel() == 0:
            return self._empty()
        e = _preemphasis(x, self._last)
        self._last = x[-1:]
        self.n_samples += x.numel()
        if self._sig is None:
            self._head = torch.cat([self._head, e])
            if self._head.numel() <= PAD:
                return self._empty()
            self._sig = torch.cat([self._head[1 : PAD + 1].flip(0), self._head])
        else:
            self._sig = torch.cat([self._sig, e])
        ready = self._base + max(0, (self._sig.numel() - N_FFT) // HOP + 1)
        return self._release(self._sig, ready)

    def finish(self) -> torch.Tensor:
        """No more audio: release the last columns, whose windows reach into the end's reflection."""
        if self.n_samples == 0:
            return self._empty()
        early = self._empty()
        if self._sig is None:
            early = self.push(torch.zeros(PAD + 1 - self.n_samples, device=self.device))
        sig = torch.cat([self._sig, self._sig[-PAD - 1 : -1].flip(0)])
        return torch.cat([early, self._release(sig, 1 + self.n_samples // HOP)], dim=1)

    def _empty(self) -> torch.Tensor:
        return torch.zeros(N_MELS, 0, device=self.device)

    def _release(self, sig: torch.Tensor, upto: int) -> torch.Tensor:
        k = upto - self.columns
        if k <= 0:
            return self._empty()
        window, fb = _basis(sig.device)
        off = (self.columns - self._base) * HOP
        frames = sig[off : off + (k - 1) * HOP + N_FFT].unfold(0, N_FFT, HOP) * window
        mag = torch.fft.rfft(frames, dim=1).abs()
        self._sig = self._sig[(upto - self._base) * HOP :]  # no later window starts before column `upto`
        self._base = self.columns = upto
        return _normalise(mag, fb)
