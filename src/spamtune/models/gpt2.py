"""GPT-2 from scratch (the book's ch. 4 `GPTModel`, names kept so its weight-loading code reads the same).

Pre-LN blocks: x + Attn(LN(x)), x + MLP(LN(x)); learned positions; causal multi-head attention with qkv bias;
GELU (tanh approximation, as OpenAI's); final LayerNorm; output head. Attention runs through
`scaled_dot_product_attention`, which picks a fused kernel when there is no padding mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spamtune.config import ModelConfig
from spamtune.models.init import embedding, init_normal
from spamtune.models.masks import causal_padding_mask


class LayerNorm(nn.Module):
    """The book's LayerNorm: `scale`/`shift` named as in ch. 4 (biased variance, like torch and OpenAI)."""

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.scale, self.shift, self.eps)


class MultiHeadAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.emb_dim
        self.n_heads, self.head_dim, self.drop_rate = cfg.n_heads, cfg.head_dim, cfg.drop_rate
        self.W_query = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.W_key = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.W_value = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        # (B, T, D) -> (B, H, T, Dh)
        q, k, v = (proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
                   for proj in (self.W_query, self.W_key, self.W_value))
        dropout = self.drop_rate if self.training else 0.0
        if attn_mask is None:
            ctx = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:  # (B, 1, T, T) bool, causal and padding combined by `causal_padding_mask`
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return self.out_proj(ctx.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg.emb_dim, cfg.hidden_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.hidden_dim, cfg.emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm1 = LayerNorm(cfg.emb_dim, cfg.norm_eps)
        self.att = MultiHeadAttention(cfg)
        self.norm2 = LayerNorm(cfg.emb_dim, cfg.norm_eps)
        self.ff = FeedForward(cfg)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_shortcut(self.att(self.norm1(x), attn_mask))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTModel(nn.Module):
    """GPT-2. `forward(in_idx)` -> logits (B, T, vocab); `embed` and `trf_blocks` let the classifier run a frozen
    prefix once and cache it (see `classifier.py`)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "gpt2":
            raise ValueError(f"GPTModel needs arch 'gpt2', got {cfg.arch!r}")
        self.cfg = cfg
        self.tok_emb = embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = LayerNorm(cfg.emb_dim, cfg.norm_eps)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        self.apply(lambda m: init_normal(m, zero_bias=True))  # GPT-2's N(0, 0.02)

    def embed(self, in_idx: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, D) token + position embeddings."""
        t = in_idx.shape[1]
        if t > self.cfg.context_length:
            raise ValueError(f"sequence of {t} tokens exceeds the context length {self.cfg.context_length}")
        pos = torch.arange(t, device=in_idx.device)
        return self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(pos))

    def tie_weights(self) -> None:
        """GPT-2 checkpoints carry their own (copied) output head; nothing to tie."""

    def forward(self, in_idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(in_idx)
        mask = causal_padding_mask(attention_mask)
        for block in self.trf_blocks:
            x = block(x, mask)
        return self.out_head(self.final_norm(x))
