"""Split text into sentence-sized pieces so speech can start before the whole text is synthesised."""
from __future__ import annotations

import re

from ..errors import LipstreamError

FIRST = 60  # characters: an utterance's first chunk also ends at a clause (a comma), so speech starts early
MAX = 220  # characters: a longer sentence is cut at its last clause, else its last space, before the limit
_CLOSE = "[\"'\u201d\u2019)\\]]*"  # closing quotes and brackets stay with their sentence
_SENTENCE = re.compile(rf"[.!?;:\u3002\uff01\uff1f]+{_CLOSE}(?=\s)|[\u3002\uff01\uff1f]+{_CLOSE}")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_CLAUSE = re.compile(rf"[,;:\u2014\u2013\uff0c\u3001]{_CLOSE}(?=\s)|[\uff0c\u3001]{_CLOSE}")
# A full stop after these does not end the sentence ("Dr. Smith", "e.g. this"); nor after an initial ("J. Smith").
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc e.g i.e a.m p.m cf al approx dept est fig inc ltd co corp no nos vol "
    "jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun".split())


class Chunker:
    """Text that arrives in pieces (an LLM's tokens, stdin) → chunks to speak, in order.

    Every cut depends only on the text before it and the character after, so the chunks are the
    same whether the text comes whole or a character at a time; `flush()` ends an utterance.
    """

    def __init__(self):
        self._buf = ""
        self._first = True

    def feed(self, text: str) -> list[str]:
        self._buf += text
        return self._take(final=False)

    def flush(self) -> list[str]:
        out = self._take(final=True)
        self._buf, self._first = "", True
        return out

    def _take(self, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            self._buf = self._buf.lstrip()
            cut = self._cut(final) if self._buf else None
            if cut is None:
                return out
            piece, self._buf = " ".join(self._buf[:cut].split()), self._buf[cut:]
            if piece:
                out.append(piece)
                self._first = False

    def _cut(self, final: bool) -> int | None:
        buf, limit = self._buf, FIRST if self._first else MAX
        ends = [_sentence_end(buf)]
        if self._first:
            ends.append(next((m.end() for m in _CLAUSE.finditer(buf)), None))
        end = min((e for e in ends if e is not None), default=None)
        if end is not None and end <= limit:
            return end
        if end is None and len(buf) <= limit:
            return len(buf) if final else None  # the boundary may still come within the limit
        # No boundary within the limit: the last clause before it, else the last space, else the word goes whole.
        clauses = [m.end() for m in _CLAUSE.finditer(buf, 0, limit + 1) if m.end() <= limit]
        if clauses:
            return clauses[-1]
        space = max(buf.rfind(" ", 0, limit + 1), buf.rfind("\n", 0, limit + 1))
        if space > 0:
            return space
        m = re.search(r"\s", buf[limit:])
        if m:
            return limit + m.start()
        return len(buf) if final else None


def _sentence_end(buf: str) -> int | None:
    """Where the first sentence of `buf` ends: after its closing punctuation, or at a blank line."""
    blank = _BLANK_LINE.search(buf)
    for m in _SENTENCE.finditer(buf, 0, blank.start() + 1 if blank else len(buf)):
        if m.group()[0] == "." and m.group().rstrip(".\"'\u201d\u2019)]") == "" and _abbreviation(buf, m.start()):
            continue
        return m.end()
    return blank.start() if blank else None


def _abbreviation(buf: str, dot: int) -> bool:
    word = buf[:dot].rsplit(None, 1)[-1].lstrip("(\"'\u201c\u2018").lower() if buf[:dot].strip() else ""
    return len(word) == 1 and word.isalpha() or word in ABBREVIATIONS


def sentences(text: str) -> list[str]:
    """The chunks of one whole text."""
    chunker = Chunker()
    return chunker.feed(text) + chunker.flush()


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
