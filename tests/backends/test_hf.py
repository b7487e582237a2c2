"""The Hugging Face path: `--backend hf` (AutoModelForSequenceClassification) on the tasks transformers supports,
and `spamtune export --format hf` matching the run's probabilities."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from spamtune.cli import main
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.inference import TextClassifier
from spamtune.training import train_run
from tests.helpers import minilm_args


def write_task(path, task: str, labels: list[str], rows: dict[str, list[tuple[str, object]]]) -> None:
    """A data directory in spamtune's format: Label,Text CSVs per split + labels.json with the task."""
    path.mkdir(parents=True, exist_ok=True)
    for split, items in rows.items():
        with open(path / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["Label", "Text"])
            w.writerows((label, text) for text, label in items)
    (path / "labels.json").write_text(json.dumps({"task": task, "id2label": dict(enumerate(labels)),
                                                  "label2id": {lab: i for i, lab in enumerate(labels)}}))


def synthetic(n: int, make, seed: int) -> list[tuple[str, object]]:
    rng = random.Random(seed)
    return [make(rng) for _ in range(n)]


FILLER = ["see you later", "on my way", "call me back", "where are you", "ok thanks", "at the shop now"]
FRUITS = ["apple", "banana", "cherry"]


def fruit(rng):  # multi-class: which fruit the message names
    k = rng.randrange(3)
    return f"{rng.choice(FILLER)} i bought a {FRUITS[k]} {rng.choice(FILLER)}", FRUITS[k]


def tags(rng):  # multi-label: "urgent" and/or "money" cues, or neither
    on = [rng.random() < 0.5, rng.random() < 0.5]
    words = [rng.choice(FILLER)] + (["urgent reply now"] if on[0] else []) + (["win cash prize"] if on[1] else [])
    rng.shuffle(words)
    return " ".join(words), "|".join(name for name, o in zip(["urgent", "money"], on) if o)


def spamminess(rng):  # regression: the share of spammy phrases
    k = rng.randrange(4)
    words = ["free prize"] * k + [rng.choice(FILLER)] * (3 - k)
    rng.shuffle(words)
    return " ".join(words), k / 3


def _task_dir(tmp_path, task, labels, make):
    d = tmp_path / task
    write_task(d, task, labels, {"train": synthetic(96, make, 1), "validation": synthetic(32, make, 2),
                                 "test": synthetic(48, make, 3)})
    return d



