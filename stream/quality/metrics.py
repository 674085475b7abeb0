"""Per-frame measures of a pasted mouth against the avatar frame it was pasted into, and their
summaries. All work on grey levels (OpenCV's BGR → grey) of one region: the face box and a margin.

- sharpness: variance of the Laplacian over the paste's core (blend mask ≥ 0.9), output ÷ source;
  the same over the face box where nothing is pasted shows what the codec alone takes;
- seam: gradient energy (Sobel, squared) on the mask's 0.5 contour ÷ the mean of the energies in
  the bands 3–5 px inside and outside it; the same around the face box's edge, where a paste
  without a feathered mask (original Wav2Lip's) shows. The source's figures say what the picture
  itself has there;
- displacement: phase correlation, source → output, of the paste above the mouth (mask ≥ 0.5, the
  box's upper two thirds): the mouth's own movement below would read as a shift (up to 20 px on
  the procedural mouth, against 0.03 px/frame here); jitter is its change per frame;
- change: the mean absolute change between consecutive frames of (output − source) in the box, so
  a video avatar's own motion cancels (jump compares it at speech start and end with speech).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MARGIN = 8  # px around the box: room for the bands outside its edge
CORE = 0.9  # blend-mask level of the paste's core
ABOVE_MOUTH = 2 / 3  # of the box's height: Wav2Lip's padded box has the mouth at about 3/4
RING = (3, 5)  # px from a boundary: "just inside" and "just outside"
MIN_PAUSE = 3  # frames: a shorter quiet run is a gap inside speech, not its end
MIN_LIKENESS = 0.5  # fine detail's correlation with the source once registered: a paste of the source's
# crop 0.96 (shifted or not), the procedural mouth 0.91 or more; a flat patch 0.19, noise 0.00
QUIET_DB = 30  # below the 95th percentile of the clip's frame levels: not speaking


@dataclass
class Paste:
    """Where a blend mask lies in a frame: the region measured and its masks, in region coordinates."""
    region: tuple[int, int, int, int]  # rows0, rows1, cols0, cols1 in the frame
    box: tuple[int, int, int, int]  # the face box, in region coordinates
    core: np.ndarray  # bool: mask ≥ CORE
    clear: np.ndarray  # bool: in the box, nothing pasted
    upper: tuple[int, int, int, int]  # rows0, rows1, cols0, cols1: the paste (mask ≥ 0.5) above the mouth
    contour: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # boundary, inside, outside of mask ≥ 0.5
    edge: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # the same for the box


def paste_geometry(box, mask: np.ndarray, shape) -> Paste:
    """`mask` (the model's crop grid) resized into `box` (top, bottom, left, right) of a frame of `shape`."""
    t, b, l, r = (int(v) for v in box)
    h, w = shape[:2]
    y0, y1, x0, x1 = max(0, t - MARGIN), min(h, b + MARGIN), max(0, l - MARGIN), min(w, r + MARGIN)
    canvas = np.zeros((y1 - y0, x1 - x0), np.float32)
    canvas[t - y0 : b - y0, l - x0 : r - x0] = cv2.resize(mask.astype(np.float32), (r - l, b - t),
                                                          interpolation=cv2.INTER_LINEAR)
    inside_box = np.zeros(canvas.shape, bool)
    inside_box[t - y0 : b - y0, l - x0 : r - x0] = True
    ys, xs = np.nonzero(canvas >= 0.5)
    above = t - y0 + int((b - t) * ABOVE_MOUTH)
    upper = (int(ys.min()), min(above, int(ys.max()) + 1), int(xs.min()), int(xs.max()) + 1) if len(ys) else (0, 0, 0, 0)
    return Paste((y0, y1, x0, x1), (t - y0, b - y0, l - x0, r - x0), canvas >= CORE, inside_box & (canvas < 0.01),
                 upper, _bands(canvas >= 0.5), _bands(inside_box))


def _bands(inside: np.ndarray):
    """The 2 px ring along the edge of `inside`, and the bands RING px inside and outside it."""
    if inside.all() or not inside.any():
        return None
    m = inside.astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    ring = cv2.dilate(m, k).astype(bool) & ~cv2.erode(m, k).astype(bool)
    d_in = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    d_out = cv2.distanceTransform(1 - m, cv2.DIST_L2, 3)
    lo, hi = RING
    bands = ring, inside & (d_in >= lo) & (d_in <= hi), ~inside & (d_out >= lo) & (d_out <= hi)
    return bands if all(b.any() for b in bands) else None


def grey(frame: np.ndarray, region) -> np.ndarray:
    y0, y1, x0, x1 = region
    return cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_BGR2GRAY).astype(np.float32)


