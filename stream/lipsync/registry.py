"""The lip-sync model the settings ask for (`RenderConfig.lipsync_model`); the contract knows none of
them. Models load once per process: `key` names one before it is loaded (the runtime's worker dict)."""
from __future__ import annotations

import os

import torch

from .contract import LipSyncModel


def key(cfg, device: torch.device) -> tuple:
    """What makes two settings share one model and its worker."""
    name = cfg.lipsync_model
    if name == "wav2lip":
        return (name, os.path.realpath(cfg.checkpoint), str(device), cfg.precision)
    if name == "musetalk":
        return (name, os.path.realpath(cfg.musetalk_models), str(device), cfg.precision)
    return (name, str(device), cfg.fps)  # the procedural mouth weighs its window by fps


def make_model(cfg, device: torch.device) -> LipSyncModel:
    name = cfg.lipsync_model
    if name == "wav2lip":
        from .wav2lip.model import Wav2LipModel

        return Wav2LipModel(cfg.checkpoint, device, cfg.precision, cfg.batch_size)
    if name == "musetalk":
        from .musetalk.model import MuseTalkModel

        return MuseTalkModel(cfg.musetalk_models, device, cfg.precision, cfg.batch_size)
    from .procedural import ProceduralLipSync

    return ProceduralLipSync(device, cfg.fps)
