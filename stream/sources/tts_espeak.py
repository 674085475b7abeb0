"""Embedded offline voice: eSpeak NG from the espeakng-loader wheel, driven through ctypes.

eSpeak's synchronous mode calls us back with ~100 ms of PCM at a time, so speech flows downstream
while the sentence is still being synthesised.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Callable

import numpy as np

from ..errors import LipstreamError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

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
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 100, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise LipstreamError("eSpeak NG failed to initialise (espeakng-loader data missing?)")
        _lib, _sample_rate = lib, rate
    return _lib


class EspeakTTS:
    """`speak(text, on_audio)` calls `on_audio(float32 mono PCM)` for each chunk, in order."""

    name = "espeak-ng"
    device = "cpu"

    def __init__(self, voice: str = "en-us", words_per_minute: int = 165):
        self.voice = voice
        self.words_per_minute = words_per_minute
        with _lock:
            lib = _library()
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise LipstreamError(f"unknown eSpeak voice {voice!r} (try en-us, en-gb, de, fr, es)")
        self.sample_rate = _sample_rate

    def speak(self, text: str, on_audio: Callable[[np.ndarray], None]) -> None:
        data = text.encode("utf-8")
        failure: list[BaseException] = []

        @_CALLBACK
        def callback(wav, n, _events):
            if n > 0 and wav and not failure:
                try:
                    on_audio(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
                except BaseException as e:  # an exception cannot cross the C frame: stop eSpeak instead
                    failure.append(e)
            return 1 if failure else 0

        with _lock:
            lib = _library()
            lib.espeak_SetVoiceByName(self.voice.encode())
            lib.espeak_SetParameter(_RATE, self.words_per_minute, 0)
            lib.espeak_SetSynthCallback(callback)
            status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if failure:
            raise failure[0]
        if status != 0:
            raise LipstreamError(f"eSpeak NG could not synthesise the text (status {status})")
