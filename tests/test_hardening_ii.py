"""The second outside review's remaining CLI classes: a locked store stops `classify --db` in one line before any
work and never prints a message; `monitor --since` out of range; `prepare` with one column for text and label.
(The service's classes are in tests/serving/test_access.py, the store's in tests/monitoring/test_store.py, the
lifecycle's in tests/lifecycle, ONNX's in tests/export/test_onnx_export.py.)"""

from __future__ import annotations

import sqlite3

from spamtune.cli import main
from spamtune.monitoring.store import PredictionStore
from tests.test_hardening import one_line_error


def test_classify_with_a_locked_store_is_one_line_and_prints_no_message(tiny_run, tmp_path, capsys):
    db = tmp_path / "locked.sqlite"
    PredictionStore.open(f"sqlite:///{db}").close()
    src = tmp_path / "in.txt"
    src.write_text("MY SECRET MESSAGE one\nsecond\n")
    lock = sqlite3.connect(db, timeout=0)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for argv in (["MY SECRET MESSAGE arg"], ["--file", str(src), "--out", str(tmp_path / "out.csv")]):
            err = one_line_error(capsys, main(["classify", str(tiny_run), "--db", f"sqlite:///{db}", *argv]))
            assert "database is locked" in err and "SECRET" not in err
    finally:
        lock.rollback()
        lock.close()
    assert not (tmp_path / "out.csv").exists()  # nothing half-written; stopped before any message was scored
    assert main(["classify", str(tiny_run), "--db", f"sqlite:///{db}", "--file", str(src), "--out",
                 str(tmp_path / "out.csv")]) == 0  # unlocked, the same command works


def test_monitor_since_out_of_range_is_one_line(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'p.sqlite'}"
    PredictionStore.open(db).close()
    for since in ("99999999999d", "9999999999999999999999w", "0001-01-01T00:00:00-23:59"):
        code = main(["monitor", "--db", db, "--since", since, "--out", str(tmp_path / "m")])
        err = capsys.readouterr().err
        assert code in (0, 2) and "Traceback" not in err, (since, err)
        if code == 2:
            assert err.count("\n") == 1 and "--since" in err


def test_prepare_with_one_column_for_text_and_label_is_one_line(tmp_path, capsys):
    src = tmp_path / "d.csv"
    src.write_text("a,b\nhello,ham\nWIN cash,spam\n")
    err = one_line_error(capsys, main(["prepare", "--data", str(src), "--text-col", "a", "--label-col", "a",
                                       "--out", str(tmp_path / "out")]))
    assert "must be two columns" in err and not (tmp_path / "out").exists()
