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


# checks: FPR guard, recall-collapse guard, not worse on test recall, not worse on the held-out corrections,
# significantly better over all sets
@pytest.mark.parametrize(("kw", "pooled", "passed"), [
    ({}, (0, 10, 0.001), [True, True, True, True, True]),
    ({"fpr": (0.01, 0.0125)}, (0, 10, 0.001), [False, True, True, True, True]),  # significance never buys FPR
    ({"recall": (0.9, 0.89)}, (5, 6, 0.9), [True, True, False, True, False]),
    ({"recall": (0.9, 0.89)}, (0, 10, 0.001), [True, True, False, True, True]),
    ({"recall": (1.0, 0.0), "holdout": (0.0, 1.0)}, (0, 900, 1e-30), [True, False, False, True, True]),  # collapse
])
def test_policy_checks(kw, pooled, passed):
    checks = _checks(sets(**kw), {"champion_only": pooled[0], "challenger_only": pooled[1], "p": pooled[2]},
                     PromotionPolicy(), binary=True)
    assert [c["passed"] for c in checks] == passed
    assert [c["guard"] for c in checks] == [True, True, False, False, False]


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
    assert set(c.binding) == {"champion", "challenger", "policy", "data"} and c.binding["champion"] == \
        c.binding["challenger"]


def collapsed(run, tmp_path):
    """A copy of `run` that blocks nothing: its stored operating point moved to P(spam) >= 1.0."""
    import shutil

    from spamtune.runs import RunConfig

    out = tmp_path / "collapsed"
    shutil.copytree(run, out)
    cfg = RunConfig.from_dir(out)
    cfg.run_id += "-collapsed"
    cfg.operating_point.block_threshold = cfg.operating_point.review_threshold = 1.0
    cfg.write(out)
    return out


def test_a_recall_collapse_is_never_promoted_whatever_the_held_out_corrections_say(tiny_run, data_dir, tmp_path):
    """The review's attack: flipped answers make the challenger look better on the held-out corrections (and
    significantly better pooled), while it catches no spam on test. The guard on the trusted test split holds."""
    import shutil

    import pandas as pd

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    challenger = collapsed(tiny_run, tmp_path)
    champion = TextClassifier.load(tiny_run)
    unused_ham = pd.read_csv(data_dir / "unused.csv")["Text"][:400]
    # 400 "corrections" saying ham for ham the champion blocks at threshold 0: the challenger (blocking nothing)
    # is right on all of them
    pd.DataFrame({"Label": 0, "Text": unused_ham, "Source": "feedback:x"}).to_csv(data / "holdout.csv", index=False)
    low = champion.run.run_config.operating_point
    low.block_threshold = low.review_threshold = 0.0  # the champion blocks everything: wrong on all 400
    c = compare_runs(champion, TextClassifier.load(challenger), data, progress=False)
    recall_guard = next(x for x in c.checks if x["name"].startswith("no recall collapse"))
    assert c.sets["test"]["challenger"]["recall"] == 0.0 and not recall_guard["passed"]
    assert next(x for x in c.checks if x["name"].startswith("significantly"))["passed"]  # what fooled the old rule
    assert not c.promote and c.decision == "keep"


def test_reports_escape_html_and_terminal_sequences(tiny_run, data_dir, tmp_path):
    clf = TextClassifier.load(tiny_run)
    c = compare_runs(clf, TextClassifier.load(collapsed(tiny_run, tmp_path)), data_dir, progress=False)
    c.disagreements = [{"set": "test", "label": "spam", "champion": "spam", "champion_score": 0.9,
                        "challenger": "ham", "challenger_score": 0.6,
                        "text": "<script>alert(1)</script> \x1b[2J\x1b[31mred | pipe\u202eevil"}]
    md = c.to_markdown()
    assert "<script>" not in md and "&lt;script&gt;" in md and "\x1b" not in md and "\\x1b[2J" in md
    assert "\\|" in md and "\u202e" not in md


def test_a_comparison_is_bound_to_the_cascade_too(cascade_run, tmp_path):
    """The cascade decides most messages of a --cascade run: a comparison (and the registry's recorded sha256)
    must not survive a changed cascade.safetensors."""
    import shutil

    from spamtune.calibration.stacking import CASCADE_FILE
    from spamtune.lifecycle.compare import digest_files

    run = tmp_path / "run"
    shutil.copytree(cascade_run, run)
    before = digest_files(run)
    data = bytearray((run / CASCADE_FILE).read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    (run / CASCADE_FILE).write_bytes(bytes(data))
    assert digest_files(run) != before
