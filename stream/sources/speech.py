"""Sources of speech: text through a TTS engine, or an audio file, as PCM chunks."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import LipstreamError
from ..frames import PcmChunk, TextChunk
from ..stage import Stage
from ..tts.chunker import Chunker, sentences


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


def streamed_text_source(pieces: Iterator[str | None], check=None) -> Iterator[TextChunk | None]:
    """Text that arrives in pieces (stdin) → chunks to speak as soon as each is complete; None passes
    through (nothing new yet). `check` sees the first chunk with words (the voice's script warning)."""
    chunker, words = Chunker(), False
    for piece in pieces:
        if piece is None:
            yield None
            continue
        for chunk in chunker.feed(piece):
            words = _first_words(chunk, words, check)
            yield TextChunk(chunk)
    for chunk in chunker.flush():
        words = _first_words(chunk, words, check)
        yield TextChunk(chunk)
    if not words:
        raise LipstreamError("empty text on standard input: nothing to say")


def _first_words(chunk: str, seen: bool, check) -> bool:
    if seen or not any(ch.isalnum() for ch in chunk):
        return seen
    if check is not None:
        check(chunk)
    return True


def audio_source(samples: np.ndarray, sample_rate: int, chunk_seconds: float = 0.1) -> Iterator[PcmChunk]:
    step = max(1, int(sample_rate * chunk_seconds))
    for i in range(0, len(samples), step):
        yield PcmChunk(samples[i : i + step], sample_rate)
