"""`spamtune audit`: likely label errors in the training data and the learnt corrections, for review."""

from __future__ import annotations

import argparse
import sys
import textwrap

EPILOG = """\
examples:
  spamtune audit runs/smollm2 --data-dir data/ --out audit.csv
  spamtune audit runs/smollm2 --data-dir data/ --db sqlite:///predictions.sqlite --out audit.csv   # + corrections
  spamtune audit runs/smollm2 --data-dir data/ --splits train,validation,test --out audit.csv

Each message is scored by a model that never saw its label: the run's frozen layers' output (never changed by
fine-tuning) and a logistic regression fitted on the other folds; cleanlab's find_label_issues (Confident
Learning) then flags the messages whose given label those out-of-fold probabilities contradict, likeliest first.
The CSV (rank, source, where, label, suggested, p_label, text) is shown in /admin with --db: a flagged correction
can be relabelled there. The forward pass through the frozen layers is the cost (~16 messages/s for SmolLM2 on 2
cores: 6 min for the whole SMS corpus).
"""


def add_parser(sub) -> None:
    p = sub.add_parser("audit", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="likely label errors in the data and the corrections", epilog=textwrap.dedent(EPILOG))
    p.add_argument("run", help="run directory written by `spamtune train` (--backend scratch)")
    p.add_argument("--data-dir", default="data", help="prepared splits (default: data)")
    p.add_argument("--splits", default="train,validation",
                   help="comma-separated splits of --data-dir to audit (default: train,validation)")
    p.add_argument("--db", help="also audit the learnable corrections of this prediction store")
    p.add_argument("--folds", type=int, default=5, help="out-of-fold scoring: folds (default: 5)")
    p.add_argument("--out", default="audit.csv", help="the CSV of flagged messages (default: audit.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from spamtune.cli.args import printable
    from spamtune.errors import ConfigError
    from spamtune.fsutil import atomic_file, check_output_file
    from spamtune.lifecycle.audit import AuditOptions, audit
    from spamtune.runs import is_run_dir

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    if not splits and not args.db:
        raise ConfigError("--splits names no split and there is no --db: nothing to audit")
    for split in splits:
        if not (Path(args.data_dir) / f"{split}.csv").is_file():
            raise ConfigError(f"--splits {split}: no {Path(args.data_dir) / split}.csv (run `spamtune prepare`)")
    check_output_file(args.out, args.overwrite)
    if not is_run_dir(args.run):
        raise ConfigError(f"{args.run}: not a run directory (written by `spamtune train`)")
    store, corrections = None, []
    if args.db:
        from spamtune.monitoring.store import PredictionStore

        store = PredictionStore.open(args.db, must_exist=True)
        store.check_writable()  # the findings go there: a locked store stops here, before the long pass
        corrections = store.corrections(learnable_only=True)
    r = audit(args.run, args.data_dir, AuditOptions(splits=splits, folds=args.folds), corrections)
    if store is not None:
        from spamtune.runs import RunConfig

        findings = r.issues.rename(columns={"where": "location"}).to_dict("records")
        store.replace_audit(RunConfig.from_dir(args.run).run_id, findings)
    with atomic_file(args.out, newline="") as f:
        from spamtune.inference.files import neutralize_formula

        out = r.issues.copy()
        out["text"] = out["text"].map(neutralize_formula)
        out.to_csv(f, index=False)
    print(r.summary())
    for row in r.issues.head(10).itertuples():
        print(printable(f"{row.rank:>4}  {row.source:<10} {row.where:<6} {row.label} -> {row.suggested}  "
                        f"P({row.label}) {row.p_label:.3f}  {row.text}", 150))
    print(f"-> {printable(args.out)}" + (" and /admin (the store)" if store is not None else ""), file=sys.stderr)
