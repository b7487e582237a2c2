"""GGUF files (the embedded SmolLM2 ships as one), read with the `gguf` package: metadata, the Llama config it
describes, and its tensors dequantized to fp32. Shared by the weight loader and the tokenizer.

Reading one costs seconds in every process that loads the model: `gguf` parses the header field by field in
Python (~3 s for SmolLM2's 49k-token vocabulary) and dequantizes every tensor (~2 s). `read_through` keeps what
was read (the config, the tokenizer, the fp32 tensors) in the cache directory, so that is paid once per file.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from spamtune.config import ModelConfig
from spamtune.data.sources import cache_dir
from spamtune.errors import ModelSourceError, SpamtuneError

log = logging.getLogger(__name__)
T = TypeVar("T")
READ_THROUGH_FORMAT = 1  # part of every entry's key: a change in what is kept makes new entries


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


def read_through(path: str | Path, name: str, build: Callable[[], T], save: Callable[[T, Path], None],
                 load: Callable[[Path], T]) -> T:
    """What `build` reads from GGUF file `path`, kept as `name` in the cache directory (cache_dir()/gguf/<file
    stem>-<key>/) and loaded from there the next time. The key is the file's resolved path, inode, size and
    modification time, so a replaced or rewritten file gets a new entry. A kept file that cannot be loaded
    (truncated, damaged, or written by another version) is read again from the GGUF file and replaced; a cache
    directory that cannot be written only costs the speed."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return build()  # the GGUF reader names the problem
    key = hashlib.sha256(f"{READ_THROUGH_FORMAT}\0{path.resolve()}\0{st.st_ino}\0{st.st_size}\0"
                         f"{st.st_mtime_ns}".encode()).hexdigest()[:16]
    kept = cache_dir() / "gguf" / f"{path.stem}-{key}" / name
    if kept.is_file():
        try:
            return load(kept)
        except Exception as e:  # any kept file that does not load is a miss (`tokenizers` raises bare Exception)
            log.warning("%s: unreadable (%s); reading %s again", kept, e, path)
    value = build()
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        save(value, kept)
    except (SpamtuneError, OSError) as e:
        log.warning("cannot keep %s in the cache (%s): it is read from the GGUF file each time", name, e)
    return value
