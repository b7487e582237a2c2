"""Prediction: the Python API, file classification, and the CLI's classify verb."""

import csv
import json

import numpy as np

from spamtune.cli import main


def test_package_level_api(tiny_run):
    """scikit-learn's predict / predict_proba / classes_, at the run's operating point."""
    from spamtune import TextClassifier

    clf = TextClassifier.load(tiny_run)
    texts = ["WINNER! Claim your prize", "See you at 6?", "free entry to win cash now", "ok"]
    labels = clf.predict(texts)
    probs = clf.predict_proba(texts)
    assert list(clf.classes_) == ["ham", "spam"] and probs.shape == (4, 2)
    block = clf.operating_point.block_threshold
    assert list(labels) == ["spam" if p >= block else "ham" for p in probs[:, 1]]
    # longer than the run's max length: truncated, never an error
    assert clf.predict(["spam " * 5000])[0] in ("ham", "spam")
    assert clf.decide(["spam " * 5000])[0].truncated and not clf.decide(["ok"])[0].truncated


def test_classify_file_txt_to_jsonl_and_csv(tiny_run, tmp_path, capsys):
    from spamtune import TextClassifier

    msgs = [f"message {i}: call 0800 now to win" if i % 3 else f"lunch at {i}?" for i in range(600)]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(msgs[:300]) + "\n\n" + "\n".join(msgs[300:]) + "\n")  # a blank line is skipped
    assert main(["classify", str(tiny_run), "--file", str(src), "--out", str(tmp_path / "out.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 600 and [r["text"] for r in rows] == msgs
    assert rows[300]["line"] == 302  # line numbers of the input file
    want = TextClassifier.load(tiny_run).predict_proba(msgs)
    got = np.array([[r["scores"]["ham"], r["scores"]["spam"]] for r in rows])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    csv_in = tmp_path / "in.csv"
    with open(csv_in, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "body"])
        w.writerows([(i, m) for i, m in enumerate(msgs[:50])] + [(99, 'quoted, "comma"\nand newline')])
    assert main(["classify", str(tiny_run), "--file", str(csv_in), "--text-col", "body",
                 "--out", str(tmp_path / "out.csv")]) == 0
    with open(tmp_path / "out.csv", newline="") as f:
        out = list(csv.DictReader(f))
    assert len(out) == 51 and out[-1]["text"] == 'quoted, "comma"\nand newline'
    assert set(out[0]) == {"line", "label", "decision", "score", "p_ham", "p_spam", "truncated", "checks", "text"}
    assert out[0]["checks"].startswith("model:")


def test_classify_errors(tiny_run, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nnot \xff utf8\n")
    out = tmp_path / "o.jsonl"
    assert main(["classify", str(tiny_run), "--file", str(bad), "--out", str(out)]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err and not out.exists()
    csv_in = tmp_path / "x.csv"
    csv_in.write_text("a,b\n1,2\n")
    assert main(["classify", str(tiny_run), "--file", str(csv_in)]) == 2
    assert "no column 'Text'" in capsys.readouterr().err
    assert main(["classify", str(tiny_run), "--threshold", "3", "x"]) == 2
    assert main(["classify", str(tmp_path / "nope"), "x"]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_classify_stdin(tiny_run, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("first message\nsecond message\n"))
    assert main(["classify", str(tiny_run), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == ["first message", "second message"]


def test_bf16_and_int8_stay_close_to_fp32(tiny_run):
    import torch

    from spamtune import TextClassifier

    texts = ["WINNER! Claim your prize now", "See you at 6?", "ok", "Call 0800 123 to get your free ringtone"] * 4
    base = TextClassifier.load(tiny_run).predict_proba(texts)
    bf16 = TextClassifier.load(tiny_run, dtype="bf16")
    assert bf16.module.backbone.tok_emb.weight.dtype == torch.bfloat16
    int8 = TextClassifier.load(tiny_run, quantize="int8")
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    modules = list(int8.module.modules())
    assert not any(type(m) is torch.nn.Linear for m in modules)  # every float Linear was swapped
    # q, k, v, out and 2 MLP layers per block, 3 blocks, and the head
    assert sum(isinstance(m, DynamicInt8Linear) for m in modules) == 3 * 6 + 1
    for clf in (bf16, int8):
        probs = clf.predict_proba(texts)
        assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1, atol=1e-5)
        assert np.abs(probs - base).max() < 0.05


def test_lora_is_merged_for_inference(tiny_gpt2_dir, data_dir, tmp_path):
    import torch

    from spamtune import TextClassifier
    from spamtune.config import TrainArgs
    from spamtune.inference import load_run
    from spamtune.training import train_run

    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=32, lr=1e-2, trainable="lora", lora_rank=4),
              data_dir, tmp_path / "lora")
    clf = TextClassifier.load(tmp_path / "lora")
    assert not any("lora" in n for n, _ in clf.module.named_parameters())
    texts = ["WINNER! Claim your prize now", "See you at 6?"]
    run = load_run(tmp_path / "lora")
    ids = torch.tensor([clf.encode([t])[0] for t in texts[:1]])
    with torch.no_grad():
        unmerged = torch.softmax(run.predictor(ids, torch.tensor([ids.shape[1]])), -1).numpy()
    np.testing.assert_allclose(clf.predict_proba(texts[:1], calibrated=False), unmerged, rtol=1e-5, atol=1e-6)


def test_plain_output_shows_the_spam_probability(tiny_run, capsys):
    from spamtune import TextClassifier

    texts = ["WINNER! Claim your prize", "See you at 6?"]
    from spamtune.cli.args import percent

    clf = TextClassifier.load(tiny_run)
    decided = clf.decide(texts)
    assert main(["classify", str(tiny_run), *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, d, text in zip(lines, decided, texts):
        label, _, rest = line.partition(" ")
        assert label == d.label and d.band in rest
        assert f"P(spam) {percent(d.scores['spam'])}  {text}" in line
