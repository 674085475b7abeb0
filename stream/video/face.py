"""Face boxes: OpenCV's Haar cascade (or a user box), padded and smoothed as Wav2Lip expects."""
from __future__ import annotations

import functools
import os

import cv2
import numpy as np

from ..errors import LipstreamError

PADS = (0, 10, 0, 0)  # top, bottom, left, right: Wav2Lip's default; the chin must be in the crop
SMOOTH = 5  # frames


@functools.lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    if not hasattr(cv2, "CascadeClassifier"):  # OpenCV 5 moved the Haar detector out (the H100 image's cv2)
        raise LipstreamError(f"this OpenCV ({cv2.__version__}, {os.path.dirname(cv2.__file__)}) has no Haar face "
                             "detector: install opencv-python-headless<5, or give the face box (--box)")
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise LipstreamError(f"OpenCV Haar cascade not found at {path}")
    return cascade


def detect(frame_bgr: np.ndarray, near=None) -> tuple[int, int, int, int] | None:
    """The largest frontal face as (top, bottom, left, right), or None.

    With `near` (the previous frame's face) only its surroundings and similar sizes are searched:
    about 5× faster on a talking-head video, where the face barely moves between frames.
    """
    y0 = x0 = 0
    if near is not None:
        t, b, l, r = near
        size = max(b - t, r - l)
        y0, x0 = max(0, t - size // 2), max(0, l - size // 2)
        frame_bgr = frame_bgr[y0 : b + size // 2, x0 : r + size // 2]
        sizes = {"minSize": (int(size * 0.7),) * 2, "maxSize": (int(size * 1.4),) * 2}
    else:
        sizes = {"minSize": (max(24, min(frame_bgr.shape[:2]) // 16),) * 2}
    gray = cv2.equalizeHist(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY))
    faces = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, **sizes)
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return int(y0 + y), int(y0 + y + h), int(x0 + x), int(x0 + x + w)


def _shown(source: str) -> str:
    """How an avatar is named in messages: the file's name, not an install path."""
    return os.path.basename(source) or source


def pad_box(box, height: int, width: int, pads=PADS) -> tuple[int, int, int, int]:
    top, bottom, left, right = box
    return (max(0, top - pads[0]), min(height, bottom + pads[1]), max(0, left - pads[2]), min(width, right + pads[3]))


def smooth_boxes(boxes: np.ndarray, window: int = SMOOTH) -> np.ndarray:
    """Each box becomes the mean of the `window` boxes starting at it (the last ones share the final window)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    out = np.empty_like(boxes)
    n = len(boxes)
    for i in range(n):
        lo = min(i, max(0, n - window))
        out[i] = boxes[lo : lo + window].mean(axis=0)
    return np.rint(out).astype(np.int64)


def face_boxes(frames: list[np.ndarray], box=None, source: str = "the avatar") -> np.ndarray:
    """Padded, smoothed (top, bottom, left, right) per frame; `box` skips detection."""
    h, w = frames[0].shape[:2]
    if box is not None:
        t, b, l, r = (int(v) for v in box)
        b, r = (h if b == h + 1 else b), (w if r == w + 1 else r)  # an odd-sized frame lost its last row/column
        if not (0 <= t and b <= h and 0 <= l and r <= w):  # the order was checked with the settings
            raise LipstreamError(f"--box {t} {b} {l} {r} reaches outside {_shown(source)}, which is {w}×{h}")
        return np.tile(np.array([t, b, l, r], dtype=np.int64), (len(frames), 1))
    # A video is searched whole once, then near the last face on every frame (frame 0 included, so
    # all frames are scanned alike); an image gets the whole-frame search only.
    found, last = [], detect(frames[0]) if len(frames) > 1 else None
    for i, frame in enumerate(frames):
        hit = (detect(frame, near=last) if last is not None else None) or detect(frame)
        if hit is None:
            raise LipstreamError(f"no face found in frame {i} of {_shown(source)} (give --box TOP BOTTOM LEFT RIGHT)")
        last = hit
        found.append(pad_box(hit, h, w))
    return smooth_boxes(np.array(found))
