"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from spamtune.config import TrainArgs


def minilm_args(**kw) -> TrainArgs:
    return TrainArgs(**{"backend": "hf", "model": "all-minilm-l6-v2", "trainable": "all", "lr": 2e-4, "epochs": 4,
                        "eval_freq": 1000, **kw})


CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch_chromium(playwright):
    """Debian's headless Chromium driven by Playwright (no browser download; scripts/test.sh installs it), with the
    flags that keep it off this machine's closed network."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian chromium is required (scripts/test.sh installs it)"
    return playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)


def tiny_gguf(path: Path, pre: str, tokens: tuple[str, ...] = ("a", "b", "ab")) -> Path:
    """A GGUF file with only a byte-level BPE tokenizer (the merge "a b") and one dummy tensor."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(list(tokens))
    w.add_token_merges(["a b"])
    w.add_token_types([1] * len(tokens))
    w.add_eos_token_id(0)
    w.add_tensor("dummy", np.zeros(2, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
