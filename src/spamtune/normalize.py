"""Unicode normalization before tokenizing (`--normalize`, stored in the run): the obfuscations spammers use to slip
past filters mostly change code points, not what a reader sees. `nfkc` undoes three of them:

- NFKC: compatibility forms become their plain letters (fullwidth "ＦＲＥＥ", ligatures, circled and styled
  mathematical letters, "…" -> "...").
- Invisible characters are removed: zero-width spaces and joiners, word joiners, soft hyphens, bidi marks.
- Look-alike letters are folded (Unicode's confusables, TR39): a Cyrillic or Greek letter that looks Latin becomes
  the Latin letter inside a word that has Latin letters ("fr\u0435e"), or in a word made only of look-alikes when
  most letters of the message are Latin ("\u0440\u0430\u0443 now"). Words in a message that is mostly Cyrillic
  or Greek are left alone.

Leetspeak is not folded: digits are too often real (prices, phone numbers, codes). The tokenizer of a run wraps
this, so training, evaluation, the API and the service all read a message the same way.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

from spamtune.config import Normalization

INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                       "\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]")
WORD = re.compile(r"[^\W\d_]+")  # runs of letters
# C0/C1 controls (ESC starts terminal escape sequences), bidi overrides and isolates (a message that reverses its
# own display), and lone surrogates (not printable as UTF-8)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: object, width: int | None = None) -> str:
    """`text` safe to print on one terminal line (or write into a report): control, bidi and surrogate characters
    as visible escapes (\\x1b, \\u202e, \\n), cut to `width` characters with "..."."""
    shown = _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii")
                        if ord(m.group()) < 0xD800 else f"\\u{ord(m.group()):04x}", str(text))
    if width is not None and len(shown) > width:
        shown = shown[: width - 3] + "..."
    return shown


@functools.lru_cache(maxsize=4096)
def latin_lookalike(ch: str) -> str | None:
    """The Latin letter a non-Latin letter is confusable with (Unicode confusables data), else None."""
    from confusable_homoglyphs import categories, confusables

    if ch.isascii() or categories.alias(ch) == "LATIN":
        return None
    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=["latin"])
    for entry in found or ():
        for glyph in entry["homoglyphs"]:
            if len(glyph["c"]) == 1 and glyph["c"].isascii() and glyph["c"].isalpha():
                return glyph["c"]
    return None


def _is_latin(ch: str) -> bool:
    return ch.isascii() or unicodedata.name(ch, "").startswith("LATIN")


def fold_confusables(text: str) -> str:
    letters = [c for c in text if c.isalpha()]
    mostly_latin = sum(map(_is_latin, letters)) * 2 > len(letters)

    def fold(m: re.Match) -> str:
        word = m.group()
        if all(map(_is_latin, word)):
            return word
        mapped = [latin_lookalike(c) for c in word]
        has_latin = any(map(_is_latin, word))
        if has_latin or (mostly_latin and all(c is not None or _is_latin(ch) for c, ch in zip(mapped, word))):
            return "".join(c or ch for c, ch in zip(mapped, word))
        return word

    return WORD.sub(fold, text)


def normalize_text(text: str, scheme: Normalization) -> str:
    """`text` as the tokenizer of a run with this normalization reads it."""
    if scheme == "none" or text.isascii():  # ASCII is NFKC-stable, visible and Latin: nothing to do (most SMS)
        return text
    return fold_confusables(INVISIBLE.sub("", unicodedata.normalize("NFKC", text)))


class NormalizingTokenizer:
    """A tokenizer that normalizes every text before encoding it; everything else is the wrapped tokenizer's."""

    def __init__(self, inner: Any, scheme: Normalization) -> None:
        self.inner, self.scheme = inner, scheme

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(normalize_text(text, self.scheme))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        texts = [normalize_text(t, self.scheme) for t in texts]
        batch = getattr(self.inner, "encode_batch", None)
        return batch(texts) if batch else [self.inner.encode(t) for t in texts]

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def normalizing(tokenizer: Any, scheme: Normalization) -> Any:
    """`tokenizer` reading text through `normalize_text(scheme)` (itself for "none")."""
    return tokenizer if scheme == "none" else NormalizingTokenizer(tokenizer, scheme)
