"""Loading a run for prediction: its manifest, label set and weights, into the backend's model (eval mode)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from spamtune.backends import build_run_model
from spamtune.data.labels import LabelSet
from spamtune.errors import CheckpointError, DataError
from spamtune.fsutil import read_json
from spamtune.runs import LABELS, WEIGHTS, RunConfig, load_weights_into
from spamtune.weights import read_safetensors


@dataclass
class LoadedRun:
    predictor: nn.Module  # (B, T) ids + (B,) lengths -> logits; eval mode
    classifier: nn.Module  # the Classifier (scratch) or the HFClassifier
    run_config: RunConfig
    label_set: LabelSet
    tokenizer: Any  # encode / encode_batch / pad_id
    run_dir: Path


def load_run(run_dir: str | os.PathLike) -> LoadedRun:
    """Load a finished (or checkpointed) run for evaluation or prediction."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no such run directory: {run_dir}")
    run = RunConfig.from_dir(run_dir)
    if not (run_dir / WEIGHTS).is_file():
        raise CheckpointError(f"{run_dir}: no {WEIGHTS} yet (the run has not finished an epoch)")
    try:
        label_set = LabelSet.from_json(read_json(run_dir / LABELS, CheckpointError), str(run_dir / LABELS))
    except DataError as e:
        raise CheckpointError(str(e)) from None
    tensors = read_safetensors(run_dir / WEIGHTS)
    built = build_run_model(run, label_set)
    load_weights_into(built.module, tensors, str(run_dir / WEIGHTS))
    if len(label_set) != run.num_classes:
        raise CheckpointError(f"{run_dir / LABELS} has {len(label_set)} labels but the model {run.num_classes} "
                              "outputs (incompatible checkpoint)")
    built.predictor.eval()
    return LoadedRun(built.predictor, built.classifier, run, label_set, built.tokenizer, run_dir)
