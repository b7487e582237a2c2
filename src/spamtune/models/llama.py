"""Llama-family decoder from scratch (the book's ch. 5 bonus "GPT to Llama", names kept): RMSNorm, RoPE,
grouped-query attention, SwiGLU feed-forward, usually tied input/output embeddings. SmolLM2-135M is one.

RoPE uses the Hugging Face "rotate half" layout (pairs (i, i + Dh/2)); GGUF files store Q/K rows permuted for
llama.cpp's interleaved layout, which `weights.gguf_to_llama` undoes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spamtune.config import ModelConfig
from spamtune.models.init import building_on_meta, embedding, init_normal
from spamtune.models.masks import causal_padding_mask


class RMSNorm(nn.Module):
    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in fp32 (as HF and llama.cpp do), scale in the input dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class RoPE(nn.Module):
    """Rotary position embedding, shared by every attention layer of a model (one instance).

    The cos/sin tables are precomputed up to the context length as non-persistent buffers (never saved; they move
    with `.to(device)`), so a forward pass slices them and `torch.export`/ONNX see plain tensors, whatever the
    sequence length. A model built on the meta device gets them back with `init_buffers` after loading.
    """

    def __init__(self, head_dim: int, base: float, context_length: int) -> None:
        super().__init__()
        self.head_dim, self.base, self.context_length = head_dim, base, context_length
        if building_on_meta():  # models/init.py: the tables come with init_buffers, after loading
            cos, sin = torch.empty(context_length, head_dim), torch.empty(context_length, head_dim)
        else:
            cos, sin = self._compute()
        self.register_buffer("cos", cos, persistent=False)  # (context, Dh) float32
        self.register_buffer("sin", sin, persistent=False)

    def _compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.head_dim
        inv_freq = 1.0 / self.base ** (torch.arange(0, d, 2, dtype=torch.float32) / d)  # (Dh/2,)
        angles = torch.arange(self.context_length, dtype=torch.float32)[:, None] * inv_freq[None, :]  # (T, Dh/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, Dh): the rotate-half layout
        return angles.cos(), angles.sin()

    def init_buffers(self) -> None:
        """Compute the tables for real (after a meta-device build), on the CPU."""
        self.cos, self.sin = self._compute()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, T, Dh), positions 0..T-1 (right padding keeps every real token at its true position)."""
        t = x.shape[2]
        cos, sin = self.cos[:t].to(x.dtype), self.sin[:t].to(x.dtype)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin


class GroupedQueryAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, rope: RoPE) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.drop_rate = cfg.drop_rate
        self.W_query = nn.Linear(cfg.emb_dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.W_key = nn.Linear(cfg.emb_dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.W_value = nn.Linear(cfg.emb_dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.out_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.emb_dim, bias=False)
        self.rope = rope

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.W_query(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = self.W_key(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, Dh)
        v = self.W_value(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = self.rope(q), self.rope(k)
        dropout = self.drop_rate if self.training else 0.0
        # enable_gqa lets SDPA broadcast each kv head over its group of query heads without copying it
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout,
                                             is_causal=attn_mask is None, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.out_proj(ctx.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: fc3(silu(fc1(x)) * fc2(x)); fc1 = gate, fc2 = up, fc3 = down."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.emb_dim, cfg.hidden_dim, bias=False)
        self.fc2 = nn.Linear(cfg.emb_dim, cfg.hidden_dim, bias=False)
        self.fc3 = nn.Linear(cfg.hidden_dim, cfg.emb_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.silu(self.fc1(x)) * self.fc2(x))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, rope: RoPE) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.emb_dim, cfg.norm_eps)
        self.att = GroupedQueryAttention(cfg, rope)
        self.norm2 = RMSNorm(cfg.emb_dim, cfg.norm_eps)
        self.ff = FeedForward(cfg)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_shortcut(self.att(self.norm1(x), attn_mask))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class LlamaModel(nn.Module):
    """Llama decoder with the same surface as `GPTModel`: `embed`, `trf_blocks`, `final_norm`, `out_head`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "llama":
            raise ValueError(f"LlamaModel needs arch 'llama', got {cfg.arch!r}")
        self.cfg = cfg
        self.tok_emb = embedding(cfg.vocab_size, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        rope = RoPE(cfg.head_dim, cfg.rope_base, cfg.context_length)
        self.trf_blocks = nn.ModuleList(TransformerBlock(cfg, rope) for _ in range(cfg.n_layers))
        self.final_norm = RMSNorm(cfg.emb_dim, cfg.norm_eps)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        self.apply(lambda m: init_normal(m, zero_bias=False))  # GPT-2's N(0, 0.02)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the input embedding with the output head (SmolLM2 and most small Llamas do)."""
        if self.cfg.tie_embeddings:
            self.out_head.weight = self.tok_emb.weight

    def embed(self, in_idx: torch.Tensor) -> torch.Tensor:
        if in_idx.shape[1] > self.cfg.context_length:
            raise ValueError(f"sequence of {in_idx.shape[1]} tokens exceeds the context length "
                             f"{self.cfg.context_length}")
        return self.drop_emb(self.tok_emb(in_idx))

    def forward(self, in_idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(in_idx)
        mask = causal_padding_mask(attention_mask)
        for block in self.trf_blocks:
            x = block(x, mask)
        return self.out_head(self.final_norm(x))
