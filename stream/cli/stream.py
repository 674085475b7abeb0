"""`lipstream stream --push URL`: one live avatar, always on air, pushed to an RTMP(S) or WHIP ingest.
Parsing imports nothing heavy."""
from __future__ import annotations

import argparse
import os
import signal
import sys

from ..errors import LipstreamError
from .settings import add_push_args, add_settings_args, settings


def add_args(p: argparse.ArgumentParser) -> None:
    add_push_args(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", help="what the avatar says")
    src.add_argument("--text-file", metavar="F", help="UTF-8 text file to say; - reads stdin as it arrives "
                     "(a blank line ends an utterance)")
    src.add_argument("--audio", metavar="FILE", help="speech audio to lip-sync instead of TTS")
    p.add_argument("--control", metavar="HOST:PORT", help="serve's say / audio / interrupt / events endpoints for "
                   "this broadcast (session id `broadcast`), e.g. 127.0.0.1:8081")
    p.add_argument("--token", help="--control needs Authorization: Bearer TOKEN (default: $LIPSTREAM_TOKEN, if set)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="--control: a web page's origin that may use it, e.g. https://app.example.com (repeatable)")
    p.add_argument("--keep-alive", action="store_true", help="stay on air (idle) after the input is spoken")
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="WHIP: STUN/TURN server (repeatable; default none)")
    p.add_argument("--ice-loopback-only", action="store_true",
                   help="WHIP: offer only 127.0.0.1 (tests: no traffic off this machine)")
    p.add_argument("--lead", type=float, help="seconds of frames the session keeps ready ahead (default 0.2)")
    add_settings_args(p)


def run(args) -> int:
    from ..config import make_config
    from ..push.retry import is_loopback, kind_of

    if not args.push:
        raise LipstreamError("stream needs --push URL (rtmp://HOST/APP/KEY, rtmps://…, or a WHIP endpoint http(s)://…)")
    kind = kind_of(args.push)
    if args.text is None and args.text_file is None and args.audio is None and not args.control:
        raise LipstreamError("nothing to say: give --text, --text-file (- for stdin), --audio, or --control HOST:PORT")
    control = _address(args.control) if args.control else None
    cfg = make_config(args.config, lead=args.lead, **settings(args))
    text = samples = None
    if args.text is not None or (args.text_file not in (None, "-")):
        from ..tts.chunker import read_text

        text = read_text(args.text, args.text_file)
    elif args.audio is not None:
        from ..sources.media import read_audio

        samples = read_audio(args.audio)
    if kind == "whip" and (args.ice_loopback_only or is_loopback(args.push)):
        from ..serve.ice import offer_loopback

        offer_loopback(only=args.ice_loopback_only)

    import asyncio

    stopped = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = asyncio.run(_main(args, cfg, kind, control, text, samples, stopped))
    finally:
        for s, handler in previous.items():  # the loop leaves SIG_DFL behind
            signal.signal(s, handler)
    if stopped:  # cleanly closed; now the way out of Ctrl-C or SIGTERM: the cli's handler raises its _Terminated
        handler = previous[signal.SIGTERM]
        if stopped[0] == signal.SIGTERM and callable(handler):
            handler(signal.SIGTERM, None)
        raise KeyboardInterrupt
    return code


async def _main(args, cfg, kind, control, text, samples, stopped) -> int:
    import asyncio

    from aiohttp import web

    from ..push import inputs
    from ..push.broadcast import BROADCAST_ID, Broadcast
    from ..serve.app import Server

    server = Server(cfg, token=args.token or os.environ.get("LIPSTREAM_TOKEN") or None, ice_servers=args.ice_server,
                    host=control[0] if control else "127.0.0.1", allow_origins=args.allow_origin)
    token = args.push_token or os.environ.get("LIPSTREAM_PUSH_TOKEN") or None
    keep = args.keep_alive or (text is None and samples is None and args.text_file is None)
    b = Broadcast(server, args.push, token, args.ice_server, args.profile, keep_alive=keep,
                  alpha="stacked" if args.stacked_alpha else "flat")
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):  # the broadcast ends cleanly: the pusher sends the stream's end
        try:
            loop.add_signal_handler(s, lambda s=s: (stopped.append(s), b.finished.set()))
        except (ValueError, RuntimeError):  # not the main thread: the caller handles signals
            pass
    runner = None
    try:
        await b.start()
        if control is not None:
            runner = web.AppRunner(server.control_app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, *control)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            print(f"lipstream: control on http://{control[0]}:{port}/sessions/{BROADCAST_ID}/(say|audio|interrupt)",
                  file=sys.stderr, flush=True)
        await b.on_air()
        if b.finished.is_set():
            pass
        elif text is not None:
            b.feed(inputs.feed_text, text)
        elif samples is not None:
            b.feed(inputs.feed_audio, *samples)
        elif args.text_file == "-":
            b.feed(inputs.feed_stream, inputs.stdin_fd())
        await b.finished.wait()
    finally:
        await b.close()
        if runner is not None:
            await runner.cleanup()
    if b.error is not None and not stopped:
        raise b.error
    print(f"lipstream: pushed {b.frames} frames ({b.frames / b.session.fps:.1f} s) to {b.pusher.shown} "
          f"in {b.pusher.connections} connection(s)", file=sys.stderr)
    return 0


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise LipstreamError(f"--control wants HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)
