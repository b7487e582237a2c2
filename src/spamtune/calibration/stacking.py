"""`train --stack ngrams`: the fine-tuned LLM's spam margin stacked with a word + character n-gram linear model.

Why: on the natural distribution a TF-IDF linear SVM fitted in a second is as accurate as the fine-tuned LLM and
blocks less ham (benchmarks/peers.py), and the two make different mistakes: the n-grams see spellings, numbers and
URLs the tokenizer splits up; the LLM sees meaning the n-grams never met. Stacking lets each cover the other.

Fitting, with the best epoch's weights in the model (training/calibrate.py), on the training folds only:
- the n-gram model on the training split: hashed TF-IDF word 1-2 and character 2-5 grams (char_wb), sublinear tf,
  and a linear SVM: the peers' strongest classic row, with hashing so nothing but arrays is stored;
- the stacker, a logistic regression on the two margins (LLM logit difference, SVM decision value), on the
  validation split, which neither model trained on.
The run's logits then are (0, stacked margin): calibration, the operating point, bands, evaluation, serving and
the ONNX runtime read them unchanged. Binary single-label runs only. Stored in RUN/stack.safetensors (arrays, no
pickle), checked on load like the weights.

`train --cascade ngrams` fits the same n-gram model on the training split for the cascade's cheap check (the
decision pipeline's "cascade", inference/cascade.py), and its two bands on margins the model never trained on:
out-of-fold margins of the training split (`CASCADE_FOLDS` cross-fitted models of the same kind), the validation
split and the calibration half of the unused ham (decisions.pick_cascade_bands). The model is stored in
RUN/cascade.safetensors, the bands in the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spamtune.calibration.decisions import CascadeBands, pick_cascade_bands
from spamtune.config import Normalization
from spamtune.errors import CheckpointError, ConfigError, ModelSourceError
from spamtune.normalize import normalize_text

STACK_FILE = "stack.safetensors"
CASCADE_FILE = "cascade.safetensors"
CASCADE_FOLDS = 5
N_FEATURES = 2**19  # per part (word, char): collisions are rare at SMS vocabulary sizes
PARTS = {"word": ("word", (1, 2)), "char": ("char_wb", (2, 5))}


def _hashers():
    from sklearn.feature_extraction.text import HashingVectorizer

    return {name: HashingVectorizer(analyzer=analyzer, ngram_range=span, n_features=N_FEATURES,
                                    alternate_sign=False, norm=None)
            for name, (analyzer, span) in PARTS.items()}


def hashed_counts(texts: Sequence[str], normalize: Normalization) -> dict:
    """Part -> (N, N_FEATURES) sparse n-gram counts of the normalized texts."""
    texts = [normalize_text(t, normalize) for t in texts]
    return {name: hasher.transform(texts) for name, hasher in _hashers().items()}


@dataclass
class NgramModel:
    """The hashed word + character n-gram TF-IDF features and a linear SVM over them: the stacked run's second
    model and the cascade's cheap check (inference/cascade.py)."""

    idf: dict[str, np.ndarray]  # part -> (N_FEATURES,) inverse document frequencies
    coef: np.ndarray  # (2 * N_FEATURES,) the SVM's weights over [word | char]
    intercept: float
    normalize: Normalization  # the run's text normalization, applied before the n-grams too

    SHAPES = {**{f"idf.{k}": (N_FEATURES,) for k in PARTS}, "coef": (2 * N_FEATURES,), "intercept": (1,)}  # stored

    def features(self, texts: Sequence[str]):
        """(N, 2 * N_FEATURES) sparse TF-IDF rows, each part l2-normalised (as a union of TfidfVectorizers)."""
        return self.tfidf(hashed_counts(texts, self.normalize))

    def tfidf(self, counts: dict):
        import scipy.sparse as sp
        from sklearn.feature_extraction.text import TfidfTransformer

        blocks = []
        for name, part in counts.items():
            tfidf = TfidfTransformer(sublinear_tf=True)
            tfidf.idf_ = self.idf[name]
            blocks.append(tfidf.transform(part))
        return sp.hstack(blocks, format="csr")

    def ngram_margin(self, texts: Sequence[str]) -> np.ndarray:
        return self.margins(self.features(texts))

    def margins(self, features) -> np.ndarray:
        """The SVM's decision values of rows of `features` (for a caller that reads the features too)."""
        return np.asarray(features @ self.coef, dtype=np.float64) + self.intercept

    def contributions(self, text: str) -> list[tuple[str, float]]:
        """Each n-gram of `text`, named with its part ("claim your (words)", " see (chars)"), with its exact share of
        the margin (its tf-idf value times its weight; the shares and the intercept sum to `ngram_margin`).
        N-grams that hash to one feature share its contribution, named together ("a | b (chars)")."""
        from sklearn.utils import murmurhash3_32

        normalized = normalize_text(text, self.normalize)
        x = self.features([text]).tocsr()
        out: list[tuple[str, float]] = []
        for offset, (name, hasher) in enumerate(_hashers().items()):
            grams: dict[int, list[str]] = {}
            for gram in dict.fromkeys(hasher.build_analyzer()(normalized)):  # FeatureHasher's index rule
                grams.setdefault(abs(murmurhash3_32(gram, seed=0)) % N_FEATURES, []).append(gram)
            for index, names in grams.items():
                j = offset * N_FEATURES + index
                out.append((f"{' | '.join(names)} ({'words' if name == 'word' else 'chars'})",
                            float(x[0, j] * self.coef[j])))
        return out

    def tensors(self) -> dict:
        import torch

        out = {f"idf.{k}": torch.from_numpy(v.astype(np.float32)) for k, v in self.idf.items()}
        out["coef"] = torch.from_numpy(self.coef.astype(np.float32))
        out["intercept"] = torch.tensor([self.intercept], dtype=torch.float64)
        return out

    @classmethod
    def from_tensors(cls, t: dict, normalize: Normalization) -> NgramModel:
        return cls({k: t[f"idf.{k}"].double().numpy() for k in PARTS}, t["coef"].double().numpy(),
                   float(t["intercept"][0]), normalize)


