"""The access log: one JSON line per request, with its status, the signed-in user, the path
without its query string, and redaction like every other line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

import kanvaro.logging
from kanvaro.logging import REDACTED, configure_logging
from tests.conftest import TenantFixture

JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"


def _configure(monkeypatch: pytest.MonkeyPatch, level: str) -> io.StringIO:
    # The access emitter is module state: put back whatever the other tests had.
    monkeypatch.setattr(kanvaro.logging, "_access", kanvaro.logging._access)
    stream = io.StringIO()
    configure_logging(level, json=True, pii_fields=[], stream=stream)
    return stream


def _unconfigure() -> None:
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_kanvaro_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    yield _configure(monkeypatch, "INFO")
    _unconfigure()


def _access(stream: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    lines = [json.loads(x) for x in stream.getvalue().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("logger") == "kanvaro.access"]


async def test_one_line_per_request_with_who_and_how_it_ended(
    logs: io.StringIO, tenant: TenantFixture
) -> None:
    r = await tenant.client.get("/api/v1/tasks?token=s3cr3t-query", headers=tenant.admin.headers)
    assert r.status_code == 200
    line = _access(logs)[-1]
    assert line["method"] == "GET" and line["path"] == "/api/v1/tasks"
    assert line["status"] == 200 and line["duration_ms"] >= 0
    assert line["user_id"] == tenant.admin.id and line["tenant_id"] == tenant.id
    assert line["request_id"] == r.headers["x-request-id"]
    assert line["client"] == "203.0.113.7"
    assert "s3cr3t-query" not in logs.getvalue()


async def test_refusals_are_logged_and_token_shaped_paths_redacted(
    logs: io.StringIO, tenant: TenantFixture
) -> None:
    r = await tenant.client.get(f"/api/v1/tasks/{JWT}")
    assert r.status_code == 401
    line = _access(logs)[-1]
    assert line["status"] == 401 and line["user_id"] is None
    assert JWT not in logs.getvalue() and REDACTED in line["path"]


async def test_off_below_info(tenant: TenantFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _configure(monkeypatch, "WARNING")
    try:
        await tenant.client.get("/healthz")
        assert _access(stream) == []
    finally:
        _unconfigure()
