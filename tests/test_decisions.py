"""Decisions a user can operate (issue 16): calibration, the operating point and its protocol, bands, and the
shapes of the Python API, the CLI and HTTP."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from spamtune.calibration.decisions import (
    bands,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    in_calibration_half,
    nll,
    pick_operating_point,
    split_halves,
    threshold_for_fpr,
    threshold_for_precision,
)
from spamtune.cli import main
from spamtune.data import read_split
from spamtune.inference import TextClassifier

# ---------------------------------------------------------------------------------------------------------------
# The pieces, against hand computations


def test_temperature_scaling_recovers_a_known_temperature():
    """Logits drawn so that softmax(logits / 3) is the true distribution: the fitted temperature is about 3 and
    lowers the NLL."""
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 2))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = (rng.random(4000) < p[:, 1]).astype(int)
    cal = fit_temperature(true_logits * 3.0, y)  # an overconfident model: every logit three times too large
    assert 2.7 < cal.temperature < 3.3
    assert cal.nll_after < cal.nll_before == pytest.approx(nll(true_logits * 3.0, y))


def test_ece_and_brier_by_hand():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 1, 1])
    # predictions: 0, 1, 0, 1 -> correct, correct, wrong, correct; confidences 0.9, 0.8, 0.6, 0.7 in bins
    # (0.8-0.9]: 0.9 and 0.8 are in different bins of width 0.1: each its own bin
    want = (abs(1 - 0.9) + abs(1 - 0.8) + abs(0 - 0.6) + abs(1 - 0.7)) / 4
    assert expected_calibration_error(probs, y) == pytest.approx(want)
    assert brier_score(probs, y) == pytest.approx(np.mean((probs[:, 1] - y) ** 2))


def test_threshold_for_fpr_is_the_lowest_that_meets_the_target():
    neg = np.array([0.1, 0.2, 0.3, 0.95, 0.9, 0.5, 0.4, 0.6, 0.7, 0.8])  # 10 negatives
    t = threshold_for_fpr(neg, 0.1)  # one false positive allowed: just above the second highest (0.9)
    assert 0.9 < t < 0.9000001 and (neg >= t).mean() == 0.1
    assert (neg >= np.nextafter(t, 0)).mean() > 0.1  # any lower threshold breaks the target
    assert threshold_for_fpr(neg, 0.0) > 0.95 and threshold_for_fpr(neg, 1.0) == 0.0
    pos, neg2 = np.array([0.9, 0.8, 0.3]), np.array([0.85, 0.2])
    # ranked 0.9+ 0.85- 0.8+ 0.3+ 0.2-: precision 1, 1/2, 2/3, 3/4, 3/5 at each cut; the lowest cut that reaches
    # the target wins (the most recall)
    assert threshold_for_precision(pos, neg2, 0.66) == 0.3
    assert threshold_for_precision(pos, neg2, 0.7) == 0.3 and threshold_for_precision(pos, neg2, 0.8) == 0.9


def test_bands_and_the_operating_point():
    op = pick_operating_point(np.array([0.99, 0.9, 0.4]), np.array([0.1, 0.5]), np.linspace(0, 0.8, 100), "spam",
                              target_fpr=0.01, review_fpr=0.05)
    assert op.review_threshold <= op.block_threshold and op.fpr <= 0.01 and op.recall == pytest.approx(2 / 3)
    assert op.picked_on == {"validation_positive": 3, "validation_negative": 2, "calibration_ham": 100}
    assert bands(np.array([0.0, op.review_threshold, op.block_threshold, 1.0]), op.block_threshold,
                 op.review_threshold) == ["allow", "review", "block", "block"]


def test_the_halves_are_disjoint_deterministic_and_keep_duplicates_together(data_dir):
    texts = list(read_split(data_dir / "unused.csv")["Text"])
    calib, report = split_halves(texts)
    assert (calib ^ report).all() and 0.45 < calib.mean() < 0.55
    by_text: dict[str, set[bool]] = {}
    for t, c in zip(texts, calib):
        by_text.setdefault(t, set()).add(bool(c))
    assert all(len(v) == 1 for v in by_text.values())  # a duplicated message never straddles the halves
    assert sum(1 for t in texts if texts.count(t) > 1) > 0  # and the corpus has duplicates to test that with
    assert [in_calibration_half(t) for t in texts[:50]] == list(calib[:50])


# ---------------------------------------------------------------------------------------------------------------
# The protocol on a real (tiny) run: no reported message is used to pick


def test_training_stores_calibration_and_operating_point(tiny_run, data_dir):
    m = json.loads((tiny_run / "run.json").read_text())
    cal, op = m["calibration"], m["operating_point"]
    assert cal["temperature"] > 0 and cal["nll_after"] <= cal["nll_before"] + 1e-9
    assert op["target_fpr"] == 0.005 and op["review_fpr"] == 0.02 and op["positive_label"] == "spam"
    assert 0 <= op["review_threshold"] <= op["block_threshold"] <= 1
    assert op["picked_on"]["calibration_ham"] == 32  # --limit 32 of the calibration half


def test_calibration_ham_is_the_calibration_half_only(tiny_run, tiny_gpt2_dir, data_dir, tmp_path):
    from spamtune.config import TrainArgs
    from spamtune.training import setup
    from spamtune.training.calibrate import calibration_ham

    s = setup(TrainArgs(model=str(tiny_gpt2_dir), limit=None, epochs=1), data_dir, tmp_path)
    picked = calibration_ham(s)
    unused = list(read_split(data_dir / "unused.csv")["Text"])
    _, report = split_halves(unused)
    reported = {t for t, r in zip(unused, report) if r}
    assert len(picked) > 1900 and not set(picked) & reported


def test_evaluate_reports_on_the_report_half_and_picking_ignores_it(tiny_run, data_dir, tmp_path, monkeypatch):
    """The operating point picked by evaluate does not move when every report-half message is made to look like
    spam; the FPR reported on that half does."""
    from spamtune.evaluation import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    normal = evaluate_run(run, data_dir, progress=False, target_fpr=0.01)
    n_unused = len(read_split(data_dir / "unused.csv"))
    real_score = TextClassifier.score

    def poisoned(self, texts, *a, **k):  # only the unused split's scoring: the same text elsewhere is untouched
        scored = real_score(self, texts, *a, **k)
        if len(texts) == n_unused:
            for i, t in enumerate(texts):
                if not in_calibration_half(t):
                    scored.logits[i] = [-20.0, 20.0]
        return scored

    monkeypatch.setattr(TextClassifier, "score", poisoned)
    # the validation split has twins of some unused messages: the report half leaves them out (they pick)
    attacked = evaluate_run(run, data_dir, progress=False, target_fpr=0.01)
    a, b = normal["operating_point"], attacked["operating_point"]
    assert a["block_threshold"] == b["block_threshold"] and a["review_threshold"] == b["review_threshold"]
    assert b["fpr_report_half"] == 1.0 and a["fpr_report_half"] < 1.0
    unused = list(read_split(data_dir / "unused.csv")["Text"])
    validation = set(read_split(data_dir / "validation.csv")["Text"])
    report = [t for t, r in zip(unused, split_halves(unused)[1]) if r and t not in validation]
    assert a["n_report_half"] == len(report) and len(report) < int(split_halves(unused)[1].sum())


def test_evaluate_json_has_the_operating_point_calibration_and_figures(tiny_run, data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["evaluate", str(run), "--data-dir", str(data_dir), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    op, cal = r["operating_point"], r["calibration"]
    for key in ("block_threshold", "review_threshold", "fpr_report_half", "recall", "accuracy", "confusion_matrix",
                "bands_test"):
        assert key in op, key
    assert op["stored"] and sum(op["bands_test"].values()) == 300 and sum(map(sum, op["confusion_matrix"])) == 300
    for key in ("temperature", "ece_before", "ece_after", "brier_before", "brier_after"):
        assert isinstance(cal[key], float), key
    for fig in ("confusion_matrix.png", "reliability.png", "thresholds.png"):
        assert (run / fig).stat().st_size > 5_000, fig
    assert main(["evaluate", str(run), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "at the stored operating point" in out and "report half of the unused ham" in out
    assert "confusion matrix at the operating point" in out and "calibration (test): temperature" in out


def test_evaluate_store_saves_a_new_operating_point(tiny_run, data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = json.loads((run / "run.json").read_text())["operating_point"]
    assert main(["evaluate", str(run), "--data-dir", str(data_dir), "--target-fpr", "0.2", "--store",
                 "--limit", "50"]) == 0
    after = json.loads((run / "run.json").read_text())["operating_point"]
    assert after["target_fpr"] == 0.2 and after["block_threshold"] <= before["block_threshold"]
    assert TextClassifier.load(run).operating_point.block_threshold == after["block_threshold"]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data-dir", str(data_dir), "--store"]) == 2
    assert "--store saves a new operating point" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Shapes: Python, CLI, HTTP


def test_pipeline_and_scikit_learn_shapes(tiny_run):
    clf = TextClassifier.load(tiny_run)
    text = "Free entry in 2 a wkly comp to win FA Cup final tkts"
    one = clf(text)
    assert isinstance(one, list) and len(one) == 1 and set(one[0]) == {"label", "score"}
    many = clf([text, "see you later"])
    assert [set(r) for r in many] == [{"label", "score"}] * 2
    every = clf(text, top_k=None)
    assert [r["label"] for r in every] == sorted(clf.label_names, key=lambda k: -dict(
        (x["label"], x["score"]) for x in every)[k])
    assert sum(r["score"] for r in every) == pytest.approx(1.0, abs=1e-6)
    assert clf([text, "hi there"], top_k=2)[1][0]["score"] >= clf([text, "hi there"], top_k=2)[1][1]["score"]
    probs = clf.predict_proba([text])
    assert one[0]["label"] == clf.predict(text)[0]
    assert one[0]["score"] == pytest.approx(float(probs[0, list(clf.classes_).index(one[0]["label"])]))
    # a single string is one message, never 50 one-character messages
    assert clf.predict_proba(text).shape == (1, 2) and clf.predict(text).shape == (1,)


def test_overrides_per_call(tiny_run):
    clf = TextClassifier.load(tiny_run)
    texts = ["WINNER claim now", "see you later", "call 0800 for a free prize"]
    assert {d.band for d in clf.decide(texts, threshold=0.0)} == {"block"}
    assert {d.band for d in clf.decide(texts, threshold=1.0, review_threshold=0.0)} == {"review"}
    assert {d.label for d in clf.decide(texts, threshold=1.0, review_threshold=0.0)} == {"ham"}
    assert list(clf.predict(texts, threshold=0.0)) == ["spam"] * 3
    with pytest.raises(ValueError, match="review threshold must not be above"):
        clf.decide(texts, threshold=0.3, review_threshold=0.6)


def test_http_predict_and_classify_shapes(server):
    """/predict answers Text Embeddings Inference's shapes (tests/serving/test_tei.py checks them against TEI's own
    schema); /classify spamtune's richer one."""
    from spamtune.serving.loadtest import post_json

    url, _, clf = server
    code, body = post_json(url + "/predict", {"inputs": "WINNER claim now"})
    (d,) = clf.decide(["WINNER claim now"])
    assert code == 200 and [r["label"] for r in body] == sorted(d.scores, key=lambda k: -d.scores[k])
    assert all(abs(r["score"] - d.scores[r["label"]]) < 1e-6 for r in body)
    code, body = post_json(url + "/predict", {"inputs": [["a b c"], ["d e f"]]})
    assert code == 200 and len(body) == 2 and all(len(row) == 2 for row in body)
    code, body = post_json(url + "/classify", {"texts": ["x " * 240]})  # within 500 characters, over max_length
    assert code == 200 and body["results"][0]["truncated"] is True
    assert "probability" not in body["results"][0]  # never "the probability of whichever label was chosen"


