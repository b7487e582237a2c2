"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from spamtune.config import TrainArgs


def minilm_args(**kw) -> TrainArgs:
    return TrainArgs(**{"backend": "hf", "model": "all-minilm-l6-v2", "trainable": "all", "lr": 2e-4, "epochs": 4,
                        "eval_freq": 1000, **kw})
