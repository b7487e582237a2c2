"""The attention mask both model families use for padded batches."""

from __future__ import annotations

import torch


def causal_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) 1/0 real-token mask -> (B, 1, T, T) bool for SDPA (True = may attend), or None for pure causal.

    Each query also keeps its own position so that a query with every key masked (left padding) gets no NaN row.
    """
    if attention_mask is None:
        return None
    t = attention_mask.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=attention_mask.device).tril()
    mask = causal[None, None] & attention_mask.bool()[:, None, None, :]
    return mask | torch.eye(t, dtype=torch.bool, device=attention_mask.device)[None, None]
