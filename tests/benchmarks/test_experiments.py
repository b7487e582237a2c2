"""python -m benchmarks.experiments --quick: the ablation runner end to end at CI size (real model, 48 messages)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spamtune.data import read_split

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.real_model
def test_quick_experiments_table_chart_and_per_seed_results(tmp_path, data_dir):
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "benchmarks.experiments", "--quick", "--rows", "default,head,tfidf",
           "--data-dir", str(data_dir), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    for row in ("default", "head", "tfidf"):
        seeds = sorted((out / row).glob("seed*.json"))
        assert [p.name for p in seeds] == ["seed123.json", "seed124.json"]
        recs = [json.loads(p.read_text()) for p in seeds]
        assert all(r["order"] == "file" and len(r["p_spam"]["unused"]) == 48 for r in recs)
        # the table's test accuracy is the mean over seeds of the stored probabilities against test.csv's labels
        y = read_split(data_dir / "test.csv")["Label"].to_numpy()[:48]
        acc = np.mean([((np.asarray(r["p_spam"]["test"]) >= 0.5) == y).mean() for r in recs]) * 100
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(f"| {row} |"))
        assert f"**{acc:.2f}" in line
    assert "`spamtune train --trainable head --seed S`" in r.stdout  # each row names its command
    # the hard-messages table: per test message, how many runs above 75 % got it wrong, most first
    y = read_split(data_dir / "test.csv")["Label"].to_numpy()[:48]
    recs = [json.loads(p.read_text()) for row in ("default", "head", "tfidf") for p in (out / row).glob("seed*.json")]
    recs = [rec for rec in recs if ((np.asarray(rec["p_spam"]["test"]) >= 0.5) == y).mean() >= 0.75]
    preds = [np.asarray(rec["p_spam"]["test"]) >= 0.5 for rec in recs]
    assert preds
    wrong = np.sum([p != y for p in preds], axis=0)
    expected = sorted((int(w) for w in wrong if 2 * w > len(preds)), reverse=True)
    shown = [int(ln.split()[1]) for ln in r.stdout.splitlines() if ln.endswith("|") and f" of {len(preds)} |" in ln]
    assert shown == expected
    # and the unused ham that more than half of those runs flag as spam
    flagged = np.sum([np.asarray(rec["p_spam"]["unused"]) >= 0.5 for rec in recs], axis=0)
    assert f"more than half of those runs: {int((2 * flagged > len(recs)).sum())} messages" in r.stdout
    assert (out / "experiments.png").stat().st_size > 10_000
    # a second invocation reuses the stored seeds instead of training again
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r2.returncode == 0 and r2.stdout.count(": stored") == 6


def test_hindsight_ceiling_is_the_best_threshold_with_and_without_the_fpr_bound():
    from benchmarks.experiments import hindsight_ceiling as ceiling

    p, y, unused = np.array([0.1, 0.4, 0.6, 0.9]), np.array([0, 1, 0, 1]), np.array([0.05, 0.5, 0.95])
    # thresholds 0.4 and 0.9 both give 3 of 4; 0.9 flags one unused ham of 3; only "nothing is spam" flags none
    assert ceiling(p, y, unused, max_fpr=0.34) == (0.75, 0.75)
    assert ceiling(p, y, unused, max_fpr=0.0) == (0.75, 0.5)
    # never below what any threshold of a grid reaches, under the same bound
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, y, unused = rng.random(50), rng.integers(0, 2, 50), rng.random(200) * 0.9
        best, bounded = ceiling(p, y, unused, max_fpr=0.02)
        grid = np.linspace(0, 1.01, 2001)
        assert best == max(((p >= t) == y).mean() for t in grid)
        assert bounded == max(((p >= t) == y).mean() for t in grid if (unused >= t).mean() <= 0.02)


def test_a_stacked_row_scores_through_its_stack(tiny_gpt2_dir, data_dir):
    """The runner applies a --stack ngrams row's n-gram half: on the random tiny model it beats the LLM alone."""
    from benchmarks.experiments import Row, run_train
    from spamtune.training.prefix_cache import PrefixStore

    args = {"model": str(tiny_gpt2_dir), "lr": 1e-3}
    acc = {}
    for name, extra in (("alone", {}), ("stacked", {"stack": "ngrams"})):
        probs = run_train(Row(name, "g", "", args={**args, **extra}), 123, data_dir, 200, 1, PrefixStore())["probs"]
        p, y = probs["test"]
        acc[name] = float(((p >= 0.5) == y).mean())
    assert acc["stacked"] >= acc["alone"] + 0.05 and acc["stacked"] > 0.9, acc
