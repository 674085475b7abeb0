"""A video (a render, or any MP4 with its audio) measured against the avatar it was made from."""
from __future__ import annotations

import logging
import os

import av
import cv2
import numpy as np

from ..errors import LipstreamError
from ..sources.media import read_audio
from . import metrics, sync

log = logging.getLogger("lipstream")
THUMB = 64  # px: avatar frames are told apart on thumbnails


def frames_of(path: str):
    """BGR frames of the video at `path`, one at a time, and its frame rate."""
    if not os.path.isfile(path):
        raise LipstreamError(f"video not found: {path}")
    try:
        container = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise LipstreamError(f"cannot read video {path}: {e}") from None
    if not container.streams.video:
        container.close()
        raise LipstreamError(f"{path} has no video stream")
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)

    def frames():
        with container:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="bgr24")

    return frames(), fps


def shown_frames(path: str, avatar: np.ndarray, boxes: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """For each frame of the video, the avatar frame it shows: the nearest on thumbnails of
    everything but the pasted regions (any loop order, lipstream's ping-pong or another tool's)."""
    frames, _ = frames_of(path)
    if len(avatar) == 1:
        return np.zeros(sum(1 for _ in frames), int)
    pasted = np.zeros(avatar.shape[1:3], np.float32)
    for k, (t, b, l, r) in enumerate(boxes.astype(int)):
        region = pasted[t:b, l:r]
        np.maximum(region, cv2.resize(_mask(masks, k), (r - l, b - t)) > 0.01, out=region)
    weight = cv2.resize(pasted, (THUMB, THUMB), interpolation=cv2.INTER_AREA).reshape(-1) < 0.01
    weight = weight if weight.any() else np.ones_like(weight)
    thumbs = np.stack([_thumb(f) for f in avatar])[:, weight]
    return np.array([int(np.argmin(((thumbs - _thumb(f)[weight]) ** 2).sum(axis=1))) for f in frames])


def _mask(masks: np.ndarray, k: int) -> np.ndarray:
    """Avatar frame k's blend mask: one shared S×S mask, or one per frame (N×S×S, MuseTalk's)."""
    return masks[0 if len(masks) == 1 else k] if masks.ndim == 3 else masks


def _thumb(frame: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return cv2.resize(g, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32).reshape(-1)


def measure(path: str, avatar: np.ndarray, boxes: np.ndarray, masks: np.ndarray, syncnet=None) -> dict:
    """Every measure of the video at `path` against `avatar` (N×H×W×3 BGR frames, the model's paste
    boxes, its blend masks on its crop grid: S×S, 1×S×S or N×S×S); `syncnet` (a loaded SyncNet) adds
    LSE-D and LSE-C."""
    samples, rate = read_audio(path)
    shown = shown_frames(path, avatar, boxes, masks)
    frames, fps = frames_of(path)
    if len(shown) == 0:
        raise LipstreamError(f"{path} has no video frames")
    on = metrics.speaking(samples, rate, fps, len(shown))
    regions = sync.crop_regions(boxes[shown]) if syncnet is not None and round(fps) == sync.FPS else None
    pastes: dict[int, metrics.Paste] = {}
    rows, crops, prev = [], [], None
    for i, out in enumerate(frames):
        k = int(shown[i])
        src = avatar[k]
        if out.shape != src.shape:
            raise LipstreamError(f"{path} is {out.shape[1]}×{out.shape[0]} but the avatar is "
                                 f"{src.shape[1]}×{src.shape[0]}: give the avatar it was made from")
        g = pastes.get(k) or pastes.setdefault(k, metrics.paste_geometry(boxes[k], _mask(masks, k), src.shape))
        o, s = metrics.grey(out, g.region), metrics.grey(src, g.region)
        residual = (cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(np.float32)
                    - cv2.cvtColor(src, cv2.COLOR_BGR2GRAY).astype(np.float32))
        t, b, l, r = (int(v) for v in boxes[k])
        rows.append({
            "sharpness": metrics.sharpness(o, s, g.core), "codec": metrics.sharpness(o, s, g.clear),
            "seam": metrics.seam(o, g.contour), "seam_source": metrics.seam(s, g.contour),
            "edge": metrics.seam(o, g.edge), "edge_source": metrics.seam(s, g.edge),
            "disp": metrics.displacement(o, s, g),
            "change": float(np.abs(residual - prev)[t:b, l:r].mean()) if prev is not None else 0.0,
        })
        prev = residual
        if regions is not None:
            crops.append(sync.face_crop(out, regions[i]))
    n = len(rows)
    on = on[:n]
    talk = [r for r, s in zip(rows, on) if s] or rows
    idle = [r for r, s in zip(rows, on) if not s]
    centres = np.stack([(boxes[shown[:n], 0] + boxes[shown[:n], 1]) / 2,
                        (boxes[shown[:n], 2] + boxes[shown[:n], 3]) / 2], axis=1)
    result = {
        "frames": n, "fps": round(fps, 3), "speaking_frames": int(on.sum()), "avatar_frames": len(avatar),
        "sync": _sync(syncnet, crops, samples, rate, fps),
        "sharpness": {"ratio": metrics.median_or_none(r["sharpness"] for r in talk),
                      "idle": metrics.median_or_none(r["sharpness"] for r in idle),
                      "unpasted": metrics.median_or_none(r["codec"] for r in rows)},
        "seam": {key: metrics.median_or_none(r[key] for r in talk)
                 for key in ("seam", "seam_source", "edge", "edge_source")},
        "jitter": metrics.summarise_jitter([r["disp"] for r in rows], centres),
        "jump": metrics.summarise_jump(np.array([r["change"] for r in rows]), on),
    }
    return result


def _sync(syncnet, crops, samples, rate, fps) -> dict:
    if syncnet is None:
        return {"needs": "--syncnet FILE (syncnet_v2.model of the SyncNet release)"}
    if round(fps) != sync.FPS:
        return {"needs": f"a {sync.FPS} fps video (this one is {fps:g} fps)"}
    scores = sync.sync_scores(syncnet, crops, sync.to_int16(samples, rate))
    if scores is None:
        return {"needs": "at least 6 frames"}
    return {"lse_d": round(scores.lse_d, 3), "lse_c": round(scores.lse_c, 3), "offset": scores.offset,
            "windows": scores.windows, "distances": scores.distances}
