"""Inference precision: LoRA adapters merged into their weights, then fp32, bf16 or (experimental) dynamic int8."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from spamtune.errors import ConfigError


def prepare_for_inference(module: nn.Module, dtype: str = "fp32", quantize: str | None = None) -> nn.Module:
    """Merge LoRA adapters into their weights (one matmul per layer again), then cast or quantize.

    int8 is PyTorch's dynamic quantization: Linear weights stored as int8, activations quantized per batch on
    the fly (CPU). bf16 halves the bytes moved. Both trade a little agreement with fp32 for speed; see
    benchmarks/inference.py for the measured agreement and speed-up.
    """
    wrapped: Any = module  # peft's wrappers are duck-typed: merge_and_unload() gives the plain model back
    if hasattr(wrapped, "merge_and_unload"):  # a peft LoRA wrapper
        module = wrapped.merge_and_unload()
    elif hasattr(getattr(wrapped, "model", None), "merge_and_unload"):  # backends.hf.HFClassifier around one
        wrapped.model = wrapped.model.merge_and_unload()
    if dtype not in ("fp32", "bf16"):
        raise ConfigError(f"--dtype must be fp32 or bf16, not {dtype!r}")
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize must be int8, not {quantize!r}")
    if quantize and dtype != "fp32":
        raise ConfigError("--quantize int8 works on fp32 models; drop --dtype bf16")
    if dtype == "bf16":
        module = module.to(torch.bfloat16)
    if quantize == "int8":
        with warnings.catch_warnings():  # torch.ao's deprecation notice; the API is still the shipped one
            warnings.simplefilter("ignore")
            module = torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
    return module.eval()
