"""Weight conversion: pure functions between checkpoint state dicts and our modules', driven by `keymaps`.

Anything unknown, missing or mis-shaped fails with the key's name, so a checkpoint that loads is a checkpoint that
is right (tests/models: parity with transformers on random models).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from spamtune.config import GPT2_PRESETS, ModelConfig
from spamtune.errors import ModelSourceError
from spamtune.weights.keymaps import (
    GPT2_BLOCK_MAP,
    GPT2_IGNORED,
    GPT2_TOP_MAP,
    LLAMA_GGUF_BLOCK_MAP,
    LLAMA_GGUF_TOP_MAP,
    LLAMA_HF_BLOCK_MAP,
    LLAMA_HF_TOP_MAP,
)

# ---------------------------------------------------------------------------------------------------------------
# GPT-2


def hf_to_gpt2(state_dict: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF GPT-2 (`openai-community/gpt2*` model.safetensors, or `GPT2LMHeadModel.save_pretrained`) -> `GPTModel`."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        key = key.removeprefix("transformer.")
        if GPT2_IGNORED.match(key):
            continue
        if key == "lm_head.weight":  # tied to wte in every released GPT-2; kept if a file has its own
            out["out_head.weight"] = tensor
        elif key in GPT2_TOP_MAP:
            out[GPT2_TOP_MAP[key]] = tensor
        elif m := re.fullmatch(r"h\.(\d+)\.(.+)", key):
            i, rest = int(m[1]), m[2]
            if i >= cfg.n_layers:
                raise ModelSourceError(f"{key}: block {i} but the config has {cfg.n_layers} layers")
            prefix = f"trf_blocks.{i}."
            if rest in ("attn.c_attn.weight", "attn.c_attn.bias"):
                # fused qkv: (in, 3*out) / (3*out,) -> three projections
                kind = rest.rsplit(".", 1)[1]
                for name, part in zip(("W_query", "W_key", "W_value"), tensor.chunk(3, dim=-1)):
                    out[f"{prefix}att.{name}.{kind}"] = part.T.contiguous() if kind == "weight" else part
            elif rest in GPT2_BLOCK_MAP:
                name, transpose = GPT2_BLOCK_MAP[rest]
                out[prefix + name] = tensor.T.contiguous() if transpose else tensor
            else:
                raise ModelSourceError(f"unknown GPT-2 weight {key!r}")
        else:
            raise ModelSourceError(f"unknown GPT-2 weight {key!r}")
    if "out_head.weight" not in out and "tok_emb.weight" in out:
        out["out_head.weight"] = out["tok_emb.weight"]  # the book: out_head starts as a copy of wte
    return out


def gpt2_to_hf(sd: Mapping[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """`GPTModel` tensors -> HF GPT-2 names and Conv1D layouts (the inverse of `hf_to_gpt2`)."""
    out = {f"transformer.{hf}": sd[ours] for hf, ours in GPT2_TOP_MAP.items()}
    for i in range(n_layers):
        p, q = f"trf_blocks.{i}.", f"transformer.h.{i}."
        for hf, (ours, transpose) in GPT2_BLOCK_MAP.items():
            out[q + hf] = sd[p + ours].T if transpose else sd[p + ours]
        parts = [f"{p}att.W_{n}" for n in ("query", "key", "value")]
        out[q + "attn.c_attn.weight"] = torch.cat([sd[n + ".weight"].T for n in parts], dim=-1)
        out[q + "attn.c_attn.bias"] = torch.cat([sd[n + ".bias"] for n in parts])
    return out


def gpt2_config_from_hf(d: dict, name: str = "custom") -> ModelConfig:
    """A transformers GPT2Config (config.json) as a `ModelConfig`."""
    try:
        return ModelConfig(arch="gpt2", vocab_size=d["vocab_size"], context_length=d.get("n_positions", 1024),
                           emb_dim=d["n_embd"], n_layers=d["n_layer"], n_heads=d["n_head"], qkv_bias=True,
                           hidden_dim=d.get("n_inner") or 4 * d["n_embd"],
                           norm_eps=d.get("layer_norm_epsilon", 1e-5), name=name)
    except KeyError as e:
        raise ModelSourceError(f"GPT-2 config.json has no {e.args[0]!r}") from None


def gpt2_config_from_shapes(shapes: Mapping[str, tuple[int, ...]]) -> ModelConfig:
    """Infer a GPT-2 size from tensor shapes (a bare model.safetensors without config.json)."""
    shapes = {k.removeprefix("transformer."): v for k, v in shapes.items()}
    if "wte.weight" not in shapes or "wpe.weight" not in shapes:
        raise ModelSourceError("not a GPT-2 checkpoint: no wte.weight / wpe.weight")
    vocab, emb = shapes["wte.weight"]
    layers = 1 + max(int(m[1]) for k in shapes if (m := re.match(r"h\.(\d+)\.", k)))
    preset = next((p for p in GPT2_PRESETS.values() if p.emb_dim == emb and p.n_layers == layers), None)
    if preset is None:
        raise ModelSourceError(f"GPT-2 checkpoint with emb {emb} and {layers} layers matches no preset; "
                               "put its config.json beside it")
    return ModelConfig(**{**preset.to_dict(), "vocab_size": vocab, "context_length": shapes["wpe.weight"][0]})


# ---------------------------------------------------------------------------------------------------------------
# Llama: HF safetensors and GGUF


def _map_llama(state_dict: Mapping[str, torch.Tensor], top: dict[str, str], block: dict[str, str], block_re: str,
               cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in state_dict.items():
        if key in top:
            out[top[key]] = tensor
        elif (m := re.fullmatch(block_re, key)) and m[2] in block:
            i = int(m[1])
            if i >= cfg.n_layers:
                raise ModelSourceError(f"{key}: block {i} but the config has {cfg.n_layers} layers")
            out[f"trf_blocks.{i}.{block[m[2]]}"] = tensor
        else:
            raise ModelSourceError(f"unknown Llama weight {key!r}")
    return out


def hf_to_llama(state_dict: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF `LlamaForCausalLM` safetensors -> `LlamaModel` (same layouts; only names change)."""
    sd = {k: v for k, v in state_dict.items() if not k.endswith("rotary_emb.inv_freq")}  # a constant, not a weight
    return _map_llama(sd, LLAMA_HF_TOP_MAP, LLAMA_HF_BLOCK_MAP, r"model\.layers\.(\d+)\.(.+)", cfg)


