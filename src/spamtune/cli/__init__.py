"""Command line: one module per verb, in pipeline order, each with `add_parser(sub)` and the function it runs.
Bad input exits 2 with one `spamtune: error:` line; a failing environment (disk full, a vanished file) exits 1
with one line; anything else that goes wrong is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import version

from spamtune.cli import (
    audit,
    cache,
    classify,
    compare,
    evaluate,
    export,
    feedback,
    generate,
    lists,
    memory,
    monitor,
    prepare,
    registry,
    retrain,
    serve,
    train,
)
from spamtune.cli.args import printable
from spamtune.errors import SpamtuneError

VERBS = (prepare, train, evaluate, classify, serve, feedback, lists, memory, monitor, retrain, audit, compare,
         registry, export, generate, cache)  # generate: +zero-shot

EXAMPLES = """\
examples:
  spamtune prepare --out data/                    # the SMS Spam Collection: $SPAMTUNE_DATA, cache, or download
  spamtune train --data-dir data/ --out runs/smollm2
  spamtune evaluate runs/smollm2 --data-dir data/
  spamtune classify runs/smollm2 "URGENT! You have won a 1 week FREE membership in our £100,000 Prize \
      Jackpot! Txt the word: CLAIM to No: 81010" "Are we still on for lunch?"
  spamtune lists add deny domain parcel-fee-uk.com --reason "parcel-fee wave"   # stops it before the model
  spamtune audit runs/smollm2 --data-dir data/ --out audit.csv                  # likely label errors
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spamtune", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Fine-tune a pretrained decoder LLM into a text classifier (SMS spam vs ham by default).")
    parser.add_argument("--version", action="version", version=f"spamtune {version('spamtune')}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.add_parser(sub)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The command line as `main` reads it (bad arguments: argparse's usage error, exit 2)."""
    args, extra = parser.parse_known_args(argv)
    # `classify RUN --json "a" "b"`: argparse closes a nargs="*" positional at the first option; the words after
    # it are still messages (parse_intermixed_args does not support subcommands)
    if extra and args.verb == "classify" and not any(e.startswith("-") for e in extra):
        args.texts += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(build_parser(), argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed (train --nproc re-runs it under torchrun)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code = args.func(args)  # a verb may return an exit code (monitor: 1 when an alert fires)
    except SpamtuneError as e:
        print(f"spamtune: error: {printable(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment, not the input: a full disk, a vanished file, a closed pipe
        where = f" ({printable(e.filename)})" if e.filename else ""
        print(f"spamtune: error: {printable(e.strerror or e)}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spamtune: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
