"""Loading MuseTalk 1.5's four networks through the real libraries, from the folder's own files:
diffusers' `UNet2DConditionModel` (from musetalk.json + unet.pth) and `AutoencoderKL`
(sd-vae-ft-mse), transformers' `WhisperModel` (its encoder) and `WhisperFeatureExtractor`, and
lipstream's BiSeNet. Never downloads; a file that will not load is one line naming it."""
from __future__ import annotations

import json
import logging

import torch

from ...errors import LipstreamError, one_line
from .bisenet import BiSeNet

log = logging.getLogger("lipstream")


def _quiet_libraries() -> None:
    """diffusers and transformers print progress bars and hub notices that are not ours to show."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _state_dict(path: str) -> dict:
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):  # only the legacy (pre-zip) format cannot be mapped
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways; all mean the same to the user
        raise LipstreamError(f"{path} is not a readable torch file (truncated or another format?): {one_line(e)[:100]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        raise LipstreamError(f"{path} is a training checkpoint (a Wav2Lip one?), not MuseTalk's plain state dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LipstreamError(f"{path} is not a state dict of tensors")
    return state


def _load_into(module: torch.nn.Module, state: dict, path: str, against: str) -> torch.nn.Module:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise LipstreamError(f"{path} does not match {against}: {len(missing)} parameters missing, "
                             f"{len(unexpected)} unexpected (e.g. {example!r})")
    wrong = next((k for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)), None)
    if wrong is not None:
        raise LipstreamError(f"{path} does not match {against}: {wrong} has shape {tuple(state[wrong].shape)}, "
                             f"expected {tuple(expected[wrong].shape)}")
    module.load_state_dict(state, assign=True)
    return module.eval()


def load_unet(files: dict, device: torch.device, dtype: torch.dtype):
    """The UNet as MuseTalk builds it: `UNet2DConditionModel(**musetalk.json)`, then unet.pth, strictly."""
    _quiet_libraries()
    from diffusers import UNet2DConditionModel

    try:
        with open(files["unet_config"], encoding="utf-8") as f:
            config = json.load(f)
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        with torch.device("meta"):  # no random initialisation of 850 M parameters that are replaced anyway
            unet = UNet2DConditionModel(**{k: v for k, v in config.items() if not k.startswith("_")})
    except (OSError, ValueError, TypeError) as e:
        raise LipstreamError(f"{files['unet_config']} is not a UNet2DConditionModel config: {one_line(e)}") from None
    if unet.config.in_channels != 8 or unet.config.out_channels != 4 or unet.config.cross_attention_dim != 384:
        raise LipstreamError(f"{files['unet_config']} is not MuseTalk's UNet (it takes 8 latent channels, gives 4 and "
                             "attends to 384-wide audio features)")
    unet = _load_into(unet, _state_dict(files["unet"]), files["unet"], files["unet_config"])
    return unet.to(device, dtype)


def load_vae(files: dict, device: torch.device, dtype: torch.dtype):
    _quiet_libraries()
    from diffusers import AutoencoderKL

    folder = files["vae"].rsplit("/", 1)[0]
    try:
        vae = AutoencoderKL.from_pretrained(folder, local_files_only=True, use_safetensors=False)
    except Exception as e:  # noqa: BLE001 - diffusers' errors for a bad config or weights file
        raise LipstreamError(f"cannot load the VAE in {folder} (sd-vae-ft-mse): {one_line(e)[:160]}") from None
    return vae.to(device, dtype).eval()


def load_whisper(files: dict, device: torch.device):
    """(encoder, feature extractor): whisper-tiny's encoder in float32, on `device`."""
    _quiet_libraries()
    from transformers import WhisperFeatureExtractor, WhisperModel

    folder = files["whisper"].rsplit("/", 1)[0]
    try:
        extractor = WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True)
        model = WhisperModel.from_pretrained(folder, local_files_only=True, use_safetensors=False)
    except Exception as e:  # noqa: BLE001 - transformers' errors for a bad config or weights file
        raise LipstreamError(f"cannot load whisper from {folder} (whisper-tiny): {one_line(e)[:160]}") from None
    encoder = model.get_encoder().to(device).eval()
    if encoder.config.d_model != 384:
        raise LipstreamError(f"{folder} is not whisper-tiny (its width is {encoder.config.d_model}, MuseTalk's "
                             "UNet attends to 384)")
    return encoder, extractor


def load_parser(files: dict, device: torch.device) -> BiSeNet:
    net = BiSeNet()
    state = {k.removeprefix("module."): v for k, v in _state_dict(files["parsing"]).items()}
    for k, v in net.state_dict().items():  # BatchNorm's step counters: some saves leave them out; eval never reads them
        if k.endswith("num_batches_tracked"):
            state.setdefault(k, v)
    return _load_into(net, state, files["parsing"], "BiSeNet face parsing (19 classes)").to(device)
