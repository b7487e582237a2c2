"""benchmarks/evaluate_reuse.py on the tiny GPT-2: three evaluations of one fresh run agree, and the later ones
score only what the memo does not hold."""

from __future__ import annotations

from benchmarks.evaluate_reuse import main, same_figures, table


def test_evaluations_after_train_agree_and_score_less(data_dir, tiny_gpt2_dir, capsys):
    m = main(["--data-dir", str(data_dir), "--no-record", "--",
              "--model", str(tiny_gpt2_dir), "--epochs", "1", "--limit", "32"])
    (_, rescored), (_, first), (_, second) = m["rows"].values()
    n = sum(rescored["n"].values())
    assert n == 5574 and "model_logits" not in rescored
    assert same_figures(first, rescored) and same_figures(second, rescored)
    # training left the first 32 of train and validation and 32 calibration ham: at least 64 messages not rescored
    assert first["model_logits"]["reused"] >= 64
    assert first["model_logits"]["scored"] <= n - first["model_logits"]["reused"]
    assert second["model_logits"] == {"reused": n, "scored": 0}
    assert list(m["startup"]) == ["with a new cache directory", "with the one training filled"]
    assert all(seconds > 0 for seconds in m["startup"].values())
    out = capsys.readouterr().out
    assert table(m) in out and "| NO |" not in out
