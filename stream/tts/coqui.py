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

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from ..errors import LipstreamError, one_line
from .coqui_files import check_config, resolve
from .engine import TTSEngine

log = logging.getLogger("lipstream")

# Reduced precision on CUDA (cannot be measured on the CPU-only development machine: chosen, not
# benchmarked). float16 rather than bfloat16: both halve the decoder's memory traffic, and float16
# keeps 3 more mantissa bits, which a waveform needs more than bfloat16's range (HiFi-GAN
# activations stay small). VITS: only the HiFi-GAN waveform decoder (most of the FLOPs) runs in it;
# the text encoder, the duration predictor (exp of log-durations) and the flows stay float32.
# XTTS: the GPT and its HiFi-GAN decoder run under float16 autocast (the usual way XTTS is served on
# GPUs); the sampling step stays float32 (transformers casts the logits, autocast runs softmax in it).
CUDA_DTYPE = torch.float16
XTTS_CHUNK_TOKENS = 20  # GPT tokens per streamed chunk (Coqui's default): 20 × 1024 samples at 22.05 kHz, ~0.9 s


@dataclass
class _Model:
    """One loaded Coqui model, shared by every engine that names the same files and device."""

    api: object  # TTS.api.TTS
    model: object  # its tts_model (Vits, Xtts, …)
    kind: str  # "xtts", "vits" or the config's model name
    label: str  # what the user named: a path or a model name
    sample_rate: int
    device: torch.device
    lock: threading.Lock = field(default_factory=threading.Lock)  # one inference at a time
    voices: dict = field(default_factory=dict)  # XTTS: cloned WAV (path, mtime, size) → latents


_models: dict[tuple, _Model] = {}
_models_lock = threading.Lock()


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
            self._language = _xtts_language(self._m, language)
            self._latents = _xtts_voice(self._m, speaker)
        else:
            self._aux = _speaker_and_language(self._m, speaker, language)

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
                    with _autocast(m.device):
                        try:
                            wav = next(chunks)
                        except StopIteration:
                            return
                    if wav.numel():
                        yield _out(wav.reshape(-1).float(), m.device)
            finally:
                chunks.close()


def load_model(model: str, config: str | None, device: torch.device) -> _Model:
    """The process's copy of this Coqui model on `device`, loaded on first use."""
    files = resolve(model, config)
    if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" are one model
        device = torch.device("cuda", torch.cuda.current_device())
    key = (files["model"], files["config"], files.get("vocoder"), str(device))
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            loaded = _models[key] = _load(model, files, device)
    return loaded


