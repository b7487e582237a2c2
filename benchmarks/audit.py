"""`spamtune audit` on the SMS corpus: how many likely label errors it flags per split, which, and whether it finds
the test spam that almost every run misses.

    python -m benchmarks.audit runs/demo --data-dir data          # every split, the unused ham too; RESULTS.md
    python -m benchmarks.audit runs/demo --data-dir data --splits train,validation --no-record
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import publish
from spamtune.lifecycle.audit import AuditOptions, audit

# test spam that (almost) every run misses (benchmarks/RESULTS.md, the error analyses)
HARD_SPAM = {"posh birds and chaps": "Hello. We need some posh birds and chaps",
             "wot do i do next": "Money i have won wining number 946 wot do i do next",
             "the horoscope": "Will u meet ur dream partner soon?"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--splits", default="train,validation,test,unused")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    r = audit(args.run, args.data_dir, AuditOptions(splits=tuple(args.splits.split(",")), folds=args.folds))
    seconds = time.perf_counter() - start
    lines = [r.summary() + f"; {seconds:.0f} s in all (the frozen layers' forward pass is nearly all of it).", "",
             "| rank | split | row | label | suggested | P(label), out of fold | message |",
             "|---|---|---|---|---|---|---|"]
    for row in r.issues.head(15).itertuples():
        text = row.text.replace("|", "/")[:90]
        lines.append(f"| {row.rank} | {row.source} | {row.where} | {row.label} | {row.suggested} | "
                     f"{row.p_label:.3f} | {text} |")
    lines += ["", "The test spam that almost every run misses:", ""]
    for name, start_text in HARD_SPAM.items():
        hit = r.scored[r.scored["text"].str.startswith(start_text)]
        if not len(hit):
            lines.append(f"- {name}: not in the audited splits")
            continue
        row = hit.iloc[0]
        flagged = r.issues[(r.issues["source"] == row["source"]) & (r.issues["where"] == row["where"])]
        verdict = f"flagged, rank {int(flagged['rank'].iloc[0])}" if len(flagged) else "not flagged"
        lines.append(f"- {name} ({row['source']} row {row['where']}, labelled {row['label']}): out-of-fold "
                     f"P({row['label']}) {row['p_label']:.3f}, {verdict}")
    publish("Label audit (cleanlab on out-of-fold probabilities)", "\n".join(lines) + "\n",
            record=not args.no_record)


if __name__ == "__main__":
    main()
