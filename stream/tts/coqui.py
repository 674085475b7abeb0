"""Coqui TTS (the `coqui-tts` package, imported as `TTS`): neural voices on the session's device.

A model is given as a checkpoint file (its config.json beside it, or `tts_config`), a folder that
holds both, or a Coqui model name (`tts_models/en/ljspeech/vits`) that is already in Coqui's local
cache. Nothing is ever downloaded: a model that is not there is a clear error saying where to put it.

The model is loaded once per process (keyed by its files and the device) and shared by every engine,
so every live session and every render speaks with the same weights; engines are light. One
inference at a time runs on a model (a lock), so sessions on the shared TTS threads take turns.

- VITS and every other non-XTTS model: one text piece (the chunker's sentence or clause) per call,
  yielded as one waveform. On CUDA the waveform stays on the device (a 1-D float32 tensor: the
  speech clock resamples it there), on the CPU it is a NumPy array.
- XTTS: `inference_stream`, so the first chunk (20 GPT tokens, ~0.9 s of speech) comes before the
  sentence is done; closing the generator stops the GPT between chunks. The voice is one of the
  model's built-in speakers (speakers_xtts.pth) or a WAV to clone (read with soundfile: torchaudio's
  loader needs FFmpeg libraries). A sentence's stream holds the model until it ends or is closed
  (XTTS keeps per-stream state on the model), so one thread must not interleave two streams.
"""
from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import torch

from ..errors import LipstreamError
from .coqui_load import XTTS_CHUNK_TOKENS, Autocast, Model, autocast, load_model
from .coqui_voices import speaker_and_language, xtts_language, xtts_voice
from .engine import TTSEngine

log = logging.getLogger("lipstream")
__all__ = ["CoquiTTS", "XTTS_CHUNK_TOKENS", "Autocast", "load_model"]


class CoquiTTS(TTSEngine):
    """A Coqui TTS model, loaded once per process; `synthesize` yields mono float32 chunks."""

    def __init__(self, model: str, config: str | None = None, device: "torch.device | str" = "cpu",
                 speaker: str | None = None, language: str | None = None):
        if not model or not isinstance(model, str):
            raise LipstreamError("Coqui TTS needs a model: --tts-model PATH (with --tts-config) or a Coqui model name")
        self._m = load_model(model, config, torch.device(device))
        self.device = str(self._m.device)
        self.sample_rate = self._m.sample_rate
        self.name = f"coqui {self._m.kind}"
        self.speaker, self.language = speaker, language
        if self._m.kind == "xtts":
            self._language = xtts_language(self._m, language)
            self._latents = xtts_voice(self._m, speaker)
        else:
            self._aux = speaker_and_language(self._m, speaker, language)

    def describe(self) -> str:
        return f"{self.name} ({self.device})"

    def check(self, text: str) -> None:
        """Warn when most letters of the text are not in a character model's vocabulary (Coqui drops them)."""
        tok = getattr(self._m.model, "tokenizer", None)
        if self._m.kind == "xtts" or tok is None or getattr(tok, "use_phonemes", True):
            return  # XTTS's BPE covers its languages; a phonemizer reads what its language can
        try:
            cleaned = tok.text_cleaner(text) if tok.text_cleaner else text
            vocab = set(tok.characters.vocab)
        except Exception:  # noqa: BLE001 - a cleaner that needs more than this text: no warning
            return
        letters = [c for c in cleaned if c.isalpha()]
        missing = sorted({c for c in letters if c not in vocab})
        if letters and sum(c not in vocab for c in letters) * 2 > len(letters):
            log.warning("the Coqui model %s cannot read most of this text (%s are not in its vocabulary; it "
                        "drops them): use a model for the text's language", self._m.label,
                        ", ".join(repr(c) for c in missing[:5]) + (", …" if len(missing) > 5 else ""))

    def synthesize(self, text: str) -> Iterator[np.ndarray | torch.Tensor]:
        if not text.strip():
            return
        if self._m.kind == "xtts":
            yield from self._stream_xtts(text)
        elif (wav := self._whole(text)) is not None and len(wav):
            yield wav

    # One waveform per piece: VITS (end to end) and the spectrogram models with a vocoder.

    def _whole(self, text: str):
        m = self._m
        with m.lock, torch.inference_mode():
            if m.kind == "vits":
                model = m.model
                ids = torch.as_tensor(model.tokenizer.text_to_ids(text, language=self._aux["language"]),
                                      dtype=torch.long, device=m.device).unsqueeze(0)
                if ids.shape[1] == 0:
                    return None
                out = model.inference(ids, aux_input={
                    "x_lengths": torch.tensor([ids.shape[1]], device=m.device),
                    "speaker_ids": self._aux["speaker_ids"], "d_vectors": self._aux["d_vectors"],
                    "language_ids": self._aux["language_ids"]})
                wav = out["model_outputs"].reshape(-1).float()
            else:
                wav = _generic(m, text, self._aux)
        return _out(wav, m.device)

    # XTTS: GPT tokens → HiFi-GAN, streamed.

    def _stream_xtts(self, text: str):
        m = self._m
        latent, embedding = self._latents
        cfg = m.model.config
        settings = dict(temperature=cfg.temperature, length_penalty=cfg.length_penalty,
                        repetition_penalty=cfg.repetition_penalty, top_k=cfg.top_k, top_p=cfg.top_p)
        # The whole sentence holds the model: XTTS keeps the prompt's embedding on the GPT
        # (`store_prefix_emb`) for every step, so two streams must not interleave. Closing this
        # generator (speak() does, between chunks) closes Coqui's, which stops the GPT there and
        # frees the lock for the next sentence.
        with m.lock:
            chunks = m.model.inference_stream(text, self._language, latent, embedding,
                                              stream_chunk_size=XTTS_CHUNK_TOKENS, enable_text_splitting=False,
                                              **settings)
            try:
                while True:
                    with autocast(m.device):
                        try:
                            wav = next(chunks)
                        except StopIteration:
                            return
                    if wav.numel():
                        yield _out(wav.reshape(-1).float(), m.device)
            finally:
                chunks.close()


def _generic(m: Model, text: str, aux: dict) -> torch.Tensor:
    """Spectrogram models (Tacotron, Glow-TTS, …): Coqui's own synthesis, then its vocoder."""
    synth = m.api.synthesizer
    model = m.model
    outputs = model.synthesize(text, speaker=aux["speaker"], speaker_wav=aux["speaker_wav"], language=aux["language"],
                               use_griffin_lim=synth.vocoder_model is None)
    if outputs.get("wav") is not None and synth.vocoder_model is None:
        wav = torch.as_tensor(np.asarray(outputs["wav"], dtype=np.float32))
    else:
        wav = synth._run_vocoder(outputs["outputs"]["model_outputs"][0], m.device)
    wav = wav.reshape(-1).float()
    if synth.tts_config.audio.get("do_trim_silence"):
        wav = wav[: model.ap.find_endpoint(wav.cpu().numpy())]
    return wav


def _out(wav: torch.Tensor, device: torch.device):
    """The contract's chunk: a 1-D float32 tensor on CUDA, a float32 NumPy array elsewhere."""
    wav = wav.detach().reshape(-1).float()
    if device.type == "cuda":
        return wav.to(device).clone()  # called outside inference mode: a plain tensor, not a view of the model's
    return wav.cpu().numpy().astype(np.float32, copy=False)
