"""Text that arrives on a file descriptor (stdin: an LLM's tokens piped in) as it comes."""
from __future__ import annotations

import codecs
import os
import select
from typing import Iterator

WAIT = 0.1  # seconds between looks for a stop while no text arrives


def read_pieces(fd: int = 0) -> Iterator[str | None]:
    """Decoded text in the pieces it arrives in, until end of file; None after each WAIT with nothing new,
    so whoever iterates can stop while the writer is silent. A UTF-8 BOM is not text."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    while True:
        if not select.select([fd], [], [], WAIT)[0]:
            yield None
            continue
        data = os.read(fd, 65536)
        text = decoder.decode(data, final=not data)
        if text:
            yield text
        if not data:
            return