def read_checked(path: Path, shapes: Mapping[str, tuple[int, ...]], what: str) -> dict:
    """The tensors of `path` (a run's stack or cascade file), checked: every one present, of the right shape,
    finite; a `CheckpointError` otherwise."""
    from spamtune.weights import read_safetensors

    if not path.is_file():
        raise CheckpointError(f"{path.parent}: the manifest says {what} but {path.name} is missing")
    try:
        t = read_safetensors(path)
    except ModelSourceError as e:
        raise CheckpointError(str(e)) from None
    for name, shape in shapes.items():
        if name not in t or tuple(t[name].shape) != shape:
            raise CheckpointError(f"{path}: {name} is missing or not of shape {shape} (damaged or incompatible)")
        if not bool(t[name].isfinite().all()):
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values (damaged)")
    return t


def fit_ngram_model(texts: Sequence[str], y: np.ndarray, normalize: Normalization, seed: int = 123) -> NgramModel:
    """The n-gram model (TF-IDF fitted on `texts`, a LinearSVC with C=1, the peers' strongest classic row)."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.svm import LinearSVC

    counts = hashed_counts(texts, normalize)
    idf = {name: TfidfTransformer(sublinear_tf=True).fit(part).idf_ for name, part in counts.items()}
    model = NgramModel(idf, np.zeros(2 * N_FEATURES), 0.0, normalize)
    svm = LinearSVC(C=1.0, random_state=seed).fit(model.tfidf(counts), y)
    model.coef, model.intercept = svm.coef_[0].astype(np.float64), float(svm.intercept_[0])
    return model


@dataclass
class NgramStack:
    ngrams: NgramModel
    stacker: np.ndarray  # (3,) weights of [LLM margin, SVM margin, 1]

    def ngram_margin(self, texts: Sequence[str]) -> np.ndarray:
        return self.ngrams.ngram_margin(texts)

    def combine(self, logits: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """(N, 2) LLM logits of `texts` -> (N, 2) stacked logits (0, margin): softmax gives the stacker's P(spam)."""
        return self.combine_margins(logits, self.ngram_margin(texts))

    def combine_margins(self, logits: np.ndarray, ngram_margin: np.ndarray) -> np.ndarray:
        """`combine` with the n-gram margins already computed (the decision pipeline's n-gram check)."""
        m = stack_inputs(logits, ngram_margin) @ self.stacker
        return np.stack([np.zeros_like(m), m], axis=1).astype(np.float32)

    def save(self, run_dir: Path) -> None:
        import torch

        from spamtune.weights import save_weights

        save_weights(run_dir / STACK_FILE,
                     {**self.ngrams.tensors(), "stacker": torch.from_numpy(self.stacker.astype(np.float64))})

    @classmethod
    def load(cls, run_dir: Path, normalize: Normalization) -> NgramStack:
        """RUN/stack.safetensors, checked like the weights."""
        t = read_checked(run_dir / STACK_FILE, {**NgramModel.SHAPES, "stacker": (3,)}, "--stack ngrams")
        return cls(NgramModel.from_tensors(t, normalize), t["stacker"].double().numpy())


