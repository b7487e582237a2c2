"""Scoring streams of messages: files (.txt, .csv, .tsv, .jsonl) and stdin, read in chunks and written as .jsonl,
.csv or .tsv (atomically) or JSON lines on stdout, so memory stays flat however long the input is.

Every read is bounded: a line is cut at `line_cap` bytes (the rest of it is skipped without being held), a CSV
field at the csv module's limit, so a 50 MB line or /dev/zero behind a pipe costs a bounded amount of memory.
Blank messages (empty or whitespace only) are skipped and counted, never classified: the one rule for line-based
input (given one by one, a blank message is an error instead; see `TextClassifier.check_messages`).

Text written into .csv/.tsv cells is neutralised against formula injection (OWASP): a cell that starts with
`=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so a spreadsheet shows it instead of running it.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from spamtune.errors import ConfigError, DataError
from spamtune.inference.api import TextClassifier
from spamtune.inference.lists import MAX_SENDER
from spamtune.inference.pipeline import Decision

INPUT_FORMATS = (".txt", ".csv", ".tsv", ".jsonl")
OUTPUT_FORMATS = (".jsonl", ".json", ".csv", ".tsv")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Message:
    where: int  # line (or CSV row) number in the input
    text: str
    sender: str | None = None  # --sender-col: who sent it (the operator lists' sender entries)


def neutralize_formula(cell: str) -> str:
    """OWASP's rule for CSV injection: a leading `'` before a cell a spreadsheet would read as a formula."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def bounded_lines(f: BinaryIO, cap: int) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its line break) from a binary stream, each cut at `cap` bytes: the rest of an
    over-long line is read in small blocks and dropped, never held."""
    number = 0
    while line := f.readline(cap + 1):
        number += 1
        if len(line) > cap and not line.endswith(b"\n"):
            line = line[:cap]
            while (rest := f.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass
        yield number, line.rstrip(b"\r\n")


def decode_line(raw: bytes, where: str, number: int, cap: int) -> str:
    """UTF-8 text of a line; a line cut at `cap` may end inside a character, which is dropped."""
    if number == 1:
        raw = raw.removeprefix(codecs.BOM_UTF8)
    try:
        if len(raw) >= cap:  # possibly cut mid-character: keep whole characters only
            return codecs.getincrementaldecoder("utf-8")("strict").decode(raw, final=False)
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where} line {number}: not valid UTF-8 (byte {e.start})") from None


def checked_sender(sender: str | None, where: str) -> str | None:
    """A sender read from a file: None when blank; longer than the store keeps is an error naming its line."""
    if not sender:
        return None
    if len(sender) > MAX_SENDER:
        raise DataError(f"{where}: the sender has {len(sender)} characters, at most {MAX_SENDER}")
    return sender


def read_lines(f: BinaryIO, where: str, cap: int) -> Iterator[Message]:
    """Messages of a one-per-line stream (.txt, stdin); blank lines included (the caller skips them)."""
    for number, raw in bounded_lines(f, cap):
        yield Message(number, decode_line(raw, where, number, cap))


def read_jsonl(f: BinaryIO, where: str, cap: int, text_col: str, sender_col: str | None = None) -> Iterator[Message]:
    """Messages of a .jsonl file: each line a JSON string, or an object whose `text_col` (or "text") is one (and
    whose `sender_col`, when asked for, a string or null)."""
    for number, raw in bounded_lines(f, cap):
        line = decode_line(raw, where, number, cap)
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where} line {number}: not valid JSON ({e.msg}; a line over {cap} bytes is cut)") \
                from None
        sender = None
        if isinstance(obj, dict):
            sender = obj.get(sender_col) if sender_col else None
            obj = obj.get(text_col, obj.get("text"))
        if not isinstance(obj, str):
            raise DataError(f"{where} line {number}: expected a JSON string or an object with a string "
                            f"{text_col!r} field")
        if sender is not None and not isinstance(sender, str):
            raise DataError(f"{where} line {number}: the {sender_col!r} field is a {type(sender).__name__}, not "
                            "text")
        yield Message(number, obj, checked_sender(sender, f"{where} line {number}"))


def read_table_messages(f: IO[str], where: str, text_col: str, delimiter: str,
                        sender_col: str | None = None) -> Iterator[Message]:
    """Messages of a .csv/.tsv file's `text_col` (and `sender_col`) (header row first); a field over csv's limit is
    an error."""
    reader = csv.DictReader(f, delimiter=delimiter)
    try:
        for col in (text_col, sender_col):
            if col is not None and (reader.fieldnames is None or col not in reader.fieldnames):
                raise DataError(f"{where}: no column {col!r} (columns: {', '.join(reader.fieldnames or [])})")
        for row_no, row in enumerate(reader, start=2):
            sender = checked_sender(row[sender_col], f"{where} line {reader.line_num}") if sender_col else None
            yield Message(row_no, row[text_col] or "", sender)
    except csv.Error as e:
        raise DataError(f"{where} line {reader.line_num}: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start} of a line)") from None


def check_input_file(path: Path) -> None:
    """A file or a named pipe (`--file <(cmd)`); a directory or a device is named as such."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"no such file: {path}") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path} is a directory; give a file")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise DataError(f"{path} is not a regular file or a pipe")
    if path.suffix.lower() not in INPUT_FORMATS:
        raise ConfigError(f"{path}: unknown input format {path.suffix!r} (expected {', '.join(INPUT_FORMATS)})")


def check_output_format(out: str | os.PathLike | None) -> None:
    if out is not None and Path(out).suffix.lower() not in OUTPUT_FORMATS and not _is_stream(out):
        raise ConfigError(f"--out {out}: unknown output format {Path(out).suffix!r} "
                          f"(expected {', '.join(OUTPUT_FORMATS)}; a pipe or device gets JSON lines)")


def _is_stream(out: str | os.PathLike) -> bool:
    from spamtune.fsutil import is_sink

    return is_sink(out)


def read_messages(path: Path, text_col: str, cap: int, sender_col: str | None = None) -> Iterator[Message]:
    """The messages of an input file by its extension (see INPUT_FORMATS)."""
    suffix = path.suffix.lower()
    if sender_col is not None and suffix not in (".csv", ".tsv", ".jsonl"):
        raise DataError(f"{path}: --sender-col needs a .csv, .tsv or .jsonl file (a .txt line is only a message)")
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig", errors="strict") as f:
            yield from read_table_messages(f, str(path), text_col, "\t" if suffix == ".tsv" else ",", sender_col)
        return
    with open(path, "rb") as fb:
        yield from (read_jsonl(fb, str(path), cap, text_col, sender_col) if suffix == ".jsonl"
                    else read_lines(fb, str(path), cap))


@dataclass
class StreamResult:
    classified: int = 0
    skipped_blank: int = 0


def checks_cell(d: Decision) -> str:
    """The verdicts in one CSV cell: `model:spam:+0.973;ngrams:spam:+1.234` (the JSON lines carry them whole)."""
    return ";".join(f"{v.check}:{v.label or '-'}:{'' if v.score is None else f'{v.score:+.4f}'}" for v in d.checks)


class RowWriter:
    """One output row per classified message, the same for every engine: .csv/.tsv with a header, else JSON lines."""

    def __init__(self, f: IO[str], delimiter: str | None, names: list[str], with_id: bool) -> None:
        self.f, self.names, self.with_id = f, names, with_id
        self.writer = csv.writer(f, delimiter=delimiter) if delimiter else None
        if self.writer:
            self.writer.writerow(["line", "label", "decision", "score", *(f"p_{lab}" for lab in names), "truncated",
                                  *(["id"] if with_id else []), "checks", "text"])

    def row(self, m: Message, d: Decision, rid: str | None = None) -> None:
        if self.writer:
            self.writer.writerow([m.where, d.label, d.band or "", f"{d.score:.6f}",
                                  *(f"{d.scores[lab]:.6f}" for lab in self.names), int(d.truncated),
                                  *([rid] if self.with_id else []), neutralize_formula(checks_cell(d)),
                                  neutralize_formula(m.text)])
        else:
            self.f.write(json.dumps({"line": m.where, **d.to_json(), **({"id": rid} if rid else {}),
                                     "text": m.text}) + "\n")


def write_output(out: str | os.PathLike | None, names: list[str], with_id: bool,
                 write: Callable[[RowWriter], None]) -> None:
    """Open `out` (atomically; stdout when None; a pipe or device written into) and let `write` fill it."""
    from spamtune.fsutil import atomic_file

    suffix = "" if out is None or _is_stream(out) else Path(out).suffix.lower()
    delimiter = {".csv": ",", ".tsv": "\t"}.get(suffix)
    if out is None:
        write(RowWriter(sys.stdout, delimiter, names, with_id))
    else:
        with atomic_file(out, "w", newline="" if delimiter else None, encoding="utf-8") as f:
            write(RowWriter(f, delimiter, names, with_id))


def classify_stream(clf: TextClassifier, messages: Iterator[Message], out: str | os.PathLike | None,
                    threshold: float | None = None, chunk: int = 256, desc: str = "classifying",
                    review_threshold: float | None = None,
                    record: Callable[..., list[str]] | None = None,
                    explain: bool = False) -> StreamResult:
    """Classify messages in chunks into .jsonl / .csv / .tsv (atomic) or JSON lines on stdout: per message its
    line, the decided label, the band (binary runs), the calibrated score of the label and of every label, whether
    it was truncated, and every check's verdict (with `explain`, their evidence, in the JSON lines).
    `record(decisions, texts, ms_per_message, senders)` stores them and gives their ids (the `id` column)."""
    from tqdm.auto import tqdm

    clf.require_single_label("--file", " (pass the messages instead)")
    result = StreamResult()

    def write_all(rows: RowWriter) -> None:
        with tqdm(desc=desc, unit="msg", disable=out is None or _is_stream(out)) as bar:
            while batch := list(itertools.islice(messages, chunk)):
                kept = [m for m in batch if m.text.strip()]
                result.skipped_blank += len(batch) - len(kept)
                if not kept:
                    continue
                start = time.perf_counter()
                senders = [m.sender for m in kept]
                decided = clf.decide([m.text for m in kept], threshold, review_threshold, explain=explain,
                                     senders=senders)
                ms = (time.perf_counter() - start) * 1000 / len(kept)
                ids = record(decided, [m.text for m in kept], ms, senders) if record else [None] * len(kept)
                for m, d, rid in zip(kept, decided, ids):
                    rows.row(m, d, rid)
                result.classified += len(kept)
                bar.update(len(batch))

    write_output(out, clf.label_names, record is not None, write_all)
    return result


def classify_file(clf: TextClassifier, src: str | os.PathLike, out: str | os.PathLike | None,
                  threshold: float | None = None, text_col: str = "Text", chunk: int = 256,
                  review_threshold: float | None = None,
                  record: Callable[..., list[str]] | None = None,
                  explain: bool = False, sender_col: str | None = None) -> StreamResult:
    """Classify an input file (see INPUT_FORMATS) in chunks; see `classify_stream`. `sender_col`: the column (or
    JSON field) saying who sent each message."""
    src = Path(src)
    check_input_file(src)
    check_output_format(out)
    return classify_stream(clf, read_messages(src, text_col, clf.line_cap, sender_col), out, threshold, chunk,
                           desc=f"classifying {src.name}", review_threshold=review_threshold, record=record,
                           explain=explain)
