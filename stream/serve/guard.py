"""Who may drive a server: the rules that keep web pages the user happens to visit from using a
local `lipstream serve` (or `lipstream stream --control`), as aiohttp middleware.

- Host: on a loopback address only a loopback name or address is answered (403 otherwise): a
  DNS-rebinding page reaches 127.0.0.1 under its own name, and is refused by it. A server on
  another address cannot know the names it is reached by, and checks none.
- Origin: a browser names the page behind every request it makes for a script or a form (never for
  a plain navigation); one that is not the server's own is refused (403) unless `--allow-origin`
  names it, and those get CORS headers, preflights (OPTIONS) included. Clients that are not
  browsers send no Origin and are not concerned.
- Content-Type: every POST says what its body is, JSON (`application/json`) or audio
  (`application/octet-stream` raw PCM, `audio/wav`); anything else is 415. A form can send only
  `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data`, and a script on another
  origin cannot send the others without a preflight, which the Origin rule answers.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from ..errors import LipstreamError

JSON_TYPES = ("application/json",)
AUDIO_TYPES = ("application/octet-stream", "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
BODY_TYPES = {"/sessions/{id}/audio": AUDIO_TYPES}  # a POST route's body types; every other POST is JSON
CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE = "600"  # seconds a browser may keep a preflight's answer


def is_loopback_host(host: str) -> bool:
    """Whether a name or address (no port) is this machine's loopback: localhost, *.localhost, 127/8, ::1."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(host_header: str) -> str:
    """The name or address of a Host header, without its port."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _site(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or of a Host header under `scheme`, the default port filled in."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def _origin(origin: str) -> tuple[str, str, int] | None:
    scheme, _, netloc = origin.partition("://")
    return _site(scheme.lower(), netloc) if netloc else None


def json_error(status: int, reason: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


class Guard:
    """The middleware for a server bound to `host`, with the origins `allow_origins` may drive it."""

    def __init__(self, host: str = "127.0.0.1", allow_origins=()):
        self.loopback = is_loopback_host(host)
        self.allowed = set()
        for o in allow_origins:
            site = _origin(o.rstrip("/"))
            if site is None:
                raise LipstreamError(f"--allow-origin wants an origin such as https://app.example.com, not {o!r}")
            self.allowed.add(site)

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        host = request.headers.get("Host")
        if self.loopback and host is not None and not is_loopback_host(_hostname(host)):
            return json_error(403, f"Host {host} is refused: a server on a loopback address answers only to "
                                   "a loopback name or address")
        origin = request.headers.get("Origin")
        cors = None
        if origin is not None and not self._own(origin, host):
            if _origin(origin) not in self.allowed:
                return json_error(403, f"origin {origin} may not use this server (--allow-origin {origin} allows it)")
            cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return web.Response(status=204, headers={**(cors or {}), "Access-Control-Allow-Methods": CORS_METHODS,
                                                     "Access-Control-Allow-Headers": CORS_HEADERS,
                                                     "Access-Control-Max-Age": CORS_MAX_AGE})
        if request.method == "POST":
            route = request.match_info.route.resource
            wanted = BODY_TYPES.get(route.canonical if route is not None else "", JSON_TYPES)
            given = request.headers.get("Content-Type")
            if request.content_type not in wanted or given is None:
                return json_error(415, f"Content-Type must be {' or '.join(wanted[:2])}, not {given or 'none'}",
                                  headers=cors)
        response = await handler(request)
        if cors is not None:
            response.headers.update(cors)
        return response

    @staticmethod
    def _own(origin: str, host: str | None) -> bool:
        """Whether `origin` is the server's own: its host and port are the Host header's."""
        site = _origin(origin)
        return site is not None and host is not None and _site(site[0], host) == site
