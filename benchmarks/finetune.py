"""The default fine-tuning run, measured end to end: train (defaults, or the flags given) and evaluate on every
split plus the unused ham. Keeps the run directory for the inference benchmark.

    .venv/bin/python -m benchmarks.finetune --data-dir data --out runs/default [spamtune train flags...]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from benchmarks.common import publish
from spamtune.cli.args import add_dataclass_args
from spamtune.config import TrainArgs
from spamtune.evaluation import evaluate_run, format_report
from spamtune.training import train_run


def operating_point_rows(r: dict) -> list[str]:
    """The run at its stored operating point and its calibration, as a table (binary runs)."""
    op, cal = r.get("operating_point"), r.get("calibration")
    if not op or not cal:
        return []
    fpr = op["fpr_report_half"]
    return [
        "At the stored operating point (picked for FPR <= 0.5 % on validation + the calibration half of the unused "
        "ham; FPR reported on the other half only):", "",
        "| block threshold | review threshold | test acc | test precision | test recall | recall with review | "
        "FPR report half | review rate report half | temperature | ECE test before -> after | Brier before -> "
        "after |", "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {op['block_threshold']:.4f} | {op['review_threshold']:.4f} | **{op['accuracy']:.2%}** | "
        f"{op['precision']:.2%} | {op['recall']:.2%} | {op['recall_with_review']:.2%} | **{fpr:.2%}** "
        f"({round(fpr * op['n_report_half'])}/{op['n_report_half']}) | {op['review_rate_report_half']:.2%} | "
        f"{cal['temperature']:.3f} | {cal['ece_before']:.4f} -> {cal['ece_after']:.4f} | "
        f"{cal['brier_before']:.4f} -> {cal['brier_after']:.4f} |", ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--out", default="runs/default")
    ap.add_argument("--no-record", action="store_true")
    add_dataclass_args(ap, TrainArgs)
    a = ap.parse_args()
    args = TrainArgs(**{f.name: getattr(a, f.name) for f in dataclasses.fields(TrainArgs)})

    t0 = time.perf_counter()
    m = train_run(args, a.data_dir, a.out, overwrite=True)
    train_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = evaluate_run(a.out, a.data_dir)
    eval_wall = time.perf_counter() - t0
    flags = " ".join(sys.argv[1:])
    body = "\n".join([
        f"`spamtune train {flags}` then `spamtune evaluate {a.out} --data-dir {a.data_dir}`; "
        f"model {args.model}, trainable {args.trainable}, pooling {args.pooling}, padding {args.padding}, "
        f"lr {args.lr}, {args.epochs} epochs, seed {args.seed}.", "",
        "| test acc | val acc | train acc | F1 | MCC | ROC-AUC | FPR unused ham | best epoch | train wall s | "
        "(load / cache / epochs s) | evaluate wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| **{r['accuracy']['test']:.2%}** | {r['accuracy']['validation']:.2%} | {r['accuracy']['train']:.2%} | "
        f"{r['f1']:.2%} | {r['mcc']:.4f} | {r['roc_auc']:.4f} | **{r['fpr_unused']:.2%}** "
        f"({round(r['fpr_unused'] * r['n']['unused'])}/{r['n']['unused']}) | {m['best_epoch']} | "
        f"**{train_wall:.0f}** | {m['load_s']:.0f} / {m['cache_s']:.0f} / {m['train_time_s']:.0f} | "
        f"{eval_wall:.0f} |", "", *operating_point_rows(r), "```", format_report(r), "```"])
    publish(f"Fine-tuning: {args.model}, {args.trainable}, lr {args.lr}", body, not a.no_record)


if __name__ == "__main__":
    main()
