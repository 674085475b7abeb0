"""Coqui models with random weights, saved in Coqui's own format."""
from __future__ import annotations

import json
import os

import torch


def save_random_vits(folder, speakers=None, sample_rate: int = 16000) -> tuple[str, str]:
    """A VITS with random weights, small enough to run in milliseconds (characters, no phonemizer, no
    duration noise), saved as Coqui saves one: `model.pth` ({"model": state_dict}) and `config.json`
    in `folder`; returns their paths. For tests and `lipstream bench tts`: the real loaders, no download."""
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    torch.manual_seed(0)
    speaker_file = None
    if speakers:
        speaker_file = os.path.join(folder, "speaker_ids.json")
        with open(speaker_file, "w") as f:
            json.dump({name: i for i, name in enumerate(speakers)}, f)
    args = VitsArgs(init_discriminator=False, hidden_channels=16, hidden_channels_ffn_text_encoder=32,
                    num_heads_text_encoder=2, num_layers_text_encoder=1, num_layers_posterior_encoder=1,
                    num_layers_flow=1, kernel_size_flow=3, upsample_initial_channel_decoder=16,
                    resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3, 5]],
                    upsample_rates_decoder=[8, 8, 4], upsample_kernel_sizes_decoder=[16, 16, 8],  # × 256 = hop
                    use_sdp=False, spec_segment_size=8, out_channels=129,
                    use_speaker_embedding=bool(speakers), speaker_embedding_channels=8, speakers_file=speaker_file)
    audio = BaseAudioConfig(sample_rate=sample_rate, fft_size=256, win_length=256, hop_length=256, num_mels=40)
    chars = CharactersConfig(characters_class="TTS.tts.utils.text.characters.Graphemes", pad="<PAD>", eos="<EOS>",
                             bos="<BOS>", blank="<BLNK>", characters="abcdefghijklmnopqrstuvwxyz",
                             punctuations="!'(),-.:;? ")
    config = VitsConfig(model_args=args, audio=audio, characters=chars, use_phonemes=False,
                        text_cleaner="basic_cleaners", add_blank=True, use_speaker_embedding=bool(speakers),
                        speakers_file=speaker_file)
    model = Vits(config)
    if speakers:
        assert model.num_speakers == len(speakers)
    model_path, config_path = os.path.join(folder, "model.pth"), os.path.join(folder, "config.json")
    torch.save({"model": model.state_dict()}, model_path)
    config.save_json(config_path)
    return model_path, config_path
