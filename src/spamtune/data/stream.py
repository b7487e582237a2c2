"""`prepare` for a CSV/TSV too large to hold: two passes over the file in blocks of rows. The first checks every row
and counts the labels; the second gives each row its split and appends it to that split's file. Memory holds one
block whatever the file's size.

The split is as random as the in-memory one and has the same sizes (undersampling to the smallest class, then the
fractions), drawn sequentially: each block's share of every remaining quota is a multivariate hypergeometric draw,
shuffled within the block, which makes every assignment with those sizes equally likely. Rows keep their file order
within a split (training shuffles anyway), so for the same seed the split differs from the in-memory one."""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from spamtune.data.labels import LabelSet
from spamtune.data.parse import check_rows, table_format
from spamtune.data.split import split_sizes
from spamtune.errors import DataError

BLOCK_ROWS = 20_000
STREAM_BYTES = 256 << 20  # a --text-col file larger than this is prepared by streaming


def iter_table(path: str | os.PathLike, text_col: str, label_col: str,
               allowed: tuple[str, ...] | None = None) -> Iterator[pd.DataFrame]:
    """The rows of a CSV/TSV as Label/Text blocks (checked like `read_table`), one block in memory at a time."""
    path, sep, kind = table_format(path, text_col, label_col)
    first = 2  # line 1 is the header
    try:
        reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, usecols=[text_col, label_col],
                             chunksize=BLOCK_ROWS, encoding="utf-8-sig")
        with reader:
            for block in reader:
                block = block[[label_col, text_col]].set_axis(["Label", "Text"], axis=1)
                check_rows(block, path, first, allowed)
                first += len(block)
                yield block
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 after row {first - 1} (byte {e.start} of a block)") from None
    except (pd.errors.ParserError, csv.Error) as e:
        raise DataError(f"{path}: cannot parse as {kind}: {e}") from None
    if first == 2:
        raise DataError(f"{path}: no rows")


class Quotas:
    """How many rows each split still takes, per label (stratified or balanced) or overall, drawn block by block."""

    def __init__(self, counts: dict[str, int], balance: bool, stratify: bool,
                 fractions: tuple[float, float, float | None], rng: np.random.Generator):
        self.rng = rng
        n_min = min(counts.values())
        self.kept = {lab: n_min if balance else n for lab, n in counts.items()}  # rows a split gets; rest: unused
        self.left = dict(counts)
        groups = {lab: self.kept[lab] for lab in counts} if stratify else {None: sum(self.kept.values())}
        # per group: train, validation, test, and the kept rows past a --test-frac (dropped, as in random_split)
        self.split_left = {g: np.array([*(sizes := split_sizes(n, *fractions)), n - sum(sizes)], dtype=np.int64)
                           for g, n in groups.items()}
        self.stratify = stratify

    def assign(self, labels: np.ndarray) -> np.ndarray:
        """Split index per row of a block: 0 train, 1 validation, 2 test, 3 unused, 4 dropped (past --test-frac)."""
        out = np.full(len(labels), 3, dtype=np.int64)
        kept = np.zeros(len(labels), dtype=bool)
        for lab in np.unique(labels):
            rows = np.flatnonzero(labels == lab)
            k = int(self.rng.hypergeometric(self.kept[lab], self.left[lab] - self.kept[lab], len(rows)))
            take = np.zeros(len(rows), dtype=bool)
            take[:k] = True
            self.rng.shuffle(take)
            kept[rows[take]] = True
            self.kept[lab] -= k
            self.left[lab] -= len(rows)
        groups = [(lab, kept & (labels == lab)) for lab in np.unique(labels)] if self.stratify else [(None, kept)]
        for g, mask in groups:
            rows = np.flatnonzero(mask)
            share = self.rng.multivariate_hypergeometric(self.split_left[g], len(rows))
            which = np.repeat(np.array([0, 1, 2, 4]), share)
            self.rng.shuffle(which)
            out[rows] = which
            self.split_left[g] -= share
        return out


def count_labels(path: Path, text_col: str, label_col: str, allowed: tuple[str, ...] | None) -> Counter[str]:
    """The first pass: every row checked, the rows per label counted."""
    from tqdm.auto import tqdm

    counts: Counter[str] = Counter()
    with tqdm(desc=f"checking {path.name}", unit=" rows", unit_scale=True) as bar:
        for block in iter_table(path, text_col, label_col, allowed):
            counts.update(block["Label"])
            bar.update(len(block))
    return counts


def write_streamed(path: Path, text_col: str, label_col: str, allowed: tuple[str, ...] | None,
                   label_counts: Counter[str], label_set: LabelSet, out: Path, split_files: tuple[str, ...],
                   seed: int, balance: bool, stratify: bool,
                   fractions: tuple[float, float, float | None]) -> dict[str, dict[str, int]]:
    """The second pass: the split files (train, validation, test, unused) written into `out`, each row appended to
    its split's file. Returns the rows per file and label."""
    from tqdm.auto import tqdm

    quotas = Quotas(dict(label_counts), balance, stratify, fractions, np.random.default_rng(seed))
    written = {name: Counter[str]() for name in split_files}
    files: list[TextIO] = [open(out / name, "w", encoding="utf-8", newline="") for name in split_files]
    try:
        for f in files:
            f.write("Label,Text\n")
        total = sum(label_counts.values())
        with tqdm(total=total, desc=f"splitting {path.name}", unit=" rows", unit_scale=True) as bar:
            for block in iter_table(path, text_col, label_col, allowed):
                which = quotas.assign(block["Label"].to_numpy())
                ids = block.assign(Label=block["Label"].map(label_set.label2id))
                for i, (name, f) in enumerate(zip(split_files, files)):
                    ids[which == i].to_csv(f, header=False, index=False, quoting=csv.QUOTE_MINIMAL)
                    written[name].update(block["Label"][which == i])
                bar.update(len(block))
    finally:
        for f in files:
            f.close()
    return {name: {lab: c[lab] for lab in label_set.names if c[lab]} for name, c in written.items()}
