"""The default backend: spamtune's own GPT-2 / Llama modules (models/) with the head swapped and the scope frozen
(classifier.py). `build` rebuilds a run's model before its trained tensors are loaded."""

from __future__ import annotations

from spamtune.backends import BuiltModel
from spamtune.classifier import Classifier, apply_trainable
from spamtune.data.labels import LabelSet
from spamtune.errors import CheckpointError
from spamtune.models import build_model
from spamtune.runs import LoraSpec, RunConfig
from spamtune.tokenizers import load_tokenizer
from spamtune.weights import load_backbone, resolve_config


def build(run: RunConfig, label_set: LabelSet, allow_download: bool = False) -> BuiltModel:
    """Backbone (pretrained weights re-read, or the architecture alone for full checkpoints) + head + scope."""
    cfg = run.architecture
    if cfg is None:
        raise CheckpointError("a scratch run needs its architecture")
    if run.weights == "full":  # every tensor is in the run: the base model's files are not needed at all
        backbone = build_model(cfg)
    else:
        _, tokenizer = resolve_config(run.model)  # metadata only: no weights read yet
        if tokenizer != run.tokenizer:
            raise CheckpointError(f"the manifest's tokenizer {run.tokenizer!r} is not the one of its base model "
                                  f"{run.model!r} ({tokenizer!r}): damaged manifest")
        backbone = load_backbone(run.model, allow_download=allow_download).model
        if backbone.cfg.to_dict() != cfg.to_dict():
            raise CheckpointError(f"the base model {run.model!r} no longer has the architecture this run was "
                                  "trained on (incompatible checkpoint)")
    clf = Classifier(backbone, run.num_classes, run.pooling, run.trainable,
                     head_bias=True if run.head_bias is None else run.head_bias)
    lora = run.lora or LoraSpec()
    module = apply_trainable(clf, lora.rank, lora.alpha)
    return BuiltModel(predictor=module, classifier=clf, module=module, tokenizer=load_tokenizer(run.tokenizer))
