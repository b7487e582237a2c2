"""Who may do what on the service (the second outside review's classes): two key roles and per-decision feedback
tokens, rate-limited feedback, operators' corrections that end users cannot replace, the Host check against DNS
rebinding, the Bearer scheme, formula-safe CSV, a slow store that never stalls answers, a deleted store, and a
refused body that is not read."""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import os
import socket
import sqlite3
import time
import urllib.error
import urllib.request

import pytest

from spamtune.inference import TextClassifier
from spamtune.monitoring.store import PredictionStore
from spamtune.serving import ServeLimits, ServeOptions, create_app
from spamtune.serving.access import RateLimiter, allowed_hosts_for, host_name
from tests.conftest import running

ADMIN, FEEDBACK = "admin-key-0123456789", "feedback-key-0123456789"


def call(url: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, object, dict]:
    req = urllib.request.Request(url + path, json.dumps(body).encode() if body is not None else None,
                                 {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw, code, h = r.read(), r.status, r.headers
    except urllib.error.HTTPError as e:
        raw, code, h = e.read(), e.code, e.headers
    try:
        out: object = json.loads(raw)
    except ValueError:
        out = raw.decode("utf-8", "replace")
    return code, out, {k.lower(): v for k, v in h.items()}


@pytest.fixture
def store(tmp_path) -> PredictionStore:
    return PredictionStore.open(f"sqlite:///{tmp_path / 'p.sqlite'}")


@pytest.fixture
def keyed(tiny_run, store):
    app = create_app(TextClassifier.load(tiny_run), ServeLimits(feedback_per_minute_client=1000),
                     ServeOptions(store=store, api_key=ADMIN, feedback_key=FEEDBACK))
    with running(app) as url:
        yield url, app, store


def answer(url: str, text: str = "WINNER claim your prize now") -> dict:
    code, body, _ = call(url, "/classify", {"texts": [text]})
    assert code == 200
    return body["results"][0]


def test_roles_admin_reads_feedback_key_and_tokens_only_correct(keyed):
    url, _, store = keyed
    a, b, c = answer(url), answer(url, "see you at six"), answer(url, "call me back")
    # an end user with the answer's own token: that decision only, no key
    assert call(url, "/feedback", {"id": a["id"], "label": "ham", "token": a["feedback_token"]})[0] == 200
    assert call(url, "/feedback", {"id": b["id"], "label": "spam", "token": a["feedback_token"]})[0] == 401
    assert call(url, "/feedback", {"id": b["id"], "label": "spam"})[0] == 401
    # the feedback key posts corrections and reads nothing
    fb = {"X-API-Key": FEEDBACK}
    assert call(url, "/feedback", {"id": b["id"], "label": "spam"}, fb)[0] == 200
    for path in ("/admin/api/predictions", "/admin/api/summary", "/admin/api/corrections.csv"):
        code, out, _ = call(url, path, headers=fb)
        assert code == 403 and "admin key" in out["detail"], path
        assert call(url, path)[0] == 401
    # the admin key reads, and relabels as an operator (source admin)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    code, rows, _ = call(url, "/admin/api/predictions", headers=admin)
    assert code == 200 and {r["id"] for r in rows} == {a["id"], b["id"], c["id"]}
    assert call(url, "/admin/api/relabel", {"id": a["id"], "label": "ham"}, admin)[1]["status"] == "confirmed"
    assert call(url, "/admin/api/relabel", {"id": c["id"], "label": "spam"}, fb)[0] == 403
    sources = {r["id"]: r["source"] for r in store.corrections()}
    assert sources == {a["id"]: "admin", b["id"]: "api"}
    # an end user cannot replace an operator's correction, with or without `replace`
    code, out, _ = call(url, "/feedback", {"id": a["id"], "label": "spam", "replace": True,
                                           "token": a["feedback_token"]})
    assert code == 409 and "operator" in out["detail"]


def test_the_bearer_scheme_is_case_insensitive_and_a_bare_key_is_refused(keyed):
    url = keyed[0]
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert call(url, "/admin/api/summary", headers={"Authorization": f"{scheme} {ADMIN}"})[0] == 200
    assert call(url, "/admin/api/summary", headers={"Authorization": ADMIN})[0] == 401
    assert call(url, "/admin/api/summary", headers={"Authorization": f"Basic {ADMIN}"})[0] == 401


def test_feedback_is_rate_limited_per_client_and_per_credential(tiny_run, store):
    app = create_app(TextClassifier.load(tiny_run), ServeLimits(feedback_per_minute_client=3,
                                                                feedback_per_minute_key=100),
                     ServeOptions(store=store, feedback_key=FEEDBACK))
    with running(app) as url:
        ids = [answer(url, f"message {i}")["id"] for i in range(5)]
        codes = [call(url, "/feedback", {"id": i, "label": "ham"}, {"X-API-Key": FEEDBACK}) for i in ids]
    assert [c[0] for c in codes] == [200, 200, 200, 429, 429]
    assert int(codes[3][2]["retry-after"]) >= 1
    limiter = RateLimiter(per_minute=2)  # per credential: its own bucket, refilled with time
    assert [limiter.wait_s("k", now=0.0) for _ in range(3)][:2] == [0.0, 0.0] and limiter.wait_s("k", 0.0) > 0
    assert limiter.wait_s("k", now=60.0) == 0.0 and limiter.wait_s("other", now=0.0) == 0.0


def test_the_corrections_csv_is_formula_safe(keyed):
    url, _, store = keyed
    evil = "=HYPERLINK(\"http://evil.example\",\"click\")"
    r = answer(url, evil)
    assert call(url, "/feedback", {"id": r["id"], "label": "ham", "token": r["feedback_token"]})[0] == 200
    code, text, _ = call(url, "/admin/api/corrections.csv", headers={"X-API-Key": ADMIN})
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert code == 200 and row["text"] == "'" + evil and row["source"] == "api"


def test_a_locked_store_never_stalls_answers(tiny_run, tmp_path):
    """A SQLite store locked by another process: feedback is answered 503 within the store's bounded wait, and
    /classify keeps answering fast meanwhile (the store has its own threads)."""
    db = tmp_path / "locked.sqlite"
    store = PredictionStore.open(f"sqlite:///{db}")
    app = create_app(TextClassifier.load(tiny_run), ServeLimits(store_timeout_s=0.5), ServeOptions(store=store))
    with running(app) as url:
        ids = [answer(url, f"m{i}")["id"] for i in range(12)]
        app.state.service.writer.flush(10)
        lock = sqlite3.connect(db, timeout=0)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            with concurrent.futures.ThreadPoolExecutor(12) as pool:
                posts = [pool.submit(call, url, "/feedback", {"id": i, "label": "ham"}) for i in ids]
                time.sleep(0.2)
                start = time.perf_counter()
                code, _, _ = call(url, "/classify", {"texts": ["still answering?"]})
                classify_s = time.perf_counter() - start
                results = [f.result(timeout=60) for f in posts]
        finally:
            lock.rollback()
            lock.close()
    assert code == 200 and classify_s < 2.0, classify_s
    assert {r[0] for r in results} == {503} and all("busy" in r[1]["detail"] for r in results)


def test_a_store_deleted_while_serving_counts_records_as_not_recorded(tiny_run, tmp_path):
    db = tmp_path / "gone.sqlite"
    store = PredictionStore.open(f"sqlite:///{db}")
    app = create_app(TextClassifier.load(tiny_run), options=ServeOptions(store=store))
    with running(app) as url:
        answer(url, "before")
        writer = app.state.service.writer
        assert writer.flush(10) and writer.written == 1
        os.remove(db)
        for name in ("-wal", "-shm"):
            if os.path.exists(f"{db}{name}"):
                os.remove(f"{db}{name}")
        answer(url, "after")
        writer.flush(10)
        code, summary, _ = call(url, "/admin/api/summary")
    assert writer.written == 1 and writer.failed == 1
    assert summary["store"]["not_recorded"] == 1


def test_the_host_check_refuses_dns_rebinding(tiny_run):
    assert allowed_hosts_for("127.0.0.1", []) == ["127.0.0.1", "localhost", "::1"]
    assert allowed_hosts_for("0.0.0.0", []) is None and allowed_hosts_for("0.0.0.0", ["Spam.Example"]) == [
        "spam.example"]
    assert host_name("[::1]:8000") == "::1" and host_name("LocalHost:80") == "localhost"
    app = create_app(TextClassifier.load(tiny_run), options=ServeOptions(allowed_hosts=allowed_hosts_for(
        "127.0.0.1", [])))
    with running(app) as url:
        assert call(url, "/health")[0] == 200
        assert call(url, "/health", headers={"Host": "localhost:1234"})[0] == 200
        code, out, headers = call(url, "/admin/api/predictions", headers={"Host": "attacker.example"})
        assert code == 421 and headers.get("connection") == "close"
        assert call(url, "/classify", {"texts": ["x"]}, {"Host": "attacker.example:8000"})[0] == 421


def test_a_refused_body_is_not_read(tiny_run):
    """Content-Length with Transfer-Encoding: chunked is refused before the body is read, and the connection is
    closed, so a client still uploading is cut off instead of having its upload drained."""
    app = create_app(TextClassifier.load(tiny_run))
    with running(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
            s.settimeout(10)
            head = s.recv(4096)
            assert head.startswith(b"HTTP/1.1 400") and b"connection: close" in head.lower()
            sent = 0
            with pytest.raises(OSError):  # the server closed: the upload is cut off
                for _ in range(4000):  # 16 MB, far beyond the socket buffers
                    s.sendall(b"1000\r\n" + b"a" * 4096 + b"\r\n")
                    sent += 4096
            assert sent < 16_000_000
