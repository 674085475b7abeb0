"""Speakers and languages of a Coqui model, checked when an engine is made: a built-in speaker, a WAV
to clone (XTTS, or a model with a speaker encoder), and the language of a multilingual model."""
from __future__ import annotations

import os

import torch

from ..errors import LipstreamError, one_line
from .coqui_load import Model


def few(names) -> str:
    names = sorted(names)
    return ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")


def speaker_and_language(m: Model, speaker: str | None, language: str | None) -> dict:
    """Non-XTTS models: the speaker id / d-vector and language id their inference takes."""
    model = m.model
    aux = {"speaker_ids": None, "d_vectors": None, "language_ids": None, "language": None, "speaker": None,
           "speaker_wav": None}
    lm = getattr(model, "language_manager", None)
    languages = list(lm.name_to_id) if lm is not None and lm.num_languages else []
    if len(languages) > 1:
        if language is None:
            raise LipstreamError(f"the Coqui model {m.label} is multilingual: give --tts-language "
                                 f"(one of {few(languages)})")
        if language not in languages:
            raise LipstreamError(f"the Coqui model {m.label} has no language {language!r} (it has {few(languages)})")
    elif language is not None and language not in languages:
        has = f"it speaks only {languages[0]}" if languages else "it is not multilingual"
        raise LipstreamError(f"the Coqui model {m.label} has no language {language!r} ({has}): drop --tts-language")
    if languages:
        aux["language"] = language or languages[0]
        aux["language_ids"] = torch.tensor([lm.name_to_id[aux["language"]]], device=m.device)

    sm = getattr(model, "speaker_manager", None)
    names = []
    if sm is not None:
        names = list(sm.name_to_id) or list(getattr(sm, "embedding_names", []) or [])
    clones = sm is not None and getattr(sm, "encoder", None) is not None
    wav = None
    if speaker is None:
        if len(names) > 1 or (clones and not names):
            what = f"one of {few(names)}" if names else "a WAV of the voice to clone"
            raise LipstreamError(f"the Coqui model {m.label} has several speakers: give --tts-speaker ({what})")
    elif speaker in names:
        pass
    elif os.path.isfile(speaker):
        if not clones:
            raise LipstreamError(f"the Coqui model {m.label} cannot clone a voice from a WAV"
                                 + (f": give a speaker name ({few(names)})" if len(names) > 1 else ""))
        speaker, wav = None, speaker
    elif len(names) > 1:
        raise LipstreamError(f"the Coqui model {m.label} has no speaker {speaker!r} (it has {few(names)})")
    elif clones:
        raise LipstreamError(f"speaker WAV not found: {speaker}")
    else:
        raise LipstreamError(f"the Coqui model {m.label} has a single speaker: drop --tts-speaker {speaker!r}")
    aux["speaker"], aux["speaker_wav"] = speaker, wav
    if sm is not None and (names or wav or speaker):
        try:
            with torch.inference_mode():
                aux["speaker_ids"], aux["d_vectors"] = model._get_speaker_id_or_dvector(speaker, wav, None)
        except Exception as e:  # noqa: BLE001 - e.g. a WAV the speaker encoder cannot read
            raise LipstreamError(f"the Coqui model {m.label} cannot use the speaker "
                                 f"{wav or speaker!r}: {one_line(e)}") from None
    return aux


def xtts_language(m: Model, language: str | None) -> str:
    languages = list(m.model.config.languages or [])
    if language is None:
        raise LipstreamError(f"the Coqui model {m.label} (XTTS) is multilingual: give --tts-language "
                             f"(one of {few(languages)})")
    if language == "zh" and "zh-cn" in languages:
        language = "zh-cn"
    if language not in languages:
        raise LipstreamError(f"the Coqui model {m.label} has no language {language!r} (it has {few(languages)})")
    return language


def xtts_voice(m: Model, speaker: str | None):
    """(GPT conditioning latents, speaker embedding) on the model's device: a built-in speaker or a cloned WAV."""
    model = m.model
    builtin = model.speaker_manager.speakers if getattr(model, "speaker_manager", None) is not None else {}
    if speaker is not None and speaker in builtin:
        latent, embedding = builtin[speaker].values()  # as Xtts.synthesize reads them
        return latent.to(m.device), embedding.to(m.device)
    if speaker is None or not os.path.isfile(speaker):
        names = f"one of {few(builtin)}, or " if builtin else ""
        if speaker is None:
            raise LipstreamError(f"the Coqui model {m.label} (XTTS) needs a voice: give --tts-speaker "
                                 f"({names}a WAV of the voice to clone)")
        raise LipstreamError(f"the Coqui model {m.label} has no speaker {speaker!r} and no such WAV exists "
                             f"(give {names}a WAV of the voice to clone)")
    st = os.stat(speaker)
    key = (os.path.realpath(speaker), st.st_mtime_ns, st.st_size)
    with m.lock:
        if key not in m.voices:
            m.voices[key] = _clone(m, speaker)
        return m.voices[key]


def _clone(m: Model, wav_path: str):
    """XTTS's `get_conditioning_latents`, with the WAV read by soundfile instead of torchaudio.load."""
    import soundfile
    import torchaudio

    try:
        data, rate = soundfile.read(wav_path, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - soundfile's errors for unreadable audio
        raise LipstreamError(f"cannot read the speaker WAV {wav_path}: {one_line(e)}") from None
    if len(data) < 0.33 * rate:
        raise LipstreamError(f"the speaker WAV {wav_path} is too short to clone a voice (give 3 to 30 s of speech)")
    model, cfg, sr = m.model, m.model.config, 22050
    audio = torch.from_numpy(data.mean(axis=1)).unsqueeze(0)
    if rate != sr:
        audio = torchaudio.functional.resample(audio, rate, sr)
    audio = audio.clamp(-1, 1)[:, : sr * int(cfg.max_ref_len)].to(m.device)
    if cfg.sound_norm_refs:
        audio = audio / audio.abs().max().clamp_min(1e-8) * 0.75
    with torch.inference_mode():
        embedding = model.get_speaker_embedding(audio, sr)
        latent = model.get_gpt_cond_latents(audio, sr, length=cfg.gpt_cond_len, chunk_length=cfg.gpt_cond_chunk_len)
    return latent, embedding
