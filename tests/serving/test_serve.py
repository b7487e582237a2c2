"""The HTTP service and web page: validation, limits, micro-batching, and the page in a real browser."""

import concurrent.futures
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from spamtune.serving.loadtest import post_classify
from tests.helpers import launch_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _post(url: str, payload, raw: bytes | None = None) -> tuple[int, dict | None]:
    return post_classify(url, raw if raw is not None else json.dumps(payload).encode(), timeout=30)


def test_classify_matches_the_python_api(server):
    url, _, clf = server
    texts = ["WINNER!! Claim your £900 prize now", "see you at 6", "ok"]
    code, body = _post(url, {"texts": texts})
    assert code == 200
    want = clf.predict_proba(texts)
    got = np.array([[r["scores"][lab] for lab in clf.label_names] for r in body["results"]])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert [r["label"] for r in body["results"]] == list(clf.predict(texts))
    assert {r["run_id"] for r in body["results"]} == {clf.run_id}
    code, body = _post(url, {"texts": texts, "threshold": 0.0})
    assert code == 200 and {r["label"] for r in body["results"]} == {"spam"}
    assert {r["decision"] for r in body["results"]} == {"block"}


@pytest.mark.parametrize("payload,fragment", [
    ({"texts": []}, "at least 1"),
    ({"texts": ["x"] * 9}, "at most 8"),
    ({"texts": ["x" * 501]}, "at most 500"),
    ({"texts": [""]}, "at least 1 character"),
    ({"texts": "not a list"}, "valid list"),
    ({"text": ["wrong key"]}, "Field required"),
    ({"texts": ["ok"], "threshold": 2}, "less than or equal to 1"),
])
def test_invalid_requests_get_422_with_a_message(server, payload, fragment):
    code, body = _post(server[0], payload)
    assert code == 422
    assert fragment in json.dumps(body)


def test_body_limit_and_bad_json(server):
    code, body = _post(server[0], None, raw=b'{"texts": ["' + b"a" * 30_000 + b'"]}')
    assert code == 413 and "over 20000 bytes" in body["detail"]
    code, body = _post(server[0], None, raw=b"{not json")
    assert code == 422


def _post_chunked(url: str, chunks: list[bytes]) -> tuple[int, dict]:
    """POST with Transfer-Encoding: chunked (no Content-Length), as a streaming client sends."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("POST", "/classify", body=iter(chunks), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_chunked_bodies_are_counted_against_the_limit(server):
    url, _, clf = server
    body = json.dumps({"texts": ["WINNER!! Claim your prize", "see you at 6"]}).encode()
    code, got = _post_chunked(url, [body[:7], body[7:20], body[20:]])
    assert code == 200
    assert [r["label"] for r in got["results"]] == list(clf.predict(["WINNER!! Claim your prize", "see you at 6"]))
    code, got = _post_chunked(url, [b'{"texts": ["'] + [b"a" * 5000] * 5 + [b'"]}'])
    assert code == 413 and "over 20000 bytes" in got["detail"]


def test_endless_chunked_upload_gets_413_after_a_bounded_read():
    """A client streaming forever: the app never runs, the middleware stops reading after DRAIN_LIMIT and
    answers 413 (it used to read the whole body into memory first)."""
    import asyncio

    from spamtune.serving.limits import DRAIN_LIMIT, BodyLimit

    pulled, sent, app_called = [0], [], []

    async def app(scope, receive, send):
        app_called.append(True)

    async def receive():
        pulled[0] += 1
        return {"type": "http.request", "body": b"x" * 2**20, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/classify", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(BodyLimit(app, max_bytes=20_000)(scope, receive, send))
    assert not app_called
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert pulled[0] == DRAIN_LIMIT // 2**20 + 1


def test_health_and_docs(server):
    url = server[0]
    with urllib.request.urlopen(url + "/health") as r:
        health = json.loads(r.read())
    assert health["status"] == "ok" and health["labels"] == ["ham", "spam"]
    with urllib.request.urlopen(url + "/openapi.json") as r:
        assert "/classify" in json.loads(r.read())["paths"]


def test_concurrent_requests_share_forward_passes(server):
    url, app, clf = server
    before = app.state.service.batcher.batches_run
    texts = [f"message number {i} about a prize" for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda t: _post(url, {"texts": [t]}), texts))
    assert all(code == 200 for code, _ in results)
    passes = app.state.service.batcher.batches_run - before
    assert passes < len(texts)  # micro-batching: fewer forward passes than requests
    want = clf.predict_proba(texts)
    got = np.array([[body["results"][0]["scores"][lab] for lab in clf.label_names] for _, body in results])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # and nobody got someone else's answer


def test_web_page_in_headless_chromium(server):
    """Open the page: it shows the run, its thresholds and max length; an example gets the band the API gives it,
    coloured by the band (not by a label's name), P(spam) never printed as "100.0 %"; an empty message clears the
    previous result instead of leaving it beside the warning. Screenshots are kept as artifacts."""
    from playwright.sync_api import sync_playwright

    from spamtune.cli.args import percent

    url, _, clf = server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 900, "height": 640})
        page.goto(url + "/")
        assert page.title() == "spamtune"
        page.wait_for_function("document.getElementById('model').textContent.includes('run ')")
        model = page.text_content("#model")
        op = clf.operating_point
        assert clf.run_id in model and f"{clf.max_length} tokens" in model
        assert f"{op.block_threshold:.4f}" in model and f"{op.review_threshold:.4f}" in model
        for n, example in enumerate(("Example: prize", "Example: dinner"), start=1):
            page.click(f"text={example}")
            page.wait_for_function(f"document.getElementById('result').dataset.answered === '{n}'")
            text = page.input_value("#text")
            (want,) = clf.decide([text])
            assert page.get_attribute("#result", "class") == want.band  # the band, not the label
            assert page.text_content("#verdict").endswith(want.label)
            assert f"P(spam) = {percent(want.scores['spam'])}" in page.text_content("#detail")
            assert "100.0 %" not in page.text_content("#detail")
            width = page.eval_on_selector("#fill", "e => e.style.width")
            assert abs(float(width[:-1]) - 100 * want.scores["spam"]) < 0.1
            assert page.eval_on_selector("#mark-block", "e => e.style.display") == "block"
            # why?: every check's verdict, the words behind the model's (the page asks for the explanation)
            page.click("#why summary")
            assert page.locator("#checks tr").count() == len(want.checks) == 1
            assert page.text_content("#checks tr[data-check=model] td.symbol") == "model"
            assert f"words towards {want.checks[0].label}:" in page.text_content("#checks tr[data-check=model]")
            page.wait_for_timeout(400)  # let the bar finish its 0.3 s transition
            page.screenshot(path=str(ARTIFACTS / f"web_page_{example.split()[-1]}.png"))
        page.fill("#text", "   ")
        page.click("#go")
        assert page.text_content("#verdict") == "Type a message first."
        assert page.get_attribute("#result", "class") == "error"
        assert page.text_content("#detail") == "" and not page.is_visible("#bar")  # no stale verdict or bar
        assert not page.is_visible("#why")
        browser.close()
    assert (ARTIFACTS / "web_page_prize.png").stat().st_size > 5_000
