"""`lipstream worker`: a LiveKit Agents worker whose jobs are avatars (see `stream.adapters.livekit`).
LiveKit (and torch) are imported when the command runs, not when it is parsed."""
from __future__ import annotations

import asyncio
import os

from ..adapters import AGENT_NAME
from ..errors import LipstreamError
from .settings import add_settings_args, settings


def add_args(p) -> None:
    p.add_argument("--livekit-url", default=os.environ.get("LIVEKIT_URL"), help="LiveKit server (default $LIVEKIT_URL)")
    p.add_argument("--api-key", default=os.environ.get("LIVEKIT_API_KEY"), help="default $LIVEKIT_API_KEY")
    p.add_argument("--api-secret", default=os.environ.get("LIVEKIT_API_SECRET"), help="default $LIVEKIT_API_SECRET")
    p.add_argument("--agent-name", default=AGENT_NAME, help=f"the name agents dispatch (default {AGENT_NAME})")
    p.add_argument("--max-sessions", type=int, help="avatars at once (default: from the measured capacity)")
    p.add_argument("--lead", type=float, help="seconds of frames each session keeps ready ahead (default 0.2)")
    add_settings_args(p)


def run(args) -> int:
    from ..config import make_config

    missing = [flag for flag, value in (("--livekit-url", args.livekit_url), ("--api-key", args.api_key),
                                        ("--api-secret", args.api_secret)) if not value]
    if missing:
        raise LipstreamError(f"worker needs {', '.join(missing)} (or LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET)")
    config = make_config(args.config, max_sessions=args.max_sessions, lead=args.lead, **settings(args))
    try:
        from ..adapters.livekit import make_server, measured_max_sessions
    except ImportError as e:
        raise LipstreamError(str(e)) from None
    limit = measured_max_sessions(config)  # loads and measures the model before registering
    config = make_config(args.config, max_sessions=limit, lead=args.lead, **settings(args))
    server = make_server(config, url=args.livekit_url, api_key=args.api_key, api_secret=args.api_secret,
                         agent_name=args.agent_name, max_sessions=limit)
    print(f"lipstream: worker {args.agent_name!r} on {args.livekit_url}, up to {limit} avatars at once")

    async def serve() -> None:
        try:
            await server.run()
        finally:
            await server.aclose()

    asyncio.run(serve())
    return 0
