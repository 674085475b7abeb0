"""Reading the user's files: audio through PyAV, avatar images through OpenCV, avatar videos through PyAV."""
from __future__ import annotations

import os

import av
import cv2
import numpy as np

from ..errors import LipstreamError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MAX_AVATAR_FRAMES = 750  # 30 s at 25 fps: avatar frames stay in memory (and on the GPU)
MIN_SIDE = 64  # pixels; a face needs room for a 96×96 crop's worth of detail


def _exists(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise LipstreamError(f"{what} not found: {path}")


AUDIO_RATE = 48_000  # files are decoded straight to the output rate: odd rates never reach torch


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples at 48 kHz, and that rate."""
    _exists(path, "audio file")
    chunks = []
    rate = AUDIO_RATE
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise LipstreamError(f"{path} has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise LipstreamError(f"cannot read audio from {path}: {e}") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise LipstreamError(f"{path} contains no audio samples")
    return samples.astype(np.float32, copy=False), int(rate)


def read_avatar(path: str) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """BGR frames of an image (one) or a video (all, up to MAX_AVATAR_FRAMES), and their alpha planes
    (H×W uint8) where the file has alpha: an RGBA image, a VP9 video with alpha (read by the libvpx
    decoder, which decodes VP9's alpha side data; FFmpeg's own VP9 decoder drops it), ProRes 4444."""
    _exists(path, "avatar")
    if os.path.splitext(path)[1].lower() in IMAGE_EXTS:
        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise LipstreamError(f"cannot read image {path} (unsupported or corrupt)")
        alpha = None
        if image.ndim == 3 and image.shape[2] == 4:
            alpha = image[..., 3] if image.dtype == np.uint8 else (image[..., 3] >> 8).astype(np.uint8)
        colour = cv2.imread(path, cv2.IMREAD_COLOR)
        return [_even(colour)], None if alpha is None else [_even(alpha)]
    frames, alphas = [], []
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise LipstreamError(f"{path} is neither an image nor a video with a video stream")
            stream = container.streams.video[0]
            for frame in _decoded(container, stream):
                if _has_alpha(frame.format.name):
                    bgra = frame.to_ndarray(format="bgra")
                    frames.append(_even(bgra[..., :3]))
                    alphas.append(_even(bgra[..., 3]))
                else:
                    frames.append(_even(frame.to_ndarray(format="bgr24")))
                if len(frames) == MAX_AVATAR_FRAMES:
                    break
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise LipstreamError(f"cannot read avatar video {path}: {e}") from None
    if not frames:
        raise LipstreamError(f"avatar video {path} has no frames")
    if any(f.shape != frames[0].shape for f in frames):
        raise LipstreamError(f"avatar video {path} changes frame size mid-stream")
    if alphas and len(alphas) != len(frames):
        raise LipstreamError(f"avatar video {path} has alpha in some frames only")
    return frames, alphas or None


def _decoded(container, stream):
    if stream.codec_context.name == "vp9" and stream.metadata.get("alpha_mode") == "1":
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        for packet in container.demux(stream):
            yield from decoder.decode(packet)
        return
    yield from container.decode(stream)


def _has_alpha(pix_fmt: str) -> bool:
    return pix_fmt.startswith(("yuva", "gbra", "rgba", "bgra", "argb", "abgr", "ya"))


def _even(image: np.ndarray) -> np.ndarray:
    # 4:2:0 video needs even sides; dropping one edge row/column keeps every face pixel in place.
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise LipstreamError(f"avatar is {w}×{h} pixels; it needs at least {MIN_SIDE} on each side")
    return np.ascontiguousarray(image[: h - h % 2, : w - w % 2])
