"""`spamtune export RUN --format hf --out DIR`: a run as a `transformers` model directory (the run's calibration
temperature baked into the head, its operating point in spamtune-export.json).

From-scratch runs become `GPT2ForSequenceClassification` / `LlamaForSequenceClassification` (config with
id2label/label2id and pad_token_id, model.safetensors, tokenizer files); `--backend hf` runs are saved with
`save_pretrained`. LoRA adapters are merged first. `AutoModelForSequenceClassification.from_pretrained(DIR)` then
gives the run's probabilities (tests/export: within 1e-4 on the test split) for text normalized as the run does:
the tokenizer files read raw text, so a run with `normalize: nfkc` (spamtune-export.json) wants
`spamtune.normalize.normalize_text(text, "nfkc")` first (NFKC alone is not the whole of it: look-alike letters are
folded by context, which no tokenizer normalizer expresses).

Only `last_real` pooling exports: transformers' decoder classifiers read the last non-pad token, which is exactly
`last_real`. The book's `last` reads a pad position whose value depends on the padded width, and `first`/`mean`
are not what those classes compute. A head bias has no place in their bias-free `score`: for GPT-2 it is folded
into the final LayerNorm's shift (which only feeds the head), so the logits are unchanged; Llama's RMSNorm has no
shift, so spamtune trains Llama heads without a bias (runs from before that choice cannot be exported).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from spamtune.backends.hf import label_kwargs, require_transformers
from spamtune.classifier import Classifier
from spamtune.config import ModelConfig
from spamtune.data.labels import LabelSet
from spamtune.errors import ConfigError
from spamtune.fsutil import atomic_dir, check_writable_dir, write_json
from spamtune.inference import load_run
from spamtune.inference.precision import prepare_for_inference
from spamtune.runs import RunConfig, created_now
from spamtune.weights.convert import gpt2_to_hf, llama_to_hf


def _hf_config(cfg: ModelConfig, label_set: LabelSet, pad_id: int):
    from transformers import GPT2Config, LlamaConfig

    common = {**label_kwargs(label_set), "pad_token_id": pad_id}
    if cfg.arch == "gpt2":
        if not cfg.qkv_bias:
            raise ConfigError("transformers' GPT-2 always has qkv biases; this model has none")
        return GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.emb_dim,
                          n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.hidden_dim,
                          activation_function="gelu_new", layer_norm_epsilon=cfg.norm_eps, resid_pdrop=0.0,
                          embd_pdrop=0.0, attn_pdrop=0.0, **common)
    return LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.emb_dim, intermediate_size=cfg.hidden_dim,
                       num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                       num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=cfg.context_length,
                       rms_norm_eps=cfg.norm_eps, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_base},
                       tie_word_embeddings=False, **common)


def _hf_tokenizer(spec: str, pad_id: int):
    """The run's tokenizer as a `transformers` fast tokenizer with the same ids (and the pad token set)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from spamtune.tokenizers import HFTokenizer, gpt2_vocab_dir, load_tokenizer

    if spec == "gpt2":  # OpenAI's encoder.json / vocab.bpe are HF's vocab.json / merges.txt
        d = gpt2_vocab_dir()
        inner = Tokenizer(models.BPE.from_file(str(d / "encoder.json"), str(d / "vocab.bpe")))
        inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        inner.decoder = decoders.ByteLevel()
        eos_id = 50256
    else:
        ours = load_tokenizer(spec)
        assert isinstance(ours, HFTokenizer)
        inner, eos_id = ours.backend_tokenizer, ours.eos_id  # a `tokenizers.Tokenizer`, pre-tokenizer included
    # split_special_tokens: a message's "<|endoftext|>" is plain text in transformers too, as in spamtune
    return PreTrainedTokenizerFast(tokenizer_object=inner, pad_token=inner.id_to_token(pad_id),
                                   eos_token=inner.id_to_token(eos_id), split_special_tokens=True)


EXPORT_MARKER = "spamtune-export.json"  # names the run an export came from; --overwrite replaces only these


