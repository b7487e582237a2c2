"""Run directories: self-describing, safetensors only (no pickle, `torch.load` never runs), every file atomic.

    RUN/config.json        model spec + architecture, tokenizer, pooling, trainable scope, max length, classes
    RUN/labels.json        id2label / label2id
    RUN/train_args.json    the TrainArgs of the run
    RUN/model.safetensors  the best classifier by validation loss: the trained tensors only when the base weights
                           are a pretrained file (they are re-read from it), every tensor for random-init runs
    RUN/resume/            last epoch's weights, optimizer moments, counters and RNG states (for --resume)
    RUN/log.jsonl, history.json, metrics.json, *.png/*.pdf

`--backend hf` runs use the same files; their config.json says "backend": "hf" and names the base that
`AutoModelForSequenceClassification.from_pretrained` re-reads before the trained tensors are loaded (hf.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spamtune.classifier import Classifier, apply_trainable, default_head_bias
from spamtune.config import ModelConfig
from spamtune.errors import SpamtuneError
from spamtune.fsutil import atomic_file, read_json
from spamtune.hf import build_hf_classifier, label_task
from spamtune.models import build_model
from spamtune.weights import load_backbone, read_safetensors

FORMAT = "spamtune-run/1"
CONFIG, LABELS, TRAIN_ARGS, WEIGHTS = "config.json", "labels.json", "train_args.json", "model.safetensors"


def weights_to_save(module: nn.Module, full: bool) -> dict[str, torch.Tensor]:
    """Every tensor (full) or the trainable ones, detached and contiguous, by parameter name."""
    if full:
        return {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    return {k: p.detach().contiguous() for k, p in module.named_parameters() if p.requires_grad}


def save_weights(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    with atomic_file(path, "wb") as f:
        f.write(save(tensors, metadata={"format": "pt"}))


def load_weights_into(module: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Load saved tensors by name; an unknown name or shape means the checkpoint is not for this model."""
    own = dict(module.state_dict())
    for name, t in tensors.items():
        if name not in own:
            raise SpamtuneError(f"{where}: tensor {name!r} does not exist in the model (incompatible checkpoint)")
        if own[name].shape != t.shape:
            raise SpamtuneError(f"{where}: {name} has shape {tuple(t.shape)}, the model expects "
                                f"{tuple(own[name].shape)} (incompatible checkpoint)")
    module.load_state_dict(tensors, strict=False)


def run_config(args, cfg: ModelConfig, tokenizer: str, max_length: int, num_classes: int,
               source: str) -> dict[str, Any]:
    model = args.model if source == "random" or not Path(args.model).exists() else str(Path(args.model).resolve())
    return {"format": FORMAT, "model": model, "random_init": args.random_init, "architecture": cfg.to_dict(),
            "tokenizer": tokenizer, "pooling": args.pooling, "trainable": args.trainable, "max_length": max_length,
            "num_classes": num_classes, "head_bias": default_head_bias(cfg.arch),
            "weights": "full" if args.random_init else "trainable",
            "lora": {"rank": args.lora_rank, "alpha": args.lora_alpha} if args.trainable == "lora" else None}


def run_config_hf(args, labels: dict, head: list[str], max_length: int) -> dict[str, Any]:
    """config.json of a `--backend hf` run: the base is re-read with `from_pretrained`, then the trained tensors."""
    model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    return {"format": FORMAT, "backend": "hf", "model": model, "task": label_task(labels),
            "head": head, "pooling": "last_real", "trainable": args.trainable, "max_length": max_length,
            "num_classes": len(labels["id2label"]), "dtype": args.dtype, "seed": args.seed, "weights": "trainable",
            "tokenizer": "transformers", "thresholds": None,
            "lora": {"rank": args.lora_rank, "alpha": args.lora_alpha} if args.trainable == "lora" else None}


@dataclass
class LoadedRun:
    module: nn.Module  # what predicts: the Classifier (or its peft wrapper), or hf.HFClassifier; eval mode
    classifier: nn.Module  # the Classifier (scratch) or the HFClassifier
    config: dict[str, Any]
    labels: dict[str, dict]
    tokenizer: Any  # encode / encode_batch / pad_id


def build_classifier(config: dict[str, Any]) -> tuple[Classifier, nn.Module]:
    """Backbone (pretrained weights re-read, or the architecture alone for full checkpoints) + head + scope."""
    cfg = ModelConfig.from_dict(config["architecture"])
    if config["weights"] == "full":
        backbone = build_model(cfg)
    else:
        backbone = load_backbone(config["model"]).model
        if backbone.cfg.to_dict() != cfg.to_dict():
            raise SpamtuneError(f"the base model {config['model']!r} no longer has the architecture this run was "
                                "trained on (incompatible checkpoint)")
    # runs written before `head_bias` was recorded all had the book's biased head
    clf = Classifier(backbone, config["num_classes"], config["pooling"], config["trainable"],
                     head_bias=config.get("head_bias", True))
    lora = config.get("lora") or {}
    module = apply_trainable(clf, lora.get("rank", 16), lora.get("alpha", 16))
    return clf, module


def load_run(run_dir: str | os.PathLike) -> LoadedRun:
    """Load a finished (or checkpointed) run for evaluation or prediction."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SpamtuneError(f"no such run directory: {run_dir}")
    config = read_json(run_dir / CONFIG)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise SpamtuneError(f"{run_dir / CONFIG}: not a spamtune run config (format {FORMAT})")
    if not (run_dir / WEIGHTS).is_file():
        raise SpamtuneError(f"{run_dir}: no {WEIGHTS} yet (the run has not finished an epoch)")
    labels = read_json(run_dir / LABELS)
    tensors = read_safetensors(run_dir / WEIGHTS)
    try:
        if config.get("backend") == "hf":
            clf, module, tokenizer = build_hf_classifier(config, labels)
            predictor: nn.Module = clf
        else:
            from spamtune.tokenizer import load_tokenizer

            clf, module = build_classifier(config)
            predictor, tokenizer = module, load_tokenizer(config["tokenizer"])
    except (KeyError, TypeError, ValueError) as e:
        raise SpamtuneError(f"{run_dir / CONFIG}: incompatible or damaged config ({e})") from None
    load_weights_into(module, tensors, str(run_dir / WEIGHTS))
    predictor.eval()
    return LoadedRun(predictor, clf, config, labels, tokenizer)
