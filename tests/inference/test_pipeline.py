"""The decision pipeline: decisions identical to the path before it (the model's logits, stacked with the n-gram
margin, the temperature, the operating point, the bands) on every test message and the unused ham; each check's
verdict; explanations that are exact (the n-grams), complete (integrated gradients) and never fail a decision."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from spamtune.calibration.decisions import bands
from spamtune.classifier import batched_logits
from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.inference import Decision, TextClassifier
from spamtune.inference.explain import WordAttributor, token_words
from spamtune.inference.pipeline import ExplanationUnavailable, format_checks
from spamtune.training import train_run


@pytest.fixture(scope="module")
def stacked_run(tmp_path_factory, tiny_gpt2_dir, data_dir):
    run = tmp_path_factory.mktemp("pipeline") / "stacked"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=64, lr=1e-3, stack="ngrams"), data_dir, run)
    return run


def reference_decisions(clf: TextClassifier, texts: list[str]) -> list[dict]:
    """The path before the pipeline, from its parts: the module's logits (stacked), the temperature, the stored
    operating point, the bands."""
    encoded, truncated = clf._encode(texts)
    width = clf.max_length if clf.run.run_config.pooling == "last" else None
    logits = batched_logits(clf.module, encoded, clf.tokenizer.pad_id, 16, width)
    if clf.run.stack is not None:
        logits = clf.run.stack.combine(logits, [t[: clf.char_cap] for t in texts])
    z = logits.astype(np.float32) / np.float32(clf.temperature)
    probs = torch.softmax(torch.from_numpy(z), dim=-1).numpy()
    op = clf.operating_point
    block, review = op.block_threshold, min(op.review_threshold, op.block_threshold)
    ids = (probs[:, 1] >= block).astype(int)
    return [{"label": clf.label_names[k], "scores": dict(zip(clf.label_names, map(float, p))), "decision": b,
             "truncated": t} for p, k, b, t in zip(probs, ids, bands(probs[:, 1], block, review), truncated)]


@pytest.mark.parametrize("which", ["plain", "stacked"])
def test_decisions_identical_to_the_path_before_on_test_and_unused_ham(which, tiny_run, stacked_run, data_dir):
    clf = TextClassifier.load(tiny_run if which == "plain" else stacked_run)
    texts = list(pd.read_csv(data_dir / "test.csv")["Text"]) + list(pd.read_csv(data_dir / "unused.csv")["Text"])
    assert len(texts) > 4000
    got = clf.decide(texts)
    want = reference_decisions(clf, texts)
    assert [{"label": d.label, "scores": d.scores, "decision": d.band, "truncated": d.truncated} for d in got] \
        == want  # exactly: same floats, same labels, same bands
    assert [[v.check for v in d.checks] for d in got] == [["model", "ngrams"] if which == "stacked" else ["model"]] \
        * len(texts)
    # the other entry points read the same pipeline (on the same messages: batch mates set the padding width)
    some = texts[:50]
    want = reference_decisions(clf, some)
    np.testing.assert_array_equal(clf.predict(some), [w["label"] for w in want])
    np.testing.assert_array_equal(clf.predict_proba(some)[:, 1], [w["scores"]["spam"] for w in want])


def test_verdicts_say_what_each_check_saw(stacked_run):
    clf = TextClassifier.load(stacked_run)
    texts = ["WINNER!! Claim your £900 prize now, call 09061701461", "see you at six"]
    model_only = clf.scores_from_logits(clf.model_logits(texts)[0], calibrated=False)  # stacked: temperature 1
    margins = clf.run.stack.ngram_margin(texts)
    for d, p, m in zip(clf.decide(texts), model_only, margins):
        model, ngrams = d.checks
        assert model.score == pytest.approx(float(p[1])) and model.label == clf.label_names[int(p.argmax())]
        assert f"P(spam) {p[1]:.3f}" in model.reason
        assert ngrams.score == pytest.approx(float(m)) and ngrams.label == ("spam" if m > 0 else "ham")
        assert not model.final and not ngrams.final and model.evidence == {} == ngrams.evidence
        assert Decision.from_json(json.loads(json.dumps(d.to_json()))) == d


def test_ngram_contributions_are_exact(stacked_run):
    stack = TextClassifier.load(stacked_run).run.stack.ngrams
    for text in ("WINNER!! Claim your £900 prize now", "Ünïcödé façade – naïve café", "ok"):
        parts = stack.contributions(text)
        assert sum(c for _, c in parts) + stack.intercept == pytest.approx(float(stack.ngram_margin([text])[0]),
                                                                         abs=1e-9)
        assert any(g.endswith("(words)") for g, _ in parts) and any(g.endswith("(chars)") for g, _ in parts)


def test_word_attributions_are_complete(tiny_run):
    """Integrated gradients' completeness: the attributions sum to the label's log-odds for the message minus for
    the baseline."""
    clf = TextClassifier.load(tiny_run)
    text = "URGENT! You have won a £2000 prize. Call 09058095201 now"
    attributor = WordAttributor(clf, clf.temperature, n_steps=200, method="integrated_gradients")
    words = attributor.words(text, target=1)
    assert {w for w, _ in words} == set(text.split())
    gap = attributor.path_gap(text, 1)
    assert abs(gap) > 1e-3  # the message and the baseline differ: the test is not 0 == 0
    assert sum(a for _, a in words) == pytest.approx(gap, abs=2e-3 + 0.02 * abs(gap))


def test_token_words_keeps_multibyte_characters_whole(tiny_run):
    tok = TextClassifier.load(tiny_run).tokenizer
    text = "naïve café £2000 🎉 ok"
    ids = tok.encode(text)
    spelled, owner = token_words(tok, ids)
    assert spelled == text
    words = text.split()
    pieces = ["".join(tok.decode([i]) for i, w in zip(ids, owner) if w == k) for k in range(len(words))]
    assert [p.strip() for p in pieces][:3] == words[:3]  # the bytes of "ï", "é", "£" land in their own words
    assert set(owner) - {None} == set(range(len(words)))


def test_explanations_never_fail_a_decision(stacked_run, monkeypatch):
    clf = TextClassifier.load(stacked_run)
    texts = ["WINNER claim your prize", "see you later", "free entry now"]
    plain = clf.decide(texts)
    explained = clf.decide(texts, explain=True)
    assert [(d.label, d.scores) for d in explained] == [(d.label, d.scores) for d in plain]
    assert all(v.evidence.get("words") or v.evidence.get("ngrams") for d in explained for v in d.checks)
    out_of_time = clf.decide(texts, explain=True, explain_budget_s=0)
    assert all(v.evidence == {"missing": "the time budget ran out"} and "explanation missing" in v.reason
               for d in out_of_time for v in d.checks)

    def broken(self, text, target):
        raise RuntimeError("boom")

    monkeypatch.setattr(WordAttributor, "attributions", broken)
    failed = clf.decide(texts, explain=True)
    assert [d.label for d in failed] == [d.label for d in plain]
    assert all(d.checks[0].evidence == {"missing": "RuntimeError"} and d.checks[1].evidence.get("ngrams")
               for d in failed)


def test_occlusion_explains_an_int8_model_and_gradients_say_they_cannot(tiny_run):
    clf = TextClassifier.load(tiny_run, quantize="int8")
    (d,) = clf.decide(["WINNER claim now"], explain=True)  # occlusion, the default: forward passes only
    assert {w for w, _ in d.checks[0].evidence["words"]} == {"WINNER", "claim", "now"}
    assert "occlusion" in d.checks[0].evidence["method"]
    with pytest.raises(ExplanationUnavailable, match="no gradients"):
        WordAttributor(clf, method="integrated_gradients")


def test_occlusion_is_what_removing_each_word_costs(tiny_run):
    """Occlusion's attribution of a word is the label's log-odds minus the same with the word's tokens replaced by
    pads; the log-odds are log P / (1 - P)."""
    clf = TextClassifier.load(tiny_run)
    text = "free entry in a weekly competition"
    attributor = WordAttributor(clf, clf.temperature)
    got = dict(attributor.attributions(text, target=1))
    (ids,) = clf.encode([text])
    _, owner = token_words(clf.tokenizer, ids)
    lengths = torch.tensor([len(ids)])
    with torch.no_grad():
        p = float(attributor._forward(torch.tensor([ids]), lengths)[0, 1])
        prob = float(clf.predict_proba([text])[0, 1])
        assert p == pytest.approx(np.log(prob / (1 - prob)), abs=1e-4)
        for k, word in enumerate(text.split()):
            masked = [clf.tokenizer.pad_id if w == k else t for t, w in zip(ids, owner)]
            assert got[word] == pytest.approx(p - float(attributor._forward(torch.tensor([masked]), lengths)[0, 1]),
                                              abs=1e-6)


def test_classify_explain_prints_the_checks(stacked_run, capsys):
    assert main(["classify", str(stacked_run), "--explain", "WINNER!! Claim your £900 prize now"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(("spam", "ham")) and out[1].lstrip().startswith("model")
    assert any(line.strip().startswith("words towards") for line in out)
    assert any(line.strip().startswith("ngrams towards") for line in out)
    assert main(["classify", str(stacked_run), "--json", "see you at six"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert [c["check"] for c in row["checks"]] == ["model", "ngrams"]
    (d,) = TextClassifier.load(stacked_run).decide(["see you at six"])
    assert format_checks(d.checks)[0].split()[:2] == ["model", d.checks[0].label]


def test_decision_band_is_decision_on_the_wire():
    """In Python the band is `Decision.band`; the HTTP results, `classify --format jsonl` and the Ray rows keep
    the field name they have always had, `decision`, and read back to the same Decision."""
    from spamtune.inference.pipeline import Verdict

    d = Decision(label="spam", score=0.97, scores={"ham": 0.03, "spam": 0.97}, band="block", threshold=0.9,
                 review_threshold=0.5, truncated=False, checks=[Verdict("model", "spam", 0.97, "P(spam) 97 %")])
    wire = d.to_json()
    assert wire["decision"] == "block" and "band" not in wire
    assert list(wire)[:4] == ["label", "score", "scores", "decision"]
    assert Decision.from_json(json.loads(json.dumps(wire))) == d
