"""Settings from a YAML file and from flags, validated into one typed object."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import yaml

from .errors import LipstreamError

DEFAULT_AVATAR = os.path.join(os.path.dirname(__file__), "assets", "astronaut.png")
PRECISIONS = ("float32", "bfloat16", "float16")  # Wav2Lip's reduced-precision choices, besides auto
TTS_ENGINES = ("auto", "coqui", "espeak")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
ENCODERS = ("auto", "libx264", "nvenc")  # renders: auto takes NVENC where the GPU has it
LIPSYNC = ("auto", "wav2lip", "musetalk", "procedural")  # auto: the model whose weights are given, else procedural


@dataclass
class RenderConfig:
    avatar: str = DEFAULT_AVATAR
    lipsync: str = "auto"  # auto (what is given: checkpoint → Wav2Lip, musetalk_models → MuseTalk, else procedural)
    checkpoint: str | None = None  # Wav2Lip .pth
    musetalk_models: str | None = None  # MuseTalk 1.5: the folder its download script fills
    box: tuple[int, int, int, int] | None = None  # top bottom left right; skips face detection
    fps: int = 25
    device: str = "auto"
    batch_size: int = 16
    precision: str = "auto"  # the learned model's: auto (bf16 on CUDA and bf16-capable CPUs), float32, bfloat16, float16
    voice: str = "en-us"  # eSpeak NG
    tts: str = "auto"  # auto (Coqui when tts_model is set, else eSpeak NG), coqui, espeak
    tts_model: str | None = None  # Coqui: a model file or folder, or a model name already in Coqui's cache
    tts_config: str | None = None  # Coqui: the model's config.json (default: beside a model file)
    tts_speaker: str | None = None  # Coqui: a speaker name, or a WAV to clone (XTTS)
    tts_language: str | None = None  # Coqui: the language of multilingual models (XTTS: en, de, …)
    words_per_minute: int = 165
    preset: str = "veryfast"  # libx264
    encoder: str = "auto"  # renders: auto (NVENC where the GPU has it, else libx264), libx264, nvenc
    crf: int = 20
    cache: bool = True  # reuse prepared avatars
    key: str | None = None  # a green-screen avatar: the screen's colour (#RRGGBB or a name), keyed out into a matte
    background: str | None = None  # composite the avatar (its alpha or --key's matte) over a colour, image or video
    lead: float = 0.2  # live sessions: seconds of frames kept ready ahead of the consumer
    max_sessions: int | None = None  # live sessions per process; none: from the lip-sync worker's measured capacity

    def __post_init__(self):
        for name, kind in (("avatar", str), ("lipsync", str), ("device", str), ("voice", str), ("preset", str),
                           ("precision", str), ("words_per_minute", int), ("cache", bool)):
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise LipstreamError(f"{name} must be a {kind.__name__}, not {value!r}")
        for name in ("checkpoint", "musetalk_models", "tts_model", "tts_config", "tts_speaker", "tts_language", "key",
                     "background"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise LipstreamError(f"{name} must be a string, not {getattr(self, name)!r}")
        if self.lipsync not in LIPSYNC:
            raise LipstreamError(f"lipsync must be one of {', '.join(LIPSYNC)}, not {self.lipsync!r}")
        if self.lipsync == "wav2lip" and not self.checkpoint:
            raise LipstreamError("lipsync wav2lip needs its weights: --checkpoint wav2lip.pth (or wav2lip_gan.pth)")
        if self.lipsync == "musetalk" and not self.musetalk_models:
            raise LipstreamError("lipsync musetalk needs its models: --musetalk-models DIR (the folder MuseTalk's "
                                 "download script fills)")
        if self.lipsync == "auto" and self.checkpoint and self.musetalk_models:
            raise LipstreamError("both --checkpoint (Wav2Lip) and --musetalk-models (MuseTalk) are given: choose one "
                                 "with --lipsync wav2lip or --lipsync musetalk")
        if self.lipsync_model == "musetalk" and self.musetalk_models:
            from .lipsync.musetalk.files import resolve  # the folder's layout, before torch loads

            resolve(self.musetalk_models)
        if self.key is not None:
            from .video.matte import key_colour  # NumPy only: before torch loads

            key_colour(self.key)
        if self.background is not None:
            from .video.matte import parse_colour

            if parse_colour(self.background) is None and not os.path.isfile(self.background):
                raise LipstreamError(f"background {self.background}: not a colour (#RRGGBB or a name) and no such file")
        if self.tts not in TTS_ENGINES:
            raise LipstreamError(f"tts must be one of {', '.join(TTS_ENGINES)}, not {self.tts!r}")
        if self.tts == "coqui" and not self.tts_model:
            raise LipstreamError("tts coqui needs a model: --tts-model PATH (with --tts-config) or a Coqui model name")
        for name in ("fps", "batch_size", "crf"):
            if isinstance(getattr(self, name), bool):
                raise LipstreamError(f"{name} must be a whole number, not {getattr(self, name)!r}")
        if not isinstance(self.fps, int) or not 1 <= self.fps <= 120:
            raise LipstreamError(f"fps must be a whole number from 1 to 120, not {self.fps!r}")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 1024:
            raise LipstreamError(f"batch_size must be from 1 to 1024, not {self.batch_size!r}")
        if not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise LipstreamError(f"crf must be from 0 to 51, not {self.crf!r}")
        if self.precision not in ("auto", *PRECISIONS):
            raise LipstreamError(f"precision must be auto, {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.encoder not in ENCODERS:
            raise LipstreamError(f"encoder must be auto, libx264 or nvenc, not {self.encoder!r}")
        if self.preset not in PRESETS:
            raise LipstreamError(f"unknown x264 preset {self.preset!r} (one of {', '.join(PRESETS)})")
        if not 80 <= self.words_per_minute <= 450:
            raise LipstreamError(f"words_per_minute must be from 80 to 450, not {self.words_per_minute}")
        if isinstance(self.lead, bool) or not isinstance(self.lead, (int, float)) or not 0 < self.lead <= 2:
            raise LipstreamError(f"lead must be from 0 to 2 seconds, not {self.lead!r}")
        if self.max_sessions is not None and (isinstance(self.max_sessions, bool) or not isinstance(self.max_sessions, int)
                                              or self.max_sessions < 1):
            raise LipstreamError(f"max_sessions must be a whole number of at least 1, not {self.max_sessions!r}")
        if self.box is not None:
            if (not isinstance(self.box, (list, tuple)) or len(self.box) != 4
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in self.box)):
                raise LipstreamError(f"box must be four whole numbers: top bottom left right, not {self.box!r}")
            self.box = tuple(self.box)
            t, b, l, r = self.box
            if not (t < b and l < r):
                raise LipstreamError(f"--box {t} {b} {l} {r}: the box is TOP BOTTOM LEFT RIGHT, so top must be "
                                     f"less than bottom and left less than right")


    @property
    def key_rgb(self) -> tuple[int, int, int] | None:
        from .video.matte import key_colour

        return key_colour(self.key) if self.key is not None else None

    @property
    def lipsync_model(self) -> str:
        """The lip-sync model these settings run: `lipsync`, with auto resolved."""
        if self.lipsync != "auto":
            return self.lipsync
        return "wav2lip" if self.checkpoint else "musetalk" if self.musetalk_models else "procedural"


_FIELDS = {f.name for f in dataclasses.fields(RenderConfig)}


def make_config(file: str | None = None, **overrides) -> RenderConfig:
    """Defaults, then the YAML file, then overrides that are not None."""
    values: dict = {}
    if file:
        try:
            with open(file, encoding="utf-8") as f:
                loaded = yaml.safe_load(f) or {}
        except OSError as e:
            raise LipstreamError(f"cannot read config {file}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise LipstreamError(f"config {file} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise LipstreamError(f"config {file} must be a mapping of settings")
        unknown = sorted(set(loaded) - _FIELDS)
        if unknown:
            raise LipstreamError(f"config {file}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})")
        values.update(loaded)
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise LipstreamError(f"unknown setting {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RenderConfig(**values)


def as_config(config: "RenderConfig | str | None" = None, **settings) -> RenderConfig:
    """A `RenderConfig` from an existing one or a YAML path, with `settings` (not None) on top."""
    if isinstance(config, RenderConfig):
        return dataclasses.replace(config, **{k: v for k, v in settings.items() if v is not None})
    return make_config(config, **settings)
