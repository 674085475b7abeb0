"""Where a push goes, how long to wait before trying again, and which refusals end it."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

from ..errors import LipstreamError

RTMP_SCHEMES = ("rtmp", "rtmps")
WHIP_SCHEMES = ("http", "https")
FIRST_DELAY = 0.5  # seconds before the first retry; doubled each time up to MAX_DELAY
MAX_DELAY = 10.0
STABLE = 10.0  # a connection that lived this long resets the backoff


class Refused(LipstreamError):
    """The ingest refused in a way that trying again cannot change (credentials, address, scheme)."""


def kind_of(url: str) -> str:
    """'rtmp' or 'whip' for a usable push URL; `Refused` otherwise (before anything loads)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in RTMP_SCHEMES:
        if not parts.hostname or len([p for p in parts.path.split("/") if p]) < 2:
            raise Refused(f"push URL {redact(url)} needs an application and a stream name: {scheme}://HOST[:PORT]/APP/STREAM")
        return "rtmp"
    if scheme in WHIP_SCHEMES:
        if not parts.hostname:
            raise Refused(f"push URL {url} has no host")
        return "whip"
    raise Refused(f"push URL {redact(url)}: the scheme must be rtmp://, rtmps:// (RTMP) or http(s):// (a WHIP endpoint)")


def redact(url: str) -> str:
    """The URL for a log line: an RTMP stream name is its key, so only its first characters show."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in RTMP_SCHEMES:
        return url
    head, _, key = parts.path.rpartition("/")
    shown = key[:2] + "…" if len(key) > 4 else key
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else parts.netloc
    return urlunsplit((parts.scheme, netloc, f"{head}/{shown}", "", ""))


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Backoff:
    """0.5, 1, 2, 4 … 10 s between tries; back to the start after a connection that held."""

    def __init__(self, first: float = FIRST_DELAY, most: float = MAX_DELAY):
        self.first, self.most = first, most
        self.delay = first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.most, self.delay * 2)
        return delay

    def held(self, seconds: float) -> None:
        if seconds >= STABLE:
            self.delay = self.first
