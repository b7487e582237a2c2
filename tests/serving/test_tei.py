"""`POST /predict` is Text Embeddings Inference's /predict, checked against TEI's own published OpenAPI document
(tei_openapi.json: docs/openapi.json of huggingface/text-embeddings-inference at 0d124dc, v1.9.3, Apache-2.0):
every request spamtune accepts is valid for TEI, every answer and error validates against TEI's response schemas,
and the behaviour follows TEI's router (a string or [string]: one list of every label, best first; [[a], [b]]: a
list per input; raw_scores: before the softmax; truncate false: an over-long input refused)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft7Validator

from spamtune.serving.loadtest import post_json

TEI = json.loads(Path(__file__).with_name("tei_openapi.json").read_text())


def tei_validator(name: str) -> Draft7Validator:
    """A validator for one of TEI's component schemas, refs resolved inside TEI's document."""
    return Draft7Validator({"$ref": f"#/components/schemas/{name}", "components": TEI["components"]})


def post(url: str, body: dict) -> tuple[int, object, dict]:
    req = urllib.request.Request(url + "/predict", json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def test_the_route_is_tei_s(server_url):
    ours = json.loads(urllib.request.urlopen(server_url + "/openapi.json").read())["paths"]["/predict"]["post"]
    theirs = TEI["paths"]["/predict"]["post"]
    assert set(theirs["responses"]) <= set(ours["responses"])  # 200, 400, 413, 422, 424, 429
    assert set(ours["requestBody"]["content"]) == set(theirs["requestBody"]["content"]) == {"application/json"}


@pytest.mark.parametrize("body,batch", [
    ({"inputs": "WINNER!! claim your prize"}, False),
    ({"inputs": ["see you at six"]}, False),  # TEI's router: one input (its schema does not list it)
    ({"inputs": [["WINNER claim now"], ["see you at six"], ["ok"]]}, True),
    ({"inputs": "call now", "raw_scores": True, "truncate": True, "truncation_direction": "Right"}, False),
])
def test_answers_validate_against_tei_schemas(server, body, batch):
    url, _, clf = server
    if body["inputs"] != ["see you at six"]:
        tei_validator("PredictRequest").validate(body)
    code, answer, headers = post(url, body)
    assert code == 200, answer
    tei_validator("PredictResponse").validate(answer)
    rows = answer if batch else [answer]
    texts = [x[0] for x in body["inputs"]] if batch else [body["inputs"] if isinstance(body["inputs"], str)
                                                          else body["inputs"][0]]
    assert len(rows) == len(texts) == len(headers["x-prediction-ids"].split(","))
    for row, text in zip(rows, texts):
        assert [r["score"] for r in row] == sorted((r["score"] for r in row), reverse=True)  # best first
        assert {r["label"] for r in row} == set(clf.label_names)
        got = {r["label"]: r["score"] for r in row}
        if body.get("raw_scores"):  # the logits; their softmax at the run's temperature is the answer's scores
            logits = np.array([[got[n] for n in clf.label_names]], dtype=np.float32)
            np.testing.assert_allclose(clf.scores_from_logits(logits)[0], clf.predict_proba([text])[0], atol=1e-6)
        else:
            np.testing.assert_allclose([got[n] for n in clf.label_names], clf.predict_proba([text])[0], atol=1e-6)


@pytest.mark.parametrize("body,status,error_type", [
    ({"inputs": ""}, 400, "Empty"),
    ({"inputs": "   "}, 400, "Empty"),
    ({"inputs": ["a premise", "a hypothesis"]}, 422, "Validation"),  # a pair: spamtune classifies one message
    ({"inputs": [["a"], ["b", "c"]]}, 422, "Validation"),
    ({"inputs": ["a", "b", "c"]}, 422, "Validation"),  # TEI: invalid length 3
    ({"inputs": [[f"m{i}"] for i in range(9)]}, 422, "Validation"),  # over the server's batch size (8)
    ({"inputs": "x" * 501}, 422, "Validation"),  # over max_chars (500)
    ({"inputs": "x " * 240, "truncate": False}, 422, "Validation"),  # over max_length tokens
    ({"inputs": "ok", "truncation_direction": "Left"}, 422, "Validation"),
    ({"inputs": 3}, 422, "Validation"),
    ({"text": "wrong key"}, 422, "Validation"),
])
def test_errors_are_tei_s(server_url, body, status, error_type):
    code, answer, _ = post(server_url, body)
    assert code == status, answer
    tei_validator("ErrorResponse").validate(answer)
    assert answer["error_type"] == error_type and answer["error"]


def test_truncate_default_reads_the_beginning(server):
    url, _, clf = server
    long = "x " * 240  # within max_chars, over max_length tokens
    code, answer, _ = post(url, {"inputs": long})
    assert code == 200
    got = {r["label"]: r["score"] for r in answer}
    np.testing.assert_allclose([got[n] for n in clf.label_names], clf.predict_proba([long])[0], atol=1e-6)
    assert post_json(url + "/classify", {"texts": [long]})[1]["results"][0]["truncated"] is True
