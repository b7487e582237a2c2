"""`spamtune compare`: champion vs challenger on the same messages, and the promotion policy's verdict."""

from __future__ import annotations

import argparse
import os
import textwrap

from spamtune.cli.args import add_promotion_args

EPILOG = """\
examples:
  spamtune compare runs/smollm2 runs/smollm2-r1                 # data: the challenger's (RUN/data) or its own
  spamtune compare --registry /srv/spamtune/registry 5          # current version vs version 5
  spamtune compare runs/a runs/b --data-dir data/ --json

Each model decides at its own stored operating point, on test, the report half of the unused ham and the
held-out corrections (a retrain's holdout.csv). The report (compare.json, compare.md) goes into the challenger's
run directory; with --registry the registry also keeps its own record, bound by sha256 to both versions, the
policy and the data, which is what `spamtune registry promote` rests on.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("compare", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="champion vs challenger: metrics, McNemar's test, the promotion verdict",
                       epilog=textwrap.dedent(EPILOG))
    p.add_argument("runs", nargs="+", metavar="RUN", help="CHAMPION CHALLENGER, or with --registry one VERSION")
    p.add_argument("--registry", default=os.environ.get("SPAMTUNE_REGISTRY"),
                   help="compare the current version with VERSION of this registry")
    p.add_argument("--data-dir", help="the data to compare on (default: the challenger's)")
    add_promotion_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    from spamtune.errors import ConfigError
    from spamtune.inference import TextClassifier
    from spamtune.lifecycle import PromotionPolicy, Registry, compare_runs, parse_version
    from spamtune.lifecycle.retrain import champion_data_dir

    registry = None
    policy = PromotionPolicy(fpr_margin=args.fpr_margin, recall_margin=args.recall_margin, alpha=args.alpha,
                             max_recall_drop=args.max_recall_drop)
    if args.registry and len(args.runs) == 1:
        registry = Registry(args.registry)
        champion, challenger = registry.current_dir(), registry.resolve(args.runs[0])
        if challenger == champion:
            raise ConfigError(f"version {args.runs[0]} is the current version: nothing to compare it with")
    elif len(args.runs) == 2:
        champion, challenger = Path(args.runs[0]), Path(args.runs[1])
    else:
        raise ConfigError("give CHAMPION CHALLENGER, or --registry REG VERSION")
    data_dir = Path(args.data_dir) if args.data_dir else champion_data_dir(challenger)
    c = compare_runs(TextClassifier.load(champion), TextClassifier.load(challenger), data_dir, policy,
                     progress=not args.json)
    c.write(challenger)
    if registry is not None:  # the registry's own record, bound to both versions: what promote rests on
        registry.record_comparison(parse_version(args.runs[0]), c)
    print(json.dumps(c.to_json()) if args.json else c.to_markdown())
