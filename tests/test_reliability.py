"""Reliability: a killed training run resumes to the same result; strange messages never crash an entry point."""

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from safetensors.torch import load_file

from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.inference import load_run
from spamtune.training import train_run

# ---------------------------------------------------------------------------------------------------------------
# kill -9 and resume


def test_sigkill_then_resume_equals_uninterrupted(tiny_gpt2_dir, data_dir, tmp_path):
    flags = dict(epochs=30, limit=48, eval_freq=4, eval_iter=1, lr=1e-3)
    cli = ["--data-dir", str(data_dir), "--model", str(tiny_gpt2_dir), "--epochs", "30", "--limit", "48",
           "--eval-freq", "4", "--eval-iter", "1", "--lr", "1e-3"]
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "spamtune", "train", *cli, "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "resume" / "state.json"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 30
    load_run(run)  # what a crash leaves behind is a complete, loadable checkpoint

    assert main(["train", "--resume", str(run)]) == 0
    train_run(TrainArgs(model=str(tiny_gpt2_dir), **flags), data_dir, tmp_path / "straight")
    a, b = load_file(run / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-6, k
    ha = json.loads((run / "history.json").read_text())
    hb = json.loads((tmp_path / "straight" / "history.json").read_text())
    assert ha["val_loss_full"] == pytest.approx(hb["val_loss_full"], rel=1e-5)
    assert len(ha["train_losses"]) == len(hb["train_losses"]) == 30 * 6 // 4


# ---------------------------------------------------------------------------------------------------------------
# the bad-input corpus


def corpus() -> dict[str, str]:
    return {
        "empty": "",
        "whitespace": " \t  ",
        "one_megabyte": "free prize " * 95_000,
        "nul_bytes": "win\x00 a\x00 prize",
        "lone_surrogate": "caf\ud800e",
        "rtl_override": "\u202eezirp a now uoy",
        "zero_width": "fr\u200bee\u200d pr\u200cize",
        "emoji_only": "😀🎉💰💰💰",
        "control_chars": "\x07\x1b[31mred\x1b[0m",
    }


@pytest.mark.parametrize("name", sorted(corpus()))
def test_python_api_classifies_any_string(tiny_run, name):
    """Any string gets a label, except a blank one: that is one clear error (the same rule as the CLI and HTTP)."""
    from spamtune import TextClassifier
    from spamtune.errors import DataError

    text = corpus()[name]
    if not text.strip():
        with pytest.raises(DataError, match="empty or only whitespace"):
            TextClassifier.load(tiny_run).predict([text])
        return
    (d,) = TextClassifier.load(tiny_run).decide([text])
    assert d.label in ("ham", "spam") and 0.0 <= d.score <= 1.0 and d.band in ("allow", "review", "block")


def test_cli_args_any_string(tiny_run, capsys):
    # an argv has OS limits (the 1 MB one goes by file); blank messages are an error (tests/test_hardening.py)
    texts = [t for t in corpus().values() if len(t) < 100_000 and t.strip()]
    assert main(["classify", str(tiny_run), "--json", *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(texts)
    assert all(json.loads(x)["label"] in ("ham", "spam") for x in lines)
    assert main(["classify", str(tiny_run), *texts]) == 0  # plain output, lone surrogate included
    assert len(capsys.readouterr().out.splitlines()) == len(texts)


def test_cli_stdin_invalid_utf8_is_one_line_error(tiny_run, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"hello\nbad \xff\xfe bytes\n"), encoding="utf-8"))
    assert main(["classify", str(tiny_run)]) == 2
    err = capsys.readouterr().err
    assert "stdin line 2: not valid UTF-8" in err and err.count("\n") == 1


def test_cli_stdin_corpus(tiny_run, monkeypatch, capsys):
    lines = [t for name, t in corpus().items() if t.strip() and name != "lone_surrogate"]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(("\n".join(lines) + "\n").encode())))
    assert main(["classify", str(tiny_run), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(lines)


def test_file_with_ten_thousand_lines_and_odd_content(tiny_run, tmp_path, capsys):
    src = tmp_path / "big.txt"
    body = [f"line {i} claim your prize" for i in range(10_000)]
    body[5] = "\u202eezirp"
    body[6] = "😀😀"
    body[7] = "x" * 1_000_000
    src.write_text("\ufeff" + "\r\n".join(body) + "\r\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["classify", str(tiny_run), "--file", str(src), "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 10_000 and rows[9999]["text"] == "line 9999 claim your prize"
    assert rows[0]["text"] == "line 0 claim your prize"  # BOM and CRLF handled


def test_service_corpus_never_500(server_url):
    from spamtune.serving.loadtest import post_classify

    for name, text in corpus().items():
        code, body = post_classify(server_url, json.dumps({"texts": [text]}).encode())
        if code == 200:
            assert body["results"][0]["label"] in ("ham", "spam"), name
        else:
            assert 400 <= code < 500, (name, code)
            assert "detail" in body, name


# ---------------------------------------------------------------------------------------------------------------
# the service under load


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_service_under_load(server, sms_path):
    """1,000 requests at concurrency 32 over loopback, 10 % invalid: no server error, every valid answer right,
    every invalid one a 4xx with a message, memory bounded."""
    from spamtune.data import parse_sms_collection
    from spamtune.serving.loadtest import run_load

    url, app, clf = server
    texts = list(parse_sms_collection(sms_path.read_bytes())["Text"])
    texts = [t[:500] for t in texts[:60]]  # within the test server's 500-character limit
    expected = dict(zip(texts, clf.predict(texts)))
    before = _rss_mb()
    passes_before = app.state.service.batcher.batches_run
    report = run_load(url, expected, requests=1000, concurrency=32, max_texts=8)
    print(report.summary())
    assert report.server_errors == 0 and report.wrong == 0
    assert report.ok + report.rejected == 1000 and report.rejected > 50
    assert app.state.service.batcher.batches_run - passes_before < report.ok  # requests shared forward passes
    assert _rss_mb() - before < 300



# ---------------------------------------------------------------------------------------------------------------
# files and security basics


def test_partially_downloaded_zip(tmp_path, sms_path, capsys):
    import zipfile

    z = tmp_path / "sms+spam+collection.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(sms_path, "SMSSpamCollection")
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])  # a download cut off halfway
    assert main(["prepare", "--data", str(z), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(z) in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_serve_binds_loopback_by_default():
    from spamtune.cli import build_parser

    args = build_parser().parse_args(["serve", "runs/x"])
    assert args.host == "127.0.0.1"


def test_no_request_path_reaches_the_filesystem(server_url):
    for path in ("/../../etc/passwd", "/static/../../pyproject.toml", "/%2e%2e/%2e%2e/etc/passwd", "/index.html"):
        try:
            urllib.request.urlopen(server_url + path, timeout=10)
            raise AssertionError(f"{path} was served")
        except urllib.error.HTTPError as e:
            assert e.code == 404, path


def test_prepare_tolerates_bom_crlf_and_extra_tabs(tmp_path):
    """A BOM, CRLF line ends and tabs inside the message text are not errors: texts come through exactly."""
    import pandas as pd

    rows = [("ham", f"hello {i}\twith a tab") if i % 2 else ("spam", f"WIN {i}\t\tprize") for i in range(40)]
    src = tmp_path / "sms.tsv"
    src.write_bytes(b"\xef\xbb\xbf" + "".join(f"{lab}\t{txt}\r\n" for lab, txt in rows).encode())
    assert main(["prepare", "--data", str(src), "--out", str(tmp_path / "out"), "--no-verify"]) == 0
    texts = pd.concat(pd.read_csv(tmp_path / "out" / f, keep_default_na=False)
                      for f in ("train.csv", "validation.csv", "test.csv", "unused.csv"))["Text"]
    assert sorted(texts) == sorted(txt for _, txt in rows)
