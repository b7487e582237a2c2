"""Champion vs challenger: McNemar's exact test, the promotion policy, and a comparison of real runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spamtune.inference import TextClassifier
from spamtune.lifecycle.compare import PromotionPolicy, _checks, compare_runs, mcnemar


def test_mcnemar_exact_matches_the_binomial_by_hand():
    champion = np.array([True] * 10 + [False] * 2 + [True] * 5)
    challenger = np.array([False] * 10 + [True] * 2 + [True] * 5)
    m = mcnemar(champion, challenger)
    assert (m["champion_only"], m["challenger_only"]) == (10, 2)
    assert m["p"] == pytest.approx(2 * (1 + 12 + 66) / 2**12)  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar(champion, champion)["p"] == 1.0


def sets(fpr=(0.01, 0.01), recall=(0.9, 0.9), holdout=(0.2, 0.8)):
    return {"unused ham (report half)": {"champion": {"fpr": fpr[0]}, "challenger": {"fpr": fpr[1]}},
            "test": {"champion": {"recall": recall[0]}, "challenger": {"recall": recall[1]}},
            "held-out corrections": {"champion": {"accuracy": holdout[0]}, "challenger": {"accuracy": holdout[1]}}}


@pytest.mark.parametrize(("kw", "pooled", "passed"), [
    ({}, (0, 10, 0.001), [True, True, True, True]),
    ({"fpr": (0.01, 0.0125)}, (0, 10, 0.001), [False, True, True, True]),  # significance never buys FPR
    ({"recall": (0.9, 0.88)}, (5, 6, 0.9), [True, False, True, False]),
    ({"recall": (0.9, 0.88)}, (0, 10, 0.001), [True, False, True, True]),
])
def test_policy_checks(kw, pooled, passed):
    checks = _checks(sets(**kw), {"champion_only": pooled[0], "challenger_only": pooled[1], "p": pooled[2]},
                     PromotionPolicy(), binary=True)
    assert [c["passed"] for c in checks] == passed


def test_a_run_against_itself(tiny_run, data_dir, tmp_path):
    clf = TextClassifier.load(tiny_run)
    c = compare_runs(clf, clf, data_dir, progress=False)
    assert set(c.sets) == {"test", "unused ham (report half)"}  # no holdout.csv in a prepared directory
    assert c.sets["test"]["n"] == 300 and 1900 < c.sets["unused ham (report half)"]["n"] < 2100
    for s in c.sets.values():
        assert s["champion"] == s["challenger"] and s["mcnemar"]["p"] == 1.0
    assert c.disagreements == [] and c.promote and c.decision == "promote"
    assert not next(x for x in c.checks if x["name"].startswith("significantly"))["passed"]
    c.write(tmp_path)
    assert json.loads((tmp_path / "compare.json").read_text())["decision"] == "promote"
    assert "Decision: **promote** (the policy passed)" in (tmp_path / "compare.md").read_text()
