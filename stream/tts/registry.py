"""The TTS engine the settings ask for; the contract (`engine`) knows none of its implementations."""
from __future__ import annotations

from .engine import TTSEngine


def make_tts(cfg, device) -> TTSEngine:
    """The engine the settings ask for: `tts` auto (Coqui when a Coqui model is set), coqui or espeak."""
    if cfg.tts == "espeak" or (cfg.tts == "auto" and not cfg.tts_model):
        from .espeak import EspeakTTS

        return EspeakTTS(cfg.voice, cfg.words_per_minute)
    from .coqui import CoquiTTS

    return CoquiTTS(cfg.tts_model, cfg.tts_config, device, speaker=cfg.tts_speaker, language=cfg.tts_language)