def _load(label: str, files: dict, device: torch.device) -> _Model:
    started = time.perf_counter()
    coqui_log = logging.getLogger("TTS")
    if coqui_log.level == logging.NOTSET:  # its INFO lines ("Setting up Audio Processor...") are not ours to print
        coqui_log.setLevel(logging.WARNING)
    from TTS.api import TTS  # slow to import: only when a Coqui model is used

    if files["config"] is not None:
        _check_tts_config(files["config"])
    try:
        api = TTS(model_path=files["model"], config_path=files["config"], vocoder_path=files.get("vocoder"),
                  vocoder_config_path=files.get("vocoder_config"), progress_bar=False)
    except ModuleNotFoundError as e:
        raise LipstreamError(f"the Coqui model {label} needs a package that is missing: {one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - each way a model fails to load, as one line
        raise LipstreamError(_load_error(label, files, e)) from None
    synth = api.synthesizer
    model = synth.tts_model
    kind = type(model).__name__.lower()
    kind = kind if kind in ("vits", "xtts") else str(getattr(model.config, "model", kind)).lower()
    try:
        api.to(device)
    except (RuntimeError, AssertionError) as e:
        raise LipstreamError(f"cannot move the Coqui model {label} to {device}: {one_line(e)}") from None
    if device.type == "cuda" and kind == "vits":
        model.waveform_decoder = _Autocast(model.waveform_decoder)
    rate = int(synth.output_sample_rate)
    loaded = _Model(api, model, kind, label, rate, device)
    _warm_up(loaded)
    log.info("tts: Coqui %s model %s (%d Hz) on %s, loaded in %.1f s%s", kind, label, rate, device,
             time.perf_counter() - started,
             f", {str(CUDA_DTYPE).split('.')[-1]} autocast ({'waveform decoder' if kind == 'vits' else 'GPT and decoder'})"
             if device.type == "cuda" and kind in ("vits", "xtts") else "")
    return loaded


def _warm_up(m: _Model) -> None:
    """One short synthesis at load: first-call costs (kernels, allocator, caches) are paid here, not
    by the first sentence, and an XTTS that cannot run in this environment fails now, as one line."""
    model = m.model
    with m.lock, torch.inference_mode():
        if m.kind == "xtts":
            languages = list(model.config.languages or ["en"])
            chunks = model.inference_stream(
                "hello.", "en" if "en" in languages else languages[0],
                torch.zeros(1, 1, model.args.gpt_n_model_channels, device=m.device),
                torch.zeros(1, model.args.d_vector_dim, 1, device=m.device), stream_chunk_size=XTTS_CHUNK_TOKENS)
            try:
                with _autocast(m.device):
                    next(chunks, None)
            except Exception as e:  # noqa: BLE001 - e.g. a transformers release this coqui-tts does not support
                raise LipstreamError(f"the Coqui model {m.label} (XTTS) cannot synthesise here: "
                                     f"{type(e).__name__}: {one_line(e)} ({_versions()})") from None
            finally:
                chunks.close()
        elif m.kind == "vits":
            try:
                ids = torch.as_tensor(model.tokenizer.text_to_ids("hello."), dtype=torch.long, device=m.device)[None]
                aux = {"x_lengths": torch.tensor([ids.shape[1]], device=m.device)}
                if getattr(model, "emb_g", None) is not None:
                    aux["speaker_ids"] = torch.zeros(1, dtype=torch.long, device=m.device)
                if getattr(model, "emb_l", None) is not None:
                    aux["language_ids"] = torch.zeros(1, dtype=torch.long, device=m.device)
                if model.args.use_d_vector_file:
                    aux["d_vectors"] = torch.zeros(1, model.args.d_vector_dim, device=m.device)
                model.inference(ids, aux_input=aux)
            except Exception as e:  # noqa: BLE001 - only a head start: a real failure shows at the first sentence
                log.debug("Coqui VITS warm-up skipped: %s", e)


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("coqui-tts", "transformers"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found) + ": install the transformers release this coqui-tts supports"


def _check_tts_config(path: str) -> None:
    """Coqui's own reading of the config: it must name a text-to-speech model Coqui knows."""
    from TTS.config import load_config

    try:
        cfg = load_config(path)
    except ModuleNotFoundError:
        model = check_config(path)["model"]
        raise LipstreamError(f"{path} is not a Coqui TTS config (Coqui has no model called {model!r})") from None
    except Exception as e:  # noqa: BLE001 - a field of the wrong type, etc.
        raise LipstreamError(f"{path} is not a valid Coqui config: {one_line(e)}") from None
    module = type(cfg).__module__
    if not module.startswith("TTS.tts."):
        role = {"vocoder": "vocoder", "encoder": "speaker encoder", "vc": "voice conversion"}.get(module.split(".")[1],
                                                                                                   module)
        raise LipstreamError(f"{path} is a Coqui {role} config (model {cfg.model}), not a text-to-speech one")


def _load_error(label: str, files: dict, e: BaseException) -> str:
    import pickle

    text = one_line(e)
    ckpt, cfg = files["model"], files["config"]
    if isinstance(e, pickle.UnpicklingError) or "invalid load key" in text or "PytorchStreamReader" in text \
            or "failed finding central directory" in text or isinstance(e, EOFError):
        return f"the Coqui model {ckpt} is not a readable torch checkpoint"
    if isinstance(e, RuntimeError) and "state_dict" in text:
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), "")
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        return f"the Coqui checkpoint {ckpt} does not match its config {cfg}" + (f" ({detail})" if detail else "")
    if isinstance(e, KeyError) and text.strip("'\"") == "model":
        return f"{ckpt} is not a Coqui checkpoint (it has no \"model\" weights)"
    if isinstance(e, FileNotFoundError):
        return f"the Coqui model {label} is missing a file: {text}"
    return f"cannot load the Coqui model {label} ({ckpt} with {cfg}): {type(e).__name__}: {text}"


