"""Which writing system a text is in, and which languages write it: so a voice is not asked to
read a script it cannot (eSpeak's English voice spells Chinese characters out, or skips them)."""
from __future__ import annotations

import collections
import unicodedata

# Unicode name prefix → script; the first language is the one `--voice auto` speaks it with.
SCRIPTS = {
    "CJK": ("Han", ("cmn", "zh", "yue", "ja")),
    "HIRAGANA": ("Kana", ("ja",)),
    "KATAKANA": ("Kana", ("ja",)),
    "HANGUL": ("Hangul", ("ko",)),
    "ARABIC": ("Arabic", ("ar", "fa", "ur", "ps", "sd", "ug")),
    "CYRILLIC": ("Cyrillic", ("ru", "uk", "bg", "be", "sr", "mk", "kk", "ky", "tt", "ba")),
    "GREEK": ("Greek", ("el", "grc")),
    "HEBREW": ("Hebrew", ("he",)),
    "DEVANAGARI": ("Devanagari", ("hi", "mr", "ne", "sa")),
    "THAI": ("Thai", ("th",)),
    "BENGALI": ("Bengali", ("bn", "as")),
    "TAMIL": ("Tamil", ("ta",)),
    "GEORGIAN": ("Georgian", ("ka",)),
    "ARMENIAN": ("Armenian", ("hy",)),
    "LATIN": ("Latin", ()),
}


def script_of(text: str) -> tuple[str, tuple[str, ...]] | None:
    """The script most of the text's letters are in, with the languages written in it; None without letters."""
    counts: collections.Counter = collections.Counter()
    for ch in text:
        if ch.isalpha():
            head = unicodedata.name(ch, "").split(" ")[0]
            if head in SCRIPTS:
                counts[SCRIPTS[head]] += 1
    if not counts:
        return None
    (script, languages), _ = counts.most_common(1)[0]
    if script == "Han" and counts[SCRIPTS["HIRAGANA"]]:  # kanji with kana is Japanese
        return SCRIPTS["HIRAGANA"]
    return script, languages
