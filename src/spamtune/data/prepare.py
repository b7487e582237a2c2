"""The whole data stage (`spamtune prepare`): read, balance, split, write train/validation/test/unused CSVs and
labels.json; and the readers every later stage uses for those files."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spamtune.data.labels import LabelSet
from spamtune.data.parse import SMS_LABELS, parse_sms_collection, read_table
from spamtune.data.sources import resolve_sms_collection
from spamtune.data.split import check_fractions, create_balanced_dataset, random_split, stratified_folds
from spamtune.data.stream import BLOCK_ROWS, STREAM_BYTES, count_labels, write_streamed
from spamtune.errors import ConfigError, DataError
from spamtune.fsutil import check_writable_dir, require_regular_file, swap_dir

SPLIT_FILES = ("train.csv", "validation.csv", "test.csv", "unused.csv")
LABELS_FILE = "labels.json"


@dataclass
class PrepareResult:
    out: Path
    source: str
    counts: dict[str, dict[str, int]]  # file -> label -> rows
    streamed: bool = False

    def table(self) -> str:
        names = sorted({lab for c in self.counts.values() for lab in c})
        w = max(16, *(len(name) + 2 for name in self.counts))
        head = f"{'file':<{w}}" + "".join(f"{lab:>8}" for lab in names) + f"{'total':>8}"
        lines = [head]
        for name, c in self.counts.items():
            lines.append(f"{name:<{w}}" + "".join(f"{c.get(lab, 0):>8}" for lab in names) + f"{sum(c.values()):>8}")
        return "\n".join(lines)


def prepare(out: str | os.PathLike, data: str | os.PathLike | None = None, *, verify: bool = True, seed: int = 123,
            balance: bool = True, stratify: bool = False, train_frac: float = 0.7, validation_frac: float = 0.1,
            test_frac: float | None = None, text_col: str | None = None, label_col: str | None = None,
            allowed: tuple[str, ...] | None = None, overwrite: bool = False,
            stream: bool | None = None, folds: int | None = None) -> PrepareResult:
    """Read, balance, split and write train/validation/test/unused CSVs (columns Label as id, Text) + labels.json.

    Nothing is written unless every check passed; the files appear together (temp dir, then renames), and existing
    files are replaced only with `overwrite`. `allowed`: the label values accepted (others are an error).
    `stream`: read a --text-col file in blocks (stream.py; None: when it is larger than STREAM_BYTES).
    `folds`: k-fold cross-validation instead, over every row: OUT/fold1 ... OUT/foldK, each a data directory.
    """
    check_fractions(train_frac, validation_frac, test_frac)
    if text_col is not None and text_col == label_col:
        raise ConfigError(f"--text-col and --label-col are both {text_col!r}: the text and the label must be two "
                          "columns")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    check_writable_dir(out)
    if folds is not None:
        if stream:
            raise ConfigError("--folds reads the file into memory: drop --stream")
        return _prepare_folds(out, folds, data, verify, seed, validation_frac, text_col, label_col, allowed,
                              overwrite)
    targets = [out / name for name in (*SPLIT_FILES, LABELS_FILE)]
    if not overwrite and (existing := [p.name for p in targets if p.exists()]):
        raise ConfigError(f"{out} already has {', '.join(existing)}; pass --overwrite to replace")

    if text_col or label_col:
        if not (text_col and label_col and data):
            raise ConfigError("--text-col and --label-col go together, with --data FILE")
        if stream is None:
            stream = Path(data).is_file() and Path(data).stat().st_size > STREAM_BYTES
    elif stream:
        raise ConfigError("--stream reads a CSV/TSV given with --data, --text-col and --label-col")

    # every row is checked before anything is written
    if stream:
        assert text_col and label_col and data
        source, table = str(data), (Path(data), text_col, label_col)
        label_counts = count_labels(*table, allowed)
        label_set = LabelSet.from_values(label_counts)
    else:
        parts, label_set, source = _read_and_split(data, verify, seed, balance, stratify, train_frac, validation_frac,
                                                   test_frac, text_col, label_col, allowed)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".prepare.", dir=out) as tmp:
        if stream:
            counts = write_streamed(*table, allowed, label_counts, label_set, Path(tmp), SPLIT_FILES, seed, balance,
                                    stratify, (train_frac, validation_frac, test_frac))
        else:
            counts = _write_parts(parts, label_set, Path(tmp))
        _write_labels(label_set, Path(tmp))
        for target in targets:
            os.replace(Path(tmp) / target.name, target)
    return PrepareResult(out=out, source=source, counts=counts, streamed=bool(stream))


def _read(data, verify: bool, text_col: str | None, label_col: str | None,
          allowed: tuple[str, ...] | None) -> tuple[pd.DataFrame, LabelSet, str]:
    """The whole file as a Label/Text frame (the SMS collection, or a CSV/TSV's two columns), and its label set."""
    if text_col or label_col:
        if not (text_col and label_col and data):
            raise ConfigError("--text-col and --label-col go together, with --data FILE")
        df, source = read_table(data, text_col, label_col, allowed), str(data)
    else:
        raw, source = resolve_sms_collection(data, verify)
        df = parse_sms_collection(raw, source, allowed or SMS_LABELS)
    return df, LabelSet.from_values(df["Label"]), source


def _read_and_split(data, verify: bool, seed: int, balance: bool, stratify: bool, train_frac: float,
                    validation_frac: float, test_frac: float | None, text_col: str | None, label_col: str | None,
                    allowed: tuple[str, ...] | None) -> tuple[dict[str, pd.DataFrame], LabelSet, str]:
    """Read the whole file, balance with pandas' sampling and split like the book (its split, bit for bit)."""
    df, label_set, source = _read(data, verify, text_col, label_col, allowed)
    if balance:
        df, unused = create_balanced_dataset(df, seed)
    else:
        unused = df.iloc[:0]
    parts = dict(zip(SPLIT_FILES, (*random_split(df, train_frac, validation_frac, test_frac, seed, stratify), unused)))
    return parts, label_set, source


def _write_labels(label_set: LabelSet, where: Path) -> None:
    (where / LABELS_FILE).write_text(json.dumps(label_set.to_json(), indent=2) + "\n")


def _write_parts(parts: dict[str, pd.DataFrame], label_set: LabelSet, where: Path) -> dict[str, dict[str, int]]:
    """The split CSVs into `where`; rows per file and label."""
    counts = {}
    for name, part in parts.items():
        part = part.assign(Label=part["Label"].map(label_set.label2id))[["Label", "Text"]]
        # QUOTE_MINIMAL round-trips quotes, tabs and newlines inside messages through pandas.read_csv
        part.to_csv(where / name, index=False, quoting=csv.QUOTE_MINIMAL)
        counts[name] = {label_set.names[k]: int(v) for k, v in sorted(part["Label"].value_counts().items())}
    return counts


def _prepare_folds(out: Path, k: int, data, verify: bool, seed: int, validation_frac: float, text_col: str | None,
                   label_col: str | None, allowed: tuple[str, ...] | None, overwrite: bool) -> PrepareResult:
    """OUT/fold1 ... OUT/foldK (stratified k-fold over every row, no undersampling), written together."""
    targets = [out / f"fold{i}" for i in range(1, k + 1)]
    if not overwrite and (existing := [p.name for p in targets if p.exists()]):
        raise ConfigError(f"{out} already has {', '.join(existing)}; pass --overwrite to replace")
    df, label_set, source = _read(data, verify, text_col, label_col, allowed)
    parts = stratified_folds(df, k, seed, validation_frac)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix=".prepare.", dir=out) as tmp:
        for target, (train, val, test) in zip(targets, parts):
            (Path(tmp) / target.name).mkdir()
            fold = _write_parts(dict(zip(SPLIT_FILES, (train, val, test, df.iloc[:0]))), label_set,
                                Path(tmp) / target.name)
            _write_labels(label_set, Path(tmp) / target.name)
            counts.update({f"{target.name}/{name}": c for name, c in fold.items() if name != "unused.csv"})
        for target in targets:
            swap_dir(Path(tmp) / target.name, target)
    return PrepareResult(out=out, source=source, counts=counts)


