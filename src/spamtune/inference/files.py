"""Scoring files: a .txt (one message per line) or .csv/.tsv read in chunks and written as .jsonl or .csv
(atomically) or to stdout, so memory stays flat however long the file is."""

from __future__ import annotations

import csv
import itertools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from spamtune.errors import DataError
from spamtune.inference.api import TextClassifier
from spamtune.tasks import SingleLabel


def read_messages(path: Path, text_col: str) -> Iterator[tuple[int, str]]:
    """(line or row number, text) from a .txt (one message per line; blank lines skipped) or .csv/.tsv file."""
    if path.suffix.lower() in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig", errors="strict") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if reader.fieldnames is None or text_col not in reader.fieldnames:
                raise DataError(f"{path}: no column {text_col!r} (columns: {', '.join(reader.fieldnames or [])})")
            for row_no, row in enumerate(reader, start=2):
                yield row_no, row[text_col] or ""
        return
    with open(path, encoding="utf-8-sig", errors="strict", newline="") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.rstrip("\r\n")
            if text.strip():
                yield line_no, text


def classify_file(clf: TextClassifier, src: str | os.PathLike, out: str | os.PathLike | None,
                  threshold: float | None = None, text_col: str = "Text", chunk: int = 256) -> int:
    """Classify a file in chunks (memory stays flat) into .jsonl or .csv (atomic) or stdout. Returns the count."""
    from tqdm.auto import tqdm

    from spamtune.fsutil import atomic_file

    src = Path(src)
    clf.require_single_label("--file", " (pass the messages instead)")
    if not src.is_file():
        raise DataError(f"no such file: {src}")
    as_csv = out is not None and Path(out).suffix.lower() == ".csv"
    names = clf.label_names
    n = 0

    def write_all(f) -> None:
        nonlocal n
        writer = csv.writer(f) if as_csv else None
        if writer:
            writer.writerow(["line", "label", "probability", *(f"p_{lab}" for lab in names), "text"])
        messages = read_messages(src, text_col)
        with tqdm(desc=f"classifying {src.name}", unit="msg", disable=out is None) as bar:
            while batch := list(itertools.islice(messages, chunk)):
                probs = clf.predict_proba([t for _, t in batch])
                for (line, text), p, pred in zip(batch, probs, SingleLabel.predict_ids(probs, threshold)):
                    label, prob = names[pred], float(p[pred])
                    if writer:
                        writer.writerow([line, label, f"{prob:.6f}", *(f"{v:.6f}" for v in p), text])
                    else:
                        f.write(json.dumps({"line": line, "label": label, "probability": prob,
                                            "probabilities": dict(zip(names, map(float, p))),
                                            "text": text}) + "\n")
                n += len(batch)
                bar.update(len(batch))

    try:
        if out is None:
            write_all(sys.stdout)
        else:
            with atomic_file(out, "w", newline="" if as_csv else None, encoding="utf-8") as f:
                write_all(f)
    except UnicodeDecodeError as e:
        raise DataError(f"{src}: not valid UTF-8 ({e.reason} at byte {e.start} of a line)") from None
    return n
