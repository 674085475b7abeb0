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
            # At the last comma, else the last space, before the limit; a word longer than the
            # limit is never cut: it goes whole, up to the next space.
            cut = part.rfind(",", 0, _MAX) + 1 or part.rfind(" ", 0, _MAX)
            if cut <= 0:
                cut = part.find(" ", _MAX)
                if cut < 0:
                    break
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


def read_text(text: str | None, text_file: str | None = None) -> str:
    """The text to say, from `text` or a UTF-8 file (a BOM is not speech), checked."""
    if text_file is not None:
        try:
            with open(text_file, encoding="utf-8-sig") as f:
                text = f.read()
        except OSError as e:
            raise LipstreamError(f"cannot read text file {text_file}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise LipstreamError(f"text file {text_file} is not UTF-8 text") from None
    return check_text(text)
