"""`spamtune evaluate`: accuracy, precision/recall/F1, confusion matrix and FPR of a run."""

from __future__ import annotations

import argparse
import textwrap

EPILOG = """\
examples:
  spamtune evaluate runs/smollm2 --data-dir data/
  spamtune evaluate runs/smollm2 --data-dir data/ --json --threshold 0.8
"""


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="accuracy, precision/recall/F1, confusion matrix, FPR", epilog=textwrap.dedent(EPILOG))
    p.add_argument("run", help="run directory written by `spamtune train`")
    p.add_argument("--data-dir", default="data", help="directory written by `spamtune prepare` (default: data)")
    p.add_argument("--threshold", type=float, help="spam if P(spam) >= this (two classes; default: argmax)")
    p.add_argument("--limit", type=int, help="first N messages of each split only")
    p.add_argument("--no-unused", action="store_true", help="skip the false-positive rate on unused.csv")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import json

    from spamtune.evaluation import evaluate_run, format_report

    r = evaluate_run(args.run, args.data_dir, args.threshold, args.limit, unused=not args.no_unused,
                     progress=not args.json)
    print(json.dumps(r) if args.json else format_report(r))
