"""The two decoder families, built from a `ModelConfig`."""

from __future__ import annotations

from torch import nn

from spamtune.config import ModelConfig
from spamtune.models.gpt2 import GPTModel
from spamtune.models.llama import LlamaModel


def build_model(cfg: ModelConfig) -> nn.Module:
    """A randomly initialised `GPTModel` or `LlamaModel` for `cfg.arch`."""
    return {"gpt2": GPTModel, "llama": LlamaModel}[cfg.arch](cfg)


__all__ = ["GPTModel", "LlamaModel", "build_model"]
