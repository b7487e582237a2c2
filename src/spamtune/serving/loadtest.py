"""A bounded load generator for the HTTP service (loopback only): mixed valid and invalid requests at a given
concurrency, every answer checked. Used by benchmarks/load.py and the test suite; it refuses any address that is
not this machine's loopback."""

from __future__ import annotations

import concurrent.futures
import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# invalid requests the service must answer with a 4xx and a JSON message (never a 5xx)
INVALID_BODIES: tuple[bytes, ...] = (b'{"texts": []}', b"{not json", b'{"texts": "a string"}', b'{"text": ["x"]}',
                                     b'{"texts": ["ok"], "threshold": 7}')


@dataclass
class LoadReport:
    requests: int = 0
    ok: int = 0  # 200 with the right number of results and the expected labels
    rejected: int = 0  # 4xx for an invalid request, as it should be
    server_errors: int = 0  # 5xx, dropped connections, timeouts
    wrong: int = 0  # 200 with a wrong answer, or a valid request refused / an invalid one accepted
    answered_ids: list[str] = field(default_factory=list)  # the `id` of every result answered correctly
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def throughput(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else float("nan")

    def summary(self) -> str:
        return (f"{self.requests} requests in {self.seconds:.1f} s ({self.throughput:.1f} req/s): "
                f"{self.ok} answered correctly, {self.rejected} invalid rejected, {self.server_errors} server "
                f"errors, {self.wrong} wrong; latency p50 {self.percentile(50):.0f} ms, "
                f"p95 {self.percentile(95):.0f} ms")


def post_json(url: str, payload: object | bytes, timeout: float = 60.0) -> tuple[int, Any]:
    """POST JSON (or raw bytes) to `url`: (status, parsed JSON body), or (0, None) when no HTTP answer came."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return 0, None  # connection refused/reset, timeout, unreadable body


def post_classify(url: str, body: bytes, timeout: float = 60.0) -> tuple[int, dict | None]:
    """POST raw bytes to `url`/classify (see `post_json`)."""
    return post_json(url + "/classify", body, timeout)


def run_load(url: str, expected: dict[str, str], requests: int = 1000, concurrency: int = 32,
             max_texts: int = 8, invalid_share: float = 0.1, seed: int = 0, timeout: float = 60.0) -> LoadReport:
    """Send `requests` POST /classify calls from `concurrency` threads and check every answer.

    Args:
        expected: text -> the label the model gives it alone (valid requests draw their texts from these keys).
        max_texts: texts per valid request are drawn from 1..max_texts (mixed sizes).
        invalid_share: fraction of requests drawn from `INVALID_BODIES` plus an over-long text.
    """
    if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise ValueError("the load generator only targets this machine's loopback interface")
    rng = random.Random(seed)
    pool = list(expected)
    plan: list[tuple[bytes, list[str] | None]] = []
    for _ in range(requests):
        if rng.random() < invalid_share:
            plan.append((rng.choice([*INVALID_BODIES, json.dumps({"texts": ["x" * 10**6]}).encode()]), None))
        else:
            chosen = [rng.choice(pool) for _ in range(rng.randint(1, max_texts))]
            plan.append((json.dumps({"texts": chosen}).encode(), chosen))

    report = LoadReport(requests=requests)

    def one(item: tuple[bytes, list[str] | None]) -> tuple[float, int, dict | None, list[str] | None]:
        t0 = time.perf_counter()
        code, body = post_classify(url, item[0], timeout)
        return (time.perf_counter() - t0) * 1000, code, body, item[1]

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool_:
        for ms, code, body, texts in pool_.map(one, plan):
            report.latencies_ms.append(ms)
            if code == 0 or code >= 500:
                report.server_errors += 1
            elif texts is None:
                ok = 400 <= code < 500 and isinstance(body, dict) and "detail" in body
                report.rejected += ok
                report.wrong += not ok
            elif code == 200 and body is not None and [r["label"] for r in body["results"]] == [
                    expected[t] for t in texts]:
                report.ok += 1
                report.answered_ids += [r["id"] for r in body["results"] if "id" in r]
            else:
                report.wrong += 1
    report.seconds = time.perf_counter() - t0
    return report
