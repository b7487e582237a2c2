"""`spamtune prepare`: get, balance and split the data into CSVs."""

from __future__ import annotations

import argparse
import textwrap

EPILOG = """\
examples:
  spamtune prepare --out data/                  # the SMS Spam Collection: $SPAMTUNE_DATA, cache, or download
  spamtune prepare --data SMSSpamCollection --out data/   # a copy you have (UCI's file, sha256-checked)
  spamtune prepare --data reviews.csv --text-col review --label-col sentiment --out d/
  spamtune prepare --data big.csv --text-col text --label-col label --stream --out d/   # any size, flat memory
  spamtune prepare --folds 5 --out data/cv/      # data/cv/fold1 ... fold5: stratified 5-fold CV, every message

A --text-col file over 256 MiB is read in blocks (--stream): two passes, one block of rows in memory; the split
has the same sizes and is as random, but is not the in-memory split (rows keep their file order within a split).
"""


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="get, balance and split the data into CSVs", epilog=textwrap.dedent(EPILOG),
                       description="Get the SMS Spam Collection (or any CSV/TSV), balance it by undersampling, "
                                   "split 70/10/20 and write train/validation/test/unused CSVs and labels.json.")
    p.add_argument("--data", help="SMSSpamCollection file, its UCI zip, or a CSV/TSV with --text-col/--label-col "
                                  "(default: $SPAMTUNE_DATA, then the cache, then download)")
    p.add_argument("--out", default="data", help="output directory (default: data)")
    p.add_argument("--seed", type=int, default=123, help="seed for undersampling and shuffling (default: 123)")
    p.add_argument("--no-balance", action="store_true", help="keep the natural class ratio (no undersampling)")
    p.add_argument("--stratify", action="store_true", help="keep the class ratio equal across the splits")
    p.add_argument("--train-frac", type=float, default=0.7, help="default: 0.7")
    p.add_argument("--val-frac", type=float, default=0.1, help="default: 0.1")
    p.add_argument("--test-frac", type=float, default=None, help="default: the rest")
    p.add_argument("--text-col", help="text column of a CSV/TSV given with --data")
    p.add_argument("--label-col", help="label column of a CSV/TSV given with --data")
    p.add_argument("--labels", help="comma-separated allowed labels; other values are an error")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the SMS collection")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    p.add_argument("--folds", type=int, metavar="K",
                   help="K-fold cross-validation over every message (stratified, no undersampling): OUT/fold1 ... "
                        "OUT/foldK, each with train/validation/test (validation: --val-frac of all rows)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="read a --text-col file in blocks with flat memory (default: when it is over 256 MiB)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from spamtune.data import prepare

    allowed = tuple(args.labels.split(",")) if args.labels else None
    result = prepare(args.out, args.data, verify=not args.no_verify, seed=args.seed, balance=not args.no_balance,
                     stratify=args.stratify, train_frac=args.train_frac, validation_frac=args.val_frac,
                     test_frac=args.test_frac, text_col=args.text_col, label_col=args.label_col, allowed=allowed,
                     overwrite=args.overwrite, stream=args.stream, folds=args.folds)
    print(f"read {result.source}{' (streamed)' if result.streamed else ''}\nwrote {result.out}/\n{result.table()}")
