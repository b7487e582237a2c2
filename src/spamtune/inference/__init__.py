"""Inference: loading a run, the classifier API, precision (bf16, int8, LoRA merge) and scoring whole files.

    loading.py    a run directory -> LoadedRun (manifest, labels, model with its weights)
    api.py        TextClassifier (alias SpamClassifier): predict / predict_proba
    precision.py  LoRA merge, bf16, dynamic int8
    files.py      .txt / .csv / .tsv in, .jsonl / .csv out, streamed
"""

from spamtune.inference.api import SpamClassifier, TextClassifier, check_threshold
from spamtune.inference.loading import LoadedRun, load_run

__all__ = ["LoadedRun", "SpamClassifier", "TextClassifier", "check_threshold", "load_run"]
