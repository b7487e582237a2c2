"""`spamtune classify`: label new messages (arguments, stdin, or a whole file) with a probability."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from spamtune.cli.args import add_inference_args, percent, printable
from spamtune.errors import ConfigError

EPILOG = """\
examples:
  spamtune classify runs/smollm2 "URGENT! Your mobile No. was awarded a £2000 bonus prize. Call 09058095201" \\
      "Are we still on for dinner tonight?"
  cat messages.txt | spamtune classify runs/smollm2 --json
  spamtune classify runs/smollm2 --file inbox.csv --text-col body --out scored.csv
  spamtune classify runs/smollm2 --explain "WINNER!! Claim your £900 prize: call 09061701461"   # why?
  spamtune classify runs/smollm2 --file inbox.jsonl --out scored.jsonl --overwrite
  spamtune classify runs/smollm2 --file inbox.csv --sender-col from --db sqlite:///predictions.sqlite  # + lists
  spamtune classify runs/smollm2 --file /shared/big.csv --out scored.csv --engine ray --address auto \
      --num-workers 8                            # a Ray cluster; the file must be readable by its workers

Inputs: .txt (one message per line), .csv/.tsv (--text-col), .jsonl (a string or an object per line).
Outputs: .jsonl, .csv or .tsv by --out's extension, JSON lines on stdout without --out. Blank lines are
skipped and counted; text in .csv/.tsv cells that a spreadsheet would run as a formula gets a leading '.
With --db, the store's operator lists (`spamtune lists`) decide listed messages before the model runs.
Every decision carries each check's verdict (the lists; the fine-tuned model; the n-grams of a stacked run): printed
with --explain, in the JSON lines' "checks", in the CSV's checks column. --explain also works out which words
pushed the model (word occlusion with captum: about 3 s a message for SmolLM2 on 2 cores) and which n-grams
weighed most.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("classify", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="label new messages with a probability", epilog=textwrap.dedent(EPILOG))
    p.add_argument("run", help="run directory written by `spamtune train`")
    p.add_argument("texts", nargs="*", help="messages (default: one per line on stdin)")
    p.add_argument("--threshold", type=float, help="block (spam) if P(spam) >= this (two classes; default: the "
                                                   "run's stored operating point)")
    p.add_argument("--review-threshold", type=float, help="review if P(spam) >= this, below --threshold "
                                                          "(default: the run's)")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--explain", action="store_true", help="each check's verdict and its evidence: the words that "
                                                          "pushed the model, the n-grams that weighed most")
    p.add_argument("--file", help="classify a .txt, .csv, .tsv or .jsonl file (or a pipe), streamed in batches")
    p.add_argument("--text-col", default="Text", help="text column of a --file CSV/TSV, or field of JSON lines "
                                                      "(default: Text; JSON lines also accept text)")
    p.add_argument("--out", help="with --file: write .jsonl, .csv or .tsv here (default: JSON lines on stdout)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--db", help="record every decision in this prediction store (an SQLAlchemy URL, e.g. "
                                "sqlite:///predictions.sqlite); ids appear in the output")
    p.add_argument("--no-store-text", action="store_true", help="with --db: keep only each message's sha256")
    p.add_argument("--sender", help="who sent the messages (arguments, stdin): the operator lists' sender entries "
                                    "apply (with --db), and it is recorded")
    p.add_argument("--sender-col", help="with --file: the column (CSV/TSV) or field (JSON lines) naming each "
                                        "message's sender")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="with --file: score here, or on Ray (Ray Data reads the file, one model per worker; "
                        "pip install 'spamtune[ray]')")
    p.add_argument("--address", help="with --engine ray: the Ray cluster (e.g. ray://head:10001 or auto; default: "
                                     "a local Ray on this machine)")
    p.add_argument("--num-workers", type=int, default=1, help="with --engine ray: model replicas (default: 1)")
    add_inference_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from spamtune.inference import TextClassifier, check_threshold
    from spamtune.inference.cache import CacheConfig

    check_threshold(args.threshold, args.review_threshold)
    CacheConfig(args.decision_cache, args.decision_cache_ttl)  # a bad size fails before the model loads
    if args.no_store_text and not args.db:
        raise ConfigError("--no-store-text goes with --db")
    if args.engine != "local" and not args.file:
        raise ConfigError("--engine ray scores a --file")
    if args.engine != "local" and args.explain:
        raise ConfigError("--explain runs with the local engine; drop --engine ray")
    if args.sender_col and not args.file:
        raise ConfigError("--sender-col goes with --file (give --sender for messages as arguments or on stdin)")
    if args.sender and args.file:
        raise ConfigError("--sender is for messages as arguments or on stdin; a --file names them with --sender-col")
    if args.sender is not None:
        from spamtune.inference.lists import MAX_SENDER

        if not args.sender.strip() or len(args.sender) > MAX_SENDER:
            raise ConfigError(f"--sender: 1 to {MAX_SENDER} characters, not {len(args.sender.strip())}")
    if args.sender_col and args.engine != "local":
        raise ConfigError("--sender-col runs with the local engine (the operator lists are in the --db store)")
    if args.file:
        if args.texts:
            raise ConfigError("give messages as arguments or with --file, not both")
        return _classify_ray(args) if args.engine == "ray" else _classify_file(args)
    if args.out:
        raise ConfigError("--out goes with --file")
    if args.texts:
        texts = TextClassifier.check_messages(args.texts)  # before the model loads
        store = _open_store(args)
        clf = _load(args, store)
        _print(clf, texts, args, _recorder(clf, store, args, "cli"))
        return
    _classify_stdin(args)