class _Autocast(torch.nn.Module):
    """A module run under CUDA autocast (CUDA_DTYPE), its output back in float32."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        with torch.autocast("cuda", dtype=CUDA_DTYPE):
            return self.inner(*args, **kwargs).float()


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=CUDA_DTYPE)
    return contextlib.nullcontext()


def _out(wav: torch.Tensor, device: torch.device):
    """The contract's chunk: a 1-D float32 tensor on CUDA, a float32 NumPy array elsewhere."""
    wav = wav.detach().reshape(-1).float()
    if device.type == "cuda":
        return wav.to(device).clone()  # called outside inference mode: a plain tensor, not a view of the model's
    return wav.cpu().numpy().astype(np.float32, copy=False)


# Speakers and languages, checked when the engine is made.

def _few(names) -> str:
    names = sorted(names)
    return ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")


def _speaker_and_language(m: _Model, speaker: str | None, language: str | None) -> dict:
    """Non-XTTS models: the speaker id / d-vector and language id their inference takes."""
    model = m.model
    aux = {"speaker_ids": None, "d_vectors": None, "language_ids": None, "language": None, "speaker": None,
           "speaker_wav": None}
    lm = getattr(model, "language_manager", None)
    languages = list(lm.name_to_id) if lm is not None and lm.num_languages else []
    if len(languages) > 1:
        if language is None:
            raise LipstreamError(f"the Coqui model {m.label} is multilingual: give --tts-language "
                                 f"(one of {_few(languages)})")
        if language not in languages:
            raise LipstreamError(f"the Coqui model {m.label} has no language {language!r} (it has {_few(languages)})")
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
            what = f"one of {_few(names)}" if names else "a WAV of the voice to clone"
            raise LipstreamError(f"the Coqui model {m.label} has several speakers: give --tts-speaker ({what})")
    elif speaker in names:
        pass
    elif os.path.isfile(speaker):
        if not clones:
            raise LipstreamError(f"the Coqui model {m.label} cannot clone a voice from a WAV"
                                 + (f": give a speaker name ({_few(names)})" if len(names) > 1 else ""))
        speaker, wav = None, speaker
    elif len(names) > 1:
        raise LipstreamError(f"the Coqui model {m.label} has no speaker {speaker!r} (it has {_few(names)})")
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


def _generic(m: _Model, text: str, aux: dict) -> torch.Tensor:
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


def _xtts_language(m: _Model, language: str | None) -> str:
    languages = list(m.model.config.languages or [])
    if language is None:
        raise LipstreamError(f"the Coqui model {m.label} (XTTS) is multilingual: give --tts-language "
                             f"(one of {_few(languages)})")
    if language == "zh" and "zh-cn" in languages:
        language = "zh-cn"
    if language not in languages:
        raise LipstreamError(f"the Coqui model {m.label} has no language {language!r} (it has {_few(languages)})")
    return language


def _xtts_voice(m: _Model, speaker: str | None):
    """(GPT conditioning latents, speaker embedding) on the model's device: a built-in speaker or a cloned WAV."""
    model = m.model
    builtin = model.speaker_manager.speakers if getattr(model, "speaker_manager", None) is not None else {}
    if speaker is not None and speaker in builtin:
        latent, embedding = builtin[speaker].values()  # as Xtts.synthesize reads them
        return latent.to(m.device), embedding.to(m.device)
    if speaker is None or not os.path.isfile(speaker):
        names = f"one of {_few(builtin)}, or " if builtin else ""
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


def _clone(m: _Model, wav_path: str):
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