def _scale_last_linear(model: Any, head: list[str], factor: float) -> None:
    """Multiply the head's last linear layer (weight and bias) by `factor`: the run's temperature baked into the
    logits, so transformers gives the calibrated probabilities."""
    if factor == 1.0:
        return
    linears = [m for name in head for m in model.get_submodule(name).modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ConfigError(f"cannot find the classification head's linear layer in {head}")
    with torch.no_grad():
        linears[-1].weight.mul_(factor)
        if linears[-1].bias is not None:
            linears[-1].bias.mul_(factor)


def check_export_dir(run_dir: str | os.PathLike, out: str | os.PathLike, overwrite: bool) -> None:
    """Before loading anything: `out` may not be the run, inside it or around it, and an existing non-empty `out`
    is replaced only with `overwrite` and only if it is an earlier spamtune export."""
    if str(out) in ("", "."):
        raise ConfigError("give the export directory with --out")
    src, dest = Path(os.path.realpath(run_dir)), Path(os.path.realpath(out))
    if dest == src or src in dest.parents or dest in src.parents:
        raise ConfigError(f"--out {out} is, holds or lies inside the run {run_dir}; export somewhere else")
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        if not overwrite:
            raise ConfigError(f"{out} already exists and is not empty; pass --overwrite to replace it")
        if not (dest / EXPORT_MARKER).is_file():
            raise ConfigError(f"{out} is not a spamtune export ({EXPORT_MARKER} missing); refusing to replace it")
    check_writable_dir(dest.parent)


def export_hf(run_dir: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the run as a transformers model directory (atomic: DIR appears complete or not at all)."""
    require_transformers()
    check_export_dir(run_dir, out, overwrite)  # before the minutes of loading; atomic_dir rechecks
    if RunConfig.from_dir(run_dir).stack != "none":
        raise ConfigError("a --stack ngrams run has an n-gram half that transformers cannot hold; export it with "
                          "--format onnx (which carries it) or serve the run itself")
    out = Path(out)
    run = load_run(run_dir)
    temperature = run.run_config.calibration.temperature if run.run_config.calibration else 1.0
    op = run.run_config.operating_point
    marker = {"format": "spamtune-export/1", "run_id": run.run_config.run_id,
              "run": str(Path(run_dir).resolve()), "created": created_now(), "temperature": temperature,
              "operating_point": dataclasses.asdict(op) if op else None, "normalize": run.run_config.normalize}
    config = run.run_config
    if config.pooling != "last_real":
        raise ConfigError(f"only last_real-pooled runs export to transformers (this run pools {config.pooling!r}"
                          "; its *ForSequenceClassification classes read the last non-pad token)")
    module: Any = prepare_for_inference(run.predictor)  # merges LoRA
    if config.backend == "hf":
        _scale_last_linear(module.model, config.head or [], 1.0 / temperature)
        with atomic_dir(out, overwrite=overwrite) as tmp:
            module.model.save_pretrained(tmp)
            run.tokenizer.tok.model_max_length = config.max_length
            run.tokenizer.tok.save_pretrained(tmp)
            write_json(tmp / EXPORT_MARKER, marker)
        return out

    from transformers import AutoModelForSequenceClassification

    classifier = run.classifier
    assert isinstance(classifier, Classifier)
    cfg = classifier.cfg
    sd = {k: v.detach().float() for k, v in classifier.backbone.state_dict().items()}
    tensors = (gpt2_to_hf if cfg.arch == "gpt2" else llama_to_hf)(sd, cfg.n_layers)
    head_w, head_b = sd["out_head.weight"], sd.get("out_head.bias")
    if head_b is not None:
        if cfg.arch != "gpt2":
            raise ConfigError("this run's head has a bias, which LlamaForSequenceClassification cannot hold "
                              "(runs trained since head_bias was recorded have none); retrain to export")
        # W (shift + d) = W shift + b for d = pinv(W) b: the same logits from a bias-free score
        d = torch.linalg.lstsq(head_w.double(), head_b.double()[:, None]).solution[:, 0]
        if (head_w.double() @ d - head_b.double()).abs().max() > 1e-6:
            raise ConfigError("cannot fold the head bias into the final norm (rank-deficient head)")
        tensors["transformer.ln_f.bias"] = (sd["final_norm.shift"].double() + d).float()
    tensors["score.weight"] = head_w / temperature  # calibrated: softmax(logits / T), as spamtune shows them
    tokenizer = _hf_tokenizer(config.tokenizer, run.tokenizer.pad_id)
    tokenizer.model_max_length = config.max_length  # spamtune truncates there: tokenize with truncation=True
    hf_config = _hf_config(cfg, run.label_set, run.tokenizer.pad_id)
    model = AutoModelForSequenceClassification.from_config(hf_config)
    missing, unexpected = model.load_state_dict({k: v.contiguous() for k, v in tensors.items()}, strict=False)
    missing = [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"bug: export mapping incomplete: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        write_json(tmp / EXPORT_MARKER, marker)
        tokenizer.save_pretrained(tmp)
    return out
