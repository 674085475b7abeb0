"""LSE-D and LSE-C, as syncnet_python's `SyncNetInstance.evaluate` computes them (the numbers
Wav2Lip's, MuseTalk's and LatentSync's papers report), on face crops cut the way its
`run_pipeline.py` cuts them, from boxes that are already known (the avatar's face track).

Window v pairs video frames v…v+4 with MFCC frames 4v…4v+19 (4 MFCC frames of 10 ms per 40 ms
video frame); there are min(frames, samples/640) − 5 windows. Each video embedding is compared
with the audio embeddings 15 windows either side (zero vectors past the ends, included in the
mean, as in the reference); D̄_k is the mean distance at shift k. LSE-D = min D̄, LSE-C =
median D̄ − min D̄, offset = 15 − argmin (positive: the audio leads the video).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .mfcc import mfcc

FPS, RATE = 25, 16000  # SyncNet's clock: 640 samples per video frame
CROP = 224
CROP_SCALE = 0.40  # run_pipeline.py's crop_scale
PAD_VALUE = 110  # what the reference pads the frame with where the crop leaves it
SMOOTH = 13  # frames: the reference median-filters the box's size and centre
WINDOW = 5  # video frames per window
VSHIFT = 15  # windows searched either side
BATCH = 20


@dataclass
class SyncScores:
    lse_d: float
    lse_c: float
    offset: int  # video frames; positive: the audio leads
    windows: int
    distances: list[float]  # D̄ per shift, offset +15 first


def crop_regions(boxes: np.ndarray) -> np.ndarray:
    """(top, bottom, left, right) per frame → the reference's crop (rows0, rows1, cols0, cols1): a
    square 1.4× the box's longer side, centred across it, from its top to well below the chin."""
    boxes = np.asarray(boxes, dtype=np.float64)
    s = _medfilt(np.maximum(boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]) / 2)
    cy = _medfilt((boxes[:, 0] + boxes[:, 1]) / 2)
    cx = _medfilt((boxes[:, 2] + boxes[:, 3]) / 2)
    # The reference indexes a frame padded by int(s·(1+2cs)) and truncates there (always ≥ 0): a floor.
    return np.stack([np.floor(cy - s), np.floor(cy + s * (1 + 2 * CROP_SCALE)),
                     np.floor(cx - s * (1 + CROP_SCALE)), np.floor(cx + s * (1 + CROP_SCALE))], axis=1).astype(int)


def _medfilt(x: np.ndarray, k: int = SMOOTH) -> np.ndarray:
    """A running median over k values. The reference (scipy's medfilt) pads with zeros, which pulls
    the first and last 6 boxes towards the corner and collapses a clip under 7 frames; here the
    end values repeat (the same for the still boxes of an image avatar)."""
    padded = np.concatenate([np.full(k // 2, x[0]), x, np.full(k // 2, x[-1])])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, k), axis=1)


def face_crop(frame: np.ndarray, region) -> np.ndarray:
    """224×224×3 uint8 BGR of `frame` inside `region` (rows0, rows1, cols0, cols1), 110 outside the frame."""
    r0, r1, c0, c1 = (int(v) for v in region)
    out = np.full((r1 - r0, c1 - c0, 3), PAD_VALUE, np.uint8)
    h, w = frame.shape[:2]
    y0, y1, x0, x1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if y0 < y1 and x0 < x1:
        out[y0 - r0 : y1 - r0, x0 - c0 : x1 - c0] = frame[y0:y1, x0:x1]
    return cv2.resize(out, (CROP, CROP), interpolation=cv2.INTER_LINEAR)


def to_int16(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mono float samples at `rate` → 16 kHz on the int16 scale (what the reference reads from its WAV)."""
    x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    if rate != RATE:
        import torchaudio

        x = torchaudio.functional.resample(x, rate, RATE)
    return np.clip(np.rint(x.numpy().astype(np.float64) * 32768), -32768, 32767).astype(np.int16)


@torch.no_grad()
def sync_scores(model, crops: list[np.ndarray] | np.ndarray, pcm16k: np.ndarray) -> SyncScores | None:
    """LSE-D / LSE-C of 25 fps face crops (224×224×3 BGR) against int16 16 kHz audio; None when
    the clip is shorter than 6 frames (no window)."""
    device = next(model.parameters()).device
    frames = min(len(crops), len(pcm16k) // (RATE // FPS))
    n = frames - WINDOW
    if n < 1:
        return None
    cct = torch.from_numpy(mfcc(pcm16k, RATE).T.astype(np.float32)).to(device)  # 13 × M
    video, audio = [], []
    for start in range(0, n, BATCH):
        idx = range(start, min(n, start + BATCH))
        clip = torch.from_numpy(np.stack(crops[start : idx[-1] + WINDOW])).to(device).float()  # T×224×224×3
        lip = torch.stack([clip[v - start : v - start + WINDOW] for v in idx]).permute(0, 4, 1, 2, 3)
        aud = torch.stack([cct[:, 4 * v : 4 * v + 20] for v in idx]).unsqueeze(1)
        video.append(model.forward_lip(lip.contiguous()))
        audio.append(model.forward_aud(aud))
    video, audio = torch.cat(video), torch.cat(audio)
    padded = F.pad(audio, (0, 0, VSHIFT, VSHIFT))
    dists = torch.stack([F.pairwise_distance(video, padded[k : k + n]) for k in range(2 * VSHIFT + 1)], dim=1)
    mean = dists.mean(dim=0)
    best = int(torch.argmin(mean))
    return SyncScores(lse_d=float(mean[best]), lse_c=float(torch.median(mean) - mean[best]), offset=VSHIFT - best,
                      windows=n, distances=[round(float(d), 4) for d in mean])