def read_split(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV written by `prepare` (Label as int id, Text as str)."""
    return next(iter_split(path, block_rows=None))


def iter_split(path: str | os.PathLike, block_rows: int | None = BLOCK_ROWS) -> Iterator[pd.DataFrame]:
    """A CSV written by `prepare` in checked blocks of `block_rows` rows (None: the whole file as one block)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file: {path} (run `spamtune prepare` first)")
    require_regular_file(path, DataError)

    def checked(df: pd.DataFrame) -> pd.DataFrame:
        if list(df.columns) != ["Label", "Text"]:
            raise DataError(f"{path}: expected columns Label,Text, got {','.join(df.columns)}")
        return df

    options: dict = dict(dtype={"Text": str}, keep_default_na=False, usecols=lambda c: c in ("Label", "Text"))
    try:
        if block_rows is None:
            yield checked(pd.read_csv(path, **options))
            return
        with pd.read_csv(path, chunksize=block_rows, **options) as reader:
            for df in reader:
                yield checked(df)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: not a prepared split ({str(e).splitlines()[0]})") from None


def count_rows(path: str | os.PathLike) -> int:
    """Rows of a prepared split, read in blocks (every block checked, nothing kept)."""
    return sum(len(df) for df in iter_split(path))


def read_label_set(data_dir: str | os.PathLike) -> LabelSet:
    """The labels.json of a data directory written by `prepare`."""
    path = Path(data_dir) / LABELS_FILE
    if not path.is_file():
        raise DataError(f"no such file: {path} (run `spamtune prepare` first)")
    return LabelSet.from_file(path)
