"""Tokenizers (book §2 / §6.3) behind one small interface: GPT-2 BPE (tiktoken, from offline vocab files) and a
model's own byte-level BPE (`tokenizers`, from GGUF metadata or a `tokenizer.json`). `load_tokenizer(spec)` is
the one entry point; a run stores the spec.

`encode` always reads its text as plain text: a message that contains `<|endoftext|>` or `<|im_start|>` gets the
BPE pieces of those characters, never the control tokens, so no message can end itself early or forge a chat turn
(an attack that turned 59 of 60 test spam into ham). Control tokens are only ever placed by code, through
`special_id` (the zero-shot chat template). The book's GPT-2 code reads `<|endoftext|>` in text as the special
token; spamtune deliberately does not.
"""

from __future__ import annotations

import functools
import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Protocol

from spamtune.errors import ModelSourceError
from spamtune.fsutil import read_json, write_json
from spamtune.weights.gguf import gguf_field, open_gguf, read_through
from spamtune.weights.sources import embedded_gguf_path

GPT2_PAD_ID = 50256  # <|endoftext|>, the book's pad token
GGUF_PRE_TOKENIZERS = ("smollm",)  # tokenizer.ggml.pre values whose pre-tokenizer `gguf_to_hf_tokenizer` builds
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """Lone surrogates (possible in a Python str, never in UTF-8) become U+FFFD, as tiktoken does; `tokenizers`
    would raise on them."""
    return _LONE_SURROGATE.sub("\ufffd", text)


