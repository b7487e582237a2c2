"""`train --stack ngrams`: the stored n-gram half equals scikit-learn's fitted pipeline, the stacked probabilities
equal a logistic regression on the two margins, every inference path (classify API, evaluate, ONNX Runtime) reads
the stacked logits, and a damaged or unsupported case is one clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spamtune.calibration.stacking import STACK_FILE, NgramStack
from spamtune.config import TrainArgs
from spamtune.data import read_split
from spamtune.errors import CheckpointError, ConfigError
from spamtune.normalize import normalize_text

LIMIT = 200


@pytest.fixture(scope="module")
def stacked_run(tmp_path_factory, tiny_gpt2_dir, data_dir):
    from spamtune.training import train_run

    run = tmp_path_factory.mktemp("stacked") / "run"
    train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, limit=LIMIT, lr=1e-3, stack="ngrams"), data_dir, run)
    return run


def _reference_ngrams(data_dir):
    """The n-gram half as scikit-learn fits it end to end: hashing + TF-IDF per part, union, linear SVM."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.svm import LinearSVC

    def part(analyzer, span):
        return make_pipeline(HashingVectorizer(analyzer=analyzer, ngram_range=span, n_features=2**19,
                                               alternate_sign=False, norm=None), TfidfTransformer(sublinear_tf=True))

    train = read_split(data_dir / "train.csv")[:LIMIT]
    model = make_pipeline(FeatureUnion([("word", part("word", (1, 2))), ("char", part("char_wb", (2, 5)))]),
                          LinearSVC(C=1.0, random_state=123))
    return model.fit([normalize_text(t, "nfkc") for t in train["Text"]], train["Label"])


def test_stack_matches_scikit_learn_and_a_logistic_regression(stacked_run, data_dir):
    from sklearn.linear_model import LogisticRegression

    from spamtune.inference import TextClassifier

    assert json.loads((stacked_run / "run.json").read_text())["stack"] == "ngrams"
    clf = TextClassifier.load(stacked_run)
    stack = clf.run.stack
    assert isinstance(stack, NgramStack)
    test = read_split(data_dir / "test.csv")
    texts = list(test["Text"])
    reference = _reference_ngrams(data_dir).decision_function([normalize_text(t, "nfkc") for t in texts])
    np.testing.assert_allclose(stack.ngram_margin(texts), reference, atol=1e-5)

    # the stacker: a logistic regression on (LLM margin, n-gram margin) over the validation split
    llm = clf.model_logits(texts)[0]  # the fine-tuned model's own logits, nothing stacked
    val = read_split(data_dir / "validation.csv")[:LIMIT]
    val_llm = clf.model_logits(list(val["Text"]))[0]
    x_val = np.stack([val_llm[:, 1] - val_llm[:, 0], stack.ngram_margin(list(val["Text"]))], axis=1)
    lr = LogisticRegression(C=1.0).fit(x_val, val["Label"])
    x_test = np.stack([llm[:, 1] - llm[:, 0], reference], axis=1)
    np.testing.assert_allclose(clf.predict_proba(texts, calibrated=False)[:, 1], lr.predict_proba(x_test)[:, 1],
                               atol=1e-4)

    # on a random tiny LLM the n-grams carry the signal: the stacker leans on them and beats the LLM alone
    y = test["Label"].to_numpy()
    llm_acc = float(((llm[:, 1] > llm[:, 0]).astype(int) == y).mean())
    stacked_acc = float((clf.predict_proba(texts, calibrated=False).argmax(1) == y).mean())
    assert stacked_acc >= llm_acc + 0.05, (llm_acc, stacked_acc)
    assert stacked_acc > 0.9


def test_evaluate_and_onnx_read_the_stack(stacked_run, data_dir, tmp_path):
    from spamtune.evaluation import evaluate_run
    from spamtune.export.onnx import export_onnx
    from spamtune.inference import TextClassifier

    texts = list(read_split(data_dir / "test.csv")["Text"][:40])
    torch_probs = TextClassifier.load(stacked_run).predict_proba(texts)
    export_onnx(stacked_run, tmp_path / "onnx")
    assert (tmp_path / "onnx" / STACK_FILE).is_file()
    onnx_probs = TextClassifier.load(tmp_path / "onnx", runtime="onnx").predict_proba(texts)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)

    import shutil

    run = tmp_path / "run"
    shutil.copytree(stacked_run, run)
    report = evaluate_run(run, data_dir, limit=60, progress=False)
    assert report["accuracy"]["test"] > 0.9, report["accuracy"]


def test_stack_refusals(stacked_run, tiny_gpt2_dir, tmp_path):
    from spamtune.export.hf import export_hf
    from spamtune.inference import TextClassifier
    from spamtune.training import train_run

    with pytest.raises(ConfigError, match="--format onnx"):
        export_hf(stacked_run, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()

    damaged = tmp_path / "damaged"
    import shutil

    shutil.copytree(stacked_run, damaged)
    (damaged / STACK_FILE).write_bytes((damaged / STACK_FILE).read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        TextClassifier.load(damaged)
    (damaged / STACK_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        TextClassifier.load(damaged)

    three = tmp_path / "three"
    three.mkdir()
    rows = [f"{label},message {i} about {label}\n" for i in range(30) for label in ("a", "b", "c")]
    (three / "messages.csv").write_text("label,text\n" + "".join(rows))
    from spamtune.data import prepare

    prepare(three / "data", three / "messages.csv", text_col="text", label_col="label")
    for flag in ("stack", "cascade"):  # the cascade's n-gram model is binary too
        with pytest.raises(ConfigError, match=f"--{flag} ngrams needs two labels"):
            train_run(TrainArgs(model=str(tiny_gpt2_dir), epochs=1, **{flag: "ngrams"}), three / "data",
                      tmp_path / "r3")
        assert not (tmp_path / "r3").exists()
