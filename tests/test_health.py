"""/healthz says the process is alive; /readyz says the database is reachable and migrated."""

from __future__ import annotations

import json

import httpx
import pytest

from kanvaro.app import create_app
from kanvaro.migrate import upgrade
from kanvaro.services import Services
from tests.conftest import make_settings


async def _get(settings, path: str) -> httpx.Response:
    services = Services.build(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(settings, services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get(path)
    finally:
        await services.shutdown()


async def test_healthz_is_200(client):
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_readyz_is_200_on_the_migrated_suite_database(client):
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}


async def test_readyz_is_503_when_migrations_are_pending(tmp_path, data_dir):
    fresh = f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}"
    r = await _get(make_settings(data_dir, fresh), "/readyz")
    assert r.status_code == 503
    assert r.json()["checks"] == {"database": "ok", "migrations": "pending"}
    assert r.json()["status"] == "not ready"
    # /healthz does not care: the process is alive.
    assert (await _get(make_settings(data_dir, fresh), "/healthz")).status_code == 200


async def test_readyz_is_503_when_one_migration_head_is_missing(tmp_path, data_dir):
    partial = f"sqlite+aiosqlite:///{tmp_path / 'partial.db'}"
    upgrade(partial, "0001")
    r = await _get(make_settings(data_dir, partial), "/readyz")
    assert r.status_code == 503 and r.json()["checks"]["migrations"] == "pending"
    upgrade(partial)
    assert (await _get(make_settings(data_dir, partial), "/readyz")).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://kanvaro:hunter2-db-pass@127.0.0.1:1/kanvaro",
        "sqlite+aiosqlite:////nonexistent-dir-for-kanvaro/sub/kanvaro.db",
    ],
    ids=["postgres-refused", "sqlite-unopenable"],
)
async def test_readyz_is_503_with_a_reason_when_the_database_is_unreachable(url, data_dir):
    r = await _get(make_settings(data_dir, url), "/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"].startswith("unavailable")
    text = json.dumps(body)
    for leak in ("hunter2", "127.0.0.1", "nonexistent-dir", "kanvaro:"):
        assert leak not in text
    assert r.headers["x-content-type-options"] == "nosniff"
