"""spamtune against the tools a practitioner would pick instead, on a protocol that can tell close methods apart:
stratified K-fold cross-validation over all 5,574 messages (no undersampling), the folds written by
`spamtune prepare --folds K` (seed 123), every method fitted on each fold's train split (the classic and SetFit
peers also get its validation split, which they have no other use for; spamtune and the Trainer use it to pick
their best epoch) and scored on its test split.

Per method, mean ± std over the folds: accuracy, spam recall ("spam caught"), FPR ("ham blocked"), MCC, ROC-AUC,
FPR at 95 % spam recall (each method's own threshold for that recall, from its scores: equal recall), fit seconds
and test messages/s; and McNemar's exact test against the reference row (spamtune's default) on the pooled test
predictions (wins = messages the row gets right and the reference wrong).

    python -m benchmarks.peers --data ../shared/data/SMSSpamCollection                    # every method
    python -m benchmarks.peers --data ... --methods tfidf_svm,tfidf_lr,nb --no-record      # the classic ones
    python -m benchmarks.peers --data ... --methods setfit --store benchmarks/peers_store   # add rows to the table
    python -m benchmarks.peers --data ... --store benchmarks/peers_store --report           # tabulate what is stored

`--protocol paper` is the dataset paper's instead (Almeida, Gómez Hidalgo, Yamakami 2011): the first 30 % of the
collection in file order trains (every tenth of those messages is the validation split), the other 70 % test; one
"fold", so no ± and the McNemar test on the 3,902 test messages. Its table also has the paper's best published row
(a linear SVM), marked as published. Keep its rows in their own store (the fingerprint says which protocol).

    python -m benchmarks.peers --data ... --protocol paper --store benchmarks/peers_store_paper

With --store, each method's per-fold results are kept (one JSON file per row, tied to the data file's sha256, the
fold count and the row limit), methods already stored are not fitted again, and the table holds every stored row:
a 45-minute SetFit run need not be repeated to add a row. Each finished fold is kept too, so a stopped run resumes
at the fold it was in (LoRA on 2 cores takes most of an hour per fold: run it in several sittings). The rows in
RESULTS.md are committed in benchmarks/peers_store (small JSON files: metrics and per-message correctness, no
text), so a later session adds a row, or redraws the table and chart, without refitting the others.

Methods: tfidf_svm (word 1-2 + char 2-5 n-grams, LinearSVC), tfidf_lr (the same features, LogisticRegression),
nb (word 1-2 gram counts, MultinomialNB), word2vec (gensim word2vec trained on the fold, mean vectors, logistic
regression), cnn (a word CNN trained from scratch in PyTorch), setfit (SetFit on the embedded all-MiniLM-L6-v2),
minilm_trainer (all-MiniLM-L6-v2 fine-tuned with transformers' Trainer), spamtune (defaults; its training is also
stacked with n-grams, `train --stack ngrams`, which gives a second row, spamtune_stacked, from the same fine-tuned
model), spamtune_last_two_blocks (the best scope of the ablation table), spamtune_lora.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import chart_path, publish
from spamtune.calibration.decisions import binary_rates
from spamtune.data import prepare, read_split

Scorer = Callable[[list[str]], np.ndarray]  # texts -> spam scores (higher: more spam)
STACKED = "_stacked"  # the row a --stack ngrams training adds beside the LLM alone


@dataclass
class Fitted:
    score: Scorer
    threshold: float  # spam when score >= threshold (the method's own decision rule)


@dataclass
class Setting:
    work: Path
    limit: int | None = None  # rows per split (tests)
    quick: bool = False  # a few steps for the neural peers (tests)
    spamtune_model: str | None = None  # a different base for the spamtune rows (tests: the tiny model)
    spamtune_extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# the peers, each with the library its users use


def _tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
                         ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))])


def fit_tfidf_svm(train: pd.DataFrame, s: Setting) -> Fitted:
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    model = make_pipeline(_tfidf(), LinearSVC(C=1.0)).fit(train["Text"], train["Label"])
    return Fitted(lambda texts: model.decision_function(texts), 0.0)


def fit_tfidf_lr(train: pd.DataFrame, s: Setting) -> Fitted:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(_tfidf(), LogisticRegression(C=10.0, max_iter=2000)).fit(train["Text"], train["Label"])
    return Fitted(lambda texts: model.predict_proba(texts)[:, 1], 0.5)


def fit_nb(train: pd.DataFrame, s: Setting) -> Fitted:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(CountVectorizer(ngram_range=(1, 2)), MultinomialNB(alpha=0.1))
    model.fit(train["Text"], train["Label"])
    return Fitted(lambda texts: model.predict_proba(texts)[:, 1], 0.5)


WORD = r"[a-z0-9£$€']+"  # the word peers' tokens: lowercased words, numbers and prices


def _words(text: str) -> list[str]:
    import re

    return re.findall(WORD, text.lower())


def fit_word2vec(train: pd.DataFrame, s: Setting) -> Fitted:
    """word2vec (gensim) trained on the fold's training messages only, a message as the mean of its words'
    vectors, and a logistic regression on those: the lecture's "word2vec + classifier" row."""
    from gensim.models import Word2Vec
    from sklearn.linear_model import LogisticRegression

    sentences = [_words(t) for t in train["Text"]]
    w2v = Word2Vec(sentences, vector_size=100, window=5, min_count=1, sg=1, epochs=2 if s.quick else 20, seed=123,
                   workers=1)  # one worker: the same vectors every run

    def embed(texts: list[str]) -> np.ndarray:
        rows = np.zeros((len(texts), w2v.vector_size), dtype=np.float32)
        for i, t in enumerate(texts):
            known = [w for w in _words(t) if w in w2v.wv]
            if known:
                rows[i] = w2v.wv[known].mean(axis=0)
        return rows

    lr = LogisticRegression(C=10.0, max_iter=5000).fit(embed(list(train["Text"])), train["Label"])
    return Fitted(lambda texts: lr.predict_proba(embed(texts))[:, 1], 0.5)


