"""Prediction: load a run, classify messages in length-sorted batches, return probabilities.

Uses the training-time rules: the run's tokenizer, its max length (clamped to the model's context; longer messages
are truncated, never an error) and its pooling over each message's real tokens, so a prediction does not depend on
which other messages share its batch.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from spamtune.batching import pad_ids
from spamtune.checkpoint import LoadedRun, load_run
from spamtune.errors import SpamtuneError


class SpamClassifier:
    """A trained classifier: `SpamClassifier.load(run_dir).predict(["…"])` -> [(label, probability)]."""

    def __init__(self, run: LoadedRun, dtype: str = "fp32", quantize: str | None = None) -> None:
        self.run = run
        self.module = prepare_for_inference(run.module, dtype, quantize)
        self.dtype, self.quantize = dtype, quantize
        self.tokenizer = run.tokenizer
        self.max_length = run.config["max_length"]  # the training width, already within the model's context
        self.task = run.config.get("task", "single_label")
        self.thresholds = run.config.get("thresholds")  # multi-label: per label, picked on validation
        self.id2label = {int(k): v for k, v in run.labels["id2label"].items()}
        self.device = next(self.module.parameters()).device

    @classmethod
    def load(cls, run_dir: str | os.PathLike, dtype: str = "fp32", quantize: str | None = None) -> SpamClassifier:
        """Args: dtype: fp32 | bf16 (weights and activations); quantize: None | int8 (dynamic, Linear layers)."""
        return cls(load_run(run_dir), dtype, quantize)

    def require_single_label(self, what: str, hint: str = "") -> None:
        if self.task != "single_label":
            raise SpamtuneError(f"{what} handles single-label runs; this is a {self.task} run{hint}")

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        tok = self.tokenizer
        encoded = tok.encode_batch(list(texts)) if hasattr(tok, "encode_batch") else [tok.encode(t) for t in texts]
        return [ids[: self.max_length] or [tok.pad_id] for ids in encoded]

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 16, progress: bool = False) -> np.ndarray:
        """(N, num_classes) softmax probabilities, in input order; per-label sigmoid probabilities for a
        multi-label run; the predicted value (N,) for a regression run."""
        from tqdm.auto import tqdm

        from spamtune.hf import scores_from_logits

        encoded = self.encode(texts)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out = np.zeros((len(encoded), len(self.id2label)), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="classifying", unit="batch", disable=not progress, leave=False):
            rows = order[start : start + batch_size]
            # the book's `last` pooling reads a pad position: pad to the training width as training did
            width = self.max_length if self.run.config.get("pooling") == "last" else None
            ids, lengths = pad_ids([encoded[i] for i in rows], self.tokenizer.pad_id, width)
            out[rows] = self.module(ids.to(self.device), lengths.to(self.device)).float().cpu().numpy()
        return scores_from_logits(out, self.task)

    def predict(self, texts: Sequence[str], threshold: float | None = None) -> list[tuple[str, float]]:
        """(label, probability of that label) per text. With two classes, `threshold` on P(class 1) decides.

        Multi-label runs: ("a|b", lowest probability among the labels given; "" with 1 - the highest if none).
        Regression runs: (target name, predicted value).
        """
        probs = self.predict_proba(texts)
        if self.task == "regression":
            return [(self.id2label[0], float(v)) for v in probs]
        if self.task == "multi_label":
            on = probs >= np.asarray(self.thresholds or [0.5] * probs.shape[1])
            return [("|".join(self.id2label[j] for j in np.flatnonzero(row)),
                     float(p[row].min()) if row.any() else float(1 - p.max())) for row, p in zip(on, probs)]
        preds = predict_ids(probs, threshold)
        return [(self.id2label[int(p)], float(probs[i, p])) for i, p in enumerate(preds)]


def prepare_for_inference(module: torch.nn.Module, dtype: str = "fp32", quantize: str | None = None
                          ) -> torch.nn.Module:
    """Merge LoRA adapters into their weights (one matmul per layer again), then cast or quantize.

    int8 is PyTorch's dynamic quantization: Linear weights stored as int8, activations quantized per batch on
    the fly (CPU). bf16 halves the bytes moved. Both trade a little agreement with fp32 for speed; see
    benchmarks/inference.py for the measured agreement and speed-up.
    """
    import warnings

    from torch import nn

    if hasattr(module, "merge_and_unload"):  # a peft LoRA wrapper
        module = module.merge_and_unload()
    elif hasattr(getattr(module, "model", None), "merge_and_unload"):  # hf.HFClassifier around one
        module.model = module.model.merge_and_unload()
    if dtype not in ("fp32", "bf16"):
        raise SpamtuneError(f"--dtype must be fp32 or bf16, not {dtype!r}")
    if quantize not in (None, "int8"):
        raise SpamtuneError(f"--quantize must be int8, not {quantize!r}")
    if quantize and dtype != "fp32":
        raise SpamtuneError("--quantize int8 works on fp32 models; drop --dtype bf16")
    if dtype == "bf16":
        module = module.to(torch.bfloat16)
    if quantize == "int8":
        with warnings.catch_warnings():  # torch.ao's deprecation notice; the API is still the shipped one
            warnings.simplefilter("ignore")
            module = torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
    return module.eval()


def check_threshold(threshold: float | None) -> None:
    """Reject a threshold outside [0, 1] before any model is loaded (the CLI's verbs call this first)."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise SpamtuneError("--threshold must be between 0 and 1")


def predict_ids(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Argmax, or for two classes P(class 1) >= threshold."""
    if threshold is not None and probs.shape[1] == 2:
        return (probs[:, 1] >= threshold).astype(int)
    return probs.argmax(axis=1)


def _read_messages(path: Path, text_col: str) -> Iterator[tuple[int, str]]:
    """(line or row number, text) from a .txt (one message per line; blank lines skipped) or .csv/.tsv file."""
    if path.suffix.lower() in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig", errors="strict") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if reader.fieldnames is None or text_col not in reader.fieldnames:
                raise SpamtuneError(f"{path}: no column {text_col!r} (columns: {', '.join(reader.fieldnames or [])})")
            for row_no, row in enumerate(reader, start=2):
                yield row_no, row[text_col] or ""
        return
    with open(path, encoding="utf-8-sig", errors="strict", newline="") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.rstrip("\r\n")
            if text.strip():
                yield line_no, text


def classify_file(clf: SpamClassifier, src: str | os.PathLike, out: str | os.PathLike | None,
                  threshold: float | None = None, text_col: str = "Text", chunk: int = 256) -> int:
    """Classify a file in chunks (memory stays flat) into .jsonl or .csv (atomic) or stdout. Returns the count."""
    import json
    import sys

    from tqdm.auto import tqdm

    from spamtune.fsutil import atomic_file

    src = Path(src)
    clf.require_single_label("--file", " (pass the messages instead)")
    if not src.is_file():
        raise SpamtuneError(f"no such file: {src}")
    as_csv = out is not None and Path(out).suffix.lower() == ".csv"
    n = 0

    def write_all(f) -> None:
        nonlocal n
        writer = csv.writer(f) if as_csv else None
        if writer:
            writer.writerow(["line", "label", "probability", *(f"p_{lab}" for lab in clf.labels), "text"])
        messages = _read_messages(src, text_col)
        with tqdm(desc=f"classifying {src.name}", unit="msg", disable=out is None) as bar:
            while batch := list(itertools.islice(messages, chunk)):
                probs = clf.predict_proba([t for _, t in batch])
                for (line, text), p, pred in zip(batch, probs, predict_ids(probs, threshold)):
                    label, prob = clf.labels[pred], float(p[pred])
                    if writer:
                        writer.writerow([line, label, f"{prob:.6f}", *(f"{v:.6f}" for v in p), text])
                    else:
                        f.write(json.dumps({"line": line, "label": label, "probability": prob,
                                            "probabilities": dict(zip(clf.labels, map(float, p))),
                                            "text": text}) + "\n")
                n += len(batch)
                bar.update(len(batch))

    try:
        if out is None:
            write_all(sys.stdout)
        else:
            with atomic_file(out, "w", newline="" if as_csv else None, encoding="utf-8") as f:
                write_all(f)
    except UnicodeDecodeError as e:
        raise SpamtuneError(f"{src}: not valid UTF-8 ({e.reason} at byte {e.start} of a line)") from None
    return n
