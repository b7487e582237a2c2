"""`spamtune evaluate`: accuracy, precision/recall/F1, confusion matrix and FPR of a run."""

from __future__ import annotations

import argparse
import textwrap

from spamtune.cli.args import add_cascade_arg, add_device_arg, add_dtype_arg, add_runtime_arg

EPILOG = """\
examples:
  spamtune evaluate runs/smollm2 --data-dir data/
  spamtune evaluate runs/smollm2 --data-dir data/ --json --threshold 0.8
  spamtune evaluate runs/smollm2 --data-dir data/ --target-fpr 0.001 --store   # a stricter operating point
  spamtune evaluate runs/smollm2 --data-dir data/ --perturb                     # + recall on obfuscated spam
  spamtune evaluate runs/smollm2 --data-dir data/ --perturb homoglyphs,zero_width

Binary runs are also reported at their operating point: the block and review thresholds stored at training
(for --target-fpr, default 0.005, on validation + the calibration half of the unused ham), with the FPR
measured on the other half only. Figures: confusion_matrix.png, reliability.png, thresholds.png.
No message is scored by the same model twice: what training scored after the fit (the training split, validation,
the calibration ham) and what an earlier evaluation scored is read from RUN/logits/ (--rescore: score everything).
"""


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="accuracy, precision/recall/F1, confusion matrix, FPR", epilog=textwrap.dedent(EPILOG))
    p.add_argument("run", help="run directory written by `spamtune train`")
    p.add_argument("--data-dir", default="data", help="directory written by `spamtune prepare` (default: data)")
    p.add_argument("--threshold", type=float, help="spam if P(spam) >= this for the headline metrics (two classes; "
                                                   "default: argmax); the operating point is reported beside it")
    p.add_argument("--target-fpr", type=float, help="pick a new operating point for this false-positive rate on "
                                                    "validation + the calibration half of the unused ham")
    p.add_argument("--target-precision", type=float, help="pick the block threshold for this precision on "
                                                          "validation instead")
    p.add_argument("--review-fpr", type=float, help="the review band's false-positive rate (default 0.02)")
    p.add_argument("--store", action="store_true", help="save the newly picked operating point in the run")
    p.add_argument("--limit", type=int, help="first N messages of each split only")
    p.add_argument("--no-unused", action="store_true", help="skip the false-positive rate on unused.csv")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--rescore", action="store_true",
                   help="score every message with the model again, neither reading nor adding to the run's memo "
                        "of logits (RUN/logits/: what training and earlier evaluations scored)")
    p.add_argument("--perturb", nargs="?", const="all", metavar="NAMES",
                   help="also score the test spam under obfuscations (all, or a comma list of: homoglyphs, "
                        "leetspeak, zero_width, spaced, url_disguise, phone_disguise, case)")
    add_device_arg(p)
    add_runtime_arg(p)
    add_dtype_arg(p)
    add_cascade_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import json

    from spamtune.data.perturb import PERTURBATIONS
    from spamtune.evaluation import evaluate_run, format_report

    perturb = tuple(PERTURBATIONS) if args.perturb == "all" else tuple(filter(None, (args.perturb or "").split(",")))

    r = evaluate_run(args.run, args.data_dir, args.threshold, args.limit, unused=not args.no_unused,
                     progress=not args.json, target_fpr=args.target_fpr, target_precision=args.target_precision,
                     review_fpr=args.review_fpr, store=args.store, device=args.device, dtype=args.dtype,
                     runtime=args.runtime, perturb=perturb, cascade=not args.no_cascade,
                     reuse=not args.rescore)
    print(json.dumps(r) if args.json else format_report(r))
