"""Training speed side by side, in one run: spamtune's trainer (frozen prefix cached, dynamic padding with length
buckets) vs a book-style loop (fixed padding to the longest training message, the book's `[:, -1]` pooling, a full
forward every step), same model, data, scope and optimizer.

The book-style loop is timed over `--book-steps` steps and projected linearly to the full run (its steps all cost
the same; evaluations every `eval_freq` steps are included in the measured rate).

    .venv/bin/python -m benchmarks.train_speed --data-dir data
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import publish
from spamtune.config import TrainArgs
from spamtune.training import train_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--book-steps", type=int, default=50, help="steps of the book-style loop actually run")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ours = train_run(TrainArgs(model=a.model, epochs=a.epochs), a.data_dir, Path(tmp) / "ours")
        ours_wall = time.perf_counter() - t0
        steps = ours["steps"]
        book = train_run(TrainArgs(model=a.model, epochs=a.epochs, padding="longest_train", pooling="last",
                                   cache_prefix=False, max_steps=a.book_steps), a.data_dir, Path(tmp) / "book")
    book_rate = book["train_time_s"] / book["steps"]  # s per step, periodic evaluations included
    book_total = book["load_s"] + book_rate * steps
    rows = [
        "| loop | steps | load s | cache s | train s | total s | examples/s |",
        "|---|---|---|---|---|---|---|",
        f"| spamtune (cached prefix, dynamic padding) | {steps} | {ours['load_s']:.1f} | {ours['cache_s']:.1f} | "
        f"{ours['train_time_s']:.1f} | {ours['total_time_s']:.1f} | {ours['examples_per_s']:.1f} |",
        f"| book-style (fixed padding, full forward), measured | {book['steps']} | {book['load_s']:.1f} | 0 | "
        f"{book['train_time_s']:.1f} | | {book['examples_per_s']:.2f} |",
        f"| book-style, projected to {steps} steps | {steps} | {book['load_s']:.1f} | 0 | "
        f"{book_rate * steps:.1f} | {book_total:.1f} | |",
    ]
    body = "\n".join(rows) + (f"\n\nSpeed-up for {a.epochs} epochs of `{ours['trainable']}` on {a.model}: "
                              f"**{book_total / ours['total_time_s']:.1f}x** (wall time of our run incl. load: "
                              f"{ours_wall:.0f} s).")
    publish(f"Training speed: {a.model}, {a.epochs} epochs", body, not a.no_record)


if __name__ == "__main__":
    main()
