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
from spamtune.weights import load_backbone


def build(run: RunConfig, label_set: LabelSet) -> BuiltModel:
    """Backbone (pretrained weights re-read, or the architecture alone for full checkpoints) + head + scope."""
    cfg = run.architecture
    if cfg is None:
        raise CheckpointError("a scratch run needs its architecture")
    if run.weights == "full":
        backbone = build_model(cfg)
    else:
        backbone = load_backbone(run.model).model
        if backbone.cfg.to_dict() != cfg.to_dict():
            raise CheckpointError(f"the base model {run.model!r} no longer has the architecture this run was "
                                  "trained on (incompatible checkpoint)")
    clf = Classifier(backbone, run.num_classes, run.pooling, run.trainable,
                     head_bias=True if run.head_bias is None else run.head_bias)
    lora = run.lora or LoraSpec()
    module = apply_trainable(clf, lora.rank, lora.alpha)
    return BuiltModel(predictor=module, classifier=clf, module=module, tokenizer=load_tokenizer(run.tokenizer))
