"""schemathesis fuzzes the server from its own OpenAPI description: no request may get a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from tests.workloads.server.conftest import churn_version, start_server

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first


@pytest.fixture(scope="module")
def v2_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    server = start_server(tmp, churn_version(tmp / "v3"))
    try:
        yield schemathesis.openapi.from_url(f"{server.url}/v2/openapi.json")
    finally:
        assert server.stop() == 0


schema = schemathesis.pytest.from_fixture("v2_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, response.text
