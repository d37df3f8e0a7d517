"""The OpenAPI schema renders, covers every /api/ route, and the API keeps to it (schemathesis).

Every operation in the schema becomes one test here, generated at collection time, so the
routes later issues add are fuzzed too without touching this file.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import load_all_checks

from optio import lifecycle
from optio import secrets as secret_service
from tests.optio.test_api_auth import api_routes

load_all_checks()
from schemathesis.checks import CHECKS  # noqa: E402  (filled by load_all_checks)

CHECK_NAMES = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
]
EXAMPLES_PER_MODE = 12  # per operation; enough to find crashes, small enough for CI on 2 cores

# Routes that serve the schema itself, not part of it.
SCHEMA_ROUTES = {"/api/schema", "/api/docs"}


def _generated_schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


SCHEMA = _generated_schema()
OPERATIONS = sorted((path, method.upper()) for path, item in SCHEMA["paths"].items() for method in item)


class _InTestTransaction(WSGIHandler):
    """The real WSGI stack, minus closing the database connection around each request
    (what Django's test client does too), so requests see the test's rows."""

    def __call__(self, environ, start_response):
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        try:
            result = super().__call__(environ, start_response)
            body = b"".join(result)
            result.close()
        finally:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)
        return [body]


def _checks():
    return [CHECKS.get_one(name) for name in CHECK_NAMES]


def test_schema_is_valid_and_has_no_generator_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert out.read_text().startswith("openapi: 3")


def test_schema_endpoint_serves_the_schema_and_docs_render(api):
    resp = api.get("/api/schema")
    assert resp.status_code == 200
    served = resp.json()
    assert served["paths"].keys() == SCHEMA["paths"].keys()
    assert served["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert api.get("/api/schema?format=yaml").content.startswith(b"openapi: 3")
    docs = api.get("/api/docs")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_schema_covers_every_api_route():
    """A route outside the schema would escape the fuzzing below (and API clients' eyes)."""
    documented = set(SCHEMA["paths"])
    for route in api_routes():
        if route in SCHEMA_ROUTES:
            continue
        # Compare shapes: /api/tasks/<sample uuid>/logs against /api/tasks/{id}/logs.
        shape = "/".join(
            "{}" if any(c.isdigit() for c in part) and part != "api" else part for part in route.split("/")
        )
        assert any(shape == "/".join("{}" if p.startswith("{") else p for p in doc.split("/")) for doc in documented), (
            f"{route} is not in /api/schema; make it a DRF view (or extend_schema it) so clients and tests see it"
        )


def test_every_operation_documents_its_error_shape():
    for path, item in SCHEMA["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert any(c.startswith("4") for c in codes), f"{method.upper()} {path} documents no 4xx"


@pytest.fixture
def known_ids(repo):
    """Real objects, so some generated requests reach them instead of always answering 404."""
    task = lifecycle.create_task(repo, "Seeded task", "p")
    failed = lifecycle.create_task(repo, "Seeded failure", "p")
    lifecycle.transition(failed, "running")
    lifecycle.transition(failed, "failed", error="boom")
    secret, _ = secret_service.set_secret("SEEDED", "value")
    return {"/api/tasks/": [str(task.pk), str(failed.pk)], "/api/repos/": [repo.pk], "/api/secrets/": [secret.pk]}


def _path_parameter_values(path: str, known: dict) -> list[dict]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    if len(names) != 1:
        return []
    for prefix, ids in known.items():
        if path.startswith(prefix):
            return [{names[0]: value} for value in ids]
    return []


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_operation_keeps_to_the_schema(api, known_ids, path, method):
    schema = schemathesis.openapi.from_dict(SCHEMA)
    schema.app = _InTestTransaction()
    operation = schema[path][method].ok() if hasattr(schema[path][method], "ok") else schema[path][method]
    headers = {"Authorization": f"Bearer {api.token}"}
    checks = _checks()
    seeded = _path_parameter_values(path, known_ids)

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies = [operation.as_strategy(generation_mode=mode)]
        strategies += [operation.as_strategy(generation_mode=mode, path_parameters=p) for p in seeded]

        @settings(
            max_examples=EXAMPLES_PER_MODE,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def run(case):
            case.call_and_validate(headers=headers, checks=checks)

        try:
            run()
        except Unsatisfiable:
            # No parameters and no body: there is nothing to make invalid.
            assert mode is GenerationMode.NEGATIVE, f"{method} {path}: no valid request can be generated"
