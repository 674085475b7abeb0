"""The text-to-speech contract every engine keeps (`stream.tts.registry` picks one from the settings).

An engine turns one text piece (a sentence or a clause, from the chunker) into mono PCM chunks,
yielded as they are made: float32 NumPy arrays, or 1-D float32 tensors on the engine's device (a
GPU engine's audio then goes to the mel features without a host round trip). Whoever iterates may
stop between chunks (`close()` on the iterator, or leaving the loop): that is how an interrupt
stops synthesis at once.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, Iterator, Union

import numpy as np

if TYPE_CHECKING:
    import torch

Chunk = Union[np.ndarray, "torch.Tensor"]  # a GPU engine's chunks stay on its device


class TTSEngine(ABC):
    name: str = "tts"
    device: str = "cpu"
    sample_rate: int = 0

    @abstractmethod
    def synthesize(self, text: str) -> Iterator[Chunk]:
        """Mono chunks at `sample_rate`, in order, as they are synthesised."""

    def check(self, text: str) -> None:
        """Warn (once per text) when the engine cannot read this text well; the default reads anything."""

    def speak(self, text: str, on_audio: Callable[[Chunk], bool | None]) -> None:
        """`on_audio(chunk)` for each chunk; a False return stops synthesis before the next one."""
        chunks = self.synthesize(text)
        try:
            for pcm in chunks:
                if on_audio(pcm) is False:
                    return
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def describe(self) -> str:
        return f"{self.name} ({self.device})"