def fit_cnn(train: pd.DataFrame, s: Setting) -> Fitted:
    """A word CNN trained from scratch (Kim 2014: embeddings, filters over 3, 4 and 5 words, max-pooled, dropout,
    a linear layer) in PyTorch on the fold's training messages: the lecture's "CNN/LSTM from scratch" row."""
    import collections

    import torch
    from torch import nn

    torch.manual_seed(123)
    counts = collections.Counter(w for t in train["Text"] for w in _words(t))
    vocab = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(20_000))}  # 0 pad, 1 unknown
    max_len = 64

    def encode(texts: list[str]) -> torch.Tensor:
        out = torch.zeros((len(texts), max_len), dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [vocab.get(w, 1) for w in _words(t)][:max_len] or [1]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    class TextCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(len(vocab) + 2, 64, padding_idx=0)
            self.convs = nn.ModuleList(nn.Conv1d(64, 64, k, padding=k - 1) for k in (3, 4, 5))
            self.drop = nn.Dropout(0.5)
            self.out = nn.Linear(3 * 64, 2)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.emb(ids).transpose(1, 2)
            pooled = [torch.relu(conv(x)).amax(dim=2) for conv in self.convs]
            return self.out(self.drop(torch.cat(pooled, dim=1)))

    model = TextCNN()
    x, y = encode(list(train["Text"])), torch.tensor(train["Label"].to_numpy(), dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(1 if s.quick else 8):
        model.train()
        for batch in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    model.eval()

    def score(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([torch.softmax(model(b), -1)[:, 1] for b in encode(texts).split(256)]).numpy()

    return Fitted(score, 0.5)


def fit_setfit(train: pd.DataFrame, s: Setting) -> Fitted:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from spamtune.weights.sources import minilm_path

    model = SetFitModel.from_pretrained(str(minilm_path()))
    # contrastive pairs grow with the square of the data: a fixed budget of steps, as SetFit's docs advise
    args = TrainingArguments(output_dir=str(s.work / "setfit"), batch_size=16, num_epochs=1, seed=123,
                             max_steps=4 if s.quick else 400, report_to="none", show_progress_bar=False,
                             save_strategy="no")
    data = Dataset.from_dict({"text": list(train["Text"]), "label": [int(v) for v in train["Label"]]})
    Trainer(model=model, args=args, train_dataset=data).train()
    return Fitted(lambda texts: np.asarray(model.predict_proba(texts))[:, 1], 0.5)


def fit_minilm_trainer(train: pd.DataFrame, s: Setting, validation: pd.DataFrame | None = None) -> Fitted:
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from spamtune.weights.sources import minilm_path

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    model = AutoModelForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=2)

    def encoded(df: pd.DataFrame) -> Dataset:
        data = Dataset.from_dict({"text": list(df["Text"]), "label": [int(v) for v in df["Label"]]})
        return data.map(lambda b: tok(b["text"], truncation=True, max_length=128), batched=True,
                        remove_columns=["text"])

    args = TrainingArguments(output_dir=str(s.work / "trainer"), num_train_epochs=3, learning_rate=5e-5,
                             per_device_train_batch_size=16, per_device_eval_batch_size=64, weight_decay=0.01,
                             eval_strategy="epoch" if validation is not None else "no", save_strategy="epoch"
                             if validation is not None else "no", load_best_model_at_end=validation is not None,
                             metric_for_best_model="loss", save_total_limit=1, report_to=[], seed=123,
                             max_steps=4 if s.quick else -1, use_cpu=not torch.cuda.is_available(),
                             disable_tqdm=True, logging_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=encoded(train), processing_class=tok,
                      eval_dataset=encoded(validation) if validation is not None else None,
                      data_collator=DataCollatorWithPadding(tok))
    trainer.train()
    model.eval()

    def score(texts: list[str]) -> np.ndarray:
        logits = trainer.predict(encoded(pd.DataFrame({"Text": texts, "Label": 0}))).predictions
        return torch.softmax(torch.as_tensor(logits), -1)[:, 1].numpy()

    return Fitted(score, 0.5)


def spamtune_method(**overrides) -> Callable[..., Fitted | dict[str, Fitted]]:
    """spamtune trained on the fold; with stack="ngrams" two rows from one training: the fine-tuned LLM alone
    (the run's logits before stacking: the default run's own) and the stacked run."""

    def fit(train: pd.DataFrame, s: Setting, fold_dir: Path) -> Fitted | dict[str, Fitted]:
        from spamtune.config import TrainArgs
        from spamtune.inference import TextClassifier
        from spamtune.training import train_run

        kw = {**overrides, **s.spamtune_extra}
        if s.spamtune_model:
            kw["model"] = s.spamtune_model
        run = s.work / "run"
        train_run(TrainArgs(limit=s.limit, **kw), fold_dir, run, overwrite=True)
        clf = TextClassifier.load(run)
        stacked = Fitted(lambda texts: clf.predict_proba(texts, batch_size=32)[:, 1], 0.5)  # argmax, as evaluate
        if clf.run.stack is None:
            return stacked

        def alone(texts: list[str]) -> np.ndarray:  # the fine-tuned model's own logits, before the n-grams
            return clf.scores_from_logits(clf.model_logits(texts, 32)[0], calibrated=False)[:, 1]

        return {"": Fitted(alone, 0.5), STACKED: stacked}
    return fit


METHODS: dict[str, tuple[str, Callable[..., Fitted]]] = {
    "tfidf_svm": ("TF-IDF word+char n-grams + linear SVM (scikit-learn)", fit_tfidf_svm),
    "tfidf_lr": ("TF-IDF word+char n-grams + logistic regression (scikit-learn)", fit_tfidf_lr),
    "nb": ("word 1-2 gram counts + multinomial naive Bayes (scikit-learn)", fit_nb),
    "word2vec": ("word2vec (gensim skip-gram, 100 d, trained on the fold) mean vectors + logistic regression",
                 fit_word2vec),
    "cnn": ("word CNN from scratch (PyTorch: 64-d embeddings, 3/4/5-word filters, 8 epochs)", fit_cnn),
    "setfit": ("SetFit on all-MiniLM-L6-v2 (setfit)", fit_setfit),
    "minilm_trainer": ("all-MiniLM-L6-v2 fine-tuned, 3 epochs (transformers Trainer)", fit_minilm_trainer),
    "spamtune": ("spamtune defaults (SmolLM2-135M, last block); spamtune_stacked: the same run stacked with word + "
                 "char n-grams (train --stack ngrams)", spamtune_method(stack="ngrams")),
    "spamtune_last_two_blocks": ("spamtune, last two blocks", spamtune_method(trainable="last_two_blocks")),
    "spamtune_lora": ("spamtune, LoRA r16, lr 5e-4", spamtune_method(trainable="lora", lr=5e-4)),
}
REFERENCE = "spamtune"


# ---------------------------------------------------------------------------------------------------------------
# the protocol

PAPER_TRAIN = 0.3  # the paper's share, first in file order
# the paper's best method, a linear SVM (Almeida, Gómez Hidalgo, Yamakami, DocEng 2011), as it reports it
PAPER_ROW = {"accuracy": 0.9764, "recall": 0.8310, "fpr": 0.0018, "mcc": 0.893}


def paper_split(data: Path, out: Path) -> Path:
    """OUT/paper, a data directory in `spamtune prepare`'s format: the first 30 % of the collection in file order
    train (every tenth of them validates), the rest test."""
    import csv

    from spamtune.data import LABELS_FILE, LabelSet, parse_sms_collection

    df = parse_sms_collection(Path(data).read_bytes(), str(data))
    labels = LabelSet.from_values(df["Label"])
    first = df.iloc[: int(round(PAPER_TRAIN * len(df)))]
    tenth = np.arange(len(first)) % 10 == 9
    parts = {"train.csv": first[~tenth], "validation.csv": first[tenth], "test.csv": df.iloc[len(first):],
             "unused.csv": df.iloc[:0]}
    where = out / "paper"
    where.mkdir(parents=True)
    for name, part in parts.items():
        part.assign(Label=part["Label"].map(labels.label2id))[["Label", "Text"]].to_csv(
            where / name, index=False, quoting=csv.QUOTE_MINIMAL)
    (where / LABELS_FILE).write_text(json.dumps(labels.to_json(), indent=2) + "\n")
    return where


def fold_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    pred = (scores >= threshold).astype(int)
    spam, ham = y == 1, y == 0
    rates = binary_rates(y, pred == 1)
    # FPR at 95 % recall: the highest threshold that still catches 95 % of this fold's spam
    t95 = np.sort(scores[spam])[::-1][int(np.ceil(0.95 * spam.sum())) - 1]
    return {"accuracy": rates["accuracy"], "recall": rates["recall"], "fpr": rates["fpr"],
            "mcc": float(matthews_corrcoef(y, pred)), "roc_auc": float(roc_auc_score(y, scores)),
            "fpr_at_95_recall": float((scores[ham] >= t95).mean())}


def mcnemar(ref_right: np.ndarray, right: np.ndarray) -> dict[str, float]:
    """Exact McNemar test: wins (right where the reference is wrong), losses, two-sided p."""
    from scipy.stats import binomtest

    wins, losses = int((right & ~ref_right).sum()), int((~right & ref_right).sum())
    p = binomtest(min(wins, losses), wins + losses, 0.5).pvalue if wins + losses else 1.0
    return {"wins": wins, "losses": losses, "p": float(p)}


def modern_set() -> pd.DataFrame:
    """benchmarks/data/modern_sms.csv (evaluation only) as Label (1 spam) / Text."""
    df = pd.read_csv(Path(__file__).parent / "data" / "modern_sms.csv", dtype=str, keep_default_na=False)
    return pd.DataFrame({"Label": (df["label"] == "spam").astype(int), "Text": df["text"]})


def run_protocol(folds: list[Path], names: list[str], s: Setting,
                 modern: pd.DataFrame | None = None, store: Store | None = None) -> dict[str, dict]:
    """Every method on every fold: per-fold metrics, timings and the pooled per-message correctness; with `modern`,
    every fold's model also scores that set (its metrics per fold model). With `store`, a method whose row is
    stored is not fitted again, each finished fold is kept at once (a stopped run resumes at the first fold not
    kept: a slow method's folds can take several sittings), and a method's rows are stored once all its folds are."""
    import inspect

    out: dict[str, dict] = {}
    for name in names:
        if store is not None and store.has(name):
            print(f"{name}: stored in {store.root}", flush=True)
            continue
        _, fit = METHODS[name]
        params = inspect.signature(fit).parameters
        for k, fold in enumerate(folds, start=1):
            kept = store.fold(name, k) if store is not None else None
            if kept is not None:
                print(f"{name} {fold.name}: kept from an earlier run", flush=True)
            else:
                kept = _fit_fold(name, fit, params, fold, s, modern)
                if store is not None:
                    store.save_fold(name, k, kept)
            for row, entry in kept.items():
                r = out.setdefault(row, {"folds": [], "right": [], "modern": []})
                r["folds"].append(entry["fold"])
                r["right"].append(np.asarray(entry["right"], dtype=bool))
                if entry["modern"] is not None:
                    r["modern"].append(entry["modern"])
        if store is not None:
            store.save_rows(name, {row: r for row, r in out.items() if row == name or row.startswith(name + STACKED)})
    for r in out.values():
        r["right"] = np.concatenate(r["right"])
    return out


def _fit_fold(name: str, fit: Callable[..., Fitted], params, fold: Path, s: Setting,
              modern: pd.DataFrame | None) -> dict[str, dict]:
    """One method fitted on one fold: for each row it gives, the fold's metrics, the modern-set metrics (or None)
    and the per-message correctness on the fold's test split."""
    parts = {split: read_split(fold / f"{split}.csv")[: s.limit] for split in ("train", "validation", "test")}
    train = parts["train"]
    kwargs: dict = {}
    if "fold_dir" in params:
        kwargs["fold_dir"] = fold
    elif "validation" in params:
        kwargs["validation"] = parts["validation"]
    else:  # no use for a validation split: it is more training data
        train = pd.concat([train, parts["validation"]], ignore_index=True)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=s.work) as tmp:
        t0 = time.perf_counter()
        fitted = fit(train, dataclasses.replace(s, work=Path(tmp)), **kwargs)
        fit_s = time.perf_counter() - t0  # one training serves every row it gives
        for suffix, f in (fitted.items() if isinstance(fitted, dict) else [("", fitted)]):
            texts, y = list(parts["test"]["Text"]), parts["test"]["Label"].to_numpy()
            t0 = time.perf_counter()
            scores = np.asarray(f.score(texts), dtype=np.float64)
            predict_s = time.perf_counter() - t0
            on_modern = None
            if modern is not None:
                modern_scores = np.asarray(f.score(list(modern["Text"])), dtype=np.float64)
                on_modern = fold_metrics(modern["Label"].to_numpy(), modern_scores, f.threshold)
            metrics = {**fold_metrics(y, scores, f.threshold), "fit_s": fit_s, "msgs_per_s": len(texts) / predict_s}
            rows[name + suffix] = {"fold": metrics, "modern": on_modern,
                                   "right": ((scores >= f.threshold).astype(int) == y).tolist()}
            print(f"{name + suffix} {fold.name}: " + ", ".join(f"{key} {v:.4f}" for key, v in metrics.items()),
                  flush=True)
    return rows


class Store:
    """Per-row results kept across invocations: ROOT/<row>.json with the per-fold metrics, the modern-set metrics
    and the per-message correctness (for the paired test), under the fingerprint of the data they came from; and,
    while a method is under way, ROOT/partial/<method>/fold<k>.json for each of its finished folds."""

    def __init__(self, root: Path, fingerprint: dict) -> None:
        self.root, self.fingerprint = root, fingerprint

    def has(self, row: str) -> bool:
        return self._load(self.root / f"{row}.json") is not None

    def fold(self, name: str, k: int) -> dict[str, dict] | None:
        """Method `name`'s kept fold k: {row: {"fold", "modern", "right"}}, or None."""
        r = self._load(self.root / "partial" / name / f"fold{k}.json")
        return None if r is None else r["rows"]

    def save_fold(self, name: str, k: int, rows: dict[str, dict]) -> None:
        from spamtune.fsutil import write_json

        (self.root / "partial" / name).mkdir(parents=True, exist_ok=True)
        write_json(self.root / "partial" / name / f"fold{k}.json", {"fingerprint": self.fingerprint, "rows": rows})

    def save_rows(self, name: str, rows: dict[str, dict]) -> None:
        """Method `name`'s finished rows (per fold, as run_protocol collects them); its kept folds go."""
        import shutil

        from spamtune.fsutil import write_json

        self.root.mkdir(parents=True, exist_ok=True)
        for row, r in rows.items():
            right = np.concatenate(r["right"])
            write_json(self.root / f"{row}.json", {"fingerprint": self.fingerprint, "folds": r["folds"],
                                                   "modern": r["modern"], "right": right.astype(int).tolist()})
        shutil.rmtree(self.root / "partial" / name, ignore_errors=True)

    def rows(self) -> dict[str, dict]:
        """Every stored row, in METHODS order (a stacked row after its own)."""
        found = {row: r for name in METHODS for row in (name, name + STACKED)
                 if (r := self._load(self.root / f"{row}.json")) is not None}
        return {n: {**r, "right": np.asarray(r["right"], dtype=bool)} for n, r in found.items()}

    def under_way(self, folds: int) -> dict[str, int]:
        """Methods with kept folds but no row yet: how many of their `folds` folds are kept."""
        return {name: n for name in METHODS if not self.has(name)
                and (n := sum(self.fold(name, k) is not None for k in range(1, folds + 1)))}

    def _load(self, path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            r = json.loads(path.read_text())
            stale = r["fingerprint"] != self.fingerprint
        except (ValueError, KeyError, TypeError):
            raise SystemExit(f"{path} is not a stored peers result: remove it") from None
        if stale:
            raise SystemExit(f"{path} was measured on other data or folds ({r['fingerprint']}, now "
                             f"{self.fingerprint}): use another --store")
        return r


def fold_cell(values: pd.Series, col: str) -> str:
    scale = 100 if col in ("accuracy", "recall", "fpr", "fpr_at_95_recall") else 1
    digits = 3 if col in ("mcc", "roc_auc") else (2 if scale == 100 else 0)
    if len(values) == 1:  # one split (the paper's protocol): no spread to show
        return f"{values.iloc[0] * scale:.{digits}f}"
    return f"{values.mean() * scale:.{digits}f} ± {values.std(ddof=1) * scale:.{digits}f}"


def modern_table(results: dict[str, dict]) -> str:
    """Each method's fold models on the modern set: mean ± std over the models."""
    lines = ["| method | accuracy % | spam caught % | ham blocked % | MCC | ROC-AUC |", "|---" * 6 + "|"]
    for name, r in results.items():
        if r.get("modern"):
            df = pd.DataFrame(r["modern"])
            lines.append(f"| {name} | " + " | ".join(fold_cell(df[c], c) for c in ("accuracy", "recall", "fpr", "mcc",
                                                                                 "roc_auc")) + " |")
    return "\n".join(lines)


def table(results: dict[str, dict]) -> str:
    ref = results.get(REFERENCE)
    cols = ("accuracy", "recall", "fpr", "mcc", "roc_auc", "fpr_at_95_recall")
    lines = ["| method | accuracy % | spam caught % | ham blocked % | MCC | ROC-AUC | ham blocked at 95 % caught, % | "
             f"fit s | msgs/s | vs {REFERENCE}: wins / losses, McNemar p |", "|---" * 10 + "|"]
    for name, r in results.items():
        df = pd.DataFrame(r["folds"])
        cell = {c: fold_cell(df[c], c) for c in (*cols, "fit_s", "msgs_per_s")}
        if ref is None or name == REFERENCE:
            versus = "reference" if name == REFERENCE else "n/a"
        else:
            t = mcnemar(ref["right"], r["right"])
            versus = f"{t['wins']} / {t['losses']}, p {t['p']:.3g}"
        lines.append(f"| {name} | {cell['accuracy']} | {cell['recall']} | {cell['fpr']} | {cell['mcc']} | "
                     f"{cell['roc_auc']} | {cell['fpr_at_95_recall']} | {cell['fit_s']} | {cell['msgs_per_s']} | "
                     f"{versus} |")
    return "\n".join(lines)


def chart(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.5 * len(names) + 1.8), sharey=True)
    for ax, (col, label, scale) in zip(axes, (("mcc", "MCC", 1), ("fpr", "ham blocked %", 100),
                                              ("recall", "spam caught %", 100))):
        df = [pd.DataFrame(results[n]["folds"])[col] * scale for n in names]
        ax.barh(names, [d.mean() for d in df], xerr=[d.std(ddof=1) if len(d) > 1 else 0 for d in df],
                color=["tab:orange" if n.startswith("spamtune") else "tab:blue" for n in names], capsize=3)
        ax.set_xlabel(f"{label} (mean ± std over folds)")
        if col == "mcc":
            ax.set_xlim(max(0.0, min(d.mean() for d in df) - 0.05), 1.0)
    axes[0].invert_yaxis()
    fig.suptitle("Stratified 5-fold CV over all 5,574 messages (orange: spamtune)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the SMSSpamCollection file")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--protocol", choices=("kfold", "paper"), default="kfold",
                    help="kfold: stratified K-fold over all messages; paper: the dataset paper's first 30 %% / rest")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma list (default: all)")
    ap.add_argument("--chart", type=Path, help="draw the chart here (default: benchmarks/peers.png, the committed "
                    "chart, unless --no-record: a trial run does not redraw it)")
    ap.add_argument("--json", type=Path, help="also write the per-fold figures here")
    ap.add_argument("--store", type=Path, help="keep each row's results here; stored methods are not refitted "
                    "and the table holds every stored row")
    ap.add_argument("--report", action="store_true", help="only tabulate the rows under --store")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args(argv)
    names = [n for n in a.methods.split(",") if n]
    if unknown := [n for n in names if n not in METHODS]:
        raise SystemExit(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    if a.report and a.store is None:
        raise SystemExit("--report tabulates the rows under --store: give --store DIR")
    from spamtune.fsutil import sha256_file

    if not Path(a.data).is_file():
        raise SystemExit(f"--data {a.data}: no such file")
    paper = a.protocol == "paper"
    fingerprint = {"data_sha256": sha256_file(a.data), "folds": 1 if paper else a.folds, "limit": None,
                   **({"protocol": "paper"} if paper else {})}
    store = Store(a.store, fingerprint) if a.store else None
    modern = modern_set()
    if not a.report:
        with tempfile.TemporaryDirectory() as tmp:
            if paper:
                folds = [paper_split(Path(a.data), Path(tmp))]
            else:
                prepare(Path(tmp) / "cv", a.data, folds=a.folds)
                folds = [Path(tmp) / "cv" / f"fold{k}" for k in range(1, a.folds + 1)]
            results = run_protocol(folds, names, Setting(Path(tmp)), modern, store)
    under_way: dict[str, int] = {}
    if store is not None:
        results = store.rows()
        names = list(dict.fromkeys(n.removesuffix(STACKED) for n in results))
        under_way = store.under_way(1 if paper else a.folds)
    if not results:
        raise SystemExit(f"no results under {a.store}")
    if paper:
        published = (f"| paper's best: linear SVM (published) | {PAPER_ROW['accuracy'] * 100:.2f} | "
                     f"{PAPER_ROW['recall'] * 100:.2f} | {PAPER_ROW['fpr'] * 100:.2f} | {PAPER_ROW['mcc']:.3f} | "
                     + " | ".join("-" * 5) + " |")
        body = "\n".join([table(results), published, "", "\n".join(f"- {n}: {METHODS[n][0]}" for n in names), "",
                          "Trained on the first 30 % of the collection in file order (every tenth of it validates: "
                          "spamtune and the Trainer pick their epoch there, the others train on it), tested on the "
                          "other 70 %, as the dataset's paper (Almeida, Gómez Hidalgo, Yamakami 2011); one "
                          "split, so no ±. Decisions at each method's own rule (argmax / 0 for the SVM)."])
        if under_way:
            body += "\n\nUnder way: " + ", ".join(under_way) + "."
        publish("Peers: the dataset paper's protocol (first 30 % trains, 70 % test)", body, record=not a.no_record)
        return
    drawn = chart_path(a.chart, Path(__file__).with_name("peers.png"), record=not a.no_record)
    if drawn is not None:
        chart(results, drawn)
    if a.json:
        a.json.write_text(json.dumps({n: r["folds"] for n, r in results.items()}, indent=1))
    body = "\n".join([table(results), "", "\n".join(f"- {n}: {METHODS[n][0]}" for n in names), "",
                      f"Rows ending {STACKED} come from the same training as the row without it (its fit s is "
                      "that training's, n-gram half included).", "",
                      f"Chart: {drawn.name if drawn else 'not drawn'}. Decisions at each method's own rule "
                      "(argmax / 0 for the SVM); 'ham blocked at 95 % caught' puts every method at equal recall.", "",
                      f"The same fold models on benchmarks/data/modern_sms.csv ({len(modern)} messages of the 2020s "
                      f"written for this, {int(modern['Label'].sum())} spam; never trained on):", "",
                      modern_table(results)])
    if under_way:
        body += "\n\nUnder way (a row appears once all its folds are kept): " + ", ".join(
            f"{n}, {k} of {a.folds} folds" for n, k in under_way.items()) + "."
    publish(f"Peers: stratified {a.folds}-fold CV over all messages", body, record=not a.no_record)


if __name__ == "__main__":
    main()
