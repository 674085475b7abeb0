"""Benchmark output: a plain-text table for the terminal and the same numbers as JSON."""
from __future__ import annotations

import json
import os

from ..files import write_atomically


def table(rows: list[dict], keys: list[str]) -> str:
    widths = [max(len(k), *(len(str(r.get(k))) for r in rows)) for k in keys]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(str(r.get(k)).ljust(w) for k, w in zip(keys, widths)) for r in rows]
    return "\n".join(lines)


def write(path: str | None, result: dict) -> None:
    """`result` as JSON at `path` (atomically), when a path is given."""
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_atomically(path, json.dumps(result, indent=2).encode())
        print(f"\nwrote {path}")
