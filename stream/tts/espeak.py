"""Embedded offline voice: eSpeak NG from the espeakng-loader wheel, driven through ctypes.

eSpeak's synchronous mode calls us back with ~100 ms of PCM at a time from inside `espeak_Synth`;
the chunks of one text piece are handed on when the call returns. A piece is a sentence or a
clause, which eSpeak makes in a few milliseconds (MEASURED_NOTE), so a thread to hand each chunk on
sooner would win little and leave native work running past an interrupt.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import LipstreamError
from .engine import TTSEngine
from .scripts import script_of

log = logging.getLogger("lipstream")

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

class _VoiceStruct(ctypes.Structure):  # espeak_VOICE in speak_lib.h
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


@dataclass(frozen=True)
class Voice:
    name: str  # "English (America)"
    identifier: str  # "gmw/en-US": what eSpeak loads
    languages: tuple[str, ...]  # "en-us", "en": most specific first


_lib = None
_lock = threading.Lock()  # eSpeak keeps global state: one synthesis at a time per process
_sample_rate = 0


def _library():
    global _lib, _sample_rate
    if _lib is None:
        import espeakng_loader

        lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 100, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise LipstreamError("eSpeak NG failed to initialise (espeakng-loader data missing?)")
        _lib, _sample_rate = lib, rate
    return _lib


@functools.lru_cache(maxsize=1)
def voices() -> tuple[Voice, ...]:
    """Every voice the embedded eSpeak NG has."""
    with _lock:
        table = _library().espeak_ListVoices(None)
        out, i = [], 0
        while table[i]:
            v = table[i].contents
            languages, at = [], v.languages
            while ctypes.c_ubyte.from_address(at).value:  # (priority byte, NUL-terminated code)…, 0
                code = ctypes.string_at(at + 1)
                languages.append(code.decode())
                at += 2 + len(code)
            out.append(Voice(v.name.decode(), v.identifier.decode(), tuple(languages)))
            i += 1
    return tuple(out)


def find_voice(spec: str) -> Voice:
    """A voice by language code (en-us, de, cmn), name ("English (America)") or identifier (gmw/en-US)."""
    want = spec.strip().lower()
    table = voices()
    for match in (lambda v: v.identifier.lower() == want or v.name.lower() == want,
                  lambda v: v.languages[:1] == (want,),
                  lambda v: want in v.languages):
        found = [v for v in table if match(v)]
        if found:
            return found[0]
    raise LipstreamError(f"unknown eSpeak voice {spec!r}: `lipstream voices` lists them with their languages")


def voice_for(text: str, default: Voice) -> Voice:
    """The voice `--voice auto` reads `text` with: the default for Latin script, else one for the script."""
    script = script_of(text)
    if script is None or not script[1] or any(lang in default.languages for lang in script[1]):
        return default
    return find_voice(script[1][0])


def mismatch(text: str, voice: Voice) -> str | None:
    """A warning when the text is written in a script the voice does not read, naming one that does."""
    script = script_of(text)
    if script is None or not script[1] or any(lang in voice.languages for lang in script[1]):
        return None
    return (f"the text is mostly in {script[0]} script, which the voice {voice.languages[0]} ({voice.name}) "
            f"does not read: use --voice {script[1][0]}, or --voice auto to choose by script")


class EspeakTTS(TTSEngine):
    """eSpeak NG on the CPU: always there, any of its ~130 languages, robotic but instant."""

    name = "espeak-ng"
    device = "cpu"

    def __init__(self, voice: str = "en-us", words_per_minute: int = 165):
        """`voice`: a language code, name or identifier from `voices()`, or `auto` (by each text's script)."""
        self.auto = voice.strip().lower() == "auto"
        self.voice = find_voice("en-us" if self.auto else voice)
        self.words_per_minute = words_per_minute
        self.sample_rate = _sample_rate

    def check(self, text: str) -> None:
        """Warn, once per text, when the fixed voice cannot read the text's script."""
        warning = None if self.auto else mismatch(text, self.voice)
        if warning:
            log.warning(warning)

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        voice = voice_for(text, self.voice) if self.auto else self.voice
        data = text.encode("utf-8")
        chunks: list[np.ndarray] = []

        @_CALLBACK
        def callback(wav, n, _events):
            if n > 0 and wav:
                chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
            return 0

        with _lock:
            lib = _library()
            if lib.espeak_SetVoiceByName(voice.identifier.encode()) != 0:
                raise LipstreamError(f"eSpeak NG could not load the voice {voice.identifier}")
            lib.espeak_SetParameter(_RATE, self.words_per_minute, 0)
            lib.espeak_SetSynthCallback(callback)
            status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise LipstreamError(f"eSpeak NG could not synthesise the text (status {status})")
        yield from chunks
