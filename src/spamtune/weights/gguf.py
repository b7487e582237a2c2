"""GGUF files (the embedded SmolLM2 ships as one), read with the `gguf` package: metadata, the Llama config it
describes, and its tensors dequantized to fp32. Shared by the weight loader and the tokenizer."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spamtune.config import ModelConfig
from spamtune.errors import ModelSourceError


@functools.lru_cache(maxsize=4)
def open_gguf(path: str | Path):
    """A `gguf.GGUFReader` (memory-mapped; parsing the header takes ~2 s, so readers are cached per path)."""
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise ModelSourceError(f"no such file: {path}")
    try:
        return GGUFReader(path)
    except (ValueError, IndexError, OSError) as e:  # bad magic, truncated file
        raise ModelSourceError(f"{path}: not a readable GGUF file ({e})") from None


def gguf_field(reader, key: str, default: Any = ...) -> Any:
    """One metadata value (scalar, string or array) by key; a missing key fails with its name."""
    field = reader.fields.get(key)
    if field is None:
        if default is ...:
            raise ModelSourceError(f"GGUF metadata has no {key!r}")
        return default
    return field.contents()


def llama_config_from_gguf(path: str | Path, name: str = "custom") -> ModelConfig:
    """Hyperparameters from the GGUF metadata (`llama.*` keys), never guessed."""
    r = open_gguf(str(path))
    arch = gguf_field(r, "general.architecture")
    if arch != "llama":
        raise ModelSourceError(f"{path}: architecture {arch!r} is not supported (only llama)")
    vocab = gguf_field(r, "llama.vocab_size", None) or len(r.fields["tokenizer.ggml.tokens"].data)
    return ModelConfig(
        arch="llama", vocab_size=int(vocab), context_length=int(gguf_field(r, "llama.context_length")),
        emb_dim=int(gguf_field(r, "llama.embedding_length")), n_layers=int(gguf_field(r, "llama.block_count")),
        n_heads=int(gguf_field(r, "llama.attention.head_count")),
        n_kv_heads=int(gguf_field(r, "llama.attention.head_count_kv")),
        hidden_dim=int(gguf_field(r, "llama.feed_forward_length")),
        norm_eps=float(gguf_field(r, "llama.attention.layer_norm_rms_epsilon")),
        rope_base=float(gguf_field(r, "llama.rope.freq_base", 10_000.0)),
        tie_embeddings=not any(t.name == "output.weight" for t in r.tensors), name=name)


def read_gguf_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF file dequantized to fp32, shaped (rows, cols) like torch's Linear weights."""
    from gguf import dequantize

    out = {}
    for t in open_gguf(str(path)).tensors:
        a = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        out[t.name] = torch.from_numpy(a if a.flags.writeable else a.copy())  # F32 tensors are read-only mmap views
    return out