def test_serve_default_thresholds_and_health(tiny_run):
    from fastapi.testclient import TestClient

    from spamtune.errors import ConfigError
    from spamtune.serving import ServeOptions, create_app

    clf = TextClassifier.load(tiny_run)
    with TestClient(create_app(clf, options=ServeOptions(threshold=0.0, review_threshold=0.0))) as client:
        h = client.get("/health").json()
        assert h["threshold"] == 0.0 and h["positive_label"] == "spam" and h["run_id"] == clf.run_id
        r = client.post("/classify", json={"texts": ["hello there"]}).json()["results"][0]
        assert r["decision"] == "block"
        r = client.post("/classify", json={"texts": ["hello there"], "threshold": 1.0,
                                           "review_threshold": 1.0}).json()["results"][0]
        assert r["decision"] == "allow"
    with pytest.raises(ConfigError):
        create_app(clf, options=ServeOptions(threshold=0.2, review_threshold=0.5))


def test_cli_shows_bands_and_never_100_percent(tiny_run, capsys):
    from spamtune.cli.args import percent

    assert percent(0.99999988) == "> 99.9 %" and percent(1e-7) == "< 0.1 %" and percent(0.5) == "50.0 %"
    assert main(["classify", str(tiny_run), "--threshold", "0.0", "hello there"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spam   block") and "100.0 %" not in out
    assert main(["classify", str(tiny_run), "--json", "--threshold", "1", "--review-threshold", "0",
                 "hello there"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["decision"] == "review" and rec["label"] == "ham" and rec["review_threshold"] == 0.0


def test_a_run_directory_is_not_a_transformers_directory(tiny_run):
    from transformers import AutoConfig

    assert not (tiny_run / "config.json").exists() and (tiny_run / "run.json").is_file()
    with pytest.raises(Exception):
        AutoConfig.from_pretrained(tiny_run, local_files_only=True)


def test_train_flags_for_the_operating_point_are_checked():
    from spamtune.config import TrainArgs
    from spamtune.errors import ConfigError

    for bad in ({"target_fpr": 0.0}, {"target_fpr": 1.5}, {"review_fpr": 0.001}, {"target_precision": 1.0}):
        with pytest.raises(ConfigError):
            TrainArgs(**bad)


def test_help_texts_say_what_the_flags_do(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps (and hyphen-breaks) the lines
    assert "Nepochsinarowwithoutabetterfull-validationloss" in text
    assert "lrriseslinearlyfrom0to--lr" in text and "--target-fpr" in text
