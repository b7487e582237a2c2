"""Data stage (book §6.2): get the SMS Spam Collection, parse it without losing rows, balance, split, write CSVs.

Source resolution, first hit wins: an explicit path, `$SPAMTUNE_DATA`, the user cache, then a download of the UCI
zip (the book's backup URL if UCI fails). Everything read or downloaded is sha256-checked.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spamtune.errors import SpamtuneError
from spamtune.fsutil import atomic_file, read_json, sha256_file

log = logging.getLogger(__name__)

SMS_FILENAME = "SMSSpamCollection"
SMS_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"
SMS_URLS = (
    "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    # the book's backup mirror (LLMs-from-scratch ch06), used when UCI is down
    "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
)
SMS_LABELS = ("ham", "spam")
SPLIT_FILES = ("train.csv", "validation.csv", "test.csv", "unused.csv")
LABELS_FILE = "labels.json"


def cache_dir() -> Path:
    """`$SPAMTUNE_CACHE`, else `$XDG_CACHE_HOME/spamtune`, else `~/.cache/spamtune`."""
    if env := os.environ.get("SPAMTUNE_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spamtune"


# ---------------------------------------------------------------------------------------------------------------
# Getting the raw bytes


def _read_source_bytes(path: Path) -> bytes:
    """The bytes of the SMS collection: the file itself, or the `SMSSpamCollection` member of a zip."""
    if not path.exists():
        raise SpamtuneError(f"no such file: {path}")
    if path.is_dir():
        path = path / SMS_FILENAME
        if not path.exists():
            raise SpamtuneError(f"no {SMS_FILENAME} in directory {path.parent}")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                return zf.read(SMS_FILENAME)
        except KeyError:
            raise SpamtuneError(f"{path}: zip has no member named {SMS_FILENAME}") from None
        except (zipfile.BadZipFile, OSError) as e:  # truncated download, CRC error
            raise SpamtuneError(f"{path}: damaged zip ({e})") from None
    return path.read_bytes()


def download(url: str, dest: Path) -> Path:
    """Download `url` to `dest` through a temp file, renamed only when complete (never a partial file at `dest`)."""
    from tqdm.auto import tqdm

    log.info("downloading %s", url)
    with urllib.request.urlopen(url, timeout=30) as resp, atomic_file(dest, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while block := resp.read(1 << 16):
                out.write(block)
                bar.update(len(block))
    return dest


def _check_sha256(data: bytes, where: str, verify: bool) -> None:
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if verify and digest != SMS_SHA256:
        raise SpamtuneError(
            f"{where}: sha256 mismatch (got {digest[:12]}…, expected {SMS_SHA256[:12]}…); "
            "pass --no-verify to use this file anyway"
        )


def resolve_sms_collection(data: str | os.PathLike | None = None, verify: bool = True) -> tuple[bytes, str]:
    """Find the SMS Spam Collection and return (its bytes, where they came from).

    Args:
        data: a file, a zip or a directory; None means `$SPAMTUNE_DATA`, then the cache, then a download.
        verify: check the sha256 of what was read against the published file.
    """
    if data is None:
        data = os.environ.get("SPAMTUNE_DATA") or None
    if data is not None:
        raw = _read_source_bytes(Path(data))
        _check_sha256(raw, str(data), verify)
        return raw, str(data)

    cached = cache_dir() / SMS_FILENAME
    if cached.exists() and sha256_file(cached) == SMS_SHA256:
        return cached.read_bytes(), str(cached)

    errors = []
    for url in SMS_URLS:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                raw = _read_source_bytes(download(url, Path(tmp) / "sms.zip"))
                _check_sha256(raw, url, verify)
            except (OSError, SpamtuneError) as e:
                errors.append(f"{url}: {e}")
                continue
        with atomic_file(cached, "wb") as f:
            f.write(raw)
        return raw, url
    raise SpamtuneError("could not get the SMS Spam Collection (" + "; ".join(errors) + "); pass --data PATH")


# ---------------------------------------------------------------------------------------------------------------
# Parsing


def _decode_lines(raw: bytes, where: str) -> list[tuple[int, str]]:
    """Split into (1-based line number, text) with CRLF and a leading BOM tolerated; say which line is not UTF-8."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = []
    for i, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SpamtuneError(f"{where}:{i}: not valid UTF-8 (byte {e.start})") from None
        lines.append((i, text.removesuffix("\r")))
    return lines


