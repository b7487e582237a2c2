"""The run's memo of the model's logits (runs.LogitsMemo): training leaves what it scored after the fit, evaluation
reuses it and adds what it scores, with the same figures as scoring everything again."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from spamtune.calibration.decisions import in_calibration_half
from spamtune.evaluation import evaluate_run
from spamtune.inference import TextClassifier
from spamtune.runs import LOGITS, WEIGHTS, LogitsMemo, RunConfig, memo_setting, text_keys

LIMIT = 64  # rows per split the evaluations read (the run trained on the first 32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_gpt2_dir, data_dir):
    """A tiny run no other test evaluates (the session's tiny_run gathers their evaluations in its memo)."""
    from spamtune.config import TrainArgs
    from spamtune.training import train_run

    run = tmp_path_factory.mktemp("memo") / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=32, lr=1e-3), data_dir, run)
    return run


def memo_of(run) -> LogitsMemo:
    (path,) = (run / LOGITS).glob("*.safetensors")
    clf = TextClassifier.load(run)
    memo = clf.keep_logits()
    assert memo is not None and memo.path == path  # evaluation reads the file training wrote
    return memo


def test_training_leaves_the_logits_it_computed(trained, data_dir):
    memo = memo_of(trained)
    read = {name: pd.read_csv(data_dir / f"{name}.csv") for name in ("train", "validation", "unused")}
    ham = [t for t in read["unused"]["Text"] if in_calibration_half(t)][:32]
    expected = {*read["train"]["Text"][:32], *read["validation"]["Text"][:32], *ham}
    assert len(memo) == len(expected)
    # the kept logits are the inference model's, to float rounding (training read the cached prefix)
    texts = sorted(expected)
    kept, kept_cut = memo_logits(memo, texts)
    fresh, cut = TextClassifier.load(trained).model_logits(texts)
    np.testing.assert_allclose(kept, fresh, atol=1e-4)
    assert kept_cut == cut


def memo_logits(memo: LogitsMemo, texts: list[str]):
    rows = memo.lookup(text_keys(texts))
    assert all(r is not None for r in rows)
    return np.stack([r[0] for r in rows]), [r[1] for r in rows]  # type: ignore[index]


FIGURES = ("fpr_unused", "precision", "recall", "f1", "mcc")


def test_evaluate_reuses_them_with_the_same_figures(trained, data_dir, tmp_path):
    run, fresh = tmp_path / "run", tmp_path / "fresh"
    shutil.copytree(trained, run)
    shutil.copytree(trained, fresh)
    shutil.rmtree(fresh / LOGITS)

    today = evaluate_run(fresh, data_dir, limit=LIMIT, progress=False, reuse=False)
    assert not (fresh / LOGITS).exists() and "model_logits" not in today  # --rescore neither reads nor writes
    first = evaluate_run(run, data_dir, limit=LIMIT, progress=False)
    second = evaluate_run(run, data_dir, limit=LIMIT, progress=False)

    texts = [t for name in ("train", "validation", "test", "unused")
             for t in pd.read_csv(data_dir / f"{name}.csv")["Text"][:LIMIT]]
    left = memo_of(trained)
    new = [t for t, row in zip(texts, left.lookup(text_keys(texts))) if row is None]
    assert first["model_logits"] == {"reused": len(texts) - len(set(new)), "scored": len(set(new))}
    assert len(texts) - len(new) >= 64  # at least the training split's and validation's first 32 were kept
    assert second["model_logits"] == {"reused": len(texts), "scored": 0}
    assert len(memo_of(run)) == len(left) + len(set(new))
    for r in (first, second):
        assert r["accuracy"] == pytest.approx(today["accuracy"], abs=0)
        assert r["confusion_matrix"] == today["confusion_matrix"]
        for k in FIGURES:
            assert r[k] == pytest.approx(today[k], abs=1e-12), k
        assert r["calibration"] == pytest.approx(today["calibration"], abs=1e-5)
        for k in ("confusion_matrix", "bands_test", "fpr_report_half", "review_rate_report_half"):
            assert r["operating_point"][k] == today["operating_point"][k], k


def test_a_memo_is_only_read_for_the_same_model(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    config = RunConfig.from_dir(run)
    setting = memo_setting(run, config, "fp32", None, "cpu")
    assert len(LogitsMemo(run, setting)) > 0
    for other in (memo_setting(run, config, "bf16", None, "cpu"), memo_setting(run, config, "fp32", "int8", "cpu"),
                  memo_setting(run, config, "fp32", None, "cuda")):
        assert len(LogitsMemo(run, other)) == 0
    # other trained weights in the same directory (a --resume, a copy over it): another memo
    from safetensors.torch import load_file, save_file

    tensors = load_file(run / WEIGHTS)
    save_file({k: v + 0.01 for k, v in tensors.items()}, run / WEIGHTS)
    assert len(LogitsMemo(run, memo_setting(run, config, "fp32", None, "cpu"))) == 0


def test_a_damaged_memo_is_scored_again_and_rewritten(trained, data_dir, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (path,) = (run / LOGITS).glob("*.safetensors")
    path.write_bytes(b"not safetensors")
    with caplog.at_level(logging.WARNING):
        r = evaluate_run(run, data_dir, limit=8, progress=False)
    assert "unreadable" in caplog.text and r["model_logits"]["reused"] == 0
    assert len(LogitsMemo(run, memo_setting(run, RunConfig.from_dir(run), "fp32", None, "cpu"))) > 0


def test_a_changed_tokenizer_file_is_another_memo(trained, tmp_path):
    """A directory tokenizer edited in place reads the same texts as other ids: the memo's setting sees it."""
    import dataclasses

    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    config = dataclasses.replace(RunConfig.from_dir(trained), tokenizer=str(tok))
    before = memo_setting(trained, config, "fp32", None, "cpu")
    (tok / "tokenizer.json").write_text('{"edited": true}')
    assert memo_setting(trained, config, "fp32", None, "cpu") != before
