"""Parsing: raw bytes into a DataFrame with columns Label, Text, one row per message, nothing merged or lost."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd

from spamtune.errors import DataError
from spamtune.fsutil import require_regular_file

SMS_LABELS = ("ham", "spam")


def decode_lines(raw: bytes, where: str) -> list[tuple[int, str]]:
    """Split into (1-based line number, text) with CRLF and a leading BOM tolerated; say which line is not UTF-8."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = []
    for i, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{where}:{i}: not valid UTF-8 (byte {e.start})") from None
        lines.append((i, text.removesuffix("\r")))
    return lines


def parse_sms_collection(raw: bytes, where: str = "SMSSpamCollection",
                         allowed: tuple[str, ...] = SMS_LABELS) -> pd.DataFrame:
    """Parse `label<TAB>text` lines into a DataFrame with columns Label, Text (one row per line, nothing merged).

    The book's `pd.read_csv(sep="\\t")` treats `"` as a quote and merges two messages into neighbours (5,572 rows);
    reading line by line keeps all 5,574. `allowed` are the label values accepted; any other is an error.
    """
    rows = []
    for lineno, line in decode_lines(raw, where):
        if not line:
            continue  # the trailing newline; blank lines carry no message
        label, sep, text = line.partition("\t")
        if not sep:
            raise DataError(f"{where}:{lineno}: no tab between label and text")
        if label not in allowed:
            raise DataError(f"{where}:{lineno}: unknown label {label!r} (expected one of {', '.join(allowed)})")
        if not text.strip():
            raise DataError(f"{where}:{lineno}: empty text")
        rows.append((label, text))
    if not rows:
        raise DataError(f"{where}: no messages")
    return pd.DataFrame(rows, columns=["Label", "Text"])


def table_format(path: str | os.PathLike, text_col: str, label_col: str) -> tuple[Path, str, str]:
    """(path, separator, "CSV"/"TSV") of a table file whose header names both columns; a clear error otherwise."""
    path = require_regular_file(path, DataError)
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    with open(path, "rb") as f:
        first = f.readline()
    try:
        header_line = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:1: not valid UTF-8 (byte {e.start})") from None
    try:
        header = next(csv.reader(io.StringIO(header_line), delimiter=sep), [])
    except csv.Error as e:
        raise DataError(f"{path}: cannot parse the header: {e}") from None
    for col in (text_col, label_col):
        if col not in header:
            shown = ", ".join(header[:20]) + (f", ... ({len(header)} columns)" if len(header) > 20 else "")
            raise DataError(f"{path}: no column {col!r} (columns: {shown})")
    return path, sep, "TSV" if sep == "\t" else "CSV"


def check_rows(df: pd.DataFrame, path: Path, first_row: int, allowed: tuple[str, ...] | None) -> None:
    """Every Label allowed and every Text non-blank; `first_row` is the file row of df's first row."""
    for i, (label, msg) in enumerate(zip(df["Label"], df["Text"]), start=first_row):
        if allowed is not None and label not in allowed:
            raise DataError(f"{path}:{i}: unknown label {label!r} (expected one of {', '.join(allowed)})")
        if not msg.strip():
            raise DataError(f"{path}:{i}: empty text")


def read_table(path: str | os.PathLike, text_col: str, label_col: str,
               allowed: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Read any CSV (or TSV, by extension) with a text and a label column into columns Label, Text (as str)."""
    path, sep, kind = table_format(path, text_col, label_col)
    text = "\n".join(line for _, line in decode_lines(path.read_bytes(), str(path)))
    try:
        # only the two columns are kept: a file with a million columns costs two columns of memory
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                         usecols=[text_col, label_col])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as e:
        raise DataError(f"{path}: cannot parse as {kind}: {e}") from None
    df = df[[label_col, text_col]].rename(columns={label_col: "Label", text_col: "Text"})
    check_rows(df, path, 2, allowed)  # line 1 is the header
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df
