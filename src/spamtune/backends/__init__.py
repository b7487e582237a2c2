"""Backends: how a run's model is built. `scratch` is spamtune's own GPT-2 / Llama (models/ + classifier.py);
`hf` is transformers' `AutoModelForSequenceClassification`. The backend is chosen once, from `TrainArgs.backend`
or a run's manifest, and both give the same `BuiltModel` to training, prediction and export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from spamtune.data.labels import LabelSet
    from spamtune.runs import RunConfig


@dataclass
class BuiltModel:
    predictor: nn.Module  # (B, T) ids + (B,) lengths -> (B, C) logits
    classifier: nn.Module  # the Classifier (scratch) or the HFClassifier
    module: nn.Module  # what trains; the names in model.safetensors are its parameter names
    tokenizer: Any  # encode / encode_batch / pad_id


def build_run_model(run: RunConfig, label_set: LabelSet, allow_download: bool = False) -> BuiltModel:
    """A run's model with its base weights and scope, before its trained tensors are loaded. The base weights are
    read from local files and caches only, unless `allow_download`."""
    if run.backend == "hf":
        from spamtune.backends import hf

        return hf.build(run, label_set, allow_download)
    from spamtune.backends import scratch

    return scratch.build(run, label_set, allow_download)


def load_run_tokenizer(run: RunConfig, export_dir: Path) -> Any:
    """The tokenizer of an exported run: its own spec when that is a preset or an existing file, else the
    tokenizer files written beside the export (tokenizer.json; transformers' files for --backend hf)."""
    if run.backend == "hf":
        from transformers import AutoTokenizer

        from spamtune.backends.hf import TransformersTokenizer

        return TransformersTokenizer(AutoTokenizer.from_pretrained(export_dir, split_special_tokens=True))
    from spamtune.tokenizers import load_tokenizer

    spec = run.tokenizer or ""
    return load_tokenizer(spec if spec in ("gpt2", "smollm2-135m") or Path(spec).exists() else str(export_dir))
