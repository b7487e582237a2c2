"""The service's OpenAPI schema fuzzed with schemathesis against the real server on loopback: for every operation,
a bounded number of generated requests that fit the schema (positive) and that break it (negative); no 5xx, and
every answer conforms to the schema (status codes, content types, response bodies).

Schemathesis' pytest plugin does not load under this pytest, so the operations are driven through its Python API
with hypothesis directly."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from spamtune.monitoring.lists import OperatorLists

# Operations whose input has a validity JSON Schema cannot state: a list entry's value must be a domain name, a
# sender, or a pattern RE2 compiles within its memory bound. A schema-valid request may get its clear 422 there
# (tested in tests/inference/test_lists.py); every other check (no 5xx, answers conform) still runs on them.
SEMANTIC_422 = {"POST /admin/api/lists"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_openapi_fuzz(server, mode):
    server_url, app, _ = server
    try:
        fuzz(server_url, mode)
    finally:  # the session's server is shared: the entries the fuzzer added to its lists must not decide later tests
        svc = app.state.service
        lists = OperatorLists(svc.opts.store)
        if active := [e.id for e in lists.entries()]:
            lists.remove(active, by="fuzz")
        svc.lists.invalidate()


def fuzz(server_url: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(server_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /classify", "GET /health"}
    for op in operations:
        if mode is GenerationMode.NEGATIVE and not list(op.iter_parameters()) and not op.body:
            continue  # GET /health takes no input: nothing to break

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case):
            case.call_and_validate(timeout=60, excluded_checks=[positive_data_acceptance]
                                   if op.label in SEMANTIC_422 else None)

        check()