def parse_sms_collection(raw: bytes, where: str = "SMSSpamCollection",
                         labels: tuple[str, ...] = SMS_LABELS) -> pd.DataFrame:
    """Parse `label<TAB>text` lines into a DataFrame with columns Label, Text (one row per line, nothing merged).

    The book's `pd.read_csv(sep="\\t")` treats `"` as a quote and merges two messages into neighbours (5,572 rows);
    reading line by line keeps all 5,574.
    """
    rows = []
    for lineno, line in _decode_lines(raw, where):
        if not line:
            continue  # the trailing newline; blank lines carry no message
        label, sep, text = line.partition("\t")
        if not sep:
            raise SpamtuneError(f"{where}:{lineno}: no tab between label and text")
        if label not in labels:
            raise SpamtuneError(f"{where}:{lineno}: unknown label {label!r} (expected one of {', '.join(labels)})")
        if not text.strip():
            raise SpamtuneError(f"{where}:{lineno}: empty text")
        rows.append((label, text))
    if not rows:
        raise SpamtuneError(f"{where}: no messages")
    return pd.DataFrame(rows, columns=["Label", "Text"])


def read_table(path: str | os.PathLike, text_col: str, label_col: str,
               labels: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Read any CSV (or TSV, by extension) with a text and a label column into columns Label, Text (as str)."""
    path = Path(path)
    if not path.is_file():
        raise SpamtuneError(f"no such file: {path}")
    text = "\n".join(line for _, line in _decode_lines(path.read_bytes(), str(path)))
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise SpamtuneError(f"{path}: cannot parse as {'TSV' if sep == chr(9) else 'CSV'}: {e}") from None
    for col in (text_col, label_col):
        if col not in df.columns:
            raise SpamtuneError(f"{path}: no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    df = df[[label_col, text_col]].rename(columns={label_col: "Label", text_col: "Text"})
    for i, (label, msg) in enumerate(zip(df["Label"], df["Text"]), start=2):  # line 1 is the header
        if labels is not None and label not in labels:
            raise SpamtuneError(f"{path}:{i}: unknown label {label!r} (expected one of {', '.join(labels)})")
        if not msg.strip():
            raise SpamtuneError(f"{path}:{i}: empty text")
    if df.empty:
        raise SpamtuneError(f"{path}: no rows")
    return df


def label_maps(labels) -> dict[str, dict]:
    """ids in sorted label order (ham=0, spam=1 for the SMS set): {"id2label": {"0": ...}, "label2id": {...}}."""
    names = sorted(set(labels))
    if len(names) < 2:
        raise SpamtuneError(f"need at least two labels, found {names}")
    return {"id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)}}


# ---------------------------------------------------------------------------------------------------------------
# Balance and split (book §6.2 semantics; pandas' sampling with the same seeds)


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

        n = len(df)
        n_train, n_val = int(n * train_frac), int(n * validation_frac)
        n_test = n - n_train - n_val if test_frac is None else int(n * test_frac)
        train, rest = train_test_split(df, train_size=n_train, random_state=seed, stratify=df["Label"])
        val, rest = train_test_split(rest, train_size=n_val, random_state=seed, stratify=rest["Label"])
        if n_test < len(rest):
            rest, _ = train_test_split(rest, train_size=n_test, random_state=seed, stratify=rest["Label"])
        return tuple(part.reset_index(drop=True) for part in (train, val, rest))
    df = df.sample(frac=1, random_state=seed).reset_index(drop=True)
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    test_end = len(df) if test_frac is None else validation_end + int(len(df) * test_frac)
    cuts = (df[:train_end], df[train_end:validation_end], df[validation_end:test_end])
    return tuple(part.reset_index(drop=True) for part in cuts)


# ---------------------------------------------------------------------------------------------------------------
# The whole stage


@dataclass
class PrepareResult:
    out: Path
    source: str
    counts: dict[str, dict[str, int]]  # file -> label -> rows

    def table(self) -> str:
        labels = sorted({lab for c in self.counts.values() for lab in c})
        head = f"{'file':<16}" + "".join(f"{lab:>8}" for lab in labels) + f"{'total':>8}"
        lines = [head]
        for name, c in self.counts.items():
            lines.append(f"{name:<16}" + "".join(f"{c.get(lab, 0):>8}" for lab in labels) + f"{sum(c.values()):>8}")
        return "\n".join(lines)


def check_fractions(train_frac: float, validation_frac: float, test_frac: float | None) -> None:
    fracs = [train_frac, validation_frac] + ([] if test_frac is None else [test_frac])
    if any(f <= 0 for f in fracs) or sum(fracs) > 1 + 1e-9:
        raise SpamtuneError(f"split fractions must be positive and sum to at most 1 (got {'+'.join(map(str, fracs))})")


def prepare(out: str | os.PathLike, data: str | os.PathLike | None = None, *, verify: bool = True, seed: int = 123,
            balance: bool = True, stratify: bool = False, train_frac: float = 0.7, validation_frac: float = 0.1,
            test_frac: float | None = None, text_col: str | None = None, label_col: str | None = None,
            labels: tuple[str, ...] | None = None, overwrite: bool = False) -> PrepareResult:
    """Read, balance, split and write train/validation/test/unused CSVs (columns Label as id, Text) + labels.json.

    Nothing is written unless every check passed; the files appear together (temp dir, then renames), and existing
    files are replaced only with `overwrite`.
    """
    check_fractions(train_frac, validation_frac, test_frac)
    out = Path(out)
    targets = [out / name for name in (*SPLIT_FILES, LABELS_FILE)]
    if not overwrite and (existing := [p.name for p in targets if p.exists()]):
        raise SpamtuneError(f"{out} already has {', '.join(existing)}; pass --overwrite to replace")

    if text_col or label_col:
        if not (text_col and label_col and data):
            raise SpamtuneError("--text-col and --label-col go together, with --data FILE")
        df, source = read_table(data, text_col, label_col, labels), str(data)
    else:
        raw, source = resolve_sms_collection(data, verify)
        df = parse_sms_collection(raw, source, labels or SMS_LABELS)

    maps = label_maps(df["Label"])
    if balance:
        df, unused = create_balanced_dataset(df, seed)
    else:
        unused = df.iloc[:0]
    parts = dict(zip(SPLIT_FILES, (*random_split(df, train_frac, validation_frac, test_frac, seed, stratify), unused)))

    counts = {}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".prepare.", dir=out) as tmp:
        for name, part in parts.items():
            part = part.assign(Label=part["Label"].map(maps["label2id"]))[["Label", "Text"]]
            # QUOTE_MINIMAL round-trips quotes, tabs and newlines inside messages through pandas.read_csv
            part.to_csv(Path(tmp) / name, index=False, quoting=csv.QUOTE_MINIMAL)
            counts[name] = {maps["id2label"][str(k)]: int(v) for k, v in sorted(part["Label"].value_counts().items())}
        (Path(tmp) / LABELS_FILE).write_text(json.dumps(maps, indent=2) + "\n")
        for target in targets:
            os.replace(Path(tmp) / target.name, target)
    return PrepareResult(out=out, source=source, counts=counts)


def read_split(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV written by `prepare` (Label as int id, Text as str)."""
    path = Path(path)
    if not path.is_file():
        raise SpamtuneError(f"no such file: {path} (run `spamtune prepare` first)")
    df = pd.read_csv(path, dtype={"Text": str}, keep_default_na=False)
    if list(df.columns) != ["Label", "Text"]:
        raise SpamtuneError(f"{path}: expected columns Label,Text, got {','.join(df.columns)}")
    return df


def read_label_maps(data_dir: str | os.PathLike) -> dict[str, dict]:
    path = Path(data_dir) / LABELS_FILE
    if not path.is_file():
        raise SpamtuneError(f"no such file: {path} (run `spamtune prepare` first)")
    return read_json(path)
