"""Loading a run for prediction: its manifest, label set and weights, into the backend's model (eval mode).

A run directory is data from wherever it came from, so it is checked before anything predicts: the manifest's
types and ranges (RunConfig), the label set, that the weight file holds exactly the tensors this run trained and
that they are all finite, and that the tokenizer fits the architecture. Loading never reaches the network unless
the caller (or $SPAMTUNE_ALLOW_DOWNLOAD=1) allows it: a manifest naming a Hub model is read from the local cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spamtune.backends import BuiltModel, build_run_model
from spamtune.calibration.stacking import NgramModel, NgramStack, load_cascade
from spamtune.data.labels import LabelSet
from spamtune.errors import CheckpointError, DataError
from spamtune.fsutil import read_json
from spamtune.normalize import normalizing
from spamtune.runs import LABELS, WEIGHTS, RunConfig, load_weights_into, weights_to_save
from spamtune.weights import read_safetensors


@dataclass
class LoadedRun:
    predictor: nn.Module  # (B, T) ids + (B,) lengths -> logits; eval mode
    classifier: nn.Module  # the Classifier (scratch) or the HFClassifier
    run_config: RunConfig
    label_set: LabelSet
    tokenizer: Any  # encode / encode_batch / pad_id; reads text through the run's normalization
    run_dir: Path
    stack: NgramStack | None = None  # --stack ngrams runs: combines the predictor's logits (stacking.py)
    cascade: NgramModel | None = None  # --cascade ngrams runs: the cheap check's model (its bands: run_config)

    def __post_init__(self) -> None:
        self.tokenizer = normalizing(self.tokenizer, self.run_config.normalize)


def downloads_allowed() -> bool:
    return os.environ.get("SPAMTUNE_ALLOW_DOWNLOAD", "") not in ("", "0")


def load_run(run_dir: str | os.PathLike, allow_download: bool | None = None) -> LoadedRun:
    """Load a finished (or checkpointed) run for evaluation or prediction.

    Args:
        allow_download: fetch a base model the manifest names from the Hub if it is not cached; default: only
            with $SPAMTUNE_ALLOW_DOWNLOAD=1.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"no such run directory: {run_dir}")
    run_config = RunConfig.from_dir(run_dir)
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{run_dir}: no {WEIGHTS} yet (the run has not finished an epoch)")
    try:
        label_set = LabelSet.from_json(read_json(run_dir / LABELS, CheckpointError), str(run_dir / LABELS))
    except DataError as e:
        raise CheckpointError(str(e)) from None
    if len(label_set) != run_config.num_classes or label_set.task != run_config.task:
        raise CheckpointError(f"{run_dir / LABELS} ({len(label_set)} labels, {label_set.task}) does not match the "
                              f"manifest ({run_config.num_classes} outputs, {run_config.task}): incompatible "
                              "checkpoint")
    tensors = read_safetensors(weights)
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{weights}: tensor {name} holds NaN or infinite values (damaged checkpoint)")
    built = build_run_model(run_config, label_set, downloads_allowed() if allow_download is None else allow_download)
    _check_fit(run_config, built, tensors, str(weights))
    load_weights_into(built.module, tensors, str(weights))
    built.predictor.eval()
    stack = NgramStack.load(run_dir, run_config.normalize) if run_config.stack == "ngrams" else None
    cascade = load_cascade(run_dir, run_config.normalize) if run_config.cascade is not None else None
    return LoadedRun(built.predictor, built.classifier, run_config, label_set, built.tokenizer, run_dir, stack, cascade)


def _check_fit(run_config: RunConfig, built: BuiltModel, tensors: dict[str, torch.Tensor], where: str) -> None:
    """The weight file holds exactly the tensors this run saves (all of them for `full`, the trained ones for
    `trainable`), and the tokenizer and max length fit the architecture."""
    expected = set(weights_to_save(built.module, full=run_config.weights == "full"))
    if missing := sorted(expected - set(tensors)):
        raise CheckpointError(f"{where}: {len(missing)} of the run's {len(expected)} trained tensors are missing, "
                              f"e.g. {missing[0]!r} (incompatible or damaged checkpoint)")
    if unexpected := sorted(set(tensors) - expected):
        raise CheckpointError(f"{where}: tensor {unexpected[0]!r} does not exist in the model "
                              f"({len(unexpected)} unexpected; incompatible checkpoint)")
    arch = run_config.architecture
    if arch is not None:
        if built.tokenizer.vocab_size > arch.vocab_size:
            raise CheckpointError(f"tokenizer {run_config.tokenizer!r} has {built.tokenizer.vocab_size} tokens, "
                                  f"more than the model's {arch.vocab_size}: the manifest names the wrong tokenizer")
        if run_config.max_length > arch.context_length:
            raise CheckpointError(f"max_length {run_config.max_length} exceeds the model's context of "
                                  f"{arch.context_length} tokens (damaged manifest)")
