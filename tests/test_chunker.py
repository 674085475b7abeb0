"""The chunker: text whole or in any pieces → the same chunks, nothing lost, duplicated or reordered."""
import random

import pytest

from stream.tts.chunker import FIRST, MAX, Chunker, sentences

WORDS = ["alpha", "beta,", "gamma.", "delta!", "epsilon;", "zeta?", "eta", "theta:", "iota", "Dr.", "e.g.",
         "3.14", "example.com/a.b", "J.", "\u201cquoted.\u201d", "(aside.)", "x" * 230, "\u4f60\u597d\u3002", "kappa\u2014"]


def _texts(n: int, seed: int = 1):
    rng = random.Random(seed)
    for _ in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 120)))
        if rng.random() < 0.3:
            text = text.replace(" ", "\n\n", 3)
        yield rng, text


def _pieces(rng: random.Random, text: str) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randrange(0, 40)))) if len(text) > 1 else []
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def _streamed(pieces: list[str]) -> list[str]:
    chunker, out = Chunker(), []
    for piece in pieces:
        out += chunker.feed(piece)
    return out + chunker.flush()


def test_whole_and_streamed_text_give_the_same_chunks():
    for rng, text in _texts(300):
        assert _streamed(_pieces(rng, text)) == sentences(text), text
    text = "Hello there, my friend. How are you today? Fine."
    assert _streamed(list(text)) == sentences(text)  # a character at a time


def test_nothing_lost_duplicated_or_reordered_and_no_word_cut():
    for _, text in _texts(300, seed=2):
        parts = sentences(text)
        assert " ".join(parts).split() == text.split(), text
        assert all(p and p.strip() == p for p in parts)


def test_only_the_first_chunk_is_shorter_than_its_sentence():
    text = ("Well, this first sentence goes on for quite a while before it finally ends here. "
            "Then a second one, with a comma, that is spoken whole. Short. "
            + "A very long sentence " + "that keeps going, " * 20 + "and ends.")
    parts = sentences(text)
    assert parts[0] == "Well,"  # a clause: speech starts early
    assert parts[1] == "this first sentence goes on for quite a while before it finally ends here."
    assert parts[2] == "Then a second one, with a comma, that is spoken whole."
    assert parts[3] == "Short."
    long = parts[4:]
    assert len(long) > 1 and all(len(p) <= MAX for p in long) and long[-1].endswith("and ends.")
    assert all(p.endswith(",") for p in long[:-1])  # cut at clauses


def test_first_chunk_without_a_clause_is_cut_at_a_space_near_the_limit():
    text = "word " * 30 + "end."
    first = sentences(text)[0]
    assert len(first) <= FIRST and text.startswith(first)


@pytest.mark.parametrize("text", [
    "Dr. Smith met Mr. Jones at 3.14 p.m. today.",
    "See example.com/a.b for more (e.g. this page).",
    "J. R. R. Tolkien wrote it.",
    "The price rose 2.5 percent vs. last year.",
])
def test_abbreviations_decimals_and_urls_do_not_end_a_sentence(text):
    assert sentences("Yes, " + text + " Next.") == ["Yes,", text, "Next."]


def test_sentences_split_at_their_ends_and_blank_lines():
    assert sentences("One. Two!  Three?\n\nFour") == ["One.", "Two!", "Three?", "Four"]
    assert sentences("\u4f60\u597d\u3002\u518d\u89c1\u3002") == ["\u4f60\u597d\u3002", "\u518d\u89c1\u3002"]
    assert sentences('He said "stop." Then left.') == ['He said "stop."', "Then left."]