def test_multiclass_three_labels(tmp_path):
    src = tmp_path / "fruit.csv"
    with open(src, "w", newline="") as f:
        csv.writer(f).writerows([("text", "fruit"), *synthetic(240, fruit, 1)])
    data = tmp_path / "data"
    assert main(["prepare", "--data", str(src), "--text-col", "text", "--label-col", "fruit", "--no-balance",
                 "--out", str(data)]) == 0
    run = tmp_path / "run"
    train_run(minilm_args(), data, run)
    clf = TextClassifier.load(run)
    assert clf.label_names == FRUITS and clf.run.predictor.model.config.id2label == dict(enumerate(FRUITS))
    df = read_split(data / "test.csv")
    preds = list(clf.predict(list(df["Text"])))
    assert np.mean([p == FRUITS[y] for p, y in zip(preds, df["Label"])]) >= 0.9  # chance is 1/3
    assert main(["evaluate", str(run), "--data-dir", str(data), "--json"]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert len(ev["confusion_matrix"]) == 3 and ev["accuracy"]["test"] >= 0.9


def test_multilabel_with_per_label_thresholds(tmp_path):
    data = _task_dir(tmp_path, "multi_label", ["urgent", "money"], tags)
    run = tmp_path / "run"
    train_run(minilm_args(), data, run)
    cfg = json.loads((run / "run.json").read_text())
    assert cfg["task"] == "multi_label" and len(cfg["thresholds"]) == 2
    assert all(0 < t < 1 for t in cfg["thresholds"])
    clf = TextClassifier.load(run)
    probs = clf.predict_proba(["urgent reply now win cash prize", "see you later"])
    assert probs.shape == (2, 2) and np.all((probs >= 0) & (probs <= 1))
    assert list(clf.predict(["urgent reply now win cash prize ok thanks", "see you later"])) == \
        ["urgent|money", ""]
    assert main(["evaluate", str(run), "--data-dir", str(data)]) == 0
    m = json.loads((run / "eval.json").read_text())["metrics"]["test"]
    assert m["subset_accuracy"] >= 0.85 and set(m["f1_per_label"]) == {"urgent", "money"}


def test_regression_num_labels_1(tmp_path):
    data = _task_dir(tmp_path, "regression", ["spamminess"], spamminess)
    run = tmp_path / "run"
    train_run(minilm_args(epochs=6), data, run)
    clf = TextClassifier.load(run)
    assert clf.run.predictor.model.config.num_labels == 1
    assert clf.run.predictor.model.config.problem_type == "regression"
    assert main(["evaluate", str(run), "--data-dir", str(data)]) == 0
    m = json.loads((run / "eval.json").read_text())["metrics"]["test"]
    assert m["r2"] > 0.8, m  # predicting the mean gives 0
    (first, hi), (_, lo) = [(r["label"], r["score"]) for r in clf(["free prize free prize free prize",
                                                                   "see you later ok thanks on my way"])]
    assert first == "spamminess" and hi > lo + 0.5
    # alone vs. padded beside a longer message: equal up to float rounding of the batch's kernels
    assert list(clf.predict(["free prize free prize free prize"])) == pytest.approx([hi], abs=1e-5)


@pytest.mark.parametrize("trainable, trained", [("head", {"classifier"}),
                                                ("last_block", {"classifier", "pooler", "layer.5"})])
def test_freezing_policies_map_onto_hf_modules(trainable, trained):
    from spamtune.backends.hf import apply_hf_trainable, load_hf
    from spamtune.data import LabelSet

    model, tok, head = load_hf("all-minilm-l6-v2", LabelSet(("ham", "spam")))
    assert head == ["classifier"] and tok.pad_id == 0
    apply_hf_trainable(model, head, trainable)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(any(t in n for t in trained) for n in names)
    assert any("layer.5" in n for n in names) == (trainable == "last_block")
    assert not any("layer.4" in n or "embeddings" in n for n in names)


def test_lora_keeps_the_head_in_modules_to_save(tmp_path, data_dir):
    run = tmp_path / "run"
    train_run(minilm_args(trainable="lora", lora_rank=4, epochs=1, limit=16), data_dir, run)
    from safetensors import safe_open

    with safe_open(run / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any("lora_A" in k for k in keys) and any("classifier" in k and "modules_to_save" in k for k in keys)
    assert not any("embeddings.word_embeddings" in k for k in keys)  # the frozen base is re-read, not saved
    clf = TextClassifier.load(run)
    assert clf.predict_proba(["hello"]).shape == (1, 2)


def test_hf_backend_rejects_scratch_only_flags():
    with pytest.raises(ValueError, match="--backend hf"):
        TrainArgs(backend="hf", pooling="mean")
    assert TrainArgs(dtype="bf16").dtype == "bf16"  # spamtune's own models autocast (tests/test_devices.py)


@pytest.mark.real_model
def test_hf_backend_on_the_embedded_gguf_sets_the_pad_token(tmp_path, data_dir):
    run = tmp_path / "run"
    train_run(TrainArgs(backend="hf", epochs=1, max_steps=2, limit=16), data_dir, run)
    clf = TextClassifier.load(run)
    model = clf.run.predictor.model
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.pad_token_id == clf.tokenizer.pad_id is not None
    texts = ["Hi", "WINNER!! You have been selected for a cash prize, call now"]
    batched = clf.predict_proba(texts, batch_size=2)  # padded batch: needs pad_token_id to find the last token
    single = np.concatenate([clf.predict_proba([t]) for t in texts])
    assert np.abs(batched - single).max() < 1e-4
