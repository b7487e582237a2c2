"""What a new model's tensors start as, and how a build on the meta device skips that.

weights/load.py builds a pretrained model under `torch.device("meta")` and then adopts every loaded tensor, so
random init there is thrown away; worse, torch's meta kernels of `normal_` and `arange` are Python references whose
first use imports torch._dynamo (1.5-3.5 s of every process that loads a model). Under meta the embeddings get an
empty weight (no `reset_parameters`), `init_normal` does nothing and the RoPE tables wait for `init_buffers`; on a
real device everything is as before, random numbers drawn in the same order.
"""

from __future__ import annotations

import torch
from torch import nn


def building_on_meta() -> bool:
    """True inside `with torch.device("meta")`."""
    return torch.empty(0).is_meta


def embedding(num: int, dim: int) -> nn.Embedding:
    """`nn.Embedding(num, dim)`, left uninitialised on the meta device."""
    return nn.Embedding(num, dim, _weight=torch.empty(num, dim) if building_on_meta() else None)


def init_normal(module: nn.Module, zero_bias: bool) -> None:
    """N(0, 0.02) Linear and Embedding weights (GPT-2's init, used by both families), zero Linear biases with
    `zero_bias`; nothing on the meta device. Only --random-init runs and the tiny test models keep these."""
    if not isinstance(module, (nn.Linear, nn.Embedding)) or module.weight.is_meta:
        return
    nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if zero_bias and isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
