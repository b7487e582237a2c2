"""benchmarks/feedback_loop.py at test size: the whole loop on the tiny model through a real `spamtune serve`
subprocess: stream, corrections over HTTP, review, retrain, compare, promote, the live swap, measured again."""

from __future__ import annotations

import json

from benchmarks.feedback_loop import LoopConfig, render, run_cycle
from spamtune.lifecycle import Registry


def test_the_loop_end_to_end(tiny_run, data_dir, tmp_path):
    cfg = LoopConfig(str(tiny_run), str(data_dir), tmp_path / "loop", correct_share=1.0, per_kind=6,
                     normal_ham=20, normal_spam=5, force=True,
                     retrain_args=["--min-feedback", "1", "--max-share", "0.6", "--epochs", "1"])
    f = run_cycle(cfg)
    assert f["server_errors"] == 0 and f["streamed"] == 4 * 6 + 25 and f["measured"] == 4 * 6
    assert f["misclassified"] > 0 and f["corrections_sent"] == f["misclassified"]  # every mistake corrected
    r = f["retrain"]
    assert r["status"] == "trained" and r["version"] == 2 and r["promoted"]
    c = r["corrections"]
    assert c["train"] + c["validation"] + c["holdout"] + sum(c["left_out"].values()) == f["corrections_sent"]
    reg = Registry(tmp_path / "loop" / "registry")
    assert reg.current() == 2 and f["registry_version"] == 2
    assert f["before_run_id"] == reg.version(1).run_id and f["after_run_id"] == reg.version(2).run_id  # swapped
    compare = json.loads((reg.version_dir(2) / "compare.json").read_text())
    assert compare["forced"] == (not compare["promote"]) and r["comparison"]["forced"] == compare["forced"]
    for side in ("before", "after"):
        assert set(f[side]) == {"new_number_scam", "parcel_scam", "family_ham", "delivery_ham"}
        assert all(0 <= v["blocked"] <= v["flagged"] <= 1 and v["n"] == 6 for v in f[side].values())
    table = render(f)
    assert "\"hi mum, new number\" scams blocked" in table and "0 failed requests" in table
