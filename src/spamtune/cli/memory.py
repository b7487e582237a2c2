"""`spamtune memory`: what a run's memory of corrections holds in a store, and why each other correction is not
remembered (what /admin's "Memory of corrections" panel shows)."""

from __future__ import annotations

import argparse
import json
import textwrap

EPILOG = """\
examples:
  spamtune memory runs/demo --db sqlite:///predictions.sqlite     # every correction: active, or why not
  spamtune memory runs/demo --db "$DB" --json                     # one JSON object per correction

A correction is remembered from the next request on, in every process serving the store (`spamtune feedback`
adds one, or confirms an end user's that waits for review). Statuses: active; needs review (an end user's
correction against a prediction at least 99 % sure); would flip held-out messages (an end user's correction
among the other label's messages); no text; repeated; conflicting corrections; unknown label; learnt by this
run (a retrain learnt it: it retires).
"""


def add_parser(sub) -> None:
    p = sub.add_parser("memory", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="list the memory of corrections of a run in a store", epilog=textwrap.dedent(EPILOG))
    p.add_argument("run", help="run directory (trained with a memory calibration)")
    p.add_argument("--db", help="prediction store URL (default: sqlite in $XDG_DATA_HOME/spamtune)")
    p.add_argument("--json", action="store_true", help="one JSON object per correction")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from spamtune.cli.args import printable
    from spamtune.errors import ConfigError
    from spamtune.inference import TextClassifier
    from spamtune.monitoring.memory import memory_check
    from spamtune.monitoring.store import PredictionStore

    store = PredictionStore.open(args.db, must_exist=True, read_only=True)
    clf = TextClassifier.load(args.run)
    memory = memory_check(store, clf)
    if memory is None:
        raise ConfigError(f"{args.run} has no memory of corrections: it needs a binary --backend scratch run "
                          "trained by this version (RUN/memory.safetensors); train it again")
    memory.refresh()
    if not args.json:
        print(f"{len(memory.active)} of {len(memory.entries)} corrections remembered; a message decides like one "
              f"at cosine similarity >= {memory.threshold:.3f} (or its own narrower reach)")
    for e in reversed(memory.entries):
        if args.json:
            print(json.dumps(e.to_json()))
            continue
        reach = f"{e.radius:.3f}" if e.radius is not None else "-"
        who = "operator" if e.trusted else "user"
        print(f"{e.status:<28} {e.label:<6} {who:<8} {e.corrected_at:%Y-%m-%d %H:%M} {reach:>6}  {e.id}  "
              f"{printable(e.text or '(text not stored)', 60)}")
