"""Operator lists across two `spamtune serve` processes on one database (SQLite and a real PostgreSQL): a change made
through one process's /admin/api/lists, or with `spamtune lists` from a third process, decides in both within
seconds."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import spamtune_server
from spamtune.serving.loadtest import post_json

# a process looks at the lists' revision once a second; the bound leaves room for a loaded 2-core machine (without
# the polling a change would never be seen at all)
SEEN_WITHIN_S = 4.0
PARCEL = "Your parcel is held at the depot: pay the 1.99 fee at https://track.parcel-fee.example/p/8812"


def call(url: str, method: str) -> tuple[int, object]:
    """GET or DELETE (POST: post_json)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def first_check(url: str, text: str, sender: str | None = None) -> dict:
    body: dict = {"texts": [text], **({"sender": sender} if sender else {})}
    status, answer = post_json(url + "/classify", body)
    assert status == 200, answer
    (result,) = answer["results"]
    return {"label": result["label"], "decision": result["decision"], **result["checks"][0]}


def seconds_until(predicate, limit_s: float = 10.0) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < limit_s, "the change was not seen in time"
        time.sleep(0.1)
    return time.monotonic() - start


def test_a_list_change_decides_in_every_serving_process(tiny_run, store_url):
    args = [str(tiny_run), "--db", store_url]
    with contextlib.ExitStack() as stack:
        a, _ = stack.enter_context(spamtune_server(args, stderr=subprocess.DEVNULL))
        b, _ = stack.enter_context(spamtune_server(args, stderr=subprocess.DEVNULL))
        assert first_check(b, PARCEL)["check"] == "model"
        status, added = post_json(a + "/admin/api/lists", {"action": "deny", "kind": "domain",
                                                               "value": "parcel-fee.example", "reason": "parcel wave",
                                                               "by": "alice"})
        assert status == 201 and isinstance(added, dict) and added["created_by"] == "alice"
        # the process that made the change decides with it on the very next request
        now_a = first_check(a, PARCEL)
        assert now_a["check"] == "lists" and now_a["label"] == "spam" and now_a["decision"] == "block"
        assert now_a["reason"] == f"deny list: #{added['id']} deny domain 'parcel-fee.example' by alice: parcel wave"
        # the other one within its refresh interval (1 s) and a request
        assert seconds_until(lambda: first_check(b, PARCEL)["check"] == "lists") < SEEN_WITHIN_S
        # bad entries: one clear 422 / 409, nothing added
        status, body = post_json(a + "/admin/api/lists", {"action": "deny", "kind": "pattern", "value": "(a"})
        assert status == 422 and "RE2 cannot use it" in json.dumps(body)
        status, body = post_json(b + "/admin/api/lists", {"action": "deny", "kind": "domain",
                                                              "value": "PARCEL-FEE.example"})
        assert status == 409 and "on the lists already" in json.dumps(body)
        # a third process: the CLI on the same database
        cli = [sys.executable, "-m", "spamtune", "lists"]
        subprocess.run([*cli, "add", "allow", "sender", "+44 7700 900123", "--by", "bob", "--db", store_url],
                       check=True, capture_output=True)
        for url in (a, b):
            assert seconds_until(lambda u=url: first_check(u, "WIN a FREE prize", "+447700900123")["label"] == "ham"
                                 ) < SEEN_WITHIN_S
        got = first_check(b, "WIN a FREE prize", "+44 7700 900123")
        assert got["check"] == "lists" and got["reason"].startswith("allow list:")
        subprocess.run([*cli, "remove", str(added["id"]), "--by", "bob", "--db", store_url], check=True,
                       capture_output=True)
        for url in (a, b):
            assert seconds_until(lambda u=url: first_check(u, PARCEL)["check"] == "model") < SEEN_WITHIN_S
        status, entries = call(b + "/admin/api/lists?removed=true", "GET")
        assert status == 200 and isinstance(entries, list)
        assert [(e["value"], e["removed_by"]) for e in entries] == [("parcel-fee.example", "bob"),
                                                                    ("+447700900123", None)]
        status, body = call(a + f"/admin/api/lists/{added['id']}", "DELETE")
        assert status == 404 and "no active list entry" in json.dumps(body)
        repeat = [first_check(a, PARCEL) for _ in range(2)]  # no list change in between: the second from the cache
        assert repeat[0] == repeat[1] and repeat[1]["check"] == "model"
        with urllib.request.urlopen(a + "/metrics", timeout=30) as r:
            families = text_string_to_metric_families(r.read().decode())  # Prometheus' own parser
            samples = {(x.name, tuple(sorted(x.labels.items()))): x.value for f in families for x in f.samples}
        assert samples[("spamtune_list_entries", ())] == 1  # the allow entry; the deny one was removed
        assert samples[("spamtune_decided_by_total", (("check", "lists"), ("label", "spam")))] >= 1
        assert samples[("spamtune_decided_by_total", (("check", "lists"), ("label", "ham")))] >= 1
        # the decision cache answered the repeat, and every list change emptied it (the answers above changed on
        # time although the same messages were asked again and again)
        assert samples[("spamtune_decision_cache_lookups_total", (("result", "hit"),))] >= 1
        assert samples[("spamtune_decision_cache_lookups_total", (("result", "miss"),))] >= 1
        assert samples[("spamtune_decision_cache_entries", ())] >= 1
    # every answer was recorded with its sender and the lists' verdict
    from spamtune.monitoring.store import PredictionStore, Query

    rows = PredictionStore.open(store_url).query(Query(text="FREE prize", limit=50))
    assert rows and all(r["sender"] in ("+447700900123", "+44 7700 900123") for r in rows)
    assert any(r["checks"][0]["check"] == "lists" for r in rows)


