"""Inference: loading a run, the classifier API, the decision pipeline, precision (bf16, int8, LoRA merge) and
scoring whole files.

    loading.py    a run directory -> LoadedRun (manifest, labels, model with its weights)
    api.py        TextClassifier (alias SpamClassifier): decide / predict / predict_proba / __call__
    pipeline.py   the decision pipeline: named checks (the model, the n-grams), their verdicts, the operating point
    lists.py      the operator's allow / deny entries (senders, domains, RE2 patterns): the pipeline's first check
    explain.py    the words behind the model's verdict (captum: word occlusion, or layer integrated gradients)
    precision.py  LoRA merge, bf16, dynamic int8
    files.py      .txt / .csv / .tsv in, .jsonl / .csv out, streamed
    generate.py   the book's sanity checks on the base model: greedy generation, zero-shot classification
"""

from spamtune.inference.api import SpamClassifier, TextClassifier, check_threshold
from spamtune.inference.loading import LoadedRun, load_run
from spamtune.inference.pipeline import Decision, DecisionPipeline, Verdict

__all__ = ["Decision", "DecisionPipeline", "LoadedRun", "SpamClassifier", "TextClassifier", "Verdict",
           "check_threshold", "load_run"]
