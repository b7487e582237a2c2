"""Pretrained weights: download (huggingface_hub, sha256-checked) and convert to our modules' names.

Converters are pure functions over state dicts, driven by explicit key maps. Anything unknown, missing or
mis-shaped fails with the key's name, so a checkpoint that loads is a checkpoint that is right.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spamtune.config import GPT2_PRESETS, ModelConfig
from spamtune.errors import SpamtuneError
from spamtune.fsutil import sha256_file
from spamtune.gguf_io import embedded_gguf_path, gguf_field, open_gguf
from spamtune.models import build_model

log = logging.getLogger(__name__)

# Hugging Face repos of OpenAI's GPT-2 in safetensors. gpt2's revision and sha256 are the published ones
# (548,105,171 bytes). For the other sizes no hash could be checked from here (no Hub access): they are
# downloaded at "main" and verified against the sha256 the Hub reports for the LFS file.
GPT2_HUB: dict[str, tuple[str, str, str | None]] = {
    "gpt2-small": ("openai-community/gpt2", "607a30d783dfa663caf39e06633721c8d4cfcd7e",
                   "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707"),
    "gpt2-medium": ("openai-community/gpt2-medium", "main", None),
    "gpt2-large": ("openai-community/gpt2-large", "main", None),
    "gpt2-xl": ("openai-community/gpt2-xl", "main", None),
}


def _check_shapes(out: dict[str, torch.Tensor], model: nn.Module) -> None:
    expected = model.state_dict()
    for key, tensor in out.items():
        if key not in expected:
            raise SpamtuneError(f"converted key {key!r} has no place in the model")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise SpamtuneError(f"{key}: shape {tuple(tensor.shape)} does not fit the model's "
                                f"{tuple(expected[key].shape)}")


def _load_converted(model: nn.Module, converted: dict[str, torch.Tensor]) -> nn.Module:
    _check_shapes(converted, model)
    expected = set(model.state_dict())
    tied = {"out_head.weight"} if getattr(model.cfg, "tie_embeddings", False) else set()
    missing = expected - set(converted) - tied
    if missing:
        raise SpamtuneError(f"weights are missing {len(missing)} tensors, e.g. {sorted(missing)[0]!r}")
    # assign=True adopts the converted tensors (no copy), so a model built on the meta device costs no init
    model.load_state_dict(converted, strict=not tied, assign=True)
    if tied:
        model.tie_weights()
    return model


# ---------------------------------------------------------------------------------------------------------------
# GPT-2: HF safetensors (Conv1D layout: weight is (in, out), so every projection is transposed)

_GPT2_BLOCK_MAP = {  # HF name inside h.N -> (our name inside trf_blocks.N, transpose)
    "ln_1.weight": ("norm1.scale", False), "ln_1.bias": ("norm1.shift", False),
    "attn.c_proj.weight": ("att.out_proj.weight", True), "attn.c_proj.bias": ("att.out_proj.bias", False),
    "ln_2.weight": ("norm2.scale", False), "ln_2.bias": ("norm2.shift", False),
    "mlp.c_fc.weight": ("ff.layers.0.weight", True), "mlp.c_fc.bias": ("ff.layers.0.bias", False),
    "mlp.c_proj.weight": ("ff.layers.2.weight", True), "mlp.c_proj.bias": ("ff.layers.2.bias", False),
}
_GPT2_TOP_MAP = {"wte.weight": "tok_emb.weight", "wpe.weight": "pos_emb.weight",
                 "ln_f.weight": "final_norm.scale", "ln_f.bias": "final_norm.shift"}
# old checkpoints carry the causal-mask buffers; they are constants, not weights
_GPT2_IGNORED = re.compile(r"h\.\d+\.attn\.(masked_)?bias$")


def hf_to_gpt2(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF GPT-2 (`openai-community/gpt2*` model.safetensors, or `GPT2LMHeadModel.save_pretrained`) -> `GPTModel`."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        key = key.removeprefix("transformer.")
        if _GPT2_IGNORED.match(key):
            continue
        if key == "lm_head.weight":  # tied to wte in every released GPT-2; kept if a file has its own
            out["out_head.weight"] = tensor
        elif key in _GPT2_TOP_MAP:
            out[_GPT2_TOP_MAP[key]] = tensor
        elif m := re.fullmatch(r"h\.(\d+)\.(.+)", key):
            i, rest = int(m[1]), m[2]
            if i >= cfg.n_layers:
                raise SpamtuneError(f"{key}: block {i} but the config has {cfg.n_layers} layers")
            prefix = f"trf_blocks.{i}."
            if rest in ("attn.c_attn.weight", "attn.c_attn.bias"):
                # fused qkv: (in, 3*out) / (3*out,) -> three projections
                kind = rest.rsplit(".", 1)[1]
                for name, part in zip(("W_query", "W_key", "W_value"), tensor.chunk(3, dim=-1)):
                    out[f"{prefix}att.{name}.{kind}"] = part.T.contiguous() if kind == "weight" else part
            elif rest in _GPT2_BLOCK_MAP:
                name, transpose = _GPT2_BLOCK_MAP[rest]
                out[prefix + name] = tensor.T.contiguous() if transpose else tensor
            else:
                raise SpamtuneError(f"unknown GPT-2 weight {key!r}")
        else:
            raise SpamtuneError(f"unknown GPT-2 weight {key!r}")
    out.setdefault("out_head.weight", out.get("tok_emb.weight"))  # the book: out_head starts as a copy of wte
    return out


def gpt2_config_from_hf(d: dict, name: str = "custom") -> ModelConfig:
    return ModelConfig(arch="gpt2", vocab_size=d["vocab_size"], context_length=d.get("n_positions", 1024),
                       emb_dim=d["n_embd"], n_layers=d["n_layer"], n_heads=d["n_head"], qkv_bias=True,
                       hidden_dim=d.get("n_inner") or 4 * d["n_embd"], norm_eps=d.get("layer_norm_epsilon", 1e-5),
                       name=name)


def gpt2_config_from_state_dict(sd: dict[str, torch.Tensor]) -> ModelConfig:
    """Infer a GPT-2 size from tensor shapes (a bare model.safetensors without config.json)."""
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    if "wte.weight" not in sd or "wpe.weight" not in sd:
        raise SpamtuneError("not a GPT-2 checkpoint: no wte.weight / wpe.weight")
    vocab, emb = sd["wte.weight"].shape
    layers = 1 + max(int(m[1]) for k in sd if (m := re.match(r"h\.(\d+)\.", k)))
    preset = next((p for p in GPT2_PRESETS.values() if p.emb_dim == emb and p.n_layers == layers), None)
    if preset is None:
        raise SpamtuneError(f"GPT-2 checkpoint with emb {emb} and {layers} layers matches no preset; "
                            "put its config.json beside it")
    return ModelConfig(**{**preset.to_dict(), "vocab_size": vocab, "context_length": sd["wpe.weight"].shape[0]})


def download_gpt2(preset: str) -> Path:
    """`model.safetensors` of an OpenAI GPT-2 from the Hugging Face Hub (cached, resumable), sha256-checked."""
    from huggingface_hub import HfApi, hf_hub_download

    repo, revision, sha256 = GPT2_HUB[preset]
    try:
        path = Path(hf_hub_download(repo, "model.safetensors", revision=revision))
        if sha256 is None:
            info = HfApi().model_info(repo, revision=revision, files_metadata=True)
            sha256 = next(s.lfs.sha256 for s in info.siblings if s.rfilename == "model.safetensors")
    except Exception as e:  # network, auth, 404: one line for the user
        raise SpamtuneError(f"could not download {repo}/model.safetensors ({type(e).__name__}: {e}); "
                            "pass --model PATH to a local copy") from None
    if (got := sha256_file(path)) != sha256:
        raise SpamtuneError(f"{path}: sha256 {got[:12]}… does not match {repo}@{revision} ({sha256[:12]}…)")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Llama: HF safetensors and GGUF

_LLAMA_HF_BLOCK_MAP = {
    "input_layernorm.weight": "norm1.weight", "post_attention_layernorm.weight": "norm2.weight",
    "self_attn.q_proj.weight": "att.W_query.weight", "self_attn.k_proj.weight": "att.W_key.weight",
    "self_attn.v_proj.weight": "att.W_value.weight", "self_attn.o_proj.weight": "att.out_proj.weight",
    "mlp.gate_proj.weight": "ff.fc1.weight", "mlp.up_proj.weight": "ff.fc2.weight",
    "mlp.down_proj.weight": "ff.fc3.weight",
}
_LLAMA_HF_TOP_MAP = {"model.embed_tokens.weight": "tok_emb.weight", "model.norm.weight": "final_norm.weight",
                     "lm_head.weight": "out_head.weight"}
_LLAMA_GGUF_BLOCK_MAP = {
    "attn_norm.weight": "norm1.weight", "ffn_norm.weight": "norm2.weight",
    "attn_q.weight": "att.W_query.weight", "attn_k.weight": "att.W_key.weight",
    "attn_v.weight": "att.W_value.weight", "attn_output.weight": "att.out_proj.weight",
    "ffn_gate.weight": "ff.fc1.weight", "ffn_up.weight": "ff.fc2.weight", "ffn_down.weight": "ff.fc3.weight",
}
_LLAMA_GGUF_TOP_MAP = {"token_embd.weight": "tok_emb.weight", "output_norm.weight": "final_norm.weight",
                       "output.weight": "out_head.weight"}


def _map_llama(state_dict: dict, top: dict[str, str], block: dict[str, str], block_re: str,
               cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in state_dict.items():
        if key in top:
            out[top[key]] = tensor
        elif (m := re.fullmatch(block_re, key)) and m[2] in block:
            i = int(m[1])
            if i >= cfg.n_layers:
                raise SpamtuneError(f"{key}: block {i} but the config has {cfg.n_layers} layers")
            out[f"trf_blocks.{i}.{block[m[2]]}"] = tensor
        else:
            raise SpamtuneError(f"unknown Llama weight {key!r}")
    return out


def hf_to_llama(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF `LlamaForCausalLM` safetensors -> `LlamaModel` (same layouts; only names change)."""
    sd = {k: v for k, v in state_dict.items() if not k.endswith("rotary_emb.inv_freq")}  # a constant, not a weight
    return _map_llama(sd, _LLAMA_HF_TOP_MAP, _LLAMA_HF_BLOCK_MAP, r"model\.layers\.(\d+)\.(.+)", cfg)


