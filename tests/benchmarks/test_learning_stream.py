"""benchmarks/learning_stream.py end to end on the tiny run: every learning row, the comparison's decision, the
latency through a real `spamtune serve` and `spamtune feedback`, and the figures within their ranges."""

from __future__ import annotations

import re

from benchmarks import learning_stream


def test_the_stream_table_on_the_tiny_run(tiny_run, data_dir, capsys):
    learning_stream.main([str(tiny_run), "--data-dir", str(data_dir), "--ks", "1,3", "--retrain-ks", "1",
                          "--report-ham", "60", "--no-record"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| learning")]
    assert [r.split(" | ")[0:2] for r in rows] == [["| model", "0"], ["| memory", "1"], ["| memory", "3"],
                                                   ["| retrain (today)", "1"], ["| retrain (boost)", "1"],
                                                   ["| retrain + memory", "1"]]
    for r in rows:
        cells = r.strip("| ").split(" | ")
        for cell in cells[2:7]:  # per style, in percent: later recall (the run's) / new templates / look-alike FPR
            m = re.fullmatch(r"(\d+|nan) \((\d+|nan)\) / (\d+) / (\d+\.\d)", cell)
            assert m, cell
            assert all(0 <= float(x) <= 100 for x in m.groups() if x != "nan")
        assert re.fullmatch(r"\d+\.\d\d %", cells[7])
    assert rows[3].rstrip(" |").split(" | ")[-1] in ("promote", "keep")
    assert "report half of the unused ham: 60 messages" in out
    assert re.search(r"10,000 remembered messages \(numpy, exact\): \d+\.\d\d ms", out)
    assert re.search(r"decides by the memory: (\d+\.\d\d s \(.+\)|none was within a report's reach)\.", out)
