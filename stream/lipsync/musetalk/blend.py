"""MuseTalk 1.5's blend mask, made once per avatar frame: face parsing on a square crop around the
face (`jaw` mode), its lower half, blurred, and kept inside the face box.

The reference pastes the painted face into the box of a crop 1.5× the face's size, then pastes that
crop into the frame through the mask. Outside the face box the crop is the frame itself, so both
pastes together are one blend inside the face box: out = frame + m · (face − frame). The mask is
therefore kept on the face's own 256² grid, where compose reads it beside the face.

Resizing differs from the reference's Pillow calls in the filter only (OpenCV's area filter where
Pillow's antialiased bilinear or bicubic shrinks); the mask is blurred right after, which hides it.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .bisenet import LOWER_LIP, MEAN, MOUTH, NOSE, SKIN, STD, UPPER_LIP

EXPAND = 1.5  # the crop's side over the face box's longer side
PARSE_SIZE = 512
UPPER_BOUNDARY = 0.5  # rows of the crop above this fraction are never painted
BLUR = 0.1  # the Gaussian kernel's size over the crop's side (the realtime path's factor)
CHEEK = 90  # half-width of the central band where the dilated skin is kept (px at 512)


def crop_box(box) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the square crop around (top, bottom, left, right) `box`."""
    t, b, l, r = (int(v) for v in box)
    xc, yc = (l + r) // 2, (t + b) // 2
    s = int(max(r - l, b - t) // 2 * EXPAND)
    return xc - s, yc - s, xc + s, yc + s


def cone_kernel() -> np.ndarray:
    """33×33: empty above row 10, widening runs 1, 3, … 21 wide to row 20, then 21 wide to the bottom."""
    k = np.zeros((33, 33), np.uint8)
    for row in range(10, 33):
        half = min(row - 10, 10)
        k[row, 16 - half : 16 + half + 1] = 1
    return k


def _cheeks() -> np.ndarray:
    m = np.zeros((PARSE_SIZE, PARSE_SIZE), np.uint8)
    m[:, : PARSE_SIZE // 2 - CHEEK + 1] = 255
    m[:, PARSE_SIZE // 2 + CHEEK :] = 255
    return m


def jaw_mask(parsing: np.ndarray) -> np.ndarray:
    """The 512² `jaw` mask (0/255) from a class map: the skin grown down over the jaw line (a cone),
    narrowed at the cheeks, without the nose, with the mouth and lips."""
    skin = np.where(parsing == SKIN, 255, 0).astype(np.uint8)
    grown = cv2.dilate(skin, cone_kernel(), iterations=1)
    narrowed = cv2.erode(grown, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3)), iterations=2)
    cheeks = _cheeks()
    kept = (narrowed & cheeks) | (grown & ~cheeks)
    out = np.where((kept == 255) & (parsing != NOSE), 255, 0).astype(np.uint8)
    out[np.isin(parsing, (MOUTH, UPPER_LIP, LOWER_LIP))] = 255
    return out


def _resize(image: np.ndarray, size: tuple[int, int], enlarge=cv2.INTER_LINEAR) -> np.ndarray:
    shrink = size[0] < image.shape[1] or size[1] < image.shape[0]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else enlarge)


def _crop(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """frame[top:bottom, left:right] of a box that may reach outside it (black there, as Pillow crops)."""
    x0, y0, x1, y1 = box
    h, w = frame.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, 3), frame.dtype)
    ys, xs = slice(max(y0, 0), min(y1, h)), slice(max(x0, 0), min(x1, w))
    out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = frame[ys, xs]
    return out


@torch.inference_mode()
def parse(parser, crops_rgb: list[np.ndarray], device: torch.device) -> list[np.ndarray]:
    """Class maps (512², int64) of RGB crops, one BiSeNet batch."""
    x = np.stack([_resize(c, (PARSE_SIZE, PARSE_SIZE)) for c in crops_rgb]).astype(np.float32) / 255.0
    x = (torch.from_numpy(x).permute(0, 3, 1, 2) - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return list(parser(x.to(device)).argmax(dim=1).cpu().numpy())


def blend_masks(frames: np.ndarray, boxes: np.ndarray, parser, device: torch.device, size: int = 256) -> np.ndarray:
    """N×size×size uint8 masks on each face box's grid, for frames N×H×W×3 BGR and boxes (top, bottom, left, right)."""
    squares = [crop_box(b) for b in boxes]
    crops = [_crop(f, sq)[:, :, ::-1] for f, sq in zip(frames, squares)]  # RGB, as the parser was trained
    out = np.zeros((len(frames), size, size), np.uint8)
    for i, (parsing, sq, (t, b, l, r)) in enumerate(zip(parse(parser, crops, device), squares, boxes)):
        side = sq[2] - sq[0]
        mask = _resize(jaw_mask(parsing), (side, side), enlarge=cv2.INTER_CUBIC)
        inside = np.zeros_like(mask)
        y0, x0 = t - sq[1], l - sq[0]
        inside[y0 : y0 + b - t, x0 : x0 + r - l] = mask[y0 : y0 + b - t, x0 : x0 + r - l]
        inside[: int(side * UPPER_BOUNDARY)] = 0
        k = int(BLUR * side // 2 * 2) + 1
        blurred = cv2.GaussianBlur(inside, (k, k), 0)
        out[i] = _resize(blurred[y0 : y0 + b - t, x0 : x0 + r - l], (size, size))
    return out
