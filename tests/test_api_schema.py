"""Schemathesis against the OpenAPI schema, in-process on the ASGI app: no input makes a server error.

Bounded for CI: a few examples per operation, no deadline (SQLite on a busy
runner is slow now and then), well under a minute for the whole schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from ocrq.api.rest.app import create_app
from ocrq.settings import Settings, build_settings
from tests.api_support import make_key
from tests.factories import make_text_image

EXAMPLES_PER_OPERATION = 8


@pytest.fixture(scope="module")
def app_and_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    root = tmp_path_factory.mktemp("schema")
    (root / "scans").mkdir()
    make_text_image("Schema test").save(root / "scans" / "ok.png")
    app_settings: Settings = build_settings(
        database_url=f"sqlite:///{root / 'ocrq.db'}",
        engines=["tesseract"],
        tesseract_langs="eng",
        api_upload_dir=root / "uploads",
        api_path_roots=[root / "scans"],
        api_webhook_secret="schema-secret",
    )
    yield create_app(app_settings), make_key(app_settings)


@pytest.fixture(scope="module")
def api_schema(app_and_key: tuple[FastAPI, str]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app_and_key[0])


CHECKS: list[Callable[..., object]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


def _explore(operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, key: str) -> None:
    """Hypothesis over one operation's generated cases (schemathesis' pytest plugin predates pytest 9)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def explore(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"X-API-Key": key}, checks=CHECKS)

    explore()


def test_no_input_makes_a_server_error(
    api_schema: schemathesis.BaseSchema, app_and_key: tuple[FastAPI, str]
) -> None:
    explored, failures = [], []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in MODES:
            explored.append(f"{mode.value} {operation.label}")
            try:
                _explore(operation, mode, app_and_key[1])
            except Unsatisfiable:  # no parameters and no body: there is no invalid input to make
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
            except Exception as error:  # collected, so one run reports every failing operation
                failures.append(f"{mode.value} {operation.label}: {error}")
    assert len(explored) == 2 * 15, explored  # every operation, both modes
    assert failures == [], "\n\n".join(failures)


def test_the_schema_documents_both_ways_to_submit(api_schema: schemathesis.BaseSchema) -> None:
    body = api_schema.raw_schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert "PathsJobCreate" in api_schema.raw_schema["components"]["schemas"]
    assert "X-API-Key" in str(api_schema.raw_schema["components"]["securitySchemes"])
