"""The two decoder families, built from a `ModelConfig`."""

from __future__ import annotations

from spamtune.config import ModelConfig
from spamtune.models.gpt2 import GPTModel
from spamtune.models.llama import LlamaModel

# Both families share one surface: cfg, embed, trf_blocks, final_norm, out_head (and tie_weights for Llama)
Decoder = GPTModel | LlamaModel


def build_model(cfg: ModelConfig) -> Decoder:
    """A randomly initialised `GPTModel` or `LlamaModel` for `cfg.arch`."""
    return GPTModel(cfg) if cfg.arch == "gpt2" else LlamaModel(cfg)


__all__ = ["Decoder", "GPTModel", "LlamaModel", "build_model"]
