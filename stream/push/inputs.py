"""What a broadcast says, fed from a thread of its own: stdin as it arrives (a blank line or the end
ends the utterance), a whole text, or an audio file. `started(segment)` hears each utterance it
opens, `done()` the end of the input."""
from __future__ import annotations

import sys

import numpy as np

from ..sources.stdin import read_pieces

AUDIO_PIECE = 9600  # samples per push_audio (0.2 s at 48 kHz): short holds of the session, the pump never waits long


def feed_stream(session, fd: int, started, done) -> None:
    """Text from a file descriptor, spoken as it arrives: `say(piece, flush=False)` for each piece,
    `end_segment()` at a blank line and at the end."""
    line = ""  # the current line so far
    speaking = False  # an utterance is open (it has words)

    def end():
        nonlocal speaking
        if speaking:
            started(session.end_segment())
        speaking = False

    try:
        for text in read_pieces(fd):
            if text is None:  # nothing new yet
                continue
            start = 0
            for k, ch in enumerate(text):
                if ch == "\n":
                    piece, start = text[start : k + 1], k + 1
                    blank = not (line + piece).strip()
                    line = ""
                    if blank:
                        end()
                    elif speaking or piece.strip():
                        started(session.say(piece, flush=False))
                        speaking = True
            rest = text[start:]
            line += rest
            if rest and (speaking or rest.strip()):
                started(session.say(rest, flush=False))
                speaking = True
        end()
    finally:
        done()


def feed_text(session, text: str, started, done) -> None:
    try:
        started(session.say(text))
    finally:
        done()


def feed_audio(session, samples: np.ndarray, rate: int, started, done) -> None:
    try:
        for k in range(0, len(samples), AUDIO_PIECE):
            session.push_audio(samples[k : k + AUDIO_PIECE], rate)
        started(session.end_segment())
    finally:
        done()


def stdin_fd() -> int:
    return sys.stdin.fileno()
