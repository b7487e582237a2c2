"""Robustness: the perturbations are realistic and deterministic, `--normalize nfkc` undoes the ones that only
change code points and is stored in and applied by the run everywhere it reads text, `evaluate --perturb` reports
per perturbation, `train --augment` adds perturbed copies."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.data.perturb import PERTURBATIONS, augment, perturb
from spamtune.errors import ConfigError
from spamtune.inference import TextClassifier, load_run
from spamtune.normalize import NormalizingTokenizer, normalize_text
from spamtune.runs import RunConfig
from spamtune.training import KeepSetup, train_run

SPAM = "FREE entry! Win a £1000 prize. Call 08712460324 or visit www.prizes-now.com/claim today"


def test_every_perturbation_changes_spam_deterministically_and_keeps_the_rest():
    for name in PERTURBATIONS:
        out = perturb(SPAM, name, seed=1)
        assert out != SPAM, name
        assert perturb(SPAM, name, seed=1) == out and perturb(SPAM, name, seed=2) != out or name == "url_disguise"
    assert perturb("see you at 5", "url_disguise") == "see you at 5"  # needs a link
    assert perturb("see you at 5", "phone_disguise") == "see you at 5"  # needs a number
    assert "08712460324" not in perturb(SPAM, "phone_disguise") and "www.prizes-now.com" not in perturb(
        SPAM, "url_disguise")
    assert perturb(SPAM, "case").lower() == SPAM.lower()
    assert perturb(SPAM, "spaced").replace(" ", "").replace(".", "").replace("-", "") == \
        SPAM.replace(" ", "").replace(".", "").replace("-", "")


def test_nfkc_normalization_undoes_code_point_tricks_and_leaves_real_text():
    for name in ("homoglyphs", "zero_width"):
        assert normalize_text(perturb(SPAM, name), "nfkc") == SPAM, name
    assert normalize_text("ＦＲＥＥ ｐｒｉｚｅ", "nfkc") == "FREE prize"  # fullwidth
    assert normalize_text("\u0440\u0430\u0443 now please", "nfkc") == "pay now please"  # a word of look-alikes
    russian = "Привет, это мой новый номер, напиши мне"
    assert normalize_text(russian, "nfkc") == russian  # a Cyrillic message is not folded into Latin
    assert normalize_text("café £5 naïve", "nfkc") == "café £5 naïve"
    assert normalize_text("fr\u200bee", "none") == "fr\u200bee"
    # leetspeak, spacing and case are left to the model (digits are too often real)
    assert normalize_text("fr33 pr1ze", "nfkc") == "fr33 pr1ze"


def test_the_run_stores_its_normalization_and_every_reader_applies_it(tiny_gpt2_dir, data_dir, tmp_path):
    run = tmp_path / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=32, eval_freq=2, eval_iter=1), data_dir, run)
    assert RunConfig.from_dir(run).normalize == "nfkc"  # the default for new runs
    loaded = load_run(run)
    assert isinstance(loaded.tokenizer, NormalizingTokenizer)
    clf = TextClassifier.load(run)
    tricked = perturb(SPAM, "homoglyphs") + " " + perturb("claim your reward", "zero_width")
    clean = SPAM + " claim your reward"
    assert clf.predict_proba([tricked])[0].tolist() == pytest.approx(clf.predict_proba([clean])[0].tolist(), abs=1e-6)
    # a run from before normalization (no field in run.json) reads raw text, as it was trained
    manifest = json.loads((run / "run.json").read_text())
    del manifest["normalize"]
    (run / "run.json").write_text(json.dumps(manifest))
    assert RunConfig.from_dir(run).normalize == "none"
    raw = TextClassifier.load(run)
    assert not isinstance(raw.run.tokenizer, NormalizingTokenizer)
    assert raw.predict_proba([tricked])[0].tolist() != pytest.approx(raw.predict_proba([clean])[0].tolist(), abs=1e-6)


def test_evaluate_perturb_reports_every_perturbation(tiny_run, data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["evaluate", str(run), "--data-dir", str(data_dir), "--no-unused", "--limit", "60",
                 "--perturb", "homoglyphs,url_disguise"]) == 0
    out = capsys.readouterr().out
    assert "robustness on test" in out and "homoglyphs" in out and "url_disguise" in out
    rob = json.loads((run / "eval-limit60.json").read_text())["robustness"]
    assert set(rob) == {"clean", "homoglyphs", "url_disguise"}
    test = read_split(data_dir / "test.csv")[:60]
    n_spam = int((test["Label"] == 1).sum())
    assert all(m["n_spam"] == n_spam for m in rob.values())
    assert rob["clean"]["changed"] == 0 and rob["homoglyphs"]["changed"] == n_spam
    assert 0 < rob["url_disguise"]["changed"] < n_spam  # only the spam with a link
    clean_eval = json.loads((run / "eval-limit60.json").read_text())
    assert rob["clean"]["accuracy"] == pytest.approx(clean_eval["accuracy"]["test"])
    assert main(["evaluate", str(run), "--data-dir", str(data_dir), "--perturb", "rot13"]) == 2
    assert "unknown rot13" in capsys.readouterr().err


def test_augment_adds_perturbed_copies(tiny_gpt2_dir, data_dir, tmp_path):
    df = pd.DataFrame({"Label": [0, 1], "Text": ["see you at the station at six", SPAM]})
    grown = augment(df, 2, seed=0)
    assert len(grown) > 2 and grown[:2].equals(df) and set(grown["Label"]) == {0, 1}
    assert augment(df, 2, seed=0).equals(grown)
    assert not grown["Text"][2:].isin(df["Text"]).any()
    args = TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=16, eval_freq=2, eval_iter=1, augment=1)
    kept = KeepSetup()
    metrics = train_run(args, data_dir, tmp_path / "aug", callbacks=[kept])
    assert kept.s is not None and 16 < len(kept.s.data.train_eval_loader.dataset) <= 32
    assert metrics["examples_seen"] > 16
    with pytest.raises(ConfigError, match="--augment"):
        TrainArgs(augment=21)