class Tokenizer(Protocol):
    spec: str  # what `load_tokenizer` was called with; stored in checkpoints
    pad_id: int
    eos_id: int
    vocab_size: int
    special_tokens: dict[str, int]  # control tokens: never produced by `encode`

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` read as plain text."""
        ...

    def decode(self, ids: list[int]) -> str: ...

    def special_id(self, token: str) -> int | None:
        """The id of a control token such as "<|im_start|>", for code that builds a template; None if absent."""
        ...


def gpt2_vocab_dir() -> Path:
    """OpenAI's GPT-2 encoder.json and vocab.bpe, shipped as package data (vocab/gpt2, with their license)."""
    return Path(str(files("spamtune").joinpath("vocab", "gpt2")))


def gpt2_encoding():
    """OpenAI's GPT-2 BPE as a `tiktoken.Encoding`, built from the shipped vocab files (checked against OpenAI's
    published hashes), so it works offline with the same ids as `tiktoken.get_encoding("gpt2")`."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    data = gpt2_vocab_dir()
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data / "vocab.bpe"),
        encoder_json_file=str(data / "encoder.json"),
        vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    )
    return tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": GPT2_PAD_ID}, explicit_n_vocab=50257)


class GPT2Tokenizer:
    spec = "gpt2"
    pad_id = eos_id = GPT2_PAD_ID
    vocab_size = 50257
    special_tokens = {"<|endoftext|>": GPT2_PAD_ID}

    def __init__(self) -> None:
        self._enc = gpt2_encoding()

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)  # "<|endoftext|>" in a message is 7 ordinary tokens

    def decode(self, ids: list[int]) -> str:
        return self._enc.decode(list(ids))

    def special_id(self, token: str) -> int | None:
        return self.special_tokens.get(token)


def gguf_to_hf_tokenizer(path: str | Path):
    """A `tokenizers.Tokenizer` from a GGUF file's `tokenizer.ggml.*` metadata (byte-level BPE, "gpt2" model).

    The pre-tokenizer is the one SmolLM2's tokenizer.json uses: single digits, then GPT-2's byte-level regex.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    reader = open_gguf(str(path))
    if (kind := gguf_field(reader, "tokenizer.ggml.model")) != "gpt2":
        raise ModelSourceError(f"{path}: tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2')")
    if (pre := gguf_field(reader, "tokenizer.ggml.pre", None)) not in GGUF_PRE_TOKENIZERS:
        # another pre-tokenizer (llama-bpe, qwen2, ...) splits text differently: refuse rather than tokenize wrong
        raise ModelSourceError(f"{path}: GGUF pre-tokenizer {pre!r} is not the one spamtune builds "
                               f"({', '.join(GGUF_PRE_TOKENIZERS)}); use --backend hf, which reads it with "
                               "transformers' GGUF tokenizer")
    tokens = gguf_field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in gguf_field(reader, "tokenizer.ggml.merges")]
    types = gguf_field(reader, "tokenizer.ggml.token_type")
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    control = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]
    tok.add_special_tokens(control)
    return tok


class HFTokenizer:
    """A `tokenizers.Tokenizer` with the model's pad/eos ids; its special tokens are matched only by `special_id`."""

    def __init__(self, spec: str, tok, pad_id: int, eos_id: int) -> None:
        self.spec, self.backend_tokenizer, self.pad_id, self.eos_id = spec, tok, pad_id, eos_id
        self.vocab_size = tok.get_vocab_size()
        tok.encode_special_tokens = True  # special-token strings in the input are plain text
        self.special_tokens = {t.content: i for i, t in tok.get_added_tokens_decoder().items() if t.special}

    def encode(self, text: str) -> list[int]:
        return self.backend_tokenizer.encode(_clean(text), add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        encodings = self.backend_tokenizer.encode_batch([_clean(t) for t in texts], add_special_tokens=False)
        return [e.ids for e in encodings]

    def decode(self, ids: list[int]) -> str:
        return self.backend_tokenizer.decode(list(ids), skip_special_tokens=False)

    def special_id(self, token: str) -> int | None:
        return self.special_tokens.get(token)


def _from_gguf(spec: str, path: Path) -> HFTokenizer:
    """The GGUF file's tokenizer, kept in the cache directory (`read_through`) as `tokenizers` JSON with its pad
    and eos ids."""
    from tokenizers import Tokenizer

    def build() -> tuple[Tokenizer, int, int]:
        reader = open_gguf(str(path))
        eos = int(gguf_field(reader, "tokenizer.ggml.eos_token_id"))
        pad = int(gguf_field(reader, "tokenizer.ggml.padding_token_id", eos))
        return gguf_to_hf_tokenizer(path), pad, eos

    def save(read: tuple[Tokenizer, int, int], kept: Path) -> None:
        write_json(kept, {"tokenizer": read[0].to_str(), "pad_id": read[1], "eos_id": read[2]})

    def load(kept: Path) -> tuple[Tokenizer, int, int]:
        d = read_json(kept)
        return Tokenizer.from_str(d["tokenizer"]), int(d["pad_id"]), int(d["eos_id"])

    tok, pad, eos = read_through(path, "tokenizer.json", build, save, load)
    return HFTokenizer(spec, tok, pad, eos)


def _from_hf_dir(spec: str, path: Path) -> HFTokenizer:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    cfg = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    eos = cfg.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    if eos is None:
        raise ModelSourceError(f"{path}: config.json names no eos_token_id, so there is no pad id to use")
    pad = cfg.get("pad_token_id")
    return HFTokenizer(spec, tok, eos if pad is None else pad, eos)


@functools.lru_cache(maxsize=8)
def load_tokenizer(spec: str) -> Tokenizer:
    """`"gpt2"`, `"smollm2-135m"` (the embedded GGUF), a `.gguf` file, or a directory with `tokenizer.json`."""
    if spec == "gpt2":
        return GPT2Tokenizer()
    if spec == "smollm2-135m":
        return _from_gguf(spec, embedded_gguf_path())
    path = Path(spec)
    if path.suffix == ".gguf":
        return _from_gguf(spec, path)
    if (path / "tokenizer.json").is_file():
        return _from_hf_dir(spec, path)
    raise ModelSourceError(f"unknown tokenizer {spec!r}: expected gpt2, smollm2-135m, a .gguf file or a HF directory")
