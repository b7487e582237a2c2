"""Balance and split (book §6.2 semantics; pandas' sampling with the same seeds, so the book's split is reproduced)."""

from __future__ import annotations

import pandas as pd

from spamtune.errors import ConfigError


def create_balanced_dataset(df: pd.DataFrame, seed: int = 123) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Undersample every class to the smallest one's count. Returns (balanced, unused rows)."""
    n_min = df["Label"].value_counts().min()
    kept = []
    for label in sorted(df["Label"].unique()):
        rows = df[df["Label"] == label]
        # like the book: the majority class is sampled, the minority class kept whole and in order
        kept.append(rows.sample(n_min, random_state=seed) if len(rows) > n_min else rows)
    balanced = pd.concat(kept)
    unused = df.drop(balanced.index)
    return balanced.reset_index(drop=True), unused.reset_index(drop=True)


def random_split(df: pd.DataFrame, train_frac: float, validation_frac: float, test_frac: float | None = None,
                 seed: int = 123, stratify: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle and cut into train/validation/test (the book's `random_split`); test is the rest unless given."""
    if stratify:
        from sklearn.model_selection import train_test_split

        n_train, n_val, n_test = split_sizes(len(df), train_frac, validation_frac, test_frac)
        train, rest = train_test_split(df, train_size=n_train, random_state=seed, stratify=df["Label"])
        val, rest = train_test_split(rest, train_size=n_val, random_state=seed, stratify=rest["Label"])
        if n_test < len(rest):
            rest, _ = train_test_split(rest, train_size=n_test, random_state=seed, stratify=rest["Label"])
        return train.reset_index(drop=True), val.reset_index(drop=True), rest.reset_index(drop=True)
    df = df.sample(frac=1, random_state=seed).reset_index(drop=True)
    n_train, n_val, n_test = split_sizes(len(df), train_frac, validation_frac, test_frac)
    train_end, validation_end, test_end = n_train, n_train + n_val, n_train + n_val + n_test
    return (df[:train_end].reset_index(drop=True), df[train_end:validation_end].reset_index(drop=True),
            df[validation_end:test_end].reset_index(drop=True))


def split_sizes(n: int, train_frac: float, validation_frac: float, test_frac: float | None) -> tuple[int, int, int]:
    """Rows of train, validation and test for n rows; test is the rest unless its fraction is given."""
    n_train, n_val = int(n * train_frac), int(n * validation_frac)
    return n_train, n_val, n - n_train - n_val if test_frac is None else int(n * test_frac)


def check_fractions(train_frac: float, validation_frac: float, test_frac: float | None) -> None:
    fracs = [train_frac, validation_frac] + ([] if test_frac is None else [test_frac])
    if any(f <= 0 for f in fracs) or sum(fracs) > 1 + 1e-9:
        raise ConfigError(f"split fractions must be positive and sum to at most 1 (got {'+'.join(map(str, fracs))})")


def stratified_folds(df: pd.DataFrame, k: int, seed: int = 123,
                     validation_frac: float = 0.1) -> list[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """k-fold cross-validation over every row (scikit-learn's StratifiedKFold, shuffled with `seed`): fold i tests
    on its own 1/k of the rows; a stratified `validation_frac` of all rows is cut from the rest for validation."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    if not 2 <= k <= 20 or k > df["Label"].value_counts().min():
        raise ConfigError(f"--folds must be between 2 and 20 and at most the rows of the smallest class (got {k})")
    out = []
    for rest_idx, test_idx in StratifiedKFold(k, shuffle=True, random_state=seed).split(df, df["Label"]):
        rest = df.iloc[rest_idx]
        train, val = train_test_split(rest, test_size=int(len(df) * validation_frac), random_state=seed,
                                      stratify=rest["Label"])
        out.append(tuple(part.reset_index(drop=True) for part in (train, val, df.iloc[test_idx])))
    return out  # type: ignore[return-value]