def unpermute_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation (convert_hf_to_gguf.py `permute`).

    GGUF reorders each head's rows from HF's rotate-half layout [x_0..x_{h/2-1}, x_{h/2}..] into interleaved pairs
    (x_0, x_{h/2}, x_1, ...). Rows (n_heads * Dh, D) -> view (n_heads, Dh/2, 2, D) -> swap the middle axes.
    """
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def gguf_to_llama(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """GGUF (llama.cpp names, dequantized) -> `LlamaModel`, with the Q/K RoPE permutation undone."""
    out = _map_llama(tensors, _LLAMA_GGUF_TOP_MAP, _LLAMA_GGUF_BLOCK_MAP, r"blk\.(\d+)\.(.+)", cfg)
    for i in range(cfg.n_layers):
        for name, heads in (("W_query", cfg.n_heads), ("W_key", cfg.n_kv_heads)):
            key = f"trf_blocks.{i}.att.{name}.weight"
            if key in out:
                out[key] = unpermute_rope(out[key], heads)
    return out


def llama_config_from_gguf(path: str | Path, name: str = "custom") -> ModelConfig:
    """Hyperparameters from the GGUF metadata (`llama.*` keys), never guessed."""
    r = open_gguf(str(path))
    arch = gguf_field(r, "general.architecture")
    if arch != "llama":
        raise SpamtuneError(f"{path}: architecture {arch!r} is not supported (only llama)")
    vocab = gguf_field(r, "llama.vocab_size", None) or len(r.fields["tokenizer.ggml.tokens"].data)
    return ModelConfig(
        arch="llama", vocab_size=int(vocab), context_length=int(gguf_field(r, "llama.context_length")),
        emb_dim=int(gguf_field(r, "llama.embedding_length")), n_layers=int(gguf_field(r, "llama.block_count")),
        n_heads=int(gguf_field(r, "llama.attention.head_count")),
        n_kv_heads=int(gguf_field(r, "llama.attention.head_count_kv")),
        hidden_dim=int(gguf_field(r, "llama.feed_forward_length")),
        norm_eps=float(gguf_field(r, "llama.attention.layer_norm_rms_epsilon")),
        rope_base=float(gguf_field(r, "llama.rope.freq_base", 10_000.0)),
        tie_embeddings=not any(t.name == "output.weight" for t in r.tensors), name=name)


def read_gguf_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF file dequantized to fp32, shaped (rows, cols) like torch's Linear weights."""
    from gguf import dequantize

    out = {}
    for t in open_gguf(str(path)).tensors:
        a = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        out[t.name] = torch.from_numpy(a if a.flags.writeable else a.copy())  # F32 tensors are read-only mmap views
    return out


