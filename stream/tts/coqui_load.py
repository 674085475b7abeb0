"""Coqui models, loaded once per process (keyed by their files and the device), warmed up, and their
reduced precision on CUDA. A load that fails is one line saying why."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

import torch

from ..errors import LipstreamError, one_line
from .coqui_files import check_config, resolve

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
class Model:
    """One loaded Coqui model, shared by every engine that names the same files and device."""

    api: object  # TTS.api.TTS
    model: object  # its tts_model (Vits, Xtts, …)
    kind: str  # "xtts", "vits" or the config's model name
    label: str  # what the user named: a path or a model name
    sample_rate: int
    device: torch.device
    lock: threading.Lock = field(default_factory=threading.Lock)  # one inference at a time
    voices: dict = field(default_factory=dict)  # XTTS: cloned WAV (path, mtime, size) → latents


_models: dict[tuple, Model] = {}
_models_lock = threading.Lock()


def load_model(model: str, config: str | None, device: torch.device) -> Model:
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


def _load(label: str, files: dict, device: torch.device) -> Model:
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
        model.waveform_decoder = Autocast(model.waveform_decoder)
    rate = int(synth.output_sample_rate)
    loaded = Model(api, model, kind, label, rate, device)
    _warm_up(loaded)
    log.info("tts: Coqui %s model %s (%d Hz) on %s, loaded in %.1f s%s", kind, label, rate, device,
             time.perf_counter() - started,
             f", {str(CUDA_DTYPE).split('.')[-1]} autocast ({'waveform decoder' if kind == 'vits' else 'GPT and decoder'})"
             if device.type == "cuda" and kind in ("vits", "xtts") else "")
    return loaded


def _warm_up(m: Model) -> None:
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
                with autocast(m.device):
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


class Autocast(torch.nn.Module):
    """A module run under CUDA autocast (CUDA_DTYPE), its output back in float32."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        with torch.autocast("cuda", dtype=CUDA_DTYPE):
            return self.inner(*args, **kwargs).float()


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=CUDA_DTYPE)
    return contextlib.nullcontext()
