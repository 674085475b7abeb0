"""MuseTalk 1.5 behind the lip-sync contract: whisper features in, a 256² face out, inpainted in the
latent space of sd-vae-ft-mse in one UNet step and pasted through the face-parsing mask.

Per avatar frame, once (cached on disk): the face box's crop at 256² (Lanczos), RGB, its latents
(the mean of the VAE's distribution, × 0.18215: the reference samples it, the mean is the
deterministic choice) with the lower half blanked to −1 and whole → 8×32×32; and the blend mask.
Per frame: UNet(latents, t = 0, audio features + positional encoding) → 4×32×32, decoded to RGB in
[0, 1], returned as BGR like every face. The VAE's encoder never runs per frame.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time

import cv2
import numpy as np
import torch

from ...files import cache_root, save_cache
from ..contract import Face, LipSyncModel
from ..precision import resolve_precision
from . import blend, files, load
from .features import DIM, LOOKAHEAD, SHAPE, WhisperFeatures

log = logging.getLogger("lipstream")
SIZE = 256
LATENT = 32
PREP_VERSION = 1  # bump when the latents or masks are made differently
PREP_BATCH = 8  # avatar frames per VAE / BiSeNet call


def positional_encoding(length: int = SHAPE[0], dim: int = DIM) -> torch.Tensor:
    """The Transformer's sinusoid, added to the features: sin on even channels, cos on odd ones."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-np.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


class MuseTalkModel(LipSyncModel):
    name = "musetalk"
    face_size = SIZE
    feature_shape = SHAPE

    def __init__(self, folder: str, device: torch.device, precision: str = "auto", max_batch: int = 16):
        started = time.perf_counter()
        self.folder, self.device, self.precision = folder, device, precision
        self.files = files.resolve(folder)
        self.dtype = resolve_precision(precision, device)
        self.unet = load.load_unet(self.files, device, self.dtype)
        self.vae = load.load_vae(self.files, device, self.dtype)
        self.whisper = load.load_whisper(self.files, device)
        self.parser = load.load_parser(self.files, device)
        self.scale = float(self.vae.config.scaling_factor)
        self.pe = positional_encoding().to(device)
        self.t0 = torch.zeros(1, dtype=torch.long, device=device)
        log.info("musetalk: models from %s loaded on %s in %.1f s (%s UNet and VAE, float32 whisper and face parsing)",
                 folder, device, time.perf_counter() - started, str(self.dtype).removeprefix("torch."))

    def describe(self) -> str:
        return f"musetalk {str(self.dtype).removeprefix('torch.')} unet+vae"

    def identity(self) -> tuple:
        return (self.name, os.path.realpath(self.folder), str(self.device), self.precision)

    def features(self, fps: int, live: bool = False) -> WhisperFeatures:
        return WhisperFeatures(self.whisper, fps, self.device, LOOKAHEAD if live else None)

    def gather(self, face: Face, idx: torch.Tensor) -> torch.Tensor:
        return face.inputs.index_select(0, idx)

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        audio = (features.to(self.device, torch.float32) + self.pe).to(self.dtype)
        pred = self.unet(latents.to(self.dtype), self.t0, encoder_hidden_states=audio).sample
        image = self.vae.decode(pred / self.scale).sample
        return (image / 2 + 0.5).clamp(0, 1).flip(1)  # RGB → BGR

    # The avatar, once.

    def prepare(self, avatar) -> Face:
        frames, boxes = avatar.frames.cpu().numpy(), avatar.boxes.cpu().numpy()
        path = os.path.join(cache_root(), "musetalk", self._prep_key(avatar) + ".npz")
        cached = _load(path, len(frames))
        if cached is None:
            started = time.perf_counter()
            latents, masks = self._latents(frames, boxes, avatar.source), blend.blend_masks(frames, boxes, self.parser, self.device)
            save_cache(path, "musetalk avatar", latents=latents, masks=masks)
            log.info("musetalk: avatar %s prepared in %.1f s (%d frame(s): latents and blend masks), cached",
                     os.path.basename(avatar.source), time.perf_counter() - started, len(frames))
        else:
            latents, masks = cached
        return Face(inputs=torch.from_numpy(latents).to(self.device, self.dtype), boxes=avatar.boxes.to(self.device),
                    masks=torch.from_numpy(masks).to(self.device).float().div_(255.0))

    def _prep_key(self, avatar) -> str:
        h = hashlib.sha256(repr((PREP_VERSION, avatar.key, files.signature(self.files["vae"]),
                                 files.signature(self.files["parsing"]), blend.EXPAND, blend.BLUR)).encode())
        return h.hexdigest()[:32]

    @torch.inference_mode()
    def _latents(self, frames: np.ndarray, boxes: np.ndarray, source: str) -> np.ndarray:
        """N×8×32×32 float32: the masked crop's latents, then the whole crop's."""
        out, last = [], time.perf_counter()
        for a in range(0, len(frames), PREP_BATCH):
            crops = np.stack([cv2.resize(f[t:b, l:r], (SIZE, SIZE), interpolation=cv2.INTER_LANCZOS4)[:, :, ::-1]
                              for f, (t, b, l, r) in zip(frames[a : a + PREP_BATCH], boxes[a : a + PREP_BATCH])])
            x = torch.from_numpy(crops.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
            masked = x.clone()
            masked[:, :, SIZE // 2 :] = 0  # blanked before normalising, so −1 after it, as in training
            both = torch.cat([masked, x]) * 2.0 - 1.0
            z = self.vae.encode(both.to(self.device, self.dtype)).latent_dist.mean.float() * self.scale
            out.append(torch.cat([z[: len(x)], z[len(x) :]], dim=1).cpu().numpy())
            if time.perf_counter() - last > 5:
                last = time.perf_counter()
                log.info("musetalk: preparing %s: %d/%d frames", os.path.basename(source), a + len(x), len(frames))
        return np.concatenate(out)


def _load(path: str, n: int):
    try:
        with np.load(path) as z:
            latents, masks = z["latents"], z["masks"]
    except Exception:  # noqa: BLE001 - a missing or damaged entry is just recomputed
        return None
    good = latents.shape == (n, 8, LATENT, LATENT) and masks.shape == (n, SIZE, SIZE)
    return (latents, masks) if good else None