def save_cascade(model: NgramModel, run_dir: Path) -> None:
    from spamtune.weights import save_weights  # torch: only when writing

    save_weights(run_dir / CASCADE_FILE, model.tensors())


def load_cascade(run_dir: Path, normalize: Normalization) -> NgramModel:
    """RUN/cascade.safetensors, checked like the weights."""
    return NgramModel.from_tensors(read_checked(run_dir / CASCADE_FILE, NgramModel.SHAPES, "--cascade ngrams"),
                                   normalize)


def fit_cascade(train_texts: Sequence[str], train_y: np.ndarray, held_texts: Sequence[str], held_y: np.ndarray,
                normalize: Normalization, spam_allowed: float, ham_blocked: float, seed: int = 123,
                model: NgramModel | None = None) -> tuple[NgramModel, CascadeBands]:
    """The cascade's n-gram model on the training split and its bands on held-out margins: the training split's
    out-of-fold ones and those of `held_texts` (validation, calibration ham). `model`: that model when the caller
    has fitted it already (a stacked run's n-grams: the same fit)."""
    from sklearn.model_selection import StratifiedKFold

    train_y, held_y = np.asarray(train_y), np.asarray(held_y)
    if min(np.bincount(train_y, minlength=2)) < CASCADE_FOLDS:
        raise ConfigError(f"--cascade ngrams needs at least {CASCADE_FOLDS} spam and {CASCADE_FOLDS} ham in the "
                          "training split (its bands come from out-of-fold margins)")
    texts = list(train_texts)
    oof = np.zeros(len(texts))
    for fit_rows, held_rows in StratifiedKFold(CASCADE_FOLDS, shuffle=True, random_state=seed).split(texts, train_y):
        fold = fit_ngram_model([texts[i] for i in fit_rows], train_y[fit_rows], normalize, seed)
        oof[held_rows] = fold.ngram_margin([texts[i] for i in held_rows])
    model = model or fit_ngram_model(texts, train_y, normalize, seed)
    margins = np.concatenate([oof, model.ngram_margin(list(held_texts))]) if len(held_texts) else oof
    y = np.concatenate([train_y, held_y])
    return model, pick_cascade_bands(margins[y == 1], margins[y == 0], spam_allowed, ham_blocked)


def stack_inputs(logits: np.ndarray, ngram_margin: np.ndarray) -> np.ndarray:
    """(N, 3): the LLM's margin, the n-gram model's, and a constant for the stacker's bias."""
    llm = logits[:, 1].astype(np.float64) - logits[:, 0]
    return np.stack([llm, ngram_margin, np.ones_like(llm)], axis=1)


def fit_stack(train_texts: Sequence[str], train_y: np.ndarray, val_texts: Sequence[str], val_y: np.ndarray,
              val_logits: np.ndarray, normalize: Normalization, seed: int = 123) -> NgramStack:
    """The n-gram SVM on the training split, then the stacker on the validation split's two margins."""
    from sklearn.linear_model import LogisticRegression

    for y, split in ((train_y, "training"), (val_y, "validation")):
        if len(set(np.asarray(y).tolist())) != 2:
            raise ConfigError(f"--stack ngrams needs spam and ham in the {split} split")
    stack = NgramStack(fit_ngram_model(train_texts, train_y, normalize, seed), np.zeros(3))
    x = stack_inputs(val_logits, stack.ngram_margin(val_texts))[:, :2]
    lr = LogisticRegression(C=1.0).fit(x, val_y)
    stack.stacker = np.array([*lr.coef_[0], lr.intercept_[0]], dtype=np.float64)
    return stack
