"""Contract fuzzing with schemathesis: every public GET operation of the live app's
/openapi.json (and the public POST search) is called with generated parameters, valid and
not, over real HTTP against the demo city. No answer may be a 5xx, and every answer must
match what the document says of it (status code documented, schema, content type), errors
included: they are RFC 9457 problem documents (api/openapi.py).

Bounded for CI: a few examples per operation with a fixed (derandomised) seed, so a run
takes about a minute on two cores and fails the same way every time."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from catalog.settings import Settings

pytestmark = pytest.mark.usefixtures("demo_loaded")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))  # more for a deeper run by hand
# Operations that change data need an API key (tested in their own modules); the HTML-only
# pages are exercised by the browser tests; /metrics is plain text for Prometheus.
SKIP_PATHS = ("/metrics",)


def _document() -> dict[str, Any]:
    """The app's OpenAPI document, built without a database (the same document the live
    server publishes at /openapi.json: checked below). schemathesis loads it at collection
    time so each operation is a test of its own."""
    app = create_app(Settings(database_url="postgresql://unused@127.0.0.1:9/none"))
    return app.openapi()


schema = (schemathesis.openapi.from_dict(_document())
          .include(method=["GET", "POST"]).exclude(path=list(SKIP_PATHS))
          .exclude(method="POST",
                   path_regex=r"^(?!/collections/\{collection_id\}/items/search$)"))


def test_the_live_document_is_the_one_fuzzed(live_server: str) -> None:
    assert httpx.get(f"{live_server}/openapi.json").json() == _document()


def test_the_document_covers_every_public_route(live_server: str) -> None:
    """What the fuzzer walks is what the app serves: every GET route is documented."""
    doc = httpx.get(f"{live_server}/openapi.json").json()
    gets = [p for p, item in doc["paths"].items() if "get" in item]
    for path in ("/collections/{collection_id}/items", "/datasets", "/datasets/{slug}/download",
                 "/collections/{collection_id}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileCol}"
                 "/{tileRow}", "/api/3/action/{name}", "/healthz", "/readyz"):
        assert path in gets
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "422" not in op["responses"], (method, path)  # we answer 400 problems
            assert "default" in op["responses"], (method, path)


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_public_operations(case: schemathesis.Case, live_server: str) -> None:
    case.call_and_validate(base_url=live_server, checks=CHECKS, timeout=60)
