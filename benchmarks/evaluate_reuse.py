"""Evaluation that reuses what training computed: one fresh `spamtune train`, then `spamtune evaluate` on copies of
that run, each a separate process as a user types it, on one machine in one run:

- `--rescore`: every message through the model (what `evaluate` did before the run kept a memo of logits);
- the first `evaluate` after training: the memo training left (the training split, scored from its cached frozen
  prefix; validation; the calibration half of the unused ham) answers those, the rest is scored and added;
- a second `evaluate`: everything is in the memo.

Every process here keeps what it reads from the model's GGUF file in one new cache directory (the training, the
first to load the model, fills it). Beside the table: the start-up of `spamtune classify RUN "one message"` with a
new, empty cache directory (the GGUF file parsed and dequantized, then kept) and with that filled one.

The three reports must agree (accuracy, confusion matrix, MCC, the unused ham's FPR; at the operating point the
test's confusion matrix and bands and the report half's FPR and review rate); the table gives each one's seconds,
the speed-up over `--rescore` and the texts the model scored.

    python -m benchmarks.evaluate_reuse --data-dir data                   # the defaults' run; appends to RESULTS.md
    python -m benchmarks.evaluate_reuse --data-dir data --no-record -- --epochs 1 --limit 200   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import publish

AGREE = ("accuracy", "confusion_matrix", "mcc", "fpr_unused")
AGREE_AT_OPERATING_POINT = ("confusion_matrix", "bands_test", "fpr_report_half", "review_rate_report_half")


def spamtune(*args: str, cache: Path) -> float:
    """Run the CLI as a user does, with `cache` as its cache directory; its wall seconds."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "spamtune", *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "SPAMTUNE_CACHE": str(cache)})
    return time.perf_counter() - t0


def same_figures(a: dict[str, Any], b: dict[str, Any]) -> bool:
    op_a, op_b = a.get("operating_point") or {}, b.get("operating_point") or {}
    return all(a.get(k) == b.get(k) for k in AGREE) and all(op_a.get(k) == op_b.get(k)
                                                              for k in AGREE_AT_OPERATING_POINT)


def measure(data_dir: Path, train_args: list[str], work: Path) -> dict[str, Any]:
    run, cache = work / "run", work / "cache"
    train_s = spamtune("train", "--data-dir", str(data_dir), "--out", str(run), *train_args, cache=cache)
    startup = {"with a new cache directory": spamtune("classify", str(run), "hello", cache=work / "new-cache"),
               "with the one training filled": spamtune("classify", str(run), "hello", cache=cache)}
    rescored, reused = work / "rescored", work / "reused"
    shutil.copytree(run, rescored)
    shutil.copytree(run, reused)
    rows = {}
    for name, where, extra in (("evaluate --rescore (every message through the model)", rescored, ["--rescore"]),
                               ("evaluate after train (the memo training left)", reused, []),
                               ("evaluate again", reused, [])):
        seconds = spamtune("evaluate", str(where), "--data-dir", str(data_dir), "--json", *extra, cache=cache)
        rows[name] = (seconds, json.loads((where / "eval.json").read_text()))
    return {"train_s": train_s, "rows": rows, "startup": startup}


def table(m: dict[str, Any]) -> str:
    rows = list(m["rows"].items())
    base_s, base = rows[0][1]
    n = sum(base["n"].values())
    lines = [f"Training took {m['train_s']:.0f} s; each evaluation reads {n:,} messages "
             f"(train, validation, test, unused).", "",
             "| evaluation | seconds | speed-up | messages the model scored | read from the memo | "
             "same figures as --rescore |", "|---|---|---|---|---|---|"]
    for name, (seconds, r) in rows:
        kept = r.get("model_logits")
        scored = f"{kept['scored']:,} (distinct texts)" if kept else f"{n:,} (every message)"
        lines.append(f"| {name} | {seconds:.1f} | {base_s / seconds:.1f}x | {scored} | "
                     f"{kept['reused'] if kept else 0:,} | {'yes' if same_figures(r, base) else 'NO'} |")
    lines += ["", "`spamtune classify RUN \"hello\"` (start-up, model load, one message): " +
              "; ".join(f"{how} {s:.1f} s" for how, s in m["startup"].items()) +
              " (a GGUF base model is parsed and dequantized only with the new one)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    p.add_argument("train_args", nargs="*", help="after --: more `spamtune train` options (default: its defaults)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="evaluate-reuse-") as tmp:
        m = measure(a.data_dir, a.train_args, Path(tmp))
    publish("Evaluation that reuses what training computed", table(m), record=not a.no_record)
    return m


if __name__ == "__main__":
    main()
