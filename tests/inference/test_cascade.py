"""The cascade: the bands' protocol by hand and from the run's own held-out margins, the n-gram model as
scikit-learn fits it, decisions identical to the model's wherever the cascade is unsure (and with --no-cascade
everywhere), a remembered correction still reached, the CLI, evaluate, the ONNX runtime, and bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from spamtune.calibration.decisions import in_calibration_half, pick_cascade_bands
from spamtune.calibration.stacking import CASCADE_FILE, CASCADE_FOLDS, fit_ngram_model
from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.errors import CheckpointError, ConfigError
from spamtune.inference import TextClassifier
from spamtune.inference.memory import MemoryCheck
from spamtune.runs import RunConfig
from tests.conftest import CASCADE_LIMIT as LIMIT
from tests.monitoring.test_memory import Source, entry


def test_the_bands_are_the_widest_within_the_budgets():
    spam = np.array([-3.0, -1.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    ham = np.array([-5.0, -4.0, -3.5, -2.0, -1.5, -1.2, -0.5, 0.2, 0.8, 2.5])
    b = pick_cascade_bands(spam, ham, spam_allowed=0.1, ham_blocked=0.1)  # one of ten on each side
    assert b.allow_below == -1.0 and (spam < b.allow_below).sum() == 1  # -3 lies below; -1 itself does not
    assert b.block_at == np.nextafter(0.8, np.inf) and (ham >= b.block_at).sum() == 1  # only 2.5
    assert b.picked_on == {"spam": 10, "ham": 10}
    held = np.concatenate([spam, ham])
    assert b.sure == pytest.approx(((held < -1.0) | (held >= b.block_at)).mean())
    strict = pick_cascade_bands(spam, ham, spam_allowed=0.01, ham_blocked=0.01)  # none may be wrong
    assert strict.allow_below == -3.0 and strict.block_at == np.nextafter(2.5, np.inf)
    crossing = pick_cascade_bands(np.array([-9.0, 9.0]), np.array([-9.0, 9.0]), 0.6, 0.6)
    assert crossing.allow_below <= crossing.block_at  # budgets so loose they would cross: one meets the other
    with pytest.raises(ValueError, match="held-out spam and ham"):
        pick_cascade_bands(spam[:0], ham)


def held_out(data_dir):
    """The run's held-out messages as training picked its bands from them: the validation split and the
    calibration half of the unused ham (limited as the run was)."""
    val = read_split(data_dir / "validation.csv")[:LIMIT]
    unused = read_split(data_dir / "unused.csv")
    ham = [t for t, y in zip(unused["Text"], unused["Label"]) if y == 0 and in_calibration_half(t)][:LIMIT]
    return [*val["Text"], *ham], np.concatenate([val["Label"].to_numpy(), np.zeros(len(ham), dtype=int)])


def test_training_stores_the_model_and_the_bands_its_held_out_margins_give(cascade_run, data_dir):
    from sklearn.model_selection import StratifiedKFold

    run = RunConfig.from_dir(cascade_run)
    assert run.cascade is not None and (cascade_run / CASCADE_FILE).is_file()
    clf = TextClassifier.load(cascade_run)
    train = read_split(data_dir / "train.csv")[:LIMIT]
    texts, y = list(train["Text"]), train["Label"].to_numpy()
    # the stored model is the n-gram SVM fitted on the training split (stacking's test checks it against
    # scikit-learn's own pipeline)
    reference = fit_ngram_model(texts, y, "nfkc")
    probe = list(read_split(data_dir / "test.csv")["Text"][:50])
    np.testing.assert_allclose(clf.run.cascade.ngram_margin(probe), reference.ngram_margin(probe), atol=1e-5)
    # the bands from out-of-fold margins of the training split plus the validation and calibration ham margins
    oof = np.zeros(len(texts))
    for fit_rows, rows in StratifiedKFold(CASCADE_FOLDS, shuffle=True, random_state=123).split(texts, y):
        oof[rows] = fit_ngram_model([texts[i] for i in fit_rows], y[fit_rows], "nfkc").ngram_margin(
            [texts[i] for i in rows])
    held_texts, held_y = held_out(data_dir)
    margins = np.concatenate([oof, reference.ngram_margin(held_texts)])
    labels = np.concatenate([y, held_y])
    b = run.cascade
    assert b.picked_on == {"spam": int((labels == 1).sum()), "ham": int((labels == 0).sum())}
    assert (margins[labels == 1] < b.allow_below).sum() <= b.spam_allowed * b.picked_on["spam"]
    assert (margins[labels == 0] >= b.block_at).sum() <= b.ham_blocked * b.picked_on["ham"]
    expected = pick_cascade_bands(margins[labels == 1], margins[labels == 0], b.spam_allowed, b.ham_blocked)
    assert b.allow_below == pytest.approx(expected.allow_below, abs=1e-5)
    assert b.block_at == pytest.approx(expected.block_at, abs=1e-5)


def test_sure_messages_skip_the_model_and_the_rest_decide_as_without_the_cascade(cascade_run, data_dir):
    test = read_split(data_dir / "test.csv")
    unused = read_split(data_dir / "unused.csv")
    texts = [*test["Text"], *unused["Text"][:300]]
    cascade, full = TextClassifier.load(cascade_run), TextClassifier.load(cascade_run, cascade=False)
    assert cascade.pipeline.names == ["cascade", "model"] and full.pipeline.names == ["model"]
    b = RunConfig.from_dir(cascade_run).cascade
    margins = cascade.run.cascade.ngram_margin(texts)
    with_, without = cascade.decide(texts), full.decide(texts)
    sure = (margins < b.allow_below) | (margins >= b.block_at)
    assert 0 < sure.sum() < len(texts)  # the bands decide some, not all
    for d, w, m, s in zip(with_, without, margins, sure):
        first = d.checks[0]
        assert first.check == "cascade" and first.score == pytest.approx(m, abs=1e-9)
        if s:
            label = "spam" if m >= b.block_at else "ham"
            assert first.final and first.label == label == d.label and [v.check for v in d.checks] == ["cascade"]
            assert d.band == ("block" if label == "spam" else "allow") and "n-gram model sure" in first.reason
        else:  # the model decided, exactly as without the cascade
            assert not first.final and first.label is None and "unsure" in first.reason
            assert [v.check for v in d.checks] == ["cascade", "model"]
            # (in other batches: padded to other widths, equal to float rounding)
            assert (d.label, d.band) == (w.label, w.band)
            assert d.scores == pytest.approx(w.scores, abs=1e-5)
    assert all([v.check for v in w.checks] == ["model"] for w in without)
    # the explanation of a cascade verdict: the n-grams behind its margin, exactly
    (explained,) = cascade.decide([texts[int(np.argmax(sure))]], explain=True)
    grams = explained.checks[0].evidence["ngrams"]
    assert grams and explained.checks[0].evidence["method"].startswith("exact")


def test_a_message_like_a_remembered_correction_goes_on_to_the_memory(cascade_run, data_dir):
    from spamtune.calibration.decisions import MemoryCalibration

    clf = TextClassifier.load(cascade_run)
    b = RunConfig.from_dir(cascade_run).cascade
    unused = read_split(data_dir / "unused.csv")
    # the report half: messages the memory's guard (validation, calibration ham) does not hold
    texts = [t for t in unused["Text"][:600] if not in_calibration_half(t)]
    margins = clf.run.cascade.ngram_margin(texts)
    sure = [t for t, m in zip(texts, margins) if m < b.allow_below]  # the cascade would allow them
    cal = MemoryCalibration.load(cascade_run)
    assert cal is not None
    # no guard: the tiny model's vectors lie so close together that held-out ham would narrow the entry to nothing
    cal = dataclasses.replace(cal, guard_vectors=cal.guard_vectors[:0], guard_labels=cal.guard_labels[:0])
    memory = MemoryCheck(Source([entry("p1", sure[0], "spam")]), clf, cal)  # an operator: it was spam
    clf.pipeline.put_after_model(memory)
    assert clf.pipeline.names == ["cascade", "model", "memory"]
    repeat, unrelated = clf.decide([sure[0], sure[-1]])
    assert [e.status for e in memory.entries] == ["active"]
    assert [v.check for v in repeat.checks] == ["cascade", "model", "memory"]
    assert "like a remembered correction" in repeat.checks[0].reason and not repeat.checks[0].final
    assert repeat.label == "spam" and repeat.checks[-1].final
    assert [v.check for v in unrelated.checks] == ["cascade"] and unrelated.label == "ham"


def test_the_cli_and_evaluate(cascade_run, data_dir, tmp_path, capsys):
    test = read_split(data_dir / "test.csv")
    margins = TextClassifier.load(cascade_run).run.cascade.ngram_margin(list(test["Text"]))
    b = RunConfig.from_dir(cascade_run).cascade
    sure = (margins < b.allow_below) | (margins >= b.block_at)
    message = str(test["Text"][int(np.argmax(sure))])
    assert main(["classify", str(cascade_run), message, "--explain"]) == 0
    out = capsys.readouterr().out
    assert "cascade" in out and "n-gram model sure" in out and "  model " not in out
    assert main(["classify", str(cascade_run), message, "--explain", "--no-cascade"]) == 0
    assert "cascade" not in capsys.readouterr().out
    assert main(["evaluate", str(cascade_run), "--data-dir", str(data_dir), "--limit", "120", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["reached_model"]["test"] == pytest.approx(1 - sure[:120].mean())
    assert main(["evaluate", str(cascade_run), "--data-dir", str(data_dir), "--limit", "120", "--json",
                 "--no-cascade"]) == 0
    assert "reached_model" not in json.loads(capsys.readouterr().out)


def test_the_onnx_runtime_decides_with_the_cascade(cascade_run, data_dir, tmp_path):
    out = tmp_path / "onnx"
    assert main(["export", str(cascade_run), "--format", "onnx", "--out", str(out)]) == 0
    assert (out / CASCADE_FILE).is_file()
    texts = list(read_split(data_dir / "test.csv")["Text"][:60])
    torch_, onnx = TextClassifier.load(cascade_run), TextClassifier.load(out, runtime="onnx")
    assert onnx.pipeline.names == ["cascade", "model"]
    for a, b in zip(torch_.decide(texts), onnx.decide(texts)):
        assert [v.check for v in a.checks] == [v.check for v in b.checks] and a.label == b.label


def test_bad_input(cascade_run, data_dir, tmp_path, capsys):
    with pytest.raises(ConfigError, match="--cascade-spam-allowed must be between 0 and 1"):
        TrainArgs(cascade="ngrams", cascade_spam_allowed=2.0)
    with pytest.raises(SystemExit) as e:  # argparse's own refusal
        main(["train", "--data-dir", str(data_dir), "--out", str(tmp_path / "x"), "--cascade", "bayes"])
    assert e.value.code == 2 and not (tmp_path / "x").exists()
    assert "invalid choice" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(cascade_run, broken)
    (broken / CASCADE_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match=CASCADE_FILE):
        TextClassifier.load(broken)
    (broken / CASCADE_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"--cascade ngrams but {CASCADE_FILE} is missing"):
        TextClassifier.load(broken)
    assert main(["classify", str(broken), "hello"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spamtune: error:") and "is missing" in err and len(err.splitlines()) == 1
    # a manifest whose bands are not numbers: one error naming the file
    manifest = json.loads((broken / "run.json").read_text())
    manifest["cascade"] = {**manifest["cascade"], "allow_below": "low"}
    (broken / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="run.json"):
        RunConfig.from_dir(broken)
