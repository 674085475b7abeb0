"""`lipstream voices [LANG]`: the embedded eSpeak NG voices and their languages."""
from __future__ import annotations

from ..errors import LipstreamError


def add_args(p) -> None:
    p.add_argument("language", nargs="?", help="only voices of this language (en, de, cmn…)")


def run(args) -> int:
    from ..tts.espeak import voices

    want = (args.language or "").lower()
    rows = [v for v in voices() if not want or any(lang == want or lang.startswith(want + "-") for lang in v.languages)]
    if not rows:
        raise LipstreamError(f"no eSpeak voice speaks {args.language!r}")
    width = max(len(", ".join(v.languages)) for v in rows)
    for v in rows:
        print(f"{', '.join(v.languages):<{width}}  {v.name}  ({v.identifier})")
    return 0
