"""The memory of corrections across two `spamtune serve` processes on one database (SQLite and a real PostgreSQL):
a correction made through one process's /admin/api/relabel, or with `spamtune feedback` from a third process,
decides the next such message in both within seconds, and /admin/api/memory and /metrics show it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import spamtune_server
from spamtune.serving.loadtest import post_json
from tests.serving.test_lists_serving import SEEN_WITHIN_S, call, seconds_until

SCAM = "Hi mum, I dropped my phone down the loo, this is my new number. Can you send £150 today? x"
OTHER = "Your Evri parcel could not be delivered. Pay the £1.45 redelivery fee at evri-redeliver.example today"


def answer(url: str, text: str) -> dict:
    status, body = post_json(url + "/classify", {"texts": [text]})
    assert status == 200, body
    (result,) = body["results"]
    return result


def flipped(label: str) -> str:
    return "ham" if label == "spam" else "spam"


def test_a_correction_decides_the_next_such_message_in_every_serving_process(tiny_run, store_url):
    args = [str(tiny_run), "--db", store_url]
    with contextlib.ExitStack() as stack:
        a, _ = stack.enter_context(spamtune_server(args, stderr=subprocess.DEVNULL))
        b, _ = stack.enter_context(spamtune_server(args, stderr=subprocess.DEVNULL))
        first = answer(a, SCAM)
        assert [c["check"] for c in first["checks"]] == ["model"]
        wanted = flipped(first["label"])
        status, out = post_json(a + "/admin/api/relabel", {"id": first["id"], "label": wanted})
        assert status == 200 and isinstance(out, dict) and out["status"] == "recorded"
        # the process that recorded it decides with it on the very next request
        again = answer(a, SCAM)
        memo = again["checks"][-1]
        assert memo["check"] == "memory" and memo["final"] and memo["label"] == wanted == again["label"]
        assert memo["evidence"]["neighbours"][0]["id"] == first["id"] and "by an operator" in memo["reason"]
        # the other one within its refresh interval (1 s) and a request
        assert seconds_until(lambda: answer(b, SCAM)["checks"][-1]["check"] == "memory") < SEEN_WITHIN_S
        # a third process: `spamtune feedback` on the same database
        other = answer(b, OTHER)
        subprocess.run([sys.executable, "-m", "spamtune", "feedback", other["id"], flipped(other["label"]), "--db",
                        store_url], check=True, capture_output=True)
        for url in (a, b):
            assert seconds_until(lambda u=url: answer(u, OTHER)["label"] == flipped(other["label"])) < SEEN_WITHIN_S
        # what the memory holds, as /admin shows it
        status, memory = call(b + "/admin/api/memory", "GET")
        assert status == 200 and isinstance(memory, dict) and memory["active"] == 2
        assert 0.5 <= memory["threshold"] <= 1
        assert {(e["id"], e["source"], e["status"]) for e in memory["entries"]} == {
            (first["id"], "admin", "active"), (other["id"], "cli", "active")}
        assert all(e["radius"] >= memory["threshold"] for e in memory["entries"])
        with urllib.request.urlopen(a + "/metrics", timeout=30) as r:
            families = text_string_to_metric_families(r.read().decode())  # Prometheus' own parser
            samples = {(x.name, tuple(sorted(x.labels.items()))): x.value for f in families for x in f.samples}
        assert samples[("spamtune_memory_entries", ())] == 2
        assert samples[("spamtune_decided_by_total", (("check", "memory"), ("label", wanted)))] >= 1


def test_the_admin_page_confirms_a_correction_that_waits_for_review_in_headless_chromium(tiny_run, tmp_path):
    """An end user's correction against a prediction 99.5 % sure waits in the memory panel; an operator's click
    confirms it, and the next such message is decided by it."""
    from playwright.sync_api import sync_playwright

    from spamtune.inference import TextClassifier
    from spamtune.monitoring.store import PredictionStore
    from spamtune.serving import ServeOptions, create_app
    from tests.conftest import running
    from tests.helpers import launch_chromium
    from tests.monitoring.test_memory import record
    from tests.serving.test_production import ARTIFACTS, KEY

    store = PredictionStore.open(f"sqlite:///{tmp_path / 'memory.sqlite'}")
    clf = TextClassifier.load(tiny_run)
    predicted = clf.decide([SCAM])[0].label
    pid = record(store, SCAM, predicted, 0.995)
    store.add_feedback(pid, flipped(predicted), source="api")
    app = create_app(clf, options=ServeOptions(store=store, api_key=KEY))
    with running(app) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.on("dialog", lambda d: d.accept(KEY))
        page.goto(url + "/admin")
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=30_000, polling=100)
        row = page.locator(f"#memory > tr[data-id='{pid}']")
        assert "needs review" in row.text_content() and "0 remembered" in page.text_content("#memory-note")
        assert answer(url, SCAM)["checks"][-1]["check"] == "model"  # not acted on yet
        row.locator("button", has_text="confirm").click()
        page.wait_for_function("document.getElementById('memory-note').textContent.startsWith('1 remembered')",
                               polling=100)
        assert "active" in page.locator(f"#memory > tr[data-id='{pid}']").text_content()
        page.screenshot(path=str(ARTIFACTS / "admin_memory.png"), full_page=True)
        browser.close()
        got = answer(url, SCAM)
        assert got["checks"][-1]["check"] == "memory" and got["label"] == flipped(predicted)