def llama_to_hf(sd: Mapping[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """`LlamaModel` tensors -> HF Llama names (the inverse of `hf_to_llama`; the vocabulary head is left out)."""
    out = {hf: sd[ours] for hf, ours in LLAMA_HF_TOP_MAP.items() if hf != "lm_head.weight"}
    for i in range(n_layers):
        for hf, ours in LLAMA_HF_BLOCK_MAP.items():
            out[f"model.layers.{i}.{hf}"] = sd[f"trf_blocks.{i}.{ours}"]
    return out


def unpermute_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation (convert_hf_to_gguf.py `permute`).

    GGUF reorders each head's rows from HF's rotate-half layout [x_0..x_{h/2-1}, x_{h/2}..] into interleaved pairs
    (x_0, x_{h/2}, x_1, ...). Rows (n_heads * Dh, D) -> view (n_heads, Dh/2, 2, D) -> swap the middle axes.
    """
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def gguf_to_llama(tensors: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """GGUF (llama.cpp names, dequantized) -> `LlamaModel`, with the Q/K RoPE permutation undone."""
    out = _map_llama(tensors, LLAMA_GGUF_TOP_MAP, LLAMA_GGUF_BLOCK_MAP, r"blk\.(\d+)\.(.+)", cfg)
    for i in range(cfg.n_layers):
        for name, heads in (("W_query", cfg.n_heads), ("W_key", cfg.n_kv_heads)):
            key = f"trf_blocks.{i}.att.{name}.weight"
            if key in out:
                out[key] = unpermute_rope(out[key], heads)
    return out


def llama_config_from_hf(d: dict, name: str = "custom") -> ModelConfig:
    """A transformers LlamaConfig (config.json) as a `ModelConfig`; RoPE scaling is refused."""
    rope = d.get("rope_parameters") or {}
    if (d.get("rope_scaling") or rope.get("rope_type", "default")) not in (None, "default"):
        raise ModelSourceError(f"RoPE scaling {d.get('rope_scaling') or rope} is not supported")
    try:
        cfg = ModelConfig(
            arch="llama", vocab_size=d["vocab_size"], context_length=d.get("max_position_embeddings", 2048),
            emb_dim=d["hidden_size"], n_layers=d["num_hidden_layers"], n_heads=d["num_attention_heads"],
            n_kv_heads=d.get("num_key_value_heads") or 0, hidden_dim=d["intermediate_size"],
            norm_eps=d.get("rms_norm_eps", 1e-5), rope_base=rope.get("rope_theta", d.get("rope_theta", 10_000.0)),
            tie_embeddings=d.get("tie_word_embeddings", False), name=name)
    except KeyError as e:
        raise ModelSourceError(f"Llama config.json has no {e.args[0]!r}") from None
    if d.get("head_dim", cfg.head_dim) != cfg.head_dim:
        raise ModelSourceError(f"head_dim {d['head_dim']} != hidden_size / heads; not supported")
    return cfg
