"""The service under load, on a real run: `spamtune serve` in a subprocess on a free loopback port, then
`--requests` POST /classify calls at `--concurrency` (mixed sizes, ~10 % invalid), every answer checked against
the label the model gives each text alone. Reports server errors, latency p50/p95 and the server's memory.

    .venv/bin/python -m benchmarks.load runs/default --requests 1000 --concurrency 32
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.common import publish
from spamtune.data import read_split
from spamtune.inference import TextClassifier
from spamtune.serving.loadtest import run_load


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


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

    texts = list(read_split(Path(a.data_dir) / "test.csv")["Text"])[:100]
    clf = TextClassifier.load(a.run, a.dtype)
    expected = dict(zip(texts, clf.predict(texts)))
    del clf
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "spamtune", "serve", a.run, "--port", str(port),
                               "--dtype", a.dtype], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        rss_before = rss_mb(server.pid)
        report = run_load(url, expected, a.requests, a.concurrency, a.max_texts)
        rss_after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    body = (f"{report.summary()}; server memory {rss_before:.0f} MB before, {rss_after:.0f} MB after "
            f"(concurrency {a.concurrency}, 1-{a.max_texts} texts per valid request, {a.dtype}).")
    publish(f"Service under load: {Path(a.run).name}", body, not a.no_record)


if __name__ == "__main__":
    main()
