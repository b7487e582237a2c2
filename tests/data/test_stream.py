"""Streaming `prepare` (a CSV too large to hold): exact split sizes, every row once, seeded, checked before
anything is written, and peak memory that does not grow with the file; streaming `evaluate` gives the same report
whatever the block size."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest

from spamtune.cli import main
from spamtune.data import parse_sms_collection, prepare, read_split
from spamtune.data.split import split_sizes
from spamtune.errors import DataError

SPLITS = ("train.csv", "validation.csv", "test.csv", "unused.csv")


@pytest.fixture(scope="module")
def sms_csv(tmp_path_factory, sms_path):
    df = parse_sms_collection(sms_path.read_bytes())
    path = tmp_path_factory.mktemp("stream") / "sms.csv"
    df.rename(columns={"Label": "label", "Text": "text"}).assign(id=range(len(df))).to_csv(path, index=False)
    return path


def _rows(out, name):
    labels = json.loads((out / "labels.json").read_text())["id2label"]
    df = read_split(out / name)
    return Counter(zip(df["Label"].astype(str).map(labels), df["Text"]))


@pytest.mark.parametrize("block_rows", [97, 20_000])
def test_streamed_split_has_the_in_memory_sizes_and_every_row_once(sms_csv, tmp_path, monkeypatch, block_rows):
    monkeypatch.setattr("spamtune.data.stream.BLOCK_ROWS", block_rows)
    kw = dict(text_col="text", label_col="label")
    mem = prepare(tmp_path / "mem", sms_csv, **kw, stream=False)
    st = prepare(tmp_path / "st", sms_csv, **kw, stream=True)
    assert st.streamed and not mem.streamed
    # the same rows per file and per label overall; which label a split's rows have is random in both
    assert {n: sum(c.values()) for n, c in st.counts.items()} == {n: sum(c.values()) for n, c in mem.counts.items()}
    assert sum((Counter(c) for c in st.counts.values()), Counter()) == Counter({"ham": 4827, "spam": 747})
    assert st.counts["unused.csv"] == mem.counts["unused.csv"] == {"ham": 4080}
    assert (tmp_path / "st" / "labels.json").read_text() == (tmp_path / "mem" / "labels.json").read_text()
    streamed = sum((_rows(tmp_path / "st", n) for n in SPLITS), Counter())
    source = pd.read_csv(sms_csv, dtype=str, keep_default_na=False)
    assert streamed == Counter(zip(source["label"], source["text"]))  # every row exactly once, none invented
    train = _rows(tmp_path / "st", "train.csv")
    # random, not the first rows: the kept ham comes from the whole file
    position = {t: i for i, t in enumerate(source["text"])}
    ham_at = sorted(position[t] for (lab, t), _ in train.items() if lab == "ham")
    assert ham_at[0] < 300 and ham_at[-1] > len(source) - 300
    assert 0.4 < sum(i < len(source) / 2 for i in ham_at) / len(ham_at) < 0.6


def test_streamed_split_is_seeded_and_stratifies(sms_csv, tmp_path):
    kw = dict(text_col="text", label_col="label", stream=True)
    a = prepare(tmp_path / "a", sms_csv, **kw)
    prepare(tmp_path / "b", sms_csv, **kw)
    prepare(tmp_path / "c", sms_csv, **kw, seed=7)
    train = {d: (tmp_path / d / "train.csv").read_bytes() for d in "abc"}
    assert train["a"] == train["b"] and train["a"] != train["c"]
    assert sum(a.counts["train.csv"].values()) == 1045
    r = prepare(tmp_path / "s", sms_csv, **kw, balance=False, stratify=True, train_frac=0.6, validation_frac=0.1,
                test_frac=0.2)
    for name, frac in (("train.csv", 0.6), ("validation.csv", 0.1), ("test.csv", 0.2)):
        assert r.counts[name] == {"ham": int(4827 * frac), "spam": int(747 * frac)}
    assert r.counts["unused.csv"] == {}
    r = prepare(tmp_path / "n", sms_csv, **kw, balance=False, train_frac=0.6, validation_frac=0.1, test_frac=0.2)
    assert [sum(r.counts[n].values()) for n in SPLITS[:3]] == list(split_sizes(5574, 0.6, 0.1, 0.2))


def test_bad_row_in_a_late_block_fails_before_anything_is_written(sms_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("spamtune.data.stream.BLOCK_ROWS", 100)
    lines = sms_csv.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines[:5000], "eggs,hello there,5000", *lines[5000:]]) + "\n")
    out = tmp_path / "out"
    code = main(["prepare", "--data", str(bad), "--text-col", "text", "--label-col", "label", "--labels", "ham,spam",
                 "--stream", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown label 'eggs'" in err and "Traceback" not in err
    assert not out.exists()
    blank = tmp_path / "blank.csv"
    blank.write_text("\n".join([*lines[:4000], "ham,   ,4000", *lines[4000:]]) + "\n")
    with pytest.raises(DataError, match=r"blank.csv:4001: empty text"):
        prepare(out, blank, text_col="text", label_col="label", stream=True)
    with pytest.raises(DataError, match="no column 'body'"):
        prepare(out, sms_csv, text_col="body", label_col="label", stream=True)
    assert not out.exists()


def _peak_rss_mb(args) -> float:
    # blocks of 2,000 rows: the allocator's working set settles within the smaller file already
    # VmHWM, not ru_maxrss: that one keeps the forking test runner's peak across exec
    code = ("import re, sys; import spamtune.data.stream as s; s.BLOCK_ROWS = 2000; "
            "from spamtune.cli import main; rc = main(sys.argv[1:]); "
            "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) / 1024); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return float(r.stdout.strip().splitlines()[-1])


def test_streamed_prepare_memory_does_not_grow_with_the_file(sms_csv, tmp_path):
    """8x the rows (~34 MB more of text) costs the streaming path at most noise (a few MB); the in-memory path grows by
    more than the file. Each prepare runs in a child that reports its own peak RSS."""
    header, body = sms_csv.read_text().split("\n", 1)
    sizes = {}
    for factor in (10, 80):
        path = tmp_path / f"x{factor}.csv"
        path.write_text(header + "\n" + body * factor)
        sizes[factor] = path.stat().st_size / 2**20
        for mode in ("--stream", "--no-stream"):
            out = str(tmp_path / f"o{factor}{mode}")
            sizes[factor, mode] = _peak_rss_mb(["prepare", "--data", str(path), "--text-col", "text",
                                                "--label-col", "label", mode, "--out", out])
    grown = sizes[80] - sizes[10]
    assert grown > 30
    assert sizes[80, "--stream"] - sizes[10, "--stream"] < 0.5 * grown, sizes  # allocator noise: a few MB
    assert sizes[80, "--no-stream"] - sizes[10, "--no-stream"] > grown, sizes


def test_evaluate_in_blocks_gives_the_same_report(tiny_run, data_dir, tmp_path, monkeypatch):
    """Blocks of 7 rows against one block per file: every metric, the operating point and its report half equal."""
    import shutil

    from spamtune.data import iter_split
    from spamtune.evaluation import evaluate_run, report

    reports = {}
    for block_rows in (None, 7):
        run = tmp_path / f"run{block_rows}"
        shutil.copytree(tiny_run, run)
        if block_rows:
            monkeypatch.setattr(report, "iter_split", lambda p: iter_split(p, block_rows=block_rows))
        reports[block_rows] = evaluate_run(run, data_dir, progress=False, limit=400, target_fpr=0.01)
        reports[block_rows].pop("run")
    assert reports[7]["n"] == {"train": 400, "validation": 149, "test": 300, "unused": 400}
    # a message's logits can move in the last bits with its batch mates' padding: compare rounded
    assert json.loads(json.dumps(reports[7]), parse_float=lambda x: round(float(x), 5)) == \
        json.loads(json.dumps(reports[None]), parse_float=lambda x: round(float(x), 5))
    assert reports[7]["operating_point"]["n_report_half"] > 0
