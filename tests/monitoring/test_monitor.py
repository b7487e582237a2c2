"""`spamtune monitor` on two streams through the real CLI (classify --db, feedback, monitor): held-out SMS raise no
alert; the same messages obfuscated (homoglyphs, zero-width characters, leetspeak) raise the input-drift alert."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spamtune.calibration.decisions import split_halves
from spamtune.calibration.drift import Reference
from spamtune.cli import main
from spamtune.data import read_split

HOMOGLYPHS = str.maketrans({"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"})
LEET = str.maketrans({"s": "5", "t": "7", "l": "1"})


def obfuscate(text: str) -> str:
    """What spam that hides from filters looks like: Cyrillic look-alikes, zero-width joins, digits for letters."""
    return "\u200b".join(text.translate(HOMOGLYPHS).translate(LEET).split(" "))


def held_out(data_dir, n_ham: int = 350) -> list[str]:
    """Messages the run never saw, at the corpus's class ratio: report-half unused ham and test spam."""
    unused = list(read_split(data_dir / "unused.csv")["Text"])
    ham = [t for t, r in zip(unused, split_halves(unused)[1]) if r][:n_ham]
    test = read_split(data_dir / "test.csv")
    spam = list(test[test["Label"] == 1]["Text"])[: round(n_ham * 747 / 4827)]
    return ham + spam


@pytest.fixture(scope="module")
def monitor_run(tmp_path_factory, tiny_gpt2_dir, data_dir):
    from spamtune.config import TrainArgs
    from spamtune.training import train_run

    run = tmp_path_factory.mktemp("monitor") / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=400, lr=1e-3), data_dir, run)
    return run


def record_stream(run, texts: list[str], db: str, tmp_path) -> list[str]:
    src = tmp_path / f"stream-{len(texts)}.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / f"out-{abs(hash(db))}.jsonl"
    assert main(["classify", str(run), "--file", str(src), "--db", db, "--out", str(out), "--overwrite"]) == 0
    return [json.loads(x)["id"] for x in out.read_text().splitlines()]


def test_the_run_stores_a_natural_ratio_reference(monitor_run):
    ref = Reference.load(monitor_run)
    assert ref is not None and len(ref.scores) == len(ref.features) >= 400
    assert abs(ref.positive_rate - 747 / 5574) < 1e-9
    assert ref.embeddings is not None and ref.embeddings.shape == (300, 32)
    assert 0.05 < float(np.mean(ref.scores > 0.5)) < 0.6  # mostly ham, like real traffic


def test_held_out_sms_raise_no_alert(monitor_run, data_dir, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'held.sqlite'}"
    ids = record_stream(monitor_run, held_out(data_dir), db, tmp_path)
    assert main(["feedback", "--db", db, ids[0], "spam"]) == 0  # one correction, for the report's table
    code = main(["monitor", "--db", db, "--run", str(monitor_run), "--out", str(tmp_path / "report"), "--json"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0 and summary["alerts"] == [], summary["alerts"]
    drift = summary["drift"]
    assert drift["score_psi"]["n"] == 404 and not drift["input_drift"]["alert"]
    assert not drift["embedding_drift"]["alert"]
    assert summary["corrected"]["n"] == 1 and summary["n"] == 404
    html = (tmp_path / "report" / "monitor.html").read_text()
    assert "No alert." in html and html.count("data:image/png;base64,") == 5


def test_obfuscated_spam_raises_the_input_drift_alert(monitor_run, data_dir, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'shifted.sqlite'}"
    record_stream(monitor_run, [obfuscate(t) for t in held_out(data_dir)], db, tmp_path)
    code = main(["monitor", "--db", db, "--run", str(monitor_run), "--out", str(tmp_path / "report"), "--json"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 1
    fired = {r["feature"] for r in summary["drift"]["input_drift"]["features"] if r["alert"]}
    assert {"non_latin_letter_share", "byte_piece_share"} <= fired
    assert any(a.startswith("input drift") for a in summary["alerts"])
    assert "alert(s)" in (tmp_path / "report" / "monitor.html").read_text()


def test_monitor_without_a_run_reports_and_never_alerts(tmp_path, capsys, monitor_run, data_dir):
    db = f"sqlite:///{tmp_path / 'plain.sqlite'}"
    record_stream(monitor_run, held_out(data_dir, 40), db, tmp_path)
    assert main(["monitor", "--db", db, "--since", "1h", "--out", str(tmp_path / "r")]) == 0
    assert "predictions; 0 alert(s)" in capsys.readouterr().out
    assert main(["monitor", "--db", db, "--since", "yesterday-ish", "--out", str(tmp_path / "r")]) == 2


def test_feedback_cli_errors(monitor_run, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'fb.sqlite'}"
    (rid,) = record_stream(monitor_run, ["win a free prize now"], db, tmp_path)
    capsys.readouterr()
    assert main(["feedback", "--db", db, rid, "eggs"]) == 2
    assert "unknown label 'eggs'" in capsys.readouterr().err
    assert main(["feedback", "--db", db, "0" * 32, "ham"]) == 2
    assert main(["feedback", "--db", db, "xyz", "ham"]) == 2
    assert main(["feedback", "--db", db, rid, "ham"]) == 0
    assert main(["feedback", "--db", db, rid, "spam"]) == 2
    assert "already corrected to 'ham'" in capsys.readouterr().err
    assert main(["feedback", "--db", db, rid, "spam", "--replace"]) == 0
    assert "replaced" in capsys.readouterr().out


@pytest.mark.parametrize(("shift", "expected"), [(False, "nothing to do: no drift alert"),
                                                 (True, "would train on")])
def test_retrain_if_drift_acts_only_on_a_drift_alert(monitor_run, data_dir, tmp_path, capsys, shift, expected):
    """The cron guard: with --if-drift, corrections alone are not enough; the champion's traffic must drift."""
    db = f"sqlite:///{tmp_path / 'drift.sqlite'}"
    texts = held_out(data_dir)
    novel = [f"Sorry, running late, I'll be there about {k} past. Save me a seat x" for k in range(5, 20)]
    ids = record_stream(monitor_run, ([obfuscate(t) for t in texts] if shift else texts) + novel, db, tmp_path)
    for i in ids[-len(novel):]:  # learnable corrections either way (held-out messages never are)
        assert main(["feedback", "--db", db, i, "ham"]) == 0
    capsys.readouterr()
    assert main(["retrain", "--db", db, "--run", str(monitor_run), "--out", str(tmp_path / "new"), "--if-drift",
                 "--min-feedback", "5", "--dry-run"]) == 0
    assert expected in capsys.readouterr().out
    assert not (tmp_path / "new").exists()
