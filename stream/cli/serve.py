"""`lipstream serve`: live avatars over WebRTC, a page, an HTTP API, events and metrics."""
from __future__ import annotations

import argparse

from .settings import add_push_args, add_settings_args, settings


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--token", help="require Authorization: Bearer TOKEN (default: $LIPSTREAM_TOKEN, if set)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web page's origin that may use the API, e.g. https://app.example.com (repeatable; "
                        "default: only the server's own page)")
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="STUN/TURN server for WebRTC (repeatable; default none)")
    p.add_argument("--video", choices=["lipstream", "aiortc"], default="lipstream",
                   help="lipstream: its libx264 packets go out as they are (default); aiortc: aiortc encodes raw frames")
    p.add_argument("--ice-loopback-only", action="store_true",
                   help="offer only 127.0.0.1 to WebRTC (tests and benchmarks: no traffic off this machine)")
    p.add_argument("--max-sessions", type=int, help="live sessions at once (default: from the measured capacity)")
    p.add_argument("--lead", type=float, help="seconds of frames each session keeps ready ahead (default 0.2)")
    add_push_args(p)  # --push URL: one broadcast beside the browser sessions
    add_settings_args(p)


def run(args) -> int:
    import os

    from aiohttp import web

    from ..config import make_config
    from ..serve.app import Server
    from ..serve.ice import offer_loopback

    cfg = make_config(args.config, max_sessions=args.max_sessions, lead=args.lead, **settings(args))
    token = args.token or os.environ.get("LIPSTREAM_TOKEN") or None
    server = Server(cfg, token=token, ice_servers=args.ice_server, video=args.video, host=args.host,
                    allow_origins=args.allow_origin)
    if args.ice_loopback_only or args.host in ("127.0.0.1", "localhost", "::1"):
        offer_loopback(only=args.ice_loopback_only)  # a browser on this machine reaches a loopback server over loopback
    shown = f"http://{args.host}:{args.port}/" + ("?token=…" if token else "")
    app = server.app()
    if args.push:
        from ..push.broadcast import serve_push

        serve_push(app, server, args.push, args.push_token or os.environ.get("LIPSTREAM_PUSH_TOKEN"), args.profile,
                   alpha="stacked" if args.stacked_alpha else "flat")
    web.run_app(app, host=args.host, port=args.port, print=lambda *_: print(f"lipstream: serving on {shown}"),
                access_log=None)
    return 0
