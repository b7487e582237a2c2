"""The classifier API: `TextClassifier.load(run_dir)`, then `predict` / `predict_proba` on any messages.

Uses the training-time rules: the run's tokenizer, its max length (clamped to the model's context; longer messages
are truncated, never an error) and its pooling over each message's real tokens, so a prediction does not depend on
which other messages share its batch.

Work per message is bounded: a message is cut to `char_cap` characters before it is tokenized (32 per token of
max length, at least 4,096: far more than the tokens kept ever span), so a 50 MB message costs what a short one
does. A blank message (empty or whitespace only) is an error here; line-based inputs skip blank lines instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from spamtune.batching import pad_ids
from spamtune.errors import ConfigError, DataError
from spamtune.inference.loading import LoadedRun, load_run
from spamtune.inference.precision import prepare_for_inference
from spamtune.tasks import Prediction, task_for

MIN_CHAR_CAP = 4096
CHARS_PER_TOKEN_CAP = 32


class TextClassifier:
    """A trained classifier: `TextClassifier.load(run_dir).predict(["…"])` -> [(label, probability)]."""

    def __init__(self, run: LoadedRun, dtype: str = "fp32", quantize: str | None = None) -> None:
        self.run = run
        self.module = prepare_for_inference(run.predictor, dtype, quantize)
        self.dtype, self.quantize = dtype, quantize
        self.tokenizer = run.tokenizer
        self.max_length = run.run_config.max_length  # the training width, already within the model's context
        self.label_set = run.label_set
        self.task = task_for(run.label_set)
        self.thresholds = run.run_config.thresholds  # multi-label: per label, picked on validation
        self.device = next(self.module.parameters()).device
        self.char_cap = max(MIN_CHAR_CAP, CHARS_PER_TOKEN_CAP * self.max_length)
        self.line_cap = 4 * self.char_cap  # bytes of a line read from a file or stdin (UTF-8: <= 4 per char)

    @classmethod
    def load(cls, run_dir: str | os.PathLike, dtype: str = "fp32", quantize: str | None = None) -> TextClassifier:
        """Args: dtype: fp32 | bf16 (weights and activations); quantize: None | int8 (dynamic, Linear layers)."""
        return cls(load_run(run_dir), dtype, quantize)

    @property
    def run_id(self) -> str:
        return self.run.run_config.run_id

    @property
    def label_names(self) -> list[str]:
        """Class names in id order (the columns of `predict_proba`)."""
        return list(self.label_set.names)

    def require_single_label(self, what: str, hint: str = "") -> None:
        if self.task.name != "single_label":
            raise ConfigError(f"{what} handles single-label runs; this is a {self.task.name} run{hint}")

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids as the model reads them: cut to `char_cap` characters, tokenized as plain text, truncated to
        max length."""
        tok = self.tokenizer
        capped = [t[: self.char_cap] for t in texts]
        encoded = tok.encode_batch(capped) if hasattr(tok, "encode_batch") else [tok.encode(t) for t in capped]
        return [ids[: self.max_length] or [tok.pad_id] for ids in encoded]

    @staticmethod
    def check_messages(texts: str | Sequence[str]) -> list[str]:
        """`texts` as a list of messages (one string is one message, never its characters); a non-string or
        blank message is a `DataError` naming its position."""
        items = [texts] if isinstance(texts, str) else list(texts)
        for i, t in enumerate(items, start=1):
            if not isinstance(t, str):
                raise DataError(f"message {i} is a {type(t).__name__}, not text")
            if not t.strip():
                raise DataError(f"message {i} is empty or only whitespace; there is nothing to classify")
        return items

    @torch.inference_mode()
    def predict_proba(self, texts: str | Sequence[str], batch_size: int = 16, progress: bool = False) -> np.ndarray:
        """(N, num_classes) softmax probabilities, in input order; per-label sigmoid probabilities for a
        multi-label run; the predicted value (N,) for a regression run."""
        from tqdm.auto import tqdm

        texts = self.check_messages(texts)
        encoded = self.encode(texts)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = np.zeros((len(encoded), len(self.label_set)), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        # the book's `last` pooling reads a pad position: pad to the training width as training did
        width = self.max_length if self.run.run_config.pooling == "last" else None
        for start in tqdm(starts, desc="classifying", unit="batch", disable=not progress, leave=False):
            rows = order[start : start + batch_size]
            ids, lengths = pad_ids([encoded[i] for i in rows], self.tokenizer.pad_id, width)
            out[rows] = self.module(ids.to(self.device), lengths.to(self.device)).float().cpu().numpy()
        return self.task.scores(out)

    def predict(self, texts: str | Sequence[str], threshold: float | None = None) -> list[Prediction]:
        """(label, probability of that label) per text. With two classes, `threshold` on P(class 1) decides.

        Multi-label runs: ("a|b", lowest probability among the labels given; "" with 1 - the highest if none).
        Regression runs: (target name, predicted value).
        """
        return self.task.predictions(self.predict_proba(texts), self.label_set, self.thresholds, threshold)


SpamClassifier = TextClassifier  # the name the first releases used


def check_threshold(threshold: float | None) -> None:
    """Reject a threshold outside [0, 1] before any model is loaded (the CLI's verbs call this first)."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError("--threshold must be between 0 and 1")
