"""How a request's messages are cut into forward passes (batching.length_batches), side by side in one run: the
model's own logits (`TextClassifier.model_logits`, no cascade, no cache) over the cascade benchmark's traffic mix
(report-half ham, test spam, one-time passwords, Zipf repeats) in requests of 32 and of 6 messages (about what
reaches the LLM behind the cascade), for several costs of a pass in padded tokens. "one pass" is the way before
(every request of up to 32 padded to its longest message). The settings take turns request by request, so the
machine's noise falls on all of them alike; the logits of every setting are compared with one pass's.

    .venv/bin/python -m benchmarks.batching runs/demo --data-dir data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.cascade import traffic_mix
from benchmarks.common import publish
from spamtune.batching import PASS_COST_TOKENS, length_batches
from spamtune.calibration.decisions import in_calibration_half
from spamtune.data import read_split
from spamtune.inference import TextClassifier

ONE_PASS = 10**9  # a pass dearer than any padding: as few passes as the batch size allows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--messages", type=int, default=320, help="traffic messages per request size")
    ap.add_argument("--costs", default="8,16,32,64,128", help="costs of a pass in padded tokens to compare")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args(argv)

    data = Path(a.data_dir)
    test, unused = read_split(data / "test.csv"), read_split(data / "unused.csv")
    report = [t for t, y in zip(unused["Text"], unused["Label"]) if y == 0 and not in_calibration_half(t)]
    traffic = traffic_mix(report, [t for t, y in zip(test["Text"], test["Label"]) if y == 1])[: a.messages]
    clf = TextClassifier.load(a.run)
    clf.model_logits(traffic[:8], 8)  # warm-up
    settings = [("one pass", ONE_PASS), *((f"cost {c}", int(c)) for c in a.costs.split(","))]
    chosen = PASS_COST_TOKENS["cpu"]
    lines = ["| request size | batching | msgs/s | vs one pass | passes per request | padded / real tokens | "
             "largest logit difference vs one pass |", "|---|---|---|---|---|---|---|"]
    try:
        for size in (32, 6):
            requests = [traffic[i: i + size] for i in range(0, len(traffic), size)]
            seconds = dict.fromkeys(dict(settings), 0.0)
            logits: dict[str, list[np.ndarray]] = {name: [] for name, _ in settings}
            for request in requests:
                for name, cost in settings:
                    PASS_COST_TOKENS["cpu"] = cost
                    t0 = time.perf_counter()
                    logits[name].append(clf.model_logits(request, 32)[0])
                    seconds[name] += time.perf_counter() - t0
            lengths = [[len(ids) for ids in clf.encode(r)] for r in requests]
            real = sum(map(sum, lengths))
            reference = np.concatenate(logits["one pass"])
            base = len(traffic) / seconds["one pass"]
            for name, cost in settings:
                cuts = [length_batches(n, 32, cost) for n in lengths]
                padded = sum(len(b) * max(n[i] for i in b) for n, bs in zip(lengths, cuts) for b in bs)
                rate = len(traffic) / seconds[name]
                diff = float(np.abs(np.concatenate(logits[name]) - reference).max())
                mark = " (the default)" if cost == chosen else ""
                lines.append(f"| {size} | {name}{mark} | {rate:.1f} | {rate / base:.2f}x | "
                             f"{sum(map(len, cuts)) / len(requests):.1f} | {padded / real:.2f} | {diff:.1e} |")
    finally:
        PASS_COST_TOKENS["cpu"] = chosen
    body = "\n".join([*lines, "", f"Run {a.run}: {len(traffic)} traffic messages per request size, the model's "
                      "logits only (no cascade, no decision cache), 2 torch threads as configured."])
    publish(f"Batching: passes cut by length ({Path(a.run).name})", body, not a.no_record)


if __name__ == "__main__":
    main()
