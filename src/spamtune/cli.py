"""Command line: one function per verb, in pipeline order. Bad input exits 2 with one `spamtune: error:` line."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import textwrap
from importlib.metadata import version

from spamtune.errors import SpamtuneError

EXAMPLES = """\
examples:
  spamtune prepare --data ../shared/data/SMSSpamCollection --out data/
  spamtune train --data-dir data/ --out runs/smollm2
  spamtune evaluate runs/smollm2 --data-dir data/
  spamtune classify runs/smollm2 "You won a free cruise! Reply YES" "Are we still on for lunch?"
"""


def _add_dataclass_args(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per dataclass field; the field's metadata supplies help and choices."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_ = meta.get("help", "") + (f" (default: {f.default})" if f.default not in (None, False) else "")
        if f.type in ("bool", bool):
            if f.default:
                parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                    help=f"do not {meta.get('help', f.name)}")
            else:
                parser.add_argument(flag, dest=f.name, action="store_true", help=meta.get("help"))
            continue
        typ = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
        parser.add_argument(flag, dest=f.name, type=typ, default=f.default, choices=meta.get("choices"), help=help_)


# ---------------------------------------------------------------------------------------------------------------
# verbs


def cmd_prepare(args: argparse.Namespace) -> None:
    from spamtune.data import prepare

    labels = tuple(args.labels.split(",")) if args.labels else None
    result = prepare(args.out, args.data, verify=not args.no_verify, seed=args.seed, balance=not args.no_balance,
                     stratify=args.stratify, train_frac=args.train_frac, validation_frac=args.val_frac,
                     test_frac=args.test_frac, text_col=args.text_col, label_col=args.label_col, labels=labels,
                     overwrite=args.overwrite)
    print(f"read {result.source}\nwrote {result.out}/\n{result.table()}")


# ---------------------------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="spamtune", formatter_class=fmt, epilog=EXAMPLES,
        description="Fine-tune a pretrained decoder LLM into a text classifier (SMS spam vs ham by default).")
    parser.add_argument("--version", action="version", version=f"spamtune {version('spamtune')}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("prepare", formatter_class=fmt, help="get, balance and split the data into CSVs",
                       description="Get the SMS Spam Collection (or any CSV/TSV), balance it by undersampling, "
                                   "split 70/10/20 and write train/validation/test/unused CSVs and labels.json.",
                       epilog=textwrap.dedent("""\
                           examples:
                             spamtune prepare --data ../shared/data/SMSSpamCollection --out data/
                             spamtune prepare --out data/                  # $SPAMTUNE_DATA, cache, or download
                             spamtune prepare --data reviews.csv --text-col review --label-col sentiment --out d/
                           """))
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
    p.set_defaults(func=cmd_prepare)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except SpamtuneError as e:
        print(f"spamtune: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # config validation (dataclass __post_init__) speaks in flag names
        print(f"spamtune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spamtune: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
