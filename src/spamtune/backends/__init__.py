"""Backends: how a run's model is built. `scratch` is spamtune's own GPT-2 / Llama (models/ + classifier.py);
`hf` is transformers' `AutoModelForSequenceClassification`. Each backend module is a `Backend`: `build_new` makes a
new run's model for training (and says what the run's manifest records about it), `build` rebuilds a run's model
from that manifest for prediction and export; both give the same `BuiltModel`. The backend is chosen once, from
`TrainArgs.backend` or a run's manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from torch import nn

if TYPE_CHECKING:
    from spamtune.config import TrainArgs
    from spamtune.data.labels import LabelSet
    from spamtune.runs import RunConfig


@dataclass
class BuiltModel:
    predictor: nn.Module  # (B, T) ids + (B,) lengths -> (B, C) logits
    classifier: nn.Module  # the Classifier (scratch) or the HFClassifier
    module: nn.Module  # what trains; the names in model.safetensors are its parameter names
    tokenizer: Any  # encode / encode_batch / pad_id


@dataclass
class NewModel:
    """A new run's model, as `Backend.build_new` makes it for training."""

    built: BuiltModel
    manifest: dict[str, Any]  # the RunConfig fields that `Backend.build` reads back to rebuild it
    context_length: int  # the longest input the backbone takes
    source: str | None = None  # where the base weights came from (weights.Backbone.source); None for hf


class Backend(Protocol):
    """What a backend module provides (backends/scratch.py, backends/hf.py)."""

    def build_new(self, args: TrainArgs, label_set: LabelSet) -> NewModel: ...

    def build(self, run_config: RunConfig, label_set: LabelSet, allow_download: bool = False) -> BuiltModel: ...


def backend(name: str) -> Backend:
    """The backend module of `name` ("scratch" or "hf"); the hf one imports transformers only when chosen."""
    if name == "hf":
        from spamtune.backends import hf

        return hf
    from spamtune.backends import scratch

    return scratch


def build_new_model(args: TrainArgs, label_set: LabelSet) -> NewModel:
    """A new run's model: the pretrained base (or a random one), the head swapped for `label_set`, the scope
    frozen (book §6.5), before any training."""
    return backend(args.backend).build_new(args, label_set)


def build_run_model(run_config: RunConfig, label_set: LabelSet, allow_download: bool = False) -> BuiltModel:
    """A run's model with its base weights and scope, before its trained tensors are loaded. The base weights are
    read from local files and caches only, unless `allow_download`."""
    return backend(run_config.backend).build(run_config, label_set, allow_download)


def model_spec(args: TrainArgs, random: bool) -> str:
    """The spec a run stores for re-reading its base weights: an absolute path for a local file or directory."""
    return args.model if random or not Path(args.model).exists() else str(Path(args.model).resolve())


def load_run_tokenizer(run_config: RunConfig, export_dir: Path) -> Any:
    """The tokenizer of an exported run: its own spec when that is a preset or an existing file, else the
    tokenizer files written beside the export (tokenizer.json; transformers' files for --backend hf)."""
    if run_config.backend == "hf":
        from transformers import AutoTokenizer

        from spamtune.backends.hf import TransformersTokenizer

        return TransformersTokenizer(AutoTokenizer.from_pretrained(export_dir, split_special_tokens=True))
    from spamtune.tokenizers import load_tokenizer

    spec = run_config.tokenizer or ""
    return load_tokenizer(spec if spec in ("gpt2", "smollm2-135m") or Path(spec).exists() else str(export_dir))
