"""Which local addresses ICE offers. aioice leaves out 127.0.0.1; a server bound to loopback serves
browsers on this machine, and tests and benchmarks must not leave it."""
from __future__ import annotations

import aioice.ice

_gather = aioice.ice.get_host_addresses


def offer_loopback(only: bool) -> None:
    """Offer 127.0.0.1 as a host candidate: with `only`, nothing else (no traffic off the machine)."""

    def addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if only else ["127.0.0.1", *_gather(use_ipv4, use_ipv6)]

    aioice.ice.get_host_addresses = addresses
