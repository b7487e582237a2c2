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


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_openapi_fuzz(server_url, mode):
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
            case.call_and_validate(timeout=60)

        check()
