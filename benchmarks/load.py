"""The service under load, on a real run, with the prediction store off and on in one invocation: `spamtune serve`
in a subprocess on a free loopback port, then `--requests` POST /classify calls at `--concurrency` (mixed sizes,
~10 % invalid), every answer checked against the label the model gives each text alone. Reports server errors,
throughput and latency for each mode, records lost (answered ids missing from the store), and the server's
memory.

    .venv/bin/python -m benchmarks.load runs/default --requests 1000 --concurrency 32
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import publish, spamtune_server
from spamtune.data import read_split
from spamtune.inference import TextClassifier
from spamtune.serving.loadtest import LoadReport, run_load


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def serve_and_load(a: argparse.Namespace, expected: dict[str, str], store_args: list[str]) -> tuple[LoadReport, float]:
    with spamtune_server([a.run, "--dtype", a.dtype, "--no-access-log", *store_args]) as (url, server):
        report = run_load(url, expected, a.requests, a.concurrency, a.max_texts)
        return report, rss_mb(server.pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-texts", type=int, default=4)
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()

    from spamtune.monitoring.store import PredictionStore

    texts = list(read_split(Path(a.data_dir) / "test.csv")["Text"])[:100]
    clf = TextClassifier.load(a.run, a.dtype)
    expected = dict(zip(texts, clf.predict(texts)))
    del clf
    rows = ["| store | requests | req/s | ok | invalid rejected | server errors | wrong | p50 ms | p95 ms | "
            "records written / answered | server RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/load.sqlite"
        for name, store_args in (("off", ["--no-store"]), ("SQLite", ["--db", db])):
            report, rss = serve_and_load(a, expected, store_args)
            results[name] = report
            if name == "off":
                kept = "-"
            else:
                store = PredictionStore.open(db)
                ids = set(report.answered_ids)
                written = {r["id"] for r in store.iter_all()}
                kept = f"{len(written & ids)} / {len(ids)} (lost {len(ids - written)})"
            rows.append(f"| {name} | {report.requests} | {report.throughput:.1f} | {report.ok} | {report.rejected} | "
                        f"{report.server_errors} | {report.wrong} | {report.percentile(50):.0f} | "
                        f"{report.percentile(95):.0f} | {kept} | {rss:.0f} |")
    ratio = results["SQLite"].throughput / results["off"].throughput
    body = "\n".join([*rows, "", f"Throughput with the store on: **{ratio:.1%}** of the store off, same run "
                      f"(concurrency {a.concurrency}, 1-{a.max_texts} texts per valid request, {a.dtype})."])
    publish(f"Service under load, prediction store off vs on: {Path(a.run).name}", body, not a.no_record)


if __name__ == "__main__":
    main()