def test_the_admin_page_adds_and_removes_entries_in_headless_chromium(tiny_run, tmp_path):
    from playwright.sync_api import sync_playwright

    from spamtune.inference import TextClassifier
    from spamtune.monitoring.lists import OperatorLists
    from spamtune.monitoring.store import PredictionStore
    from spamtune.serving import ServeOptions, create_app
    from tests.conftest import running
    from tests.helpers import launch_chromium
    from tests.serving.test_production import ARTIFACTS, KEY

    store = PredictionStore.open(f"sqlite:///{tmp_path / 'lists.sqlite'}")
    app = create_app(TextClassifier.load(tiny_run), options=ServeOptions(store=store, api_key=KEY))
    with running(app) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.on("dialog", lambda d: d.accept(KEY))
        page.goto(url + "/admin")
        page.wait_for_function("document.body.dataset.ready === '1'", timeout=30_000, polling=100)
        assert page.locator("#lists > tr").count() == 0
        page.fill("#l-value", "https://Track.Parcel-Fee.example/pay")
        page.fill("#l-reason", "parcel-fee wave")
        page.fill("#l-by", "alice")
        page.click("#l-add")
        page.wait_for_function("document.getElementById('l-status').textContent.includes('added')", polling=100)
        row = page.locator("#lists > tr")
        assert row.count() == 1 and "track.parcel-fee.example" in row.first.text_content()
        assert "alice" in row.first.text_content() and "parcel-fee wave" in row.first.text_content()
        got = first_check(url, PARCEL)  # the next request: blocked by it
        assert got["check"] == "lists" and got["decision"] == "block" and "by alice: parcel-fee wave" in got["reason"]
        page.select_option("#l-kind", "pattern")
        page.fill("#l-value", "(unclosed")
        page.click("#l-add")
        page.wait_for_function("document.getElementById('l-status').textContent.includes('error')", polling=100)
        assert "RE2 cannot use it" in page.text_content("#l-status") and page.locator("#lists > tr").count() == 1
        page.screenshot(path=str(ARTIFACTS / "admin_lists.png"), full_page=True)
        row.first.locator("button", has_text="remove").click()
        page.wait_for_function("document.getElementById('l-status').textContent.includes('removed')", polling=100)
        assert page.locator("#lists > tr").count() == 0
        browser.close()
    (gone,) = OperatorLists(store).entries(include_removed=True)
    assert gone.value == "track.parcel-fee.example" and gone.removed_by == "alice"
