"""benchmarks/cascade.py end to end on the tiny cascade run: every row, the figures within their ranges, the
decisions the cache rows share, the share reaching the LLM equal to what the bands leave, and a real `spamtune
serve` answering the HTTP column."""

from __future__ import annotations

import re

import numpy as np

from benchmarks import cascade
from spamtune.data import read_split
from spamtune.inference import TextClassifier
from spamtune.runs import RunConfig


def test_the_cascade_table_on_the_tiny_run(cascade_run, data_dir, capsys):
    cascade.main([str(cascade_run), "--data-dir", str(data_dir), "--service", "40", "--no-record"])
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ")
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| configuration")}
    assert list(rows) == ["LLM alone", "LLM + decision cache", "cascade", "cascade + decision cache",
                          "n-gram SVM alone"]
    llm, ngram = rows["LLM alone"], rows["cascade"]
    assert llm[4] == "0 / 0, p=1.00" and llm[5] == "100.0%"  # the reference against itself; all reach it
    b = RunConfig.from_dir(cascade_run).cascade
    texts = list(read_split(data_dir / "test.csv")["Text"])
    m = TextClassifier.load(cascade_run).run.cascade.ngram_margin(texts)
    unsure = ((m >= b.allow_below) & (m < b.block_at)).mean()
    assert float(ngram[5].rstrip("%")) == np.round(100 * unsure, 1)
    for name, cells in rows.items():
        assert re.fullmatch(r"\d+\.\d+ \(\d+\.\dx\)", cells[-3]), cells  # in-process rate and its ratio
        if name != "n-gram SVM alone":
            assert re.fullmatch(r"\d+\.\d+ \(\d+\.\dx\)", cells[-1]), cells  # over HTTP
        if "cache" in name:
            assert cells[1] == "(as without the cache)"
        else:
            assert -1 <= float(cells[1]) <= 1
    # the repeats in the traffic were answered from the cache: fewer messages reached the model with it
    assert float(rows["LLM + decision cache"][-2].rstrip("%")) < 100.0
    assert "traffic" in out and "distinct" in out


def test_the_cascade_over_stored_fold_rows(sms_path, tiny_gpt2_dir, tmp_path):
    """The k-fold table from a real store (the tiny model's spamtune rows on 2 folds): the cascade's decisions are
    the n-gram model's where it is sure and the stored row's elsewhere, so against a weak LLM it wins far more
    messages than it loses."""
    from benchmarks.peers import Setting, Store, run_protocol
    from spamtune.data import prepare
    from spamtune.fsutil import sha256_file

    prepare(tmp_path / "cv", sms_path, folds=2)
    store = Store(tmp_path / "store", {"data_sha256": sha256_file(sms_path), "folds": 2, "limit": None})
    s = Setting(tmp_path, spamtune_model=str(tiny_gpt2_dir),
                spamtune_extra={"epochs": 1, "max_steps": 4, "eval_freq": 2, "eval_iter": 1, "random_init": True})
    run_protocol([tmp_path / "cv" / f"fold{k}" for k in (1, 2)], ["spamtune"], s, None, store)
    text = cascade.folds_table(sms_path, tmp_path / "store", folds=2)
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ") for line in text.splitlines()[2:]}
    assert list(rows) == ["spamtune", "cascade over spamtune", "spamtune_stacked", "cascade over spamtune_stacked"]
    assert rows["spamtune"][4] == "100.0" and rows["spamtune"][5] == "reference"
    reached = float(rows["cascade over spamtune"][4])
    assert 0 < reached < 50  # on the corpus' own distribution the n-gram model is sure of most messages
    wins, losses = map(int, re.match(r"(\d+) / (\d+), p=", rows["cascade over spamtune"][5]).groups())
    assert wins > 10 * max(losses, 1)
    for name, cells in rows.items():
        assert re.fullmatch(r"-?\d\.\d{3} ± \d\.\d{3}", cells[1]), (name, cells[1])  # MCC over 2 folds
