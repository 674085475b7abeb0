"""`lipstream`: the command line. Each sub-command is a module of this folder with `add_args(parser)`
and `run(args)`; parsing loads nothing heavy, so `--help` and bad settings answer at once."""
from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from ..errors import LipstreamError


class _Terminated(KeyboardInterrupt):
    """SIGTERM, taking Ctrl-C's way out: every stage stopped and joined, nothing half-written."""


def _terminate(signum, frame):
    raise _Terminated


COMMANDS = {  # name: (module of this folder, help)
    "render": (".render", "text or audio → lip-synced MP4"),
    "serve": (".serve", "live avatars over WebRTC: a page, an HTTP API, events, metrics"),
    "preview": (".preview", "a live session seen and heard here: a window (or a local page without a display) and the speaker"),
    "voices": (".voices", "the embedded eSpeak NG voices and their languages"),
    "stream": (".stream", "one live avatar, always on air, pushed to RTMP(S) or WHIP"),
    "bench": (".bench", "measure the lip-sync stage and a whole render, sessions, serve, TTS engines"),
    "doctor": (".doctor", "what this machine offers, and where each stage runs"),
    "render-many": (".render_many", "many renders on Ray, one per line of a JSONL file"),
    "worker": (".worker", "a LiveKit Agents worker: lip-synced avatars for agents' rooms"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lipstream", description="Real-time lip-synced talking avatars.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")
    sub = parser.add_subparsers(dest="command", required=True)
    quiet = argparse.ArgumentParser(add_help=False)  # -q after the command too: `lipstream render -q …`
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors and the summary")
    for name, (module, text) in COMMANDS.items():
        importlib.import_module(module, __package__).add_args(sub.add_parser(name, parents=[quiet], help=text))
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="lipstream: %(message)s")
    try:
        return importlib.import_module(COMMANDS[args.command][0], __package__).run(args)
    except LipstreamError as e:
        print(f"lipstream: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("lipstream: terminated" if isinstance(e, _Terminated) else "lipstream: interrupted", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130


def console() -> int:
    """The `lipstream` command: `main`, then a quiet exit. Once the command is over (finished, failed
    or stopped), a further Ctrl-C or SIGTERM is ignored while the shared lip-sync workers stop: one
    arriving as the interpreter shuts down would leave a worker inside torch and abort the process."""
    code = 130
    try:
        try:
            code = main()
        finally:
            _ignore_signals()
    except KeyboardInterrupt as e:  # another signal came as the first was answered (`timeout` sends two)
        _ignore_signals()
        code = 143 if isinstance(e, _Terminated) else 130
    finally:
        if "stream.graphs.runtime" in sys.modules:
            sys.modules["stream.graphs.runtime"].shutdown()
    return code


def _ignore_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

