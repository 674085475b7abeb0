"""`preview()`: a live session heard on the speaker and seen in a window, headless, or on a local page."""
from __future__ import annotations

import os

from ..errors import LipstreamError
from ..live.session import Session
from .page import serve_page
from .player import Player, PreviewResult
from .speaker import open_speaker
from .window import headless, window


def preview(config=None, *, text: str | None = None, mic=None, display: str | None = None, port: int = 8080,
            output_device=None, on_address=None, **settings) -> PreviewResult:
    """A live session that says `text` (or hears `mic`, a `stream.sources.mic.Microphone`, until it
    stops), heard on the speaker and seen in a window. `display`: "window", "page" or "none"
    (frames consumed unseen); default a window when `DISPLAY` is set, else the page."""
    if (text is None) == (mic is None):
        raise LipstreamError("give exactly one of text or mic")
    display = display or ("window" if os.environ.get("DISPLAY") else "page")
    if display not in ("window", "page", "none"):
        raise LipstreamError(f"display must be window, page or none, not {display!r}")
    if display == "page":
        return serve_page(config, text=text, mic=mic, port=port, on_address=on_address, **settings)
    from ..sources.mic import feed_session, stop_on_interrupt

    if display == "window":
        try:
            import tkinter as tk

            tk.Tk().destroy()
        except Exception as e:  # noqa: BLE001 - TclError: no display; ImportError: no Tk
            raise LipstreamError(f"cannot open a window on DISPLAY={os.environ.get('DISPLAY')!r} ({e})") from None
    with Session(config, **settings) as session:
        speaker = open_speaker(output_device)
        player = Player(session, speaker, 1 if text is not None else None)
        player.result.where = display if display == "window" else "headless"
        feed = None
        try:
            if text is not None:
                session.say(text)
            player.start()
            if mic is not None:
                feed = feed_session(session, mic)

            def on_tick():
                if feed is not None and feed.ended:
                    feed.mic.check()
                    player.finish_after(1 if feed.segment is not None else 0)

            with stop_on_interrupt(mic):
                if display == "window":
                    window(player, "lipstream preview", on_tick=on_tick)
                else:
                    headless(player, on_tick=on_tick)
            if player.error is not None:
                raise player.error
        finally:
            if feed is not None:
                feed.mic.close()
            player.close()
    return player.result
