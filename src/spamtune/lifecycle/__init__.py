"""The improving half of a deployment (after monitoring): learn from corrections, compare, version, promote.

    corrections.py   which corrections a retrain learns, which it holds out, and why the rest are left out
    compare.py       champion vs challenger on the same messages; McNemar's exact test; the promotion policy
    retrain.py       the whole `spamtune retrain`: plan, data, warm-started training, comparison
    registry.py      numbered versions and an atomically changed `current` pointer (promote, rollback)
    audit.py         likely label errors in the data and the corrections (cleanlab, out-of-fold probabilities)
"""

from spamtune.lifecycle.compare import Comparison, PromotionPolicy, compare_runs
from spamtune.lifecycle.corrections import CorrectionPolicy, CorrectionSet, select_corrections
from spamtune.lifecycle.registry import Registry, RegistryError, Version, parse_version
from spamtune.lifecycle.retrain import RetrainOptions, RetrainResult, retrain

__all__ = ["Comparison", "CorrectionPolicy", "CorrectionSet", "PromotionPolicy", "Registry", "RegistryError",
           "RetrainOptions", "RetrainResult", "Version", "compare_runs", "parse_version", "retrain",
           "select_corrections"]
