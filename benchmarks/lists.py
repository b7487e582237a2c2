"""What the operator lists cost per message, with 100 to 10,000 entries (the goal: < 1 ms per message at 10,000).

    python -m benchmarks.lists --data-dir data              # appends to RESULTS.md
    python -m benchmarks.lists --data-dir data --no-record

Entries are a third senders, a third domains (allow and deny), a third RE2 patterns built from the training
split's words (two words up to 20 characters apart: what an operator writes for a wave), kept in a real SQLite
store. Each size is timed end to end as the service runs it: the store's revision read and the entries compiled
once (what a change costs every serving process), then `ListCheck.run` over the test split in batches of 32 with a
sender for every message (every check per message: sender lookup, host extraction and domain lookup, one RE2 set
search), best of three passes.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import publish
from spamtune.inference.lists import ListCheck, entry
from spamtune.inference.pipeline import BatchOptions
from spamtune.monitoring.lists import OperatorLists
from spamtune.monitoring.store import PredictionStore


def make_entries(n: int, words: list[str], rng: random.Random) -> list:
    out = []
    for i in range(n):
        action = "deny" if i % 2 else "allow"
        kind = ("sender", "domain", "pattern")[i % 3]
        if kind == "sender":
            value = f"+44 7{rng.randrange(10**9):09d}"
        elif kind == "domain":
            value = f"{rng.choice(words)}-{rng.choice(words)}{i}.{rng.choice(['com', 'co.uk', 'net', 'info'])}"
        else:
            value = rf"\b{rng.choice(words)}\b.{{0,20}}\b{rng.choice(words)}{i % 7 or ''}\b"
        out.append(entry(action, kind, value, "benchmark"))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--sizes", default="0,100,1000,10000", help="entry counts to time")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args(argv)

    rng = random.Random(0)
    train = pd.read_csv(args.data_dir / "train.csv")["Text"].astype(str)
    words = sorted({w.lower() for t in train for w in t.split() if w.isalpha() and 3 <= len(w) <= 10})
    texts = pd.read_csv(args.data_dir / "test.csv")["Text"].astype(str).tolist()
    rows = ["| entries | added to the store (s) | revision read (ms) | entries read + compiled (ms) | "
            "per message (µs) | messages listed |", "|---|---|---|---|---|---|"]
    for n in (int(s) for s in args.sizes.split(",")):
        entries = make_entries(n, words, rng)
        listed_senders = [e.value for e in entries if e.kind == "sender"]
        # a sender for every message; one in ten is a listed one
        senders = [rng.choice(listed_senders) if listed_senders and i % 10 == 0 else f"+1555{i:07d}"
                   for i in range(len(texts))]
        with tempfile.TemporaryDirectory() as tmp:
            lists = OperatorLists(PredictionStore.open(f"sqlite:///{tmp}/lists.sqlite"))
            t = time.perf_counter()
            if entries:
                lists.add(entries, by="benchmark")
            add_s = time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(20):
                lists.revision()
            revision_ms = (time.perf_counter() - t) / 20 * 1000
            check = ListCheck(lists, ["ham", "spam"], refresh_s=3600)
            t = time.perf_counter()
            check.current()
            compile_ms = (time.perf_counter() - t) * 1000
            best, listed = float("inf"), 0
            for _ in range(3):
                t = time.perf_counter()
                listed = 0
                for i in range(0, len(texts), 32):
                    out = check.run(texts[i:i + 32], BatchOptions(), senders[i:i + 32])
                    listed += sum(v is not None for v in out.verdicts)
                best = min(best, time.perf_counter() - t)
            lists.store.close()
        per_us = best / len(texts) * 1e6
        rows.append(f"| {n:,} | {add_s:.2f} | {revision_ms:.2f} | {compile_ms:.0f} | {per_us:.1f} | "
                    f"{listed} of {len(texts)} |")
        print(rows[-1], flush=True)
    body = "\n".join(rows) + (
        f"\n\nThe test split ({len(texts)} messages), every message with a sender (one in ten listed), batches of "
        "32, best of 3 passes. Per message: the whole check (sender, hosts and domains, the RE2 pattern set). "
        "A change costs each serving process one revision read a second and, when it moved, the read + compile.\n")
    publish("Operator lists: cost per message by number of entries", body, record=not args.no_record)


if __name__ == "__main__":
    main()
