"""The service in production (issue 17): every decision recorded, feedback, /metrics, a bounded queue, the API
key, the access log, a store that fails, a server killed mid-load, and the admin page in a real browser."""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from spamtune.inference import TextClassifier
from spamtune.monitoring.store import PredictionStore
from spamtune.serving import ServeLimits, ServeOptions, create_app
from spamtune.serving.loadtest import post_json
from tests.conftest import free_port, running
from tests.helpers import launch_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
KEY = "k" * 24


def get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def store(tmp_path) -> PredictionStore:
    return PredictionStore.open(f"sqlite:///{tmp_path / 'predictions.sqlite'}")


def test_every_decision_is_recorded_with_the_id_returned(server):
    url, app, clf = server
    texts = ["WINNER claim your cash prize now", "see you at the pub later"]
    code, body = post_json(url + "/classify", {"texts": texts})
    assert code == 200
    assert app.state.service.writer.flush(10)
    store = app.state.service.writer.store
    for text, r in zip(texts, body["results"]):
        row = store.get(r["id"])
        assert row["text"] == text and row["run_id"] == clf.run_id and row["source"] == "serve"
        assert row["label"] == r["label"] and row["decision"] == r["decision"] and row["scores"] == r["scores"]
        assert row["positive_score"] == r["scores"]["spam"] and row["threshold"] == r["threshold"]
        assert row["latency_ms"] > 0 and row["truncated"] is False
    req = urllib.request.Request(url + "/predict", json.dumps({"inputs": "one more"}).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:  # TEI's body; the id of its record in a header
        (rid,) = r.headers["X-Prediction-Ids"].split(",")
    assert app.state.service.writer.flush(10) and store.get(rid)["text"] == "one more"


def test_feedback_rules_and_metrics(server):
    url, app, clf = server
    code, body = post_json(url + "/classify", {"texts": ["call 0800 for a free prize", "hello"],
                                               "threshold": 0.0, "review_threshold": 0.0})  # both decided spam
    spam_id, other_id = (r["id"] for r in body["results"])
    code, out = post_json(url + "/feedback", {"id": spam_id, "label": "ham"})
    assert code == 200 and out["status"] == "recorded" and out["type"] == "false_positive"
    assert post_json(url + "/feedback", {"id": spam_id, "label": "ham"})[1]["status"] == "unchanged"
    code, out = post_json(url + "/feedback", {"id": spam_id, "label": "spam"})
    assert code == 409 and "already corrected to 'ham'" in out["detail"]
    code, out = post_json(url + "/feedback", {"id": spam_id, "label": "spam", "replace": True})
    assert code == 200 and out["status"] == "replaced" and out["previous"] == "ham" and out["type"] == "confirmation"
    assert post_json(url + "/feedback", {"id": "0" * 32, "label": "ham"})[0] == 404
    assert post_json(url + "/feedback", {"id": other_id, "label": "eggs"})[0] == 422
    assert post_json(url + "/feedback", {"id": "not-an-id", "label": "ham"})[0] == 422
    code, out = post_json(url + "/feedback", {"id": other_id, "label": "ham", "learn": False})
    assert code == 200 and app.state.service.writer.store.get(other_id)["feedback_learn"] is False
    _, text, _ = get(url + "/metrics")
    m = text.decode()
    assert metric(m, "spamtune_feedback_total", type="false_positive") >= 2
    assert metric(m, "spamtune_predictions_total", label="spam", decision="block") >= 2


def test_metrics_endpoint(server):
    url, app, clf = server
    post_json(url + "/classify", {"texts": ["a", "b", "c"]})
    code, text, headers = get(url + "/metrics")
    m = text.decode()
    assert code == 200 and {k.lower(): v for k, v in headers.items()}["content-type"].startswith("text/plain")
    for name in ("spamtune_requests_total", "spamtune_request_latency_seconds_bucket", "spamtune_batch_size_bucket",
                 "spamtune_queue_depth", "spamtune_predictions_total", "spamtune_positive_probability_bucket",
                 "spamtune_store_records_written_total", "spamtune_store_write_failures_total",
                 "spamtune_model_info", "spamtune_overload_rejections_total"):
        assert name in m, name
    assert metric(m, "spamtune_requests_total", route="/classify", status="200") >= 1
    assert metric(m, "spamtune_model_info", run_id=clf.run_id) == 1.0


def test_a_full_queue_answers_503_with_retry_after(tiny_run):
    clf = TextClassifier.load(tiny_run)
    app = create_app(clf, ServeLimits(max_texts=4, max_queue=4, batch_window_ms=300))
    with running(app) as url:
        body = {"texts": ["message one", "message two", "message three", "message four"]}
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: _post_with_headers(url + "/classify", body), range(6)))
    codes = sorted(code for code, _ in results)
    assert 200 in codes and 503 in codes
    assert all({k.lower(): v for k, v in headers.items()}.get("retry-after") == "1" for code, headers in results
               if code == 503)


