"""`spamtune feedback`: correct a recorded decision from the command line (what POST /feedback does)."""

from __future__ import annotations

import argparse
import textwrap

EPILOG = """\
examples:
  spamtune feedback --db sqlite:///predictions.sqlite 3f2a...e1 ham            # it was not spam
  spamtune feedback --db "$DB" 3f2a...e1 spam --no-learn                      # act on it, do not train on it
  spamtune feedback --db "$DB" 3f2a...e1 spam --replace                       # change an earlier correction

The same correction twice changes nothing; a different label for a corrected prediction needs --replace.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("feedback", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="correct a recorded decision", epilog=textwrap.dedent(EPILOG))
    p.add_argument("id", help="the prediction's id (from serve's answers, classify --db, or /admin)")
    p.add_argument("label", help="the right label")
    p.add_argument("--db", help="prediction store URL (default: sqlite in $XDG_DATA_HOME/spamtune)")
    p.add_argument("--no-learn", action="store_true", help="act on it but keep it out of training data")
    p.add_argument("--replace", action="store_true", help="change an earlier correction of this prediction")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from spamtune.errors import ConfigError
    from spamtune.monitoring.store import PredictionStore, check_label

    if len(args.id) != 32 or any(c not in "0123456789abcdef" for c in args.id):
        raise ConfigError(f"{args.id!r} is not a prediction id (32 hex digits)")
    store = PredictionStore.open(args.db, must_exist=True)
    pred = store.get(args.id)
    if pred is not None:
        check_label(args.label, list(pred["scores"]))  # the labels the deciding run had
    out = store.add_feedback(args.id, args.label, learn=not args.no_learn, source="cli", replace=args.replace)
    previous = f" (was {out['previous']})" if out["previous"] else ""
    print(f"{out['status']}: {args.id} -> {args.label}{previous}; predicted {out['prediction_label']}")