def llama_config_from_hf(d: dict, name: str = "custom") -> ModelConfig:
    rope = d.get("rope_parameters") or {}
    if (d.get("rope_scaling") or rope.get("rope_type", "default")) not in (None, "default"):
        raise SpamtuneError(f"RoPE scaling {d.get('rope_scaling') or rope} is not supported")
    cfg = ModelConfig(
        arch="llama", vocab_size=d["vocab_size"], context_length=d.get("max_position_embeddings", 2048),
        emb_dim=d["hidden_size"], n_layers=d["num_hidden_layers"], n_heads=d["num_attention_heads"],
        n_kv_heads=d.get("num_key_value_heads"), hidden_dim=d["intermediate_size"],
        norm_eps=d.get("rms_norm_eps", 1e-5), rope_base=rope.get("rope_theta", d.get("rope_theta", 10_000.0)),
        tie_embeddings=d.get("tie_word_embeddings", False), name=name)
    if d.get("head_dim", cfg.head_dim) != cfg.head_dim:
        raise SpamtuneError(f"head_dim {d['head_dim']} != hidden_size / heads; not supported")
    return cfg


# ---------------------------------------------------------------------------------------------------------------
# One entry point: a model spec -> model, config, tokenizer


@dataclass
class Backbone:
    model: nn.Module
    cfg: ModelConfig
    tokenizer: str  # a spec for `tokenizer.load_tokenizer`
    source: str  # where the weights came from ("random" for random init)


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; a missing, corrupt or truncated file is one error naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise SpamtuneError(f"no such file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise SpamtuneError(f"{path}: corrupt or truncated safetensors file ({e})") from None


def resolve_config(spec: str) -> tuple[ModelConfig, str]:
    """(architecture, tokenizer spec) of a model spec, without reading any weights."""
    if spec in GPT2_PRESETS:
        return ModelConfig(**GPT2_PRESETS[spec].to_dict()), "gpt2"
    if spec == "smollm2-135m":
        return llama_config_from_gguf(embedded_gguf_path(), spec), spec
    path = Path(spec)
    if path.suffix == ".gguf":
        return llama_config_from_gguf(path, path.stem), str(path)
    if path.is_dir() and (path / "config.json").is_file():
        d = json.loads((path / "config.json").read_text())
        kind = d.get("model_type")
        tok = str(path) if (path / "tokenizer.json").is_file() else None
        if kind == "gpt2":
            return gpt2_config_from_hf(d, path.name), tok or "gpt2"
        if kind == "llama":
            if tok is None:
                raise SpamtuneError(f"{path}: a Llama directory needs its tokenizer.json")
            return llama_config_from_hf(d, path.name), tok
        raise SpamtuneError(f"{path}: model_type {kind!r} is not supported (gpt2, llama)")
    if path.suffix == ".safetensors" and path.is_file():
        return gpt2_config_from_state_dict(read_safetensors(path)), "gpt2"
    if not path.exists() and "/" not in spec and not spec.endswith((".gguf", ".safetensors")):
        raise SpamtuneError(f"unknown model {spec!r}: use a preset ({', '.join(['smollm2-135m', *GPT2_PRESETS])}), "
                            "a .gguf file, a .safetensors file or a HF model directory")
    raise SpamtuneError(f"no such model file or directory: {spec}")


def load_backbone(spec: str, random_init: bool = False, seed: int = 123) -> Backbone:
    """Build the model of `spec` and load its pretrained weights (or a seeded random init).

    Args:
        spec: a preset (`smollm2-135m`, `gpt2-small` … `gpt2-xl`), a `.gguf` file, a GPT-2 `.safetensors`
            file, or a HF directory (config.json + model.safetensors [+ tokenizer.json]).
        random_init: skip the weights: same architecture, GPT-2-style random init (the book's "random weights" row).
    """
    cfg, tokenizer = resolve_config(spec)
    if random_init:
        torch.manual_seed(seed)
        return Backbone(build_model(cfg).eval(), cfg, tokenizer, "random")
    with torch.device("meta"):  # the weights below replace every parameter: skip allocating and initialising
        model = build_model(cfg)

    path = Path(spec)
    if spec in GPT2_PRESETS:
        path = download_gpt2(spec)
    elif spec == "smollm2-135m":
        path = embedded_gguf_path()
    if path.suffix == ".gguf":
        converted = gguf_to_llama(read_gguf_tensors(path), cfg)
    else:
        file = path / "model.safetensors" if path.is_dir() else path
        if not file.is_file():
            raise SpamtuneError(f"{path}: no model.safetensors (sharded or .bin checkpoints are not read)")
        sd = read_safetensors(file)
        converted = hf_to_gpt2(sd, cfg) if cfg.arch == "gpt2" else hf_to_llama(sd, cfg)
    _load_converted(model, converted)
    log.info("loaded %s (%s, %.1fM parameters)", spec, cfg.arch, count_parameters(model) / 1e6)
    return Backbone(model.eval(), cfg, tokenizer, str(path))


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