def _post_with_headers(url: str, payload) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def test_a_request_that_waits_too_long_gets_503(tiny_run):
    clf = TextClassifier.load(tiny_run)
    app = create_app(clf, ServeLimits(request_timeout_s=0.001, batch_window_ms=50))
    with running(app) as url:
        code, body = post_json(url + "/classify", {"texts": ["hello there"]})
        _, m, _ = get(url + "/metrics")
    assert code == 503 and "no answer within" in body["detail"]
    assert metric(m.decode(), "spamtune_overload_rejections_total", reason="timeout") >= 1


def test_the_api_key(tiny_run, store):
    clf = TextClassifier.load(tiny_run)
    with running(create_app(clf, options=ServeOptions(store=store, api_key=KEY))) as url:
        code, body = post_json(url + "/classify", {"texts": ["hello"]})  # open without --api-key-all
        rid = body["results"][0]["id"]
        assert post_json(url + "/feedback", {"id": rid, "label": "ham"})[0] == 401
        assert get(url + "/admin/api/summary")[0] == 401
        assert get(url + "/admin/api/summary", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(url + "/admin/api/summary", {"X-API-Key": KEY})[0] == 200
        req = urllib.request.Request(url + "/feedback", data=json.dumps({"id": rid, "label": "ham"}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
        assert urllib.request.urlopen(req, timeout=30).status == 200
    with running(create_app(clf, options=ServeOptions(api_key=KEY, api_key_all=True))) as url:
        assert post_json(url + "/classify", {"texts": ["hello"]})[0] == 401
        assert get(url + "/metrics")[0] == 401
        assert get(url + "/health")[0] == 200  # liveness stays open


def test_the_access_log_is_one_json_line_per_request(tiny_run, caplog):
    clf = TextClassifier.load(tiny_run)
    with caplog.at_level(logging.INFO, logger="spamtune.access"), running(create_app(clf)) as url:
        post_json(url + "/classify", {"texts": ["hello"]})
        get(url + "/nope")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "spamtune.access"]
    by_path = {x["path"]: x for x in lines}
    assert by_path["/classify"]["status"] == 200 and by_path["/classify"]["method"] == "POST"
    assert by_path["/nope"]["status"] == 404 and by_path["/classify"]["ms"] > 0 and "T" in lines[0]["time"]


def test_a_store_that_is_down_costs_records_not_answers(tiny_run):
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
                                      connect_args={"connect_timeout": 1})
    clf = TextClassifier.load(tiny_run)
    app = create_app(clf, options=ServeOptions(store=PredictionStore(engine)))
    with running(app) as url:
        codes = [post_json(url + "/classify", {"texts": [f"message {i}"]})[0] for i in range(5)]
        app.state.service.writer.flush(20)
        _, m, _ = get(url + "/metrics")
        code, out = post_json(url + "/feedback", {"id": "a" * 32, "label": "ham"})
    assert codes == [200] * 5
    assert metric(m.decode(), "spamtune_store_write_failures_total") == 5
    assert code == 503 and "unavailable" in out["detail"]


def test_no_store_text_keeps_only_the_hash(tiny_run, store):
    import hashlib

    clf = TextClassifier.load(tiny_run)
    app = create_app(clf, options=ServeOptions(store=store, store_text=False))
    with running(app) as url:
        _, body = post_json(url + "/classify", {"texts": ["my secret message"]})
        app.state.service.writer.flush(10)
    row = store.get(body["results"][0]["id"])
    assert row["text"] is None and row["text_sha256"] == hashlib.sha256(b"my secret message").hexdigest()


def test_killed_mid_load_the_database_stays_consistent(tiny_run, tmp_path):
    """`spamtune serve` with the SQLite store under load, then SIGKILL: the file passes SQLite's integrity check,
    every row is complete, and no answered request's record is half-written."""
    db = tmp_path / "kill.sqlite"
    port = free_port()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "spamtune", "serve", str(tiny_run), "--port", str(port),
                             "--db", f"sqlite:///{db}", "--no-access-log"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if _ready(url):
                break
            time.sleep(0.1)
        answered: list[str] = []

        def one(i: int) -> None:
            code, body = post_json(url + "/classify", {"texts": [f"load message {i}", f"second {i}"]}, timeout=10)
            if code == 200:
                answered.extend(r["id"] for r in body["results"])

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(one, i) for i in range(400)]
            time.sleep(1.5)
            os.kill(proc.pid, signal.SIGKILL)
            concurrent.futures.wait(futures, timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert answered, "no request was answered before the kill"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = con.execute("SELECT id, text, label, scores, latency_ms, run_id FROM predictions").fetchall()
    con.close()
    assert all(all(v is not None for v in row) for row in rows)
    assert all(json.loads(row[3]).keys() == {"ham", "spam"} for row in rows)
    assert {r[0] for r in rows} <= set(answered)  # nothing recorded that no client was told about


def _ready(url: str) -> bool:
    try:
        return get(url + "/health")[0] == 200
    except OSError:
        return False


def test_admin_page_in_headless_chromium(tiny_run, tmp_path):
    """Recent decisions with their checks (Rspamd-style symbols), a filter, a relabel in place, the corrections CSV
    and the charts, with the API key; screenshots of the page and of one decision's symbols."""
    from playwright.sync_api import sync_playwright

    store = PredictionStore.open(f"sqlite:///{tmp_path / 'admin.sqlite'}")
    clf = TextClassifier.load(tiny_run)
    app = create_app(clf, options=ServeOptions(store=store, api_key=KEY))
    with running(app) as url:
        texts = ["WINNER!! claim your £900 prize, call 09061701461", "see you at six <b>bold</b>", "ok thanks",
                 "URGENT your account is locked, visit http://bit.ly/x", "are we still on for lunch?"]
        post_json(url + "/classify", {"texts": texts})
        post_json(url + "/classify", {"texts": ["free entry to win now"], "threshold": 0.0})
        code, explained = post_json(url + "/classify", {"texts": ["URGENT! claim your £2000 prize, call now"],
                                                        "explain": True})
        assert code == 200 and explained["results"][0]["checks"][0]["evidence"]["words"]
        app.state.service.writer.flush(10)
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as p:
            browser = launch_chromium(p)
            context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page = context.new_page()
            page.on("dialog", lambda d: d.accept(KEY))  # the key prompt after the first 401
            page.goto(url + "/admin")
            page.wait_for_function("document.body.dataset.ready === '1'", timeout=30_000, polling=100)
            assert clf.run_id in page.text_content("#run") and "checks lists → model" in page.text_content("#run")
            assert page.locator("#rows > tr").count() == 7
            assert page.locator("#rows td.symbol", has_text="model").count() == 7  # every decision's symbols
            symbols = page.locator("#rows > tr").first  # newest first: the explained one
            model = explained["results"][0]["checks"][0]
            assert model["reason"] in symbols.text_content()
            assert model["evidence"]["words"][0][0] in symbols.locator(".evidence").text_content()
            symbols.screenshot(path=str(ARTIFACTS / "admin_symbols.png"))
            assert page.locator("#rows td.text", has_text="<b>bold</b>").count() == 1  # shown as text, not HTML
            page.select_option("#f-decision", "block")
            page.click("#apply")
            page.wait_for_function("document.getElementById('status').textContent.includes('shown')", polling=100)
            blocked = page.locator("#rows > tr")
            assert blocked.count() >= 1
            first_id = blocked.first.get_attribute("data-id")
            blocked.first.locator("button", has_text="mark ham").click()
            page.wait_for_function("document.getElementById('status').textContent.includes('recorded')",
                                   polling=100)
            assert store.get(first_id)["feedback_label"] == "ham"
            with page.expect_download() as dl:
                page.click("#export")
            csv_text = Path(dl.value.path()).read_text()
            exported = list(csv.DictReader(io.StringIO(csv_text)))
            assert list(exported[0]) == ["text", "label", "prediction_id", "predicted", "learn", "source"]
            assert [(r["label"], r["source"]) for r in exported if r["prediction_id"] == first_id] == [("ham", "admin")]
            page.wait_for_function("document.querySelectorAll('#charts img').length === 4", polling=100)
            page.select_option("#f-decision", "")
            page.click("#apply")
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "admin_page.png"), full_page=True)
            browser.close()
    assert (ARTIFACTS / "admin_page.png").stat().st_size > 20_000
    assert (ARTIFACTS / "admin_symbols.png").stat().st_size > 2_000


def test_web_page_wrong_buttons_record_feedback(server):
    from playwright.sync_api import sync_playwright

    url, app, clf = server
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        page.goto(url + "/")
        page.click("text=Example: meeting")
        page.wait_for_function("document.getElementById('result').dataset.answered === '1'")
        label = page.text_content("#verdict").split(": ")[-1]
        other = "spam" if label == "ham" else "ham"
        page.click(f"#wrong-buttons >> text=mark as {other}")
        page.wait_for_function("document.getElementById('wrong-status').textContent.includes('Thanks')")
        browser.close()
    app.state.service.writer.flush(10)
    corrected = [c for c in app.state.service.writer.store.corrections() if c["label"] == other
                 and c["text"] == "Sorry, I'll call you later, in a meeting."]
    assert corrected
