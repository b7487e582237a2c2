"""`spamtune classify`: label new messages (arguments, stdin, or a whole file) with a probability."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from spamtune.cli.args import add_inference_args, read_stdin_lines
from spamtune.errors import ConfigError

EPILOG = """\
examples:
  spamtune classify runs/smollm2 "WINNER! Claim your prize now" "See you at 6?"
  cat messages.txt | spamtune classify runs/smollm2 --json
  spamtune classify runs/smollm2 --file inbox.csv --text-col body --out scored.csv
"""


def add_parser(sub) -> None:
    p = sub.add_parser("classify", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="label new messages with a probability", epilog=textwrap.dedent(EPILOG))
    p.add_argument("run", help="run directory written by `spamtune train`")
    p.add_argument("texts", nargs="*", help="messages (default: one per line on stdin)")
    p.add_argument("--threshold", type=float, help="spam if P(spam) >= this (two classes; default: argmax)")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--file", help="classify a .txt (one message per line) or .csv/.tsv file, streamed in batches")
    p.add_argument("--text-col", default="Text", help="text column of a --file CSV (default: Text)")
    p.add_argument("--out", help="with --file: write .jsonl or .csv here (default: JSON lines on stdout)")
    add_inference_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from spamtune.inference import TextClassifier, check_threshold
    from spamtune.tasks import SingleLabel

    check_threshold(args.threshold)
    if args.file:
        if args.texts:
            raise ConfigError("give messages as arguments or with --file, not both")
        from spamtune.inference.files import classify_file

        clf = TextClassifier.load(args.run, args.dtype, args.quantize)
        n = classify_file(clf, args.file, args.out, args.threshold, args.text_col)
        if args.out:
            print(f"classified {n} messages -> {args.out}", file=sys.stderr)
        return
    if args.out:
        raise ConfigError("--out goes with --file")
    texts = args.texts or read_stdin_lines()
    if not texts:
        raise ConfigError("no messages: give them as arguments or one per line on stdin")
    clf = TextClassifier.load(args.run, args.dtype, args.quantize)
    if clf.task.name != "single_label":  # multi-label: labels joined by "|"; regression: the predicted value
        for text, (label, value) in zip(texts, clf.predict(texts)):
            print(json.dumps({"label": label, "score": value, "text": text}) if args.json
                  else f"{label or '(none)':<12} {value:8.4f}  {text[:70]}")
        return
    names = clf.label_names
    probs = clf.predict_proba(texts)
    for text, p, pred in zip(texts, probs, SingleLabel.predict_ids(probs, args.threshold)):
        record = {"label": names[pred], "probability": float(p[pred]),
                  "probabilities": dict(zip(names, map(float, p))), "text": text}
        if args.json:
            print(json.dumps(record))
        else:
            shown = text if len(text) <= 70 else text[:67] + "..."
            shown = shown.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate cannot be printed
            # two classes: the positive class's probability (P(spam)) whatever the label; more: the label's own
            score = f"P({names[1]}) {p[1]:6.1%}" if len(names) == 2 else f"{record['probability']:6.1%}"
            print(f"{record['label']:<6} {score}  {shown}")
