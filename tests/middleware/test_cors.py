"""CORS is off unless origins are listed; never ``*``, never with credentials for strangers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kanvaro.app import create_app
from kanvaro.config import Settings
from tests.conftest import make_settings
from tests.middleware.faults import client_for

ALLOWED = "https://app.kanvaro.example"
STRANGER = "https://evil.example"


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }


def _cors_headers(r) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


async def test_cors_is_off_by_default(faulty):
    r = await faulty.options("/api/v1/auth/login", headers=_preflight(STRANGER))
    assert _cors_headers(r) == {}
    r = await faulty.get("/healthz", headers={"Origin": STRANGER})
    assert _cors_headers(r) == {}


@pytest.fixture(scope="module")
def cors_app(data_dir, database_url, services):
    settings = make_settings(data_dir, database_url, cors_origins=f"{ALLOWED}, https://other.ok")
    return create_app(settings, services=services)


async def test_a_listed_origin_is_allowed_with_credentials(cors_app):
    async with client_for(cors_app) as c:
        r = await c.options("/api/v1/auth/login", headers=_preflight(ALLOWED))
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == ALLOWED
        assert r.headers["access-control-allow-credentials"] == "true"
        assert "POST" in r.headers["access-control-allow-methods"]
        r = await c.get("/healthz", headers={"Origin": ALLOWED})
        assert r.headers["access-control-allow-origin"] == ALLOWED
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()


async def test_an_unlisted_origin_is_not_allowed(cors_app):
    async with client_for(cors_app) as c:
        r = await c.options("/api/v1/auth/login", headers=_preflight(STRANGER))
        assert r.status_code == 400
        assert "access-control-allow-origin" not in r.headers
        r = await c.get("/healthz", headers={"Origin": STRANGER})
        assert "access-control-allow-origin" not in r.headers
        assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("value", ["*", "https://a.example,*", " * "])
def test_a_wildcard_origin_is_refused_at_config_time(value, tmp_path):
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        Settings(data_dir=tmp_path, cors_origins=value)


def test_a_wildcard_origin_from_the_environment_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("KANVARO_CORS_ORIGINS", "https://a.example, *")
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        Settings(data_dir=tmp_path)
    monkeypatch.setenv("KANVARO_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings(data_dir=tmp_path).cors_origins == ["https://a.example", "https://b.example"]
