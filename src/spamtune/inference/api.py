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
from typing import Any

import numpy as np
import torch

from spamtune.batching import char_cap, encode_for_model, encode_texts
from spamtune.calibration.decisions import check_thresholds
from spamtune.classifier import Classifier, batched_logits, pad_width
from spamtune.data.labels import POSITIVE_ID
from spamtune.devices import resolve_device, resolve_dtype
from spamtune.errors import ConfigError, DataError
from spamtune.inference.loading import LoadedRun, load_run
from spamtune.inference.onnx_runtime import OnnxPredictor, load_onnx_run
from spamtune.inference.pipeline import BatchOptions, Decision, DecisionPipeline, Scored
from spamtune.inference.precision import prepare_for_inference
from spamtune.runs import LogitsMemo, memo_setting, text_keys
from spamtune.tasks import SingleLabel, task_for


class TextClassifier:
    """A trained classifier, with the shapes other tools use:

        clf = TextClassifier.load("runs/smollm2")
        clf("WINNER! ...")                  # [{"label": "spam", "score": 0.97}]  (a transformers pipeline)
        clf(["a", "b"], top_k=None)          # every label per message, best first
        clf.predict(["a", "b"])              # array(["ham", "spam"]): labels at the operating point (scikit-learn)
        clf.predict_proba(["a", "b"])        # (2, 2) calibrated probabilities; columns follow clf.classes_
        clf.decide(["a", "b"])               # [Decision(label, score, scores, band="allow"|"review"|"block",
                                             #           checks=[Verdict(check, label, score, reason), ...])]
        clf.decide(["a"], explain=True)      # ... and each check's evidence (the words behind the model's label)

    Every call decides through the run's decision pipeline (`self.pipeline`, inference/pipeline.py). Probabilities
    are calibrated (the run's temperature) unless `calibrated=False`. Binary runs decide at their stored operating
    point (block and review thresholds, picked for a target false-positive rate); every call takes `threshold` /
    `review_threshold` to override it. A single string is one message, never its characters.
    """

    def __init__(self, run: LoadedRun, dtype: str = "fp32", quantize: str | None = None,
                 device: str = "cpu", cascade: bool = True) -> None:
        self.run = run
        where = resolve_device(device)
        if isinstance(run.predictor, OnnxPredictor):  # already exported at its precision
            self.module: Any = run.predictor
        else:
            if quantize and where.type != "cpu":
                raise ConfigError("--quantize int8 runs on the CPU only; drop --quantize or use --device cpu")
            dtype = resolve_dtype(dtype, where)
            self.module = prepare_for_inference(run.predictor, dtype, quantize).to(where)
        self.dtype, self.quantize = dtype, quantize
        self.tokenizer = run.tokenizer
        self.max_length = run.run_config.max_length  # the training width, already within the model's context
        self.label_set = run.label_set
        self.task = task_for(run.label_set)
        self.thresholds = run.run_config.thresholds  # multi-label: per label, picked on validation
        calibration = run.run_config.calibration
        self.temperature = calibration.temperature if calibration else 1.0
        self.operating_point = run.run_config.operating_point  # binary runs trained with a stored decision rule
        self.device = next(self.module.parameters(), torch.empty(0)).device
        self.char_cap = char_cap(self.max_length)
        self.line_cap = 4 * self.char_cap  # bytes of a line read from a file or stdin (UTF-8: <= 4 per char)
        self.pipeline = DecisionPipeline(self, cascade=cascade) if self.task.name == "single_label" else None
        self.memo: LogitsMemo | None = None  # keep_logits(): model_logits reads and adds to the run's memo

    @classmethod
    def load(cls, run_dir: str | os.PathLike, dtype: str = "fp32", quantize: str | None = None,
             device: str = "cpu", runtime: str = "torch", cascade: bool = True) -> TextClassifier:
        """Args: dtype: fp32 | bf16 (weights and activations) | auto (bf16 where the device computes it natively);
        quantize: None | int8 (torch: dynamic, Linear layers; onnx: the export's ONNX Runtime int8 model);
        device: auto (CUDA if present) | cpu | cuda | mps; runtime: torch (a run directory) | onnx (a directory
        written by `spamtune export --format onnx`); cascade: False decides every message with the model even in a
        --cascade run (inference/cascade.py)."""
        if runtime == "onnx":
            if dtype not in ("fp32", "auto"):
                raise ConfigError("--runtime onnx runs the exported fp32 model (or --quantize int8); drop --dtype")
            where = resolve_device(device).type
            return cls(load_onnx_run(run_dir, quantize, "cuda" if where == "cuda" else "cpu"), device="cpu",
                       cascade=cascade)
        if runtime != "torch":
            raise ConfigError(f"--runtime must be torch or onnx, not {runtime!r}")
        return cls(load_run(run_dir), dtype, quantize, device, cascade)

    @property
    def run_id(self) -> str:
        return self.run.run_config.run_id

    @property
    def label_names(self) -> list[str]:
        """Class names in id order (the columns of `predict_proba`)."""
        return list(self.label_set.names)

    @property
    def classes_(self) -> np.ndarray:
        """scikit-learn's name for the labels, in column order."""
        return np.array(self.label_names, dtype=object)

    @property
    def binary(self) -> bool:
        return self.label_set.binary

    @property
    def positive_id(self) -> int | None:
        """Binary runs: the id of the positive label (spam), POSITIVE_ID by the data stage's rule; None otherwise."""
        return POSITIVE_ID if self.binary else None

    @property
    def positive_label(self) -> str | None:
        return self.label_set.positive

    def require_single_label(self, what: str, hint: str = "") -> None:
        if self.task.name != "single_label":
            raise ConfigError(f"{what} handles single-label runs; this is a {self.task.name} run{hint}")

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids as the model reads them: cut to `char_cap` characters, tokenized as plain text, truncated to
        max length."""
        return self._encode(texts)[0]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each message before truncation to max length (of its first `char_cap` characters): a message
        over `max_length` is read only in part."""
        return [len(ids) for ids in encode_texts(self.tokenizer, texts, self.max_length)]

    def _encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        return encode_for_model(self.tokenizer, texts, self.max_length)

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

    def logits(self, texts: str | Sequence[str], batch_size: int = 16,
               progress: bool = False) -> tuple[np.ndarray, list[bool]]:
        """(N, C) raw logits in input order (the decision pipeline's combined logits for single-label runs: the
        model's, stacked with the n-grams' when the run has them), and whether each message was truncated."""
        texts = self.check_messages(texts)
        if self.pipeline is None:
            return self.model_logits(texts, batch_size, progress)
        scored = self.score(texts, batch_size, progress)
        return scored.logits, scored.truncated

    def score(self, texts: Sequence[str], batch_size: int = 16, progress: bool = False,
              senders: Sequence[str | None] | None = None) -> Scored:
        """The decision pipeline's threshold-free pass over checked messages (single-label runs); `senders`: who
        sent each message, for the operator lists."""
        assert self.pipeline is not None, "single-label runs only"
        return self.pipeline.score(texts, BatchOptions(batch_size, progress), senders)

    def model_logits(self, texts: Sequence[str], batch_size: int = 16,
                     progress: bool = False) -> tuple[np.ndarray, list[bool]]:
        """(N, C) the fine-tuned model's own logits (nothing stacked), and truncation: the model check's work.
        With `keep_logits()`, a text the memo holds is not scored again, and each other distinct text once."""
        if not texts:
            return np.zeros((0, len(self.label_set)), dtype=np.float32), []
        if self.memo is None:
            return self._pass(texts, batch_size, progress, "forward")
        keys = text_keys(list(texts))
        found = self.memo.lookup(keys)
        todo = list(dict.fromkeys(t for t, f in zip(texts, found) if f is None))
        self.memo.reused += len(texts) - len(todo)  # each distinct new text is scored once, every other is read
        if todo:
            self.memo.add(todo, *self._pass(todo, batch_size, progress, "forward"))
            found = self.memo.lookup(keys)
        rows = [f for f in found if f is not None]
        return np.stack([r[0] for r in rows]), [r[1] for r in rows]

    def keep_logits(self) -> LogitsMemo | None:
        """Read and add to the run's memo of the model's logits (runs.LogitsMemo) from now on: what `spamtune
        evaluate` uses so that no message the same model already scored is scored again. Runs in torch only (an
        ONNX export has no run weights to key it by): None there."""
        if isinstance(self.module, OnnxPredictor):
            return None
        self.memo = LogitsMemo(self.run.run_dir, memo_setting(self.run.run_dir, self.run.run_config, self.dtype,
                                                              self.quantize, self.device.type))
        return self.memo

    def model_logits_pooled(self, texts: Sequence[str], batch_size: int = 16,
                            progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        """`model_logits` and, from the same pass, the pooled vectors the head read (N, D): the model check's work
        when a memory of corrections follows it (runs of ours only: `has_pooled`)."""
        assert self.has_pooled, "pooled vectors come from a --backend scratch run in torch"
        out, truncated = self._pass(texts, batch_size, progress, "forward_pooled")
        c = len(self.label_set)
        if not len(out):
            return np.zeros((0, c), dtype=np.float32), np.zeros((0, 0), dtype=np.float32), truncated
        return out[:, :c], out[:, c:], truncated

    @property
    def has_pooled(self) -> bool:
        """The model is ours in torch, so its pooled vectors can be read (not the hf backend, not ONNX)."""
        return isinstance(self.module, Classifier)

    def embeddings(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray | None:
        """(N, D) the pooled, normalised vectors the head reads (drift monitoring); None for the hf backend, whose
        models pool inside transformers."""
        if not self.has_pooled or not texts:
            return None
        return self._pass(self.check_messages(texts), batch_size, False, "embed")[0]

    def frozen_features(self, texts: Sequence[str], batch_size: int = 16, progress: bool = False) -> np.ndarray:
        """(N, D) the frozen layers' output averaged over each message's tokens (`spamtune audit`): features that
        carry no trace of the training labels. A `ConfigError` for runs without frozen layers of ours."""
        if not isinstance(self.module, Classifier):
            raise ConfigError("the frozen layers are read from a --backend scratch run (this run's model is "
                              f"{type(self.module).__name__})")
        if self.module.start == 0:
            raise ConfigError(f"this run trains every layer (--trainable {self.module.trainable}): it has no frozen "
                              "layers whose features never saw the labels")
        return self._pass(self.check_messages(texts), batch_size, progress, "frozen_features", "frozen features")[0]

    def _pass(self, texts: Sequence[str], batch_size: int, progress: bool, method: str,
              desc: str = "classifying") -> tuple[np.ndarray, list[bool]]:
        """One batched pass of `method` (forward, embed, frozen_features) over `texts`, and their truncation."""
        encoded, truncated = self._encode(texts)
        width = pad_width(self.run.run_config.pooling, self.max_length)
        out = batched_logits(self.module, encoded, self.tokenizer.pad_id, batch_size, width, progress, desc, method)
        return out, truncated

    def scores_from_logits(self, logits: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """What `predict_proba` returns for these logits."""
        if calibrated and self.temperature != 1.0:
            logits = logits / np.float32(self.temperature)
        return self.task.scores(logits)

    def predict_proba(self, texts: str | Sequence[str], batch_size: int = 16, progress: bool = False,
                      calibrated: bool = True) -> np.ndarray:
        """(N, num_classes) probabilities, columns in `classes_` order (calibrated with the run's temperature
        unless `calibrated=False`); per-label sigmoid probabilities for a multi-label run; the predicted value
        (N,) for a regression run."""
        return self.scores_from_logits(self.logits(texts, batch_size, progress)[0], calibrated)

    def block_threshold(self, threshold: float | None = None) -> float | None:
        """The threshold on P(positive) a binary run decides with: `threshold`, else the stored operating point's,
        else None (argmax)."""
        if threshold is not None or not self.binary:
            return threshold
        return self.operating_point.block_threshold if self.operating_point else None

    def review_threshold(self, review_threshold: float | None = None, threshold: float | None = None) -> float | None:
        block = self.block_threshold(threshold)
        if review_threshold is not None or block is None:
            return review_threshold
        stored = self.operating_point.review_threshold if self.operating_point else block
        return min(stored, block)

    def predict(self, texts: str | Sequence[str], threshold: float | None = None) -> np.ndarray:
        """The label of each message (scikit-learn's `predict`): at the operating point for binary runs; names
        joined by "|" for multi-label runs; the value for regression runs."""
        probs = self.predict_proba(texts)
        preds = self.task.predictions(probs, self.label_set, self.thresholds, self.block_threshold(threshold))
        if self.task.name == "regression":
            return np.array([value for _, value in preds], dtype=float)
        return np.array([label for label, _ in preds], dtype=object)

    def decide(self, texts: str | Sequence[str], threshold: float | None = None,
               review_threshold: float | None = None, batch_size: int = 16, explain: bool = False,
               explain_budget_s: float = 30.0, senders: Sequence[str | None] | None = None) -> list[Decision]:
        """A `Decision` per message (single-label runs): label, calibrated scores, band, thresholds, truncation and
        every check's verdict; with `explain`, each verdict's evidence, within `explain_budget_s` seconds (what
        runs out of time says so in its reason; the decision stands). `senders`: who sent each message (the
        operator lists' sender entries)."""
        self.require_single_label("decide")
        check_thresholds(threshold, review_threshold)
        texts = self.check_messages(texts)
        assert self.pipeline is not None
        decided = self.pipeline.decide(self.score(texts, batch_size, senders=senders), threshold, review_threshold)
        if explain:
            self.pipeline.explain(texts, decided, explain_budget_s)
        return decided

    def __call__(self, texts: str | Sequence[str], top_k: int | None = 1) -> list:
        """transformers' text-classification pipeline shapes: a string -> [{"label", "score"}] (top_k labels,
        best first; top_k=None: all); a list -> one such list per message (a list of dicts when top_k=1)."""
        single = isinstance(texts, str)
        probs = self.predict_proba(texts)
        if self.task.name != "single_label":
            rows = [{"label": label, "score": score}
                    for label, score in self.task.predictions(probs, self.label_set, self.thresholds)]
            return rows if not single else rows[:1]
        decided = SingleLabel.predict_ids(probs, self.block_threshold())
        out = []
        for p, k in zip(probs, decided):
            if top_k == 1:  # the decided label, which the operating point may have moved off the argmax
                out.append([{"label": self.label_names[k], "score": float(p[k])}])
                continue
            order = np.argsort(-p, kind="stable")[: top_k or None]
            out.append([{"label": self.label_names[j], "score": float(p[j])} for j in order])
        if top_k == 1:
            return out[0] if single else [row[0] for row in out]
        return out[0] if single else out


SpamClassifier = TextClassifier  # the name the first releases used


def check_threshold(threshold: float | None, review_threshold: float | None = None) -> None:
    """Reject thresholds outside [0, 1] (or review above block) before any model is loaded."""
    check_thresholds(threshold, review_threshold)
