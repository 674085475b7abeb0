"""Split text into sentence-sized pieces so speech can start before the whole text is synthesised."""
from __future__ import annotations

import re

from ..errors import LipstreamError

_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n\s*\n")
_MAX = 220  # characters; a longer run is split at commas so the first audio is not held back


def sentences(text: str) -> list[str]:
    out: list[str] = []
    for part in _SENTENCE.split(text):
        part = " ".join(part.split())
        while len(part) > _MAX:
            cut = part.rfind(",", 0, _MAX)
            cut = cut + 1 if cut > 0 else (part.rfind(" ", 0, _MAX) if part.rfind(" ", 0, _MAX) > 0 else _MAX)
            out.append(part[:cut].strip())
            part = part[cut:].strip()
        if part:
            out.append(part)
    return out


def check_text(text: str | None) -> str:
    """`text` if it has something to say; otherwise a clear error."""
    if not text or not text.strip():
        raise LipstreamError("empty text: nothing to say")
    if not any(ch.isalnum() for ch in text):
        raise LipstreamError("the text has no words to say (only punctuation or symbols)")
    return text
