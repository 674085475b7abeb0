"""Sources of speech: text through a TTS engine, or an audio file, as PCM chunks."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..frames import PcmChunk, TextChunk
from ..pipeline import Stage
from .chunker import sentences


class TTSStage(Stage):
    name = "tts"

    def __init__(self, engine):
        self.tts = engine
        self.engine = engine.name
        self.device = engine.device

    def process(self, item: TextChunk, emit) -> None:
        self.tts.speak(item.text, lambda pcm: emit(PcmChunk(pcm, self.tts.sample_rate)))


def text_source(text: str) -> Iterator[TextChunk]:
    for sentence in sentences(text):
        yield TextChunk(sentence)


def audio_source(samples: np.ndarray, sample_rate: int, chunk_seconds: float = 0.1) -> Iterator[PcmChunk]:
    step = max(1, int(sample_rate * chunk_seconds))
    for i in range(0, len(samples), step):
        yield PcmChunk(samples[i : i + step], sample_rate)