def sharpness(out: np.ndarray, src: np.ndarray, where: np.ndarray) -> float | None:
    """Laplacian variance of the output ÷ the source's, over `where` (a bool mask of the region)."""
    if not where.any():
        return None
    a, b = (cv2.Laplacian(x, cv2.CV_32F)[where].var() for x in (out, src))
    return float(a / b) if b > 0 else None


def seam(img: np.ndarray, bands) -> float | None:
    """Gradient energy on a boundary ÷ the mean of the energies just inside and just outside it."""
    if bands is None:
        return None
    energy = cv2.Sobel(img, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(img, cv2.CV_32F, 0, 1) ** 2
    ring, inside, outside = (float(energy[b].mean()) for b in bands)
    near = (inside + outside) / 2
    return ring / near if near > 0 else None


def displacement(out: np.ndarray, src: np.ndarray, g: Paste) -> tuple[float, float] | None:
    """(dx, dy) in pixels of the output's paste above the mouth against the source's, by phase
    correlation; None where, moved back by it, the output's fine detail does not resemble the
    source's (a flat or garbled paste: phase correlation then finds a peak anywhere)."""
    r0, r1, c0, c1 = g.upper
    a, b = src[r0:r1, c0:c1], out[r0:r1, c0:c1]
    if min(a.shape) < 8:
        return None
    (dx, dy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F))
    back = cv2.warpAffine(b, np.float32([[1, 0, -dx], [0, 1, -dy]]), b.shape[::-1], borderMode=cv2.BORDER_REFLECT)
    detail = [(x - cv2.GaussianBlur(x, (0, 0), 2))[2:-2, 2:-2].ravel() for x in (a, back)]
    if detail[0].std() == 0 or detail[1].std() == 0 or np.corrcoef(*detail)[0, 1] < MIN_LIKENESS:
        return None
    return float(dx), float(dy)


def speaking(samples: np.ndarray, rate: int, fps: float, frames: int) -> np.ndarray:
    """Per video frame, whether its span of the audio is speech: its level within QUIET_DB of the
    clip's loud frames, pauses shorter than MIN_PAUSE frames counting as speech."""
    edges = np.rint(np.arange(frames + 1) * rate / fps).astype(int)
    level = np.array([np.sqrt(np.mean(np.square(samples[a:b], dtype=np.float64))) if b > a else 0.0
                      for a, b in zip(edges[:-1], edges[1:])])
    db = 20 * np.log10(level + 1e-9)
    on = db > max(np.percentile(db, 95) - QUIET_DB, -60.0) if frames else np.zeros(0, bool)
    idx = np.nonzero(on)[0]
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= MIN_PAUSE:
            on[a:b] = True
    return on


def summarise_jitter(disp: list, centres: np.ndarray) -> dict:
    """Per-frame movement of the paste against the face it sits on (`disp`: per frame (dx, dy) or
    None), between consecutive registered frames; and of the face track itself (the boxes' centres)."""
    track = np.linalg.norm(np.diff(centres, axis=0), axis=1) if len(centres) > 1 else np.zeros(1)
    found = {"track_px_per_frame": round(float(track.mean()), 3), "registered": sum(d is not None for d in disp)}
    steps = [np.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(disp[:-1], disp[1:]) if a is not None and b is not None]
    if found["registered"] < len(disp) / 2 or not steps:
        return {"px_per_frame": None, **found, "why": f"the paste resembles the face in {found['registered']} "
                f"of {len(disp)} frames: nothing to register"}
    return {"px_per_frame": round(float(np.mean(steps)), 3), "max_px": round(float(np.max(steps)), 3),
            "offset_px": round(float(np.median([np.hypot(*d) for d in disp if d is not None])), 3), **found}


def summarise_jump(change: np.ndarray, on: np.ndarray, reach: int = 2) -> dict:
    """The largest frame-to-frame change within `reach` frames of a speech start or end, ÷ the
    median change between speaking frames away from them. change[i]: frame i−1 → i (change[0] unused)."""
    n = len(on)
    cuts = [i for i in range(1, n) if on[i] != on[i - 1]]  # change[i] crosses a start or an end
    if not cuts:
        return {"ratio": None, "transitions": 0, "why": "no speech start or end in the clip"}
    near = np.zeros(n, bool)
    for c in cuts:
        near[max(1, c - reach) : c + reach + 1] = True
    steady = [change[i] for i in range(1, n) if on[i] and on[i - 1] and not near[i]]
    if not steady or np.median(steady) <= 0:
        return {"ratio": None, "transitions": len(cuts), "why": "the picture does not change while speaking"}
    largest = float(change[near].max())
    typical = float(np.median(steady))
    return {"ratio": round(largest / typical, 2), "transitions": len(cuts), "largest": round(largest, 2),
            "typical": round(typical, 2)}


def median_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 3) if values else None
