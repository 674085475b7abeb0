"""`lipstream preview`: a live session seen and heard here."""
from __future__ import annotations

import argparse

from .render import microphone
from .settings import add_settings_args, settings


def add_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="what the avatar says")
    src.add_argument("--text-file", metavar="F", help="UTF-8 text file to say")
    src.add_argument("--mic", action="store_true", help="the microphone, live, until Ctrl-C (or --seconds)")
    p.add_argument("--seconds", type=float, metavar="N", help="with --mic: stop recording after N seconds")
    p.add_argument("--port", type=int, default=8080, help="without a display: port of the preview page (default 8080)")
    add_settings_args(p)


def run(args) -> int:
    from ..config import make_config
    from ..tts.chunker import read_text

    cfg = make_config(args.config, **settings(args))
    mic = microphone(args)
    text = read_text(args.text, args.text_file) if mic is None else None
    from ..preview.preview import preview

    print(preview(cfg, text=text, mic=mic, port=args.port).summary())
    return 0
