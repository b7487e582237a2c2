import csv
import hashlib
import json
import zipfile

import pandas as pd
import pytest

from spamtune.cli import main
from spamtune.data import prepare, read_split
from spamtune.data.parse import parse_sms_collection
from spamtune.data.sources import SMS_SHA256


def _files(path):
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def test_parse_keeps_every_row(sms_path):
    raw = sms_path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SMS_SHA256
    df = parse_sms_collection(raw)
    assert len(df) == 5574
    assert df["Label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}
    # the book's pandas call merges quoted lines: proof that the naive parse is wrong on this very file
    naive = pd.read_csv(sms_path, sep="\t", header=None, names=["Label", "Text"])
    assert len(naive) == 5572


def test_prepare_book_split(data_dir):
    counts = {name: len(read_split(data_dir / name)) for name in ("train.csv", "validation.csv", "test.csv",
                                                                  "unused.csv")}
    assert counts == {"train.csv": 1045, "validation.csv": 149, "test.csv": 300, "unused.csv": 4080}
    maps = json.loads((data_dir / "labels.json").read_text())
    assert maps == {"id2label": {"0": "ham", "1": "spam"}, "label2id": {"ham": 0, "spam": 1}}
    splits = [read_split(data_dir / n) for n in ("train.csv", "validation.csv", "test.csv")]
    both = pd.concat(splits)
    assert both["Label"].value_counts().to_dict() == {0: 747, 1: 747}
    assert set(read_split(data_dir / "unused.csv")["Label"]) == {0}
    # no message is in two splits (row identity: the balanced set has no duplicate rows across splits)
    assert len(both) == 1494


def test_prepare_is_deterministic_and_seeded(tmp_path, sms_path, data_dir):
    prepare(tmp_path / "a", sms_path)
    assert (tmp_path / "a" / "train.csv").read_bytes() == (data_dir / "train.csv").read_bytes()
    prepare(tmp_path / "b", sms_path, seed=7)
    assert (tmp_path / "b" / "train.csv").read_bytes() != (data_dir / "train.csv").read_bytes()


def test_csv_round_trips_quotes_and_commas(data_dir, sms_path):
    texts = set(parse_sms_collection(sms_path.read_bytes())["Text"])
    for name in ("train.csv", "validation.csv", "test.csv", "unused.csv"):
        assert set(read_split(data_dir / name)["Text"]) <= texts


def test_no_balance_and_stratify(tmp_path, sms_path):
    r = prepare(tmp_path / "nb", sms_path, balance=False, stratify=True)
    total = {k: sum(c.values()) for k, c in r.counts.items()}
    assert total == {"train.csv": 3901, "validation.csv": 557, "test.csv": 1116, "unused.csv": 0}
    spam_rate = [r.counts[n]["spam"] / total[n] for n in ("train.csv", "validation.csv", "test.csv")]
    assert max(spam_rate) - min(spam_rate) < 0.005  # stratified: ~13.4 % everywhere


def test_zip_source_and_custom_fractions(tmp_path, sms_path):
    z = tmp_path / "sms.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(sms_path, "SMSSpamCollection")
    r = prepare(tmp_path / "out", z, train_frac=0.5, validation_frac=0.2, test_frac=0.2)
    assert {k: sum(c.values()) for k, c in r.counts.items()} == {
        "train.csv": 747, "validation.csv": 298, "test.csv": 298, "unused.csv": 4080}


def test_env_var_source(tmp_path, sms_path, monkeypatch):
    monkeypatch.setenv("SPAMTUNE_DATA", str(sms_path))
    assert prepare(tmp_path / "out").source == str(sms_path)


def test_multiclass_csv(tmp_path):
    src = tmp_path / "reviews.csv"
    rows = [(f"text number {i}, with a comma", ["neg", "pos", "neutral"][i % 3]) for i in range(90)]
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows(rows)
    r = prepare(tmp_path / "out", src, text_col="review", label_col="sentiment")
    maps = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert maps["label2id"] == {"neg": 0, "neutral": 1, "pos": 2}
    assert sum(sum(c.values()) for n, c in r.counts.items() if n != "unused.csv") == 90
    assert set(read_split(tmp_path / "out" / "train.csv")["Label"]) == {0, 1, 2}


BAD_INPUTS = {
    "missing": (None, "no such file"),
    "checksum": (b"ham\thello\nspam\tWIN now\n", "sha256 mismatch"),
    "no_tab": (b"ham\thello\nspam WIN now\n", ":2: no tab"),
    "unknown_label": (b"ham\thello\neggs\tWIN now\n", ":2: unknown label 'eggs'"),
    "empty_text": (b"ham\thello\nspam\t  \n", ":2: empty text"),
    "not_utf8": (b"ham\thello\nham\tok\nspam\tWIN \xff\xfe now\n", ":3: not valid UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_exit_2_no_output(case, tmp_path, capsys):
    content, message = BAD_INPUTS[case]
    src = tmp_path / "input.tsv"
    if content is not None:
        src.write_bytes(content)
    out = tmp_path / "out"
    verify = ["--no-verify"] if case not in ("checksum", "missing") else []
    code = main(["prepare", "--data", str(src), "--out", str(out), *verify])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.startswith("spamtune: error: ") and err.count("\n") == 1
    assert _files(out) == []


def test_bad_fractions(tmp_path, sms_path, capsys):
    code = main(["prepare", "--data", str(sms_path), "--out", str(tmp_path / "o"), "--train-frac", "0.8",
                 "--val-frac", "0.3"])
    assert code == 2 and "sum to at most 1" in capsys.readouterr().err
    assert _files(tmp_path / "o") == []


def test_existing_output_kept_without_overwrite(tmp_path, sms_path, capsys):
    out = tmp_path / "o"
    assert main(["prepare", "--data", str(sms_path), "--out", str(out)]) == 0
    before = (out / "train.csv").read_bytes()
    assert main(["prepare", "--data", str(sms_path), "--out", str(out), "--seed", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "train.csv").read_bytes() == before
    assert main(["prepare", "--data", str(sms_path), "--out", str(out), "--seed", "1", "--overwrite"]) == 0
    assert (out / "train.csv").read_bytes() != before
    assert _files(out) == ["labels.json", "test.csv", "train.csv", "unused.csv", "validation.csv"]


def test_cli_prints_counts(tmp_path, sms_path, capsys):
    assert main(["prepare", "--data", str(sms_path), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "train.csv            528     517    1045" in out
    assert "unused.csv          4080       0    4080" in out


def test_download_falls_back_to_backup_url_and_caches(tmp_path, sms_path, monkeypatch):
    """The real download code against a loopback HTTP server: the first URL fails (404), the backup serves the
    zip; the file is verified, cached, and a second prepare reads the cache without any request."""
    import functools
    import http.server
    import threading

    import spamtune.data.sources as sources

    site = tmp_path / "site"
    site.mkdir()
    with zipfile.ZipFile(site / "sms.zip", "w") as zf:
        zf.write(sms_path, "SMSSpamCollection")
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(sources, "SMS_URLS", (f"{base}/missing.zip", f"{base}/sms.zip"))
    monkeypatch.setenv("SPAMTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPAMTUNE_DATA", raising=False)
    try:
        r = prepare(tmp_path / "out")
        assert r.source == f"{base}/sms.zip"
        assert {k: sum(c.values()) for k, c in r.counts.items()}["train.csv"] == 1045
        cached = tmp_path / "cache" / "SMSSpamCollection"
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == SMS_SHA256
        n = len(requests)
        assert prepare(tmp_path / "out2").source == str(cached) and len(requests) == n
    finally:
        server.shutdown()


def test_folds_cover_every_message_once_stratified(tmp_path, sms_path, capsys):
    out = tmp_path / "cv"
    assert main(["prepare", "--data", str(sms_path), "--folds", "5", "--out", str(out)]) == 0
    assert "fold5/validation.csv" in capsys.readouterr().out
    tests, rows = [], parse_sms_collection(sms_path.read_bytes())
    for k in range(1, 6):
        fold = {n: read_split(out / f"fold{k}" / f"{n}.csv") for n in ("train", "validation", "test", "unused")}
        assert len(fold["unused"]) == 0 and len(fold["validation"]) == int(5574 * 0.1)
        assert sum(len(df) for df in fold.values()) == 5574  # each fold holds every message once
        spam_share = [df["Label"].mean() for df in (fold["train"], fold["validation"], fold["test"])]
        assert max(spam_share) - min(spam_share) < 0.005  # 13.4 % spam in every part
        tests.append(fold["test"])
    every = pd.concat(tests)
    assert len(every) == 5574 and sorted(every["Text"]) == sorted(rows["Text"])  # the test folds partition the data
    again = tmp_path / "again"
    assert main(["prepare", "--data", str(sms_path), "--folds", "5", "--out", str(again)]) == 0
    assert (again / "fold3" / "test.csv").read_bytes() == (out / "fold3" / "test.csv").read_bytes()
    assert main(["prepare", "--data", str(sms_path), "--folds", "5", "--out", str(out)]) == 2  # no --overwrite
    assert "already has fold1" in capsys.readouterr().err
    assert main(["prepare", "--data", str(sms_path), "--folds", "1", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
