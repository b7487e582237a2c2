"""benchmarks/batching.py end to end on the tiny cascade run: a row per request size and pass cost, the passes
and the padding each cut costs as length_batches computes them, the same logits as one pass per request, and the
module's pass cost left as it was."""

from __future__ import annotations

from benchmarks import batching
from spamtune.batching import PASS_COST_TOKENS


def test_the_batching_table_on_the_tiny_run(cascade_run, data_dir, capsys):
    before = dict(PASS_COST_TOKENS)
    batching.main([str(cascade_run), "--data-dir", str(data_dir), "--messages", "64", "--costs", "0,32",
                   "--no-record"])
    assert PASS_COST_TOKENS == before
    out = capsys.readouterr().out
    rows = [line.strip("| ").split(" | ") for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| request")]
    assert [(r[0], r[1]) for r in rows] == [
        ("32", "one pass"), ("32", "cost 0"), ("32", "cost 32 (the default)"),
        ("6", "one pass"), ("6", "cost 0"), ("6", "cost 32 (the default)")]
    for size, name, rate, ratio, passes, padded, diff in rows:
        assert float(rate) > 0 and ratio.endswith("x") and float(diff) < 1e-4
        if name == "one pass":
            assert ratio == "1.00x" and float(passes) == 1.0 and float(padded) >= 1.0
    one, free, default = (float(r[5]) for r in rows[:3])
    assert free == 1.0 and one > default >= free  # a free pass cuts at every length: no padding at all
    assert float(rows[1][4]) > float(rows[2][4]) > 1.0  # and needs the most passes
