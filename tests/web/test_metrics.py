"""``GET /metrics``: absent unless enabled; a bearer token (constant-time compare) or an
address inside the admin's anonymous CIDR list; refusals are problem+json; the token never
reaches a log line or a repr; production refuses to enable metrics without a real token."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from kanvaro import metrics
from kanvaro.app import create_app
from kanvaro.audit import observe as audit_observe
from kanvaro.audit.models import CATEGORIES
from kanvaro.config import ConfigError, Settings, load_settings
from kanvaro.web.metrics import ScrapePolicy, observe_audit_log
from tests.conftest import make_settings
from tests.test_routes_declare_permissions import undeclared

TOKEN = secrets.token_urlsafe(32)
INSIDE, OUTSIDE = "203.0.113.7", "198.51.100.4"  # the anonymous list below holds the first
STRONG = "prod-" + "Zx9!qR7#mK2$" * 4


def _client(app: Any, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 4711))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture(scope="module")
def token_app(data_dir: Any, database_url: str, services: Any) -> Any:
    settings = make_settings(data_dir, database_url, metrics_enabled=True, metrics_token=TOKEN)
    return create_app(settings, services=services)


@pytest.fixture(scope="module")
def anonymous_app(data_dir: Any, database_url: str, services: Any) -> Any:
    settings = make_settings(
        data_dir, database_url, metrics_enabled=True, metrics_anonymous_cidrs="203.0.113.0/24"
    )
    return create_app(settings, services=services)


@pytest.fixture
async def scraper(token_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(token_app, OUTSIDE) as c:
        yield c


def _is_refusal(r: httpx.Response, status: int) -> None:
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["instance"] == "/metrics"


async def test_metrics_are_absent_unless_enabled(client):
    assert (await client.get("/metrics")).status_code == 404


async def test_the_right_bearer_token_gets_the_exposition(scraper):
    r = await scraper.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE kanvaro_http_requests_total counter" in r.text
    assert "kanvaro_key_rotation_running" in r.text  # read from the database at scrape time
    assert "kanvaro_sign_ins_total" in r.text
    lower = await scraper.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})
    assert lower.status_code == 200  # the scheme is case-insensitive (RFC 9110)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN],
)
async def test_anything_but_the_token_is_refused_with_a_challenge(scraper, authorization, capsys):
    headers = {} if authorization is None else {"Authorization": authorization}
    r = await scraper.get("/metrics", headers=headers)
    _is_refusal(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN[:-1] not in r.text
    assert TOKEN[:-1] not in capsys.readouterr().out, "no presented value in the log"


async def test_an_address_in_the_anonymous_list_needs_no_token(anonymous_app):
    async with _client(anonymous_app, INSIDE) as inside:
        r = await inside.get("/metrics")
        assert r.status_code == 200 and "kanvaro_http_requests_total" in r.text
    async with _client(anonymous_app, OUTSIDE) as outside:
        _is_refusal(await outside.get("/metrics"), 403)  # and no token is configured at all
        _is_refusal(await outside.get("/metrics", headers={"Authorization": "Bearer x"}), 403)
        # A forwarded address is believed only from a trusted proxy (none here).
        spoofed = await outside.get("/metrics", headers={"X-Forwarded-For": INSIDE})
        _is_refusal(spoofed, 403)


def test_the_policy_fails_closed_and_keeps_the_token_out_of_its_repr():
    nothing = ScrapePolicy(b"")
    assert nothing.refusal(ip=INSIDE, authorization="Bearer ").status == 403
    assert nothing.refusal(ip=None, authorization=None).status == 403
    policy = ScrapePolicy.from_settings(
        Settings(metrics_token=TOKEN, metrics_anonymous_cidrs="10.0.0.0/8")
    )
    assert policy.refusal(ip="10.1.2.3", authorization=None) is None
    assert policy.refusal(ip="::ffff:10.1.2.3", authorization=None).status == 401  # canonical
    assert policy.refusal(ip="not-an-ip", authorization=None).status == 401
    assert policy.refusal(ip="192.0.2.1", authorization=f"Bearer {TOKEN}") is None
    assert TOKEN not in repr(policy)


def test_the_metrics_route_declares_its_access_and_stays_out_of_the_api_document(token_app):
    assert undeclared(token_app) == []
    assert "/metrics" not in token_app.openapi()["paths"]


# --- configuration -----------------------------------------------------------------------


@pytest.fixture
def no_kanvaro_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("KANVARO_") and not name.startswith("KANVARO_TEST_"):
            monkeypatch.delenv(name)


def _production(tmp_path: Any, **values: Any) -> Any:
    return load_settings(
        env="production",
        data_dir=tmp_path,
        database_url="sqlite+aiosqlite://",
        master_key=STRONG,
        **values,
    )


@pytest.mark.usefixtures("no_kanvaro_env")
@pytest.mark.parametrize("token", [None, "changeme", "short-but-real-7f3a"])
def test_production_refuses_metrics_without_a_real_token(tmp_path, token):
    values: dict[str, Any] = {"metrics_enabled": True}
    if token is not None:
        values["metrics_token"] = token
    with pytest.raises(ConfigError) as info:
        _production(tmp_path, **values)
    assert "KANVARO_METRICS_TOKEN" in str(info.value)
    if token:
        assert token not in str(info.value)


@pytest.mark.usefixtures("no_kanvaro_env")
def test_production_accepts_a_token_from_a_file_or_an_anonymous_list(tmp_path, monkeypatch):
    assert _production(tmp_path, metrics_enabled=True, metrics_anonymous_cidrs="10.0.0.0/8")
    token_file = tmp_path / "metrics_token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("KANVARO_METRICS_TOKEN_FILE", str(token_file))
    settings = _production(tmp_path, metrics_enabled=True)
    assert settings.metrics_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)


@pytest.mark.usefixtures("no_kanvaro_env")
def test_an_anonymous_list_entry_that_is_no_network_is_refused(tmp_path):
    with pytest.raises(ValidationError) as info:
        Settings(metrics_anonymous_cidrs="10.0.0.0/8, everyone")
    assert "metrics_anonymous_cidrs" in str(info.value)


def _appends() -> float:
    from prometheus_client import REGISTRY

    return sum(
        REGISTRY.get_sample_value("kanvaro_audit_appends_total", {"category": c}) or 0.0
        for c in (*CATEGORIES, "other")
    )


async def test_audited_writes_reach_the_metrics_through_the_audit_hooks(token_app, tenant):
    before = _appends()
    r = await tenant.client.post(
        "/api/v1/projects", headers=tenant.admin.headers, json={"name": "Counted"}
    )
    assert r.status_code == 201
    assert _appends() >= before + 1
    observe_audit_log()  # building another app does not register the hooks twice
    assert audit_observe.appended.count(metrics.observe_audit_append) == 1
