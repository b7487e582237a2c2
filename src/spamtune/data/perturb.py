"""Realistic obfuscations of a message, the course's "adversarial examples": what spammers do so that a filter's
tokens no longer match while a reader still reads the same words. Used by `evaluate --perturb` (robustness per
perturbation) and `train --augment` (perturbed copies of training messages).

Every perturbation is deterministic for (text, seed), changes what a reader sees as little as the trick allows, and
leaves a message it does not apply to unchanged (a URL disguise needs a URL).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable

import pandas as pd

# Cyrillic and Greek letters that render like Latin ones (a subset of Unicode's confusables)
HOMOGLYPHS = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "i": "\u0456", "j": "\u0458", "o": "\u043e",
              "p": "\u0440", "s": "\u0455", "x": "\u0445", "y": "\u0443", "A": "\u0391", "B": "\u0392",
              "C": "\u0421", "E": "\u0395", "H": "\u0397", "I": "\u0399", "K": "\u039a", "M": "\u039c",
              "N": "\u039d", "O": "\u039f", "P": "\u03a1", "T": "\u03a4", "X": "\u03a7", "Y": "\u03a5"}
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "A": "4", "E": "3", "I": "1", "O": "0",
        "S": "5", "T": "7"}
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060")
URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s]+|\b[a-z0-9-]+\.(?:com|co\.uk|net|org|biz|info)\b[^\s]*")
PHONE = re.compile(r"(?<!\d)\+?\d{5,}(?!\d)")
WORD = re.compile(r"[A-Za-z]{4,}")


def _rng(text: str, seed: int, name: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\0{name}\0{text}".encode("utf-8", "surrogatepass")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _swap(text: str, table: dict[str, str], rate: float, rng: random.Random) -> str:
    return "".join(table[c] if c in table and rng.random() < rate else c for c in text)


def homoglyphs(text: str, rng: random.Random) -> str:
    """Latin letters replaced by Cyrillic/Greek look-alikes ("FREE" -> "FR\u0395\u0395"), half of those that can."""
    return _swap(text, HOMOGLYPHS, 0.5, rng)


def leetspeak(text: str, rng: random.Random) -> str:
    """Letters replaced by digits that look like them ("free" -> "fr33"), half of those that have one."""
    return _swap(text, LEET, 0.5, rng)


def zero_width(text: str, rng: random.Random) -> str:
    """Invisible characters inside the words ("fr\u200bee"): one after every other letter of every longer word."""
    return WORD.sub(lambda m: "".join(c + (rng.choice(ZERO_WIDTH) if i % 2 == 0 and i < len(m.group()) - 1 else "")
                                      for i, c in enumerate(m.group())), text)


def spaced(text: str, rng: random.Random) -> str:
    """Words spelled out with spaces or dots ("F R E E", "p.r.i.z.e"): half of the longer words."""
    return WORD.sub(lambda m: rng.choice((" ", ".", "-")).join(m.group()) if rng.random() < 0.5 else m.group(), text)


def url_disguise(text: str, rng: random.Random) -> str:
    """Links written so no link pattern matches ("www.prize.com" -> "www[.]prize[.]com", "prize dot com")."""
    def disguise(m: re.Match) -> str:
        url = re.sub(r"(?i)^http", "hxxp", m.group())
        return url.replace(".", rng.choice(("[.]", " dot ", "(.)")))
    return URL.sub(disguise, text)


def phone_disguise(text: str, rng: random.Random) -> str:
    """Numbers split and with letter look-alikes ("08712460324" -> "O87-124-6O3-24")."""
    def disguise(m: re.Match) -> str:
        digits = m.group().replace("0", "O").replace("1", rng.choice(("1", "l", "I")))
        sep = rng.choice(("-", " ", "."))
        return sep.join(digits[i:i + 3] for i in range(0, len(digits), 3))
    return PHONE.sub(disguise, text)


def case_noise(text: str, rng: random.Random) -> str:
    """Random upper and lower case ("fReE PrIZe")."""
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


PERTURBATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "homoglyphs": homoglyphs, "leetspeak": leetspeak, "zero_width": zero_width, "spaced": spaced,
    "url_disguise": url_disguise, "phone_disguise": phone_disguise, "case": case_noise,
}


def perturb(text: str, name: str, seed: int = 0) -> str:
    """`text` under one perturbation (deterministic for text, name and seed)."""
    return PERTURBATIONS[name](text, _rng(text, seed, name))


def augment(df: pd.DataFrame, copies: int, seed: int) -> pd.DataFrame:
    """`df` (Label, Text) followed by `copies` perturbed copies of every row, each copy k of a message under a
    perturbation drawn for it (copies that come out unchanged are left out: they add nothing)."""
    names = sorted(PERTURBATIONS)
    extra = []
    for k in range(copies):
        for label, text in zip(df["Label"], df["Text"]):
            name = names[_rng(text, seed + k, "augment").randrange(len(names))]
            if (new := perturb(text, name, seed + k)) != text:
                extra.append((label, new))
    return pd.concat([df, pd.DataFrame(extra, columns=["Label", "Text"])], ignore_index=True)
