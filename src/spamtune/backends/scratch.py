"""The default backend: spamtune's own GPT-2 / Llama modules (models/) with the head swapped and the scope frozen
(classifier.py). `build_new` makes a new run's model, `build` rebuilds a run's model before its trained tensors
are loaded."""

from __future__ import annotations

from typing import Any

from spamtune.backends import BuiltModel, NewModel, model_spec
from spamtune.classifier import Classifier, apply_trainable, default_head_bias
from spamtune.config import Pooling, Trainable, TrainArgs
from spamtune.data.labels import LabelSet
from spamtune.errors import CheckpointError
from spamtune.models import Decoder, build_model
from spamtune.runs import LoraSpec, RunConfig
from spamtune.tokenizers import load_tokenizer
from spamtune.weights import load_backbone, resolve_config


def build_new(args: TrainArgs, label_set: LabelSet) -> NewModel:
    """The pretrained backbone (or `--random-init`'s) + a new head (book §6.5) + the scope."""
    backbone = load_backbone(args.model, random_init=args.random_init, seed=args.seed)
    built = _assemble(backbone.model, len(label_set), args.pooling, args.trainable, args.lora_rank,
                      args.lora_alpha, backbone.tokenizer, seed=args.seed)
    manifest = {"backend": "scratch", "model": model_spec(args, backbone.source == "random"),
                "pooling": args.pooling, "weights": "full" if args.random_init else "trainable",
                "tokenizer": backbone.tokenizer, "architecture": backbone.cfg, "random_init": args.random_init,
                "head_bias": default_head_bias(backbone.cfg.arch)}
    return NewModel(built, manifest, backbone.cfg.context_length, backbone.source)


def build(run_config: RunConfig, label_set: LabelSet, allow_download: bool = False) -> BuiltModel:
    """Backbone (pretrained weights re-read, or the architecture alone for full checkpoints) + head + scope."""
    cfg = run_config.architecture
    if cfg is None:
        raise CheckpointError("a scratch run needs its architecture")
    if run_config.weights == "full":  # every tensor is in the run: the base model's files are not needed at all
        backbone = build_model(cfg)
    else:
        _, tokenizer = resolve_config(run_config.model)  # metadata only: no weights read yet
        if tokenizer != run_config.tokenizer:
            raise CheckpointError(f"the manifest's tokenizer {run_config.tokenizer!r} is not the one of its base model "
                                  f"{run_config.model!r} ({tokenizer!r}): damaged manifest")
        backbone = load_backbone(run_config.model, allow_download=allow_download).model
        if backbone.cfg.to_dict() != cfg.to_dict():
            raise CheckpointError(f"the base model {run_config.model!r} no longer has the architecture this run was "
                                  "trained on (incompatible checkpoint)")
    lora = run_config.lora or LoraSpec()
    return _assemble(backbone, run_config.num_classes, run_config.pooling, run_config.trainable, lora.rank,
                     lora.alpha, run_config.tokenizer,
                     head_bias=True if run_config.head_bias is None else run_config.head_bias)


def _assemble(backbone: Decoder, num_classes: int, pooling: Pooling, trainable: Trainable, lora_rank: int,
              lora_alpha: int, tokenizer: str, **head: Any) -> BuiltModel:
    """Backbone + new head + scope, the same for a new run and a run rebuilt from its manifest (`head`: the
    head's seed or bias)."""
    classifier = Classifier(backbone, num_classes, pooling, trainable, **head)
    module = apply_trainable(classifier, lora_rank, lora_alpha)
    return BuiltModel(predictor=module, classifier=classifier, module=module, tokenizer=load_tokenizer(tokenizer))
