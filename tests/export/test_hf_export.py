"""`spamtune export --format hf`: transformers' AutoModelForSequenceClassification loads the directory and gives
the run's probabilities (scratch GPT-2 and Llama runs, LoRA merged, `--backend hf` runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.errors import SpamtuneError
from spamtune.export import export_hf
from spamtune.inference import TextClassifier
from spamtune.normalize import normalize_text
from spamtune.training import train_run
from tests.conftest import REAL_MODEL_TEXTS
from tests.helpers import minilm_args


def hf_probs(path, texts: list[str]) -> tuple[np.ndarray, dict]:
    """What a transformers user gets from the exported directory, normalizing the text first as its marker says."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    scheme = json.loads((Path(path) / "spamtune-export.json").read_text())["normalize"]
    texts = [normalize_text(t, scheme) for t in texts]

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 16):
            enc = tok(texts[i : i + 16], padding=True, truncation=True, return_tensors="pt")
            out.append(torch.softmax(model(**enc).logits, -1).numpy())
    return np.concatenate(out), model.config.id2label


@pytest.mark.parametrize("trainable", ["last_block", "lora"])
def test_export_gpt2_matches_the_run(tmp_path, tiny_run, tiny_gpt2_dir, data_dir, trainable):
    run = tiny_run
    if trainable == "lora":  # adapters merged into the exported weights
        run = tmp_path / "lora"
        train_run(TrainArgs(model=str(tiny_gpt2_dir), trainable="lora", epochs=1, limit=32, lr=1e-2), data_dir, run)
    out = export_hf(run, tmp_path / "hf")
    texts = list(read_split(data_dir / "test.csv")["Text"])
    ours = TextClassifier.load(run).predict_proba(texts)
    theirs, id2label = hf_probs(out, texts)
    assert id2label == {0: "ham", 1: "spam"}
    assert np.abs(theirs - ours).max() < 1e-4  # the head bias folded into ln_f's shift
    assert (theirs.argmax(1) == ours.argmax(1)).all()


def test_export_of_an_hf_backend_run(tmp_path, data_dir):
    run = tmp_path / "run"
    train_run(minilm_args(trainable="last_block", epochs=1, limit=32), data_dir, run)
    assert main(["export", str(run), "--out", str(tmp_path / "hf")]) == 0
    texts = list(read_split(data_dir / "test.csv")["Text"])[:64]
    ours = TextClassifier.load(run).predict_proba(texts)
    theirs, id2label = hf_probs(tmp_path / "hf", texts)
    assert id2label == {0: "ham", 1: "spam"} and np.abs(theirs - ours).max() < 1e-4


def test_export_refuses_pooling_that_hf_cannot_compute(tmp_path, tiny_gpt2_dir, data_dir):
    run = tmp_path / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=16, pooling="mean"), data_dir, run)
    with pytest.raises(SpamtuneError, match="last_real"):
        export_hf(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 2


@pytest.mark.real_model
def test_export_smollm2_matches_the_run_on_the_test_split(tmp_path, data_dir, smollm2_run):
    run = smollm2_run
    assert main(["export", str(run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    texts = list(read_split(data_dir / "test.csv")["Text"])[:REAL_MODEL_TEXTS]
    ours = TextClassifier.load(run).predict_proba(texts)
    theirs, id2label = hf_probs(tmp_path / "hf", texts)
    assert id2label == {0: "ham", 1: "spam"}
    assert np.abs(theirs - ours).max() < 1e-4
    assert (theirs.argmax(1) == ours.argmax(1)).all()
