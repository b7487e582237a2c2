"""One entry point from a model spec to a loaded backbone: `load_backbone("smollm2-135m")` -> model, config,
tokenizer spec. Presets, GGUF files, GPT-2 safetensors files and HF directories all go through here."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from spamtune.config import GPT2_PRESETS, ModelConfig
from spamtune.errors import ModelSourceError
from spamtune.fsutil import atomic_file, read_json, write_json
from spamtune.models import Decoder, build_model
from spamtune.weights.convert import (
    gguf_to_llama,
    gpt2_config_from_hf,
    gpt2_config_from_shapes,
    hf_to_gpt2,
    hf_to_llama,
    llama_config_from_hf,
)
from spamtune.weights.gguf import llama_config_from_gguf, read_gguf_tensors, read_through
from spamtune.weights.sources import download_gpt2, embedded_gguf_path

log = logging.getLogger(__name__)


@dataclass
class Backbone:
    model: Decoder
    cfg: ModelConfig
    tokenizer: str  # a spec for `tokenizers.load_tokenizer`
    source: str  # where the weights came from ("random" for random init)


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """A safetensors file of `tensors`, written atomically (a run's weights, its n-gram models, resume state)."""
    from safetensors.torch import save

    with atomic_file(path, "wb") as f:
        f.write(save(tensors, metadata={"format": "pt"}))


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; a missing, corrupt or truncated file is one error naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelSourceError(f"no such file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelSourceError(f"{path}: corrupt or truncated safetensors file ({e})") from None


def safetensors_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header alone (no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelSourceError(f"{path}: corrupt or truncated safetensors file ({e})") from None


def check_shapes(converted: Mapping[str, torch.Tensor], model: nn.Module) -> None:
    expected = model.state_dict()
    for key, tensor in converted.items():
        if key not in expected:
            raise ModelSourceError(f"converted key {key!r} has no place in the model")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelSourceError(f"{key}: shape {tuple(tensor.shape)} does not fit the model's "
                                   f"{tuple(expected[key].shape)}")


def load_converted(model: Decoder, converted: dict[str, torch.Tensor]) -> Decoder:
    """Adopt converted tensors into `model` (built on the meta device); every tensor must be there and fit."""
    check_shapes(converted, model)
    expected = set(model.state_dict())
    tied = {"out_head.weight"} if model.cfg.tie_embeddings else set()
    missing = expected - set(converted) - tied
    if missing:
        raise ModelSourceError(f"weights are missing {len(missing)} tensors, e.g. {sorted(missing)[0]!r}")
    # assign=True adopts the converted tensors (no copy), so a model built on the meta device costs no init
    model.load_state_dict(converted, strict=not tied, assign=True)
    if tied:
        model.tie_weights()
    for module in model.modules():  # non-persistent buffers (RoPE tables) are still on the meta device
        if callable(init := getattr(module, "init_buffers", None)):
            init()
    return model


def resolve_config(spec: str) -> tuple[ModelConfig, str]:
    """(architecture, tokenizer spec) of a model spec, without reading any weights."""
    if spec in GPT2_PRESETS:
        return ModelConfig(**GPT2_PRESETS[spec].to_dict()), "gpt2"
    if spec == "smollm2-135m":
        return _gguf_config(embedded_gguf_path(), spec), spec
    path = Path(spec)
    if path.suffix == ".gguf":
        return _gguf_config(path, path.stem), str(path)
    if path.is_dir() and (path / "config.json").is_file():
        try:
            d = json.loads((path / "config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelSourceError(f"{path / 'config.json'}: not valid JSON ({e})") from None
        kind = d.get("model_type") if isinstance(d, dict) else None
        tok = str(path) if (path / "tokenizer.json").is_file() else None
        if kind == "gpt2":
            return gpt2_config_from_hf(d, path.name), tok or "gpt2"
        if kind == "llama":
            if tok is None:
                raise ModelSourceError(f"{path}: a Llama directory needs its tokenizer.json")
            return llama_config_from_hf(d, path.name), tok
        raise ModelSourceError(f"{path}: model_type {kind!r} is not supported (gpt2, llama)")
    if path.suffix == ".safetensors" and path.is_file():
        return gpt2_config_from_shapes(safetensors_shapes(path)), "gpt2"
    if not path.exists() and "/" not in spec and not spec.endswith((".gguf", ".safetensors")):
        raise ModelSourceError(f"unknown model {spec!r}: use a preset ({', '.join(['smollm2-135m', *GPT2_PRESETS])})"
                               ", a .gguf file, a .safetensors file or a HF model directory")
    raise ModelSourceError(f"no such model file or directory: {spec}")


def _gguf_config(path: Path, name: str) -> ModelConfig:
    """`llama_config_from_gguf`, kept in the cache directory (`read_through`)."""
    cfg = read_through(path, "config.json", lambda: llama_config_from_gguf(path),
                       lambda read, kept: write_json(kept, read.to_dict()),
                       lambda kept: ModelConfig.from_dict(read_json(kept)))
    return replace(cfg, name=name)


def load_backbone(spec: str, random_init: bool = False, seed: int = 123, allow_download: bool = True) -> Backbone:
    """Build the model of `spec` and load its pretrained weights (or a seeded random init).

    Args:
        spec: a preset (`smollm2-135m`, `gpt2-small` … `gpt2-xl`), a `.gguf` file, a GPT-2 `.safetensors`
            file, or a HF directory (config.json + model.safetensors [+ tokenizer.json]).
        random_init: skip the weights: same architecture, GPT-2-style random init (the book's "random weights" row).
        allow_download: a GPT-2 preset missing from the Hugging Face cache may be downloaded.
    """
    cfg, tokenizer = resolve_config(spec)
    if random_init:
        torch.manual_seed(seed)
        return Backbone(build_model(cfg).eval(), cfg, tokenizer, "random")
    with torch.device("meta"):  # the weights below replace every parameter: skip allocating and initialising
        model = build_model(cfg)

    path = Path(spec)
    if spec in GPT2_PRESETS:
        path = download_gpt2(spec, allow_download)
    elif spec == "smollm2-135m":
        path = embedded_gguf_path()
    if path.suffix == ".gguf":
        tensors = read_through(path, "tensors.safetensors", lambda: read_gguf_tensors(path),
                               lambda read, kept: save_weights(kept, read), read_safetensors)
        converted = gguf_to_llama(tensors, cfg)
    else:
        file = path / "model.safetensors" if path.is_dir() else path
        if not file.is_file():
            raise ModelSourceError(f"{path}: no model.safetensors (sharded or .bin checkpoints are not read)")
        sd = read_safetensors(file)
        converted = hf_to_gpt2(sd, cfg) if cfg.arch == "gpt2" else hf_to_llama(sd, cfg)
    load_converted(model, converted)
    log.info("loaded %s (%s, %.1fM parameters)", spec, cfg.arch, count_parameters(model) / 1e6)
    return Backbone(model.eval(), cfg, tokenizer, str(path))


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
