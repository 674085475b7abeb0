"""The MFCC front end SyncNet was trained on: `python_speech_features.mfcc(signal, 16000)` with its
defaults (0.6 on PyPI; git HEAD gives the same at 16 kHz), rewritten in NumPy step by step.

25 ms frames every 10 ms, no window, no centring, zero padding at the end only; 26 triangular mel
filters (no area normalisation) over a 512-point power spectrum; log; orthonormal DCT-II, 13
coefficients; sinusoidal lifter 22; c0 replaced by the log of the frame's total energy. The input
is on the int16 scale: scaling it only moves c0, which the network does not forgive.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

WINLEN, WINSTEP = 0.025, 0.01  # seconds
NUMCEP, NFILT, NFFT = 13, 26, 512
PREEMPH, CEPLIFTER = 0.97, 22
EPS = np.finfo(float).eps  # what the reference puts in place of a zero energy


def mfcc(signal: np.ndarray, rate: int = 16000) -> np.ndarray:
    """n_frames × 13 float64 coefficients of int16-scale samples."""
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return np.zeros((0, NUMCEP))
    y = np.append(x[0], x[1:] - PREEMPH * x[:-1])
    frames = _frames(y, _round_half_up(WINLEN * rate), _round_half_up(WINSTEP * rate))
    power = np.abs(np.fft.rfft(frames, NFFT)) ** 2 / NFFT
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, EPS, energy)
    bands = power @ filterbank(rate).T
    bands = np.where(bands == 0, EPS, bands)
    cep = np.log(bands) @ _dct_matrix(NFILT)[:NUMCEP].T
    cep *= 1 + (CEPLIFTER / 2) * np.sin(np.pi * np.arange(NUMCEP) / CEPLIFTER)
    cep[:, 0] = np.log(energy)
    return cep


def _round_half_up(v: float) -> int:
    return int(Decimal(v).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


def _frames(y: np.ndarray, length: int, step: int) -> np.ndarray:
    n = 1 if len(y) <= length else 1 + math.ceil((len(y) - length) / step)
    padded = np.concatenate([y, np.zeros((n - 1) * step + length - len(y))])
    return padded[np.arange(n)[:, None] * step + np.arange(length)[None, :]]


def filterbank(rate: int = 16000) -> np.ndarray:
    """26 × 257 triangles between mel points evenly spaced from 0 to rate/2, on FFT bins floor(513·f/rate)."""
    mel = np.linspace(_hz2mel(0), _hz2mel(rate / 2), NFILT + 2)
    bins = np.floor((NFFT + 1) * _mel2hz(mel) / rate)
    bank = np.zeros((NFILT, NFFT // 2 + 1))
    for j in range(NFILT):
        lo, mid, hi = int(bins[j]), int(bins[j + 1]), int(bins[j + 2])
        for i in range(lo, mid):
            bank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(mid, hi):
            bank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return bank


def _hz2mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def _mel2hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II (scipy.fftpack.dct(norm='ortho')) as a matrix: row k is coefficient k."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m