def _open_store(args: argparse.Namespace):
    if not args.db:
        return None
    from spamtune.monitoring.store import PredictionStore

    store = PredictionStore.open(args.db)
    store.check_writable()  # a locked or read-only store stops here, before any message is classified
    return store


def _load(args: argparse.Namespace, store):
    """The run as `serve` would decide with it: the cascade unless --no-cascade, the decision cache, and with --db
    the store's operator lists first and its corrections remembered."""
    from spamtune.inference import TextClassifier
    from spamtune.inference.cache import CacheConfig

    clf = TextClassifier.load(args.run, args.dtype, args.quantize, args.device, args.runtime, not args.no_cascade)
    if clf.pipeline is None:
        return clf
    clf.pipeline.use_cache(CacheConfig(args.decision_cache, args.decision_cache_ttl))
    if store is None:
        return clf
    from spamtune.monitoring.lists import list_check
    from spamtune.monitoring.memory import memory_check

    if (check := list_check(store, clf)) is not None:
        clf.pipeline.put_first(check)
    if (memory := memory_check(store, clf)) is not None:
        clf.pipeline.put_after_model(memory)
    return clf


def _recorder(clf, store, args: argparse.Namespace, source: str):
    """decisions, texts, ms per message -> their ids in the store (None without --db)."""
    if store is None:
        return None
    from spamtune.monitoring.store import PredictionRecord

    def record(decisions, texts, ms, senders=None):
        senders = senders or [args.sender] * len(texts)
        records = [PredictionRecord.of(d, t, clf.run_id, source, ms, not args.no_store_text, clf.positive_label,
                                       sender=s) for d, t, s in zip(decisions, texts, senders)]
        store.insert(records)
        return [r.id for r in records]

    return record


def _classify_file(args: argparse.Namespace) -> None:
    from pathlib import Path

    from spamtune.fsutil import check_output_file
    from spamtune.inference.files import check_input_file, check_output_format, classify_file

    check_input_file(Path(args.file))  # every check before the model loads
    if args.out is not None:
        check_output_file(args.out, args.overwrite, inputs=[args.file])
        check_output_format(args.out)
    store = _open_store(args)
    clf = _load(args, store)
    r = classify_file(clf, args.file, args.out, args.threshold, args.text_col,
                      review_threshold=args.review_threshold, record=_recorder(clf, store, args, "file"),
                      explain=args.explain, sender_col=args.sender_col)
    skipped = f" (skipped {r.skipped_blank} blank)" if r.skipped_blank else ""
    if args.out:
        print(f"classified {r.classified} messages{skipped} -> {printable(args.out)}", file=sys.stderr)
    elif skipped:
        print(f"skipped {r.skipped_blank} blank messages", file=sys.stderr)


