"""Random-weight MuseTalk 1.5 folders in the public layout, written with the libraries' own save
functions (diffusers' and transformers' `save_pretrained`, `torch.save` of the UNet's state dict as
MuseTalk's training script saves it), for tests and benchmarks. Nothing here is downloaded.

`tiny`: small UNet, VAE and whisper of the same classes (the UNet still attends to 384-wide features
and maps 8 latent channels to 4 at 32²; the VAE still turns 256² into 32²), for the pipeline's tests.
Not tiny: the public shapes (an 850 M-parameter UNet, sd-vae-ft-mse, whisper-tiny), for the loaders and
the benchmarks; their parameters are views of one random buffer, so the files stay small (about 0.3 GB
in all) and loading them costs what loading the public files costs.
"""
from __future__ import annotations

import json
import os

import torch

from .bisenet import CLASSES, SKIN, BiSeNet
from .files import LAYOUT

UNET = {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0.dev0", "act_fn": "silu",
        "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
        "cross_attention_dim": 384,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}
TINY_UNET = {**UNET, "block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "layers_per_block": 1, "norm_num_groups": 8,
             "sample_size": 32}
VAE = {"act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
       "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
       "sample_size": 256, "up_block_types": ["UpDecoderBlock2D"] * 4}
TINY_VAE = {**VAE, "block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4}
WHISPER = {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536,
           "decoder_layers": 4, "decoder_attention_heads": 6, "decoder_ffn_dim": 1536, "num_mel_bins": 80,
           "max_source_positions": 1500, "vocab_size": 51865}
TINY_WHISPER = {**WHISPER, "encoder_ffn_dim": 64, "decoder_layers": 1, "decoder_ffn_dim": 64, "vocab_size": 64,
                "max_target_positions": 8, "pad_token_id": 1, "bos_token_id": 2, "eos_token_id": 3,
                "decoder_start_token_id": 2}


def _shared(module: torch.nn.Module, seed: int) -> None:
    """Every parameter a view of one random buffer (small files, the public shapes)."""
    state = module.state_dict()
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(max(v.numel() for v in state.values()), generator=g) * 0.02
    module.load_state_dict({k: base[: v.numel()].view(v.shape).to(v.dtype) for k, v in state.items()}, assign=True)


def save_random_musetalk(folder: str, tiny: bool = True, seed: int = 0) -> str:
    """Write a random MuseTalk 1.5 models folder at `folder`; returns it."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(seed)
    paths = {role: os.path.join(folder, rel) for role, rel in LAYOUT.items()}
    for p in paths.values():
        os.makedirs(os.path.dirname(p), exist_ok=True)
    config = TINY_UNET if tiny else UNET
    with open(paths["unet_config"], "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    with torch.device("cpu" if tiny else "meta"):
        unet = UNet2DConditionModel(**{k: v for k, v in config.items() if not k.startswith("_")})
    if not tiny:
        _shared(unet, seed)
    torch.save(unet.state_dict(), paths["unet"])
    vae = AutoencoderKL(**(TINY_VAE if tiny else VAE))
    if not tiny:
        _shared(vae, seed + 1)
    vae.save_pretrained(os.path.dirname(paths["vae"]), safe_serialization=False)
    whisper = WhisperModel(WhisperConfig(**(TINY_WHISPER if tiny else WHISPER)))
    if not tiny:
        _shared(whisper, seed + 2)
    whisper.save_pretrained(os.path.dirname(paths["whisper"]), safe_serialization=False)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(os.path.dirname(paths["whisper"]))
    torch.save(random_parser(seed + 3).state_dict(), paths["parsing"])
    return folder


def random_parser(seed: int = 0) -> BiSeNet:
    """A random BiSeNet whose head calls everything skin, so the blend mask is the lower face: random
    weights would scatter the 19 classes and leave no mask to test with."""
    torch.manual_seed(seed)
    net = BiSeNet().eval()
    with torch.no_grad():
        weight = net.conv_out.conv_out.weight
        weight.zero_()
        weight[SKIN].uniform_(0.5, 1.0)  # features after a ReLU are ≥ 0: skin wins wherever any is positive
    assert weight.shape[0] == CLASSES
    return net
