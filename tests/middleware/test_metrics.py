"""The metrics middleware on the real app: requests are counted by route template (never the
raw path), with the status the client got, whatever middleware or handler produced it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from kanvaro import metrics
from tests.conftest import make_settings
from tests.middleware.faults import app_with_faults, client_for


@pytest.fixture(scope="module")
def metered_app(data_dir: Any, database_url: str, services: Any) -> Any:
    settings = make_settings(data_dir, database_url, metrics_enabled=True, max_body_bytes=2048)
    return app_with_faults(settings, services)


@pytest.fixture
async def metered(metered_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(metered_app) as c:
        yield c


def _count(route: str, method: str, status: int) -> float:
    labels = {"route": route, "method": method, "status": str(status)}
    return REGISTRY.get_sample_value("kanvaro_http_requests_total", labels) or 0.0


def _timed(route: str, method: str) -> float:
    labels = {"route": route, "method": method}
    return REGISTRY.get_sample_value("kanvaro_http_request_duration_seconds_count", labels) or 0.0


async def test_a_request_is_counted_and_timed_under_its_route_template(metered):
    template = "/api/v1/projects/{project_id}"
    project_id = str(uuid.uuid4())
    before, timed = _count(template, "GET", 401), _timed(template, "GET")
    r = await metered.get(f"/api/v1/projects/{project_id}")
    assert r.status_code == 401
    assert _count(template, "GET", 401) == before + 1
    assert _timed(template, "GET") == timed + 1
    assert project_id.encode() not in metrics.render(), "no raw path reaches a label"


async def test_a_path_no_route_matches_is_counted_as_unmatched(metered):
    secret_looking = f"/reset/{uuid.uuid4().hex}"
    before = _count(metrics.UNMATCHED_ROUTE, "GET", 404)
    assert (await metered.get(secret_looking)).status_code == 404
    assert _count(metrics.UNMATCHED_ROUTE, "GET", 404) == before + 1
    assert secret_looking.encode() not in metrics.render()


async def test_the_status_is_the_one_the_client_got(metered):
    boom = _count("/_test/boom", "GET", 500)
    # The body limit refuses a declared length before any routing: no template is known yet.
    too_large = _count(metrics.UNMATCHED_ROUTE, "POST", 413)
    assert (await metered.get("/_test/boom")).status_code == 500  # rendered by the catch-all
    assert (await metered.post("/_test/echo", content=b"x" * 4096)).status_code == 413
    assert _count("/_test/boom", "GET", 500) == boom + 1
    assert _count(metrics.UNMATCHED_ROUTE, "POST", 413) == too_large + 1


async def test_the_in_progress_gauge_returns_to_where_it_was(metered):
    before = REGISTRY.get_sample_value("kanvaro_http_requests_in_progress")
    await metered.get("/healthz")
    await metered.get("/_test/boom")
    assert REGISTRY.get_sample_value("kanvaro_http_requests_in_progress") == before


async def test_without_the_setting_nothing_is_counted(client):
    before = _count("/healthz", "GET", 200)
    assert (await client.get("/healthz")).status_code == 200
    assert _count("/healthz", "GET", 200) == before