def _classify_ray(args: argparse.Namespace) -> None:
    from pathlib import Path

    from spamtune.fsutil import check_output_file
    from spamtune.inference.cache import CacheConfig
    from spamtune.inference.files import check_input_file, check_output_format
    from spamtune.inference.ray_engine import RayOptions, classify_file_ray

    if args.db:
        raise ConfigError("--db records decisions from the local engine only; drop --engine ray or --db")
    check_input_file(Path(args.file))
    if args.out is not None:
        check_output_file(args.out, args.overwrite, inputs=[args.file])
        check_output_format(args.out)
    options = RayOptions(args.address, args.num_workers, dtype=args.dtype, quantize=args.quantize,
                         device="cuda" if args.device == "cuda" else "cpu", runtime=args.runtime,
                         cascade=not args.no_cascade, cache=CacheConfig(args.decision_cache, args.decision_cache_ttl))
    r = classify_file_ray(args.run, args.file, args.out, options, args.threshold, args.text_col,
                          args.review_threshold)
    skipped = f" (skipped {r.skipped_blank} blank)" if r.skipped_blank else ""
    if args.out:
        print(f"classified {r.classified} messages{skipped} on ray -> {printable(args.out)}", file=sys.stderr)


def _classify_stdin(args: argparse.Namespace) -> None:
    """One message per line from stdin, streamed in chunks; invalid UTF-8 is an error naming the line."""
    import io
    import itertools

    from spamtune.inference.files import read_lines

    store = _open_store(args)
    clf = _load(args, store)
    record = _recorder(clf, store, args, "cli")
    stream = getattr(sys.stdin, "buffer", None) or io.BytesIO(sys.stdin.read().encode())  # a test's StringIO
    lines = read_lines(stream, "stdin", clf.line_cap)
    seen = skipped = 0
    while chunk := list(itertools.islice(lines, 256)):
        seen += len(chunk)
        texts = [m.text for m in chunk if m.text.strip()]
        skipped += len(chunk) - len(texts)
        if texts:
            _print(clf, texts, args, record)
    if seen == skipped:
        raise ConfigError("no messages: give them as arguments or one per line on stdin")
    if skipped:
        print(f"skipped {skipped} blank lines", file=sys.stderr)


def _print(clf, texts: list[str], args: argparse.Namespace, record=None) -> None:
    """One line per message: JSON with --json; otherwise the label, the band, P(positive class) and the message,
    escaped so that no message can move the cursor or recolour the terminal, and with --explain each check's
    verdict and evidence beneath. `record` stores the decisions."""
    import time

    from spamtune.inference.pipeline import format_checks

    if clf.task.name != "single_label":  # multi-label: labels joined by "|"; regression: the predicted value
        for text, row in zip(texts, clf(texts)):
            print(json.dumps({**row, "text": text}) if args.json
                  else f"{row['label'] or '(none)':<12} {row['score']:8.4f}  {printable(text, 70)}")
        return
    start = time.perf_counter()
    decided = clf.decide(texts, args.threshold, args.review_threshold, explain=args.explain,
                         senders=[args.sender] * len(texts) if args.sender else None)
    ids = (record(decided, texts, (time.perf_counter() - start) * 1000 / len(texts)) if record
           else [None] * len(texts))
    for text, d, rid in zip(texts, decided, ids):
        if args.json:
            print(json.dumps({**d.to_json(), **({"id": rid} if rid else {}), "text": text}))
            continue
        # two classes: the positive class's probability (P(spam)) whatever the label; more: the label's own
        score = f"P({clf.positive_label}) {percent(d.scores[clf.positive_label])}" if clf.binary else percent(d.score)
        band = f"{d.band:<6}  " if d.band else ""
        shown = printable(text, 70) + (f"  id {rid}" if rid else "")  # the id `spamtune feedback` takes
        print(f"{d.label:<6} {band}{score}  {shown}")
        if args.explain:
            print("\n".join(printable(line, 160) for line in format_checks(d.checks)))
    sys.stdout.flush()
