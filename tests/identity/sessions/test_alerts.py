"""The "was this you?" mail and its revoke link, and the single-device mail.

A sign-in the policy marks "notify" (default: a score of 30, e.g. a new device) mails the user
after commit; the link's GET shows a page and ends nothing (mail scanners follow links); its
POST ends that one session, once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import uuid
from collections.abc import Iterator

import pytest
import structlog
from sqlalchemy import text

from kanvaro.identity.models import UserSession
from kanvaro.logging import configure_logging
from kanvaro.notify.email import NullMailer
from tests.identity.conftest import audit_entries
from tests.identity.sessions.conftest import set_policy
from tests.identity.sessions.test_risk import (
    BERLIN_IP,
    client_addresses,
    geoip_on,
    new_account,
    session_of,
    sign_in,
)

REVOKE = "/api/v1/auth/sessions/revoke"
LINK = re.compile(r"^https://kanvaro\.example/api/v1/auth/sessions/revoke\?token=([A-Za-z0-9_-]+)$",
                  re.MULTILINE)  # fmt: skip
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
def geo_mails(services, monkeypatch, tmp_path) -> NullMailer:
    return geoip_on(services, monkeypatch, tmp_path)


@pytest.fixture
def captured(settings) -> Iterator[io.StringIO]:
    """Everything the app logs, at DEBUG, as production renders it."""
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, pii_fields=settings.pii_redaction, stream=stream)
    yield stream
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_kanvaro_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def mail_to(mailer: NullMailer, address: str) -> list:
    return [m for m in mailer.sent if m["To"] == address]


async def notified_sign_in(tenant, services, mailer, email):
    """A first sign-in, then one from a new device (30: notify); (session, token, mail)."""
    await session_of(services, tenant, await sign_in(tenant, email, ip=BERLIN_IP))
    r = await sign_in(tenant, email, ip="203.0.113.11")
    stored = await session_of(services, tenant, r)
    (mail,) = mail_to(mailer, email)
    found = LINK.search(mail.get_content())
    assert found, mail.get_content()
    return stored, r.json(), found.group(1), mail


async def me(tenant, access_token: str) -> int:
    r = await tenant.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"}
    )
    return r.status_code


async def reload(services, tenant, stored: UserSession) -> UserSession:
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        return await session.get(UserSession, stored.id)


async def test_a_notified_sign_in_is_mailed_and_its_link_ends_that_session_once(
    tenant, services, geo_mails
):
    user_id, email = await new_account(tenant)
    stored, tokens, token, mail = await notified_sign_in(tenant, services, geo_mails, email)
    body = mail.get_content()
    assert mail["Subject"] == "New sign-in to your Kanvaro account"
    assert "Device:   Chrome 120 on macOS" in body
    assert "Place:    Berlin, DE" in body
    assert "Address:  203.0.113.11" in body
    assert re.search(r"Time:     \d{4}-\d\d-\d\d \d\d:\d\d UTC", body)
    assert "a device not seen before" in body
    assert stored.risk_reasons == ["new_device"]
    # Only the token's SHA-256 is stored, on the session row.
    assert stored.revoke_token_hash == hashlib.sha256(token.encode()).hexdigest()

    # GET shows a page with a button and ends nothing.
    page = await tenant.client.get(REVOKE, params={"token": token}, headers=HTML)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="revoke">' in page.text and token in page.text
    assert "Chrome 120 on macOS" in page.text and "Berlin, DE" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert (await reload(services, tenant, stored)).is_active
    assert await me(tenant, tokens["accessToken"]) == 200

    # POST (the page's form) ends that session and no other.
    done = await tenant.client.post(REVOKE, data={"token": token}, headers=HTML)
    assert done.status_code == 200, done.text
    assert "Session ended" in done.text
    ended = await reload(services, tenant, stored)
    assert not ended.is_active and ended.revoked_reason == "revoke_link"
    assert ended.revoke_token_hash is None and ended.revoked_at is not None
    assert await me(tenant, tokens["accessToken"]) == 401
    r = await tenant.client.post(
        "/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
    )
    assert r.status_code == 401
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        active = (
            await session.execute(
                text("SELECT count(*) FROM user_sessions WHERE user_id = :u AND is_active"),
                {"u": uuid.UUID(user_id).hex if services.db.dialect == "sqlite" else
                 uuid.UUID(user_id)},
            )
        ).scalar_one()  # fmt: skip
    assert active == 1  # the first sign-in's session lives on

    revoked = await audit_entries(services, tenant.id, "auth:session:revoke")
    mine = [e for e in revoked if e.resource_id == str(stored.id)]
    assert len(mine) == 1 and mine[0].changes == {"reason": "revoke_link"}
    assert mine[0].actor_id == uuid.UUID(user_id)

    # Spent: a second POST and the GET find nothing.
    again = await tenant.client.post(REVOKE, json={"token": token})
    assert again.status_code == 404
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["type"].endswith("/not-found")
    page = await tenant.client.get(REVOKE, params={"token": token}, headers=HTML)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert token not in page.text


async def test_a_sign_in_below_the_threshold_mails_nothing_and_has_no_link(
    tenant, services, geo_mails
):
    _, email = await new_account(tenant)
    first = await sign_in(tenant, email, ip=BERLIN_IP)
    await session_of(services, tenant, first)
    known = await sign_in(tenant, email, ip=BERLIN_IP, device=first.json()["deviceToken"])
    stored = await session_of(services, tenant, known)
    assert stored.risk_score == 0 and stored.revoke_token_hash is None
    assert mail_to(geo_mails, email) == []


async def test_the_policy_threshold_decides_what_is_mailed(tenant, services, geo_mails):
    await set_policy(tenant, riskNotifyAt=20)
    _, email = await new_account(tenant)
    first = await sign_in(tenant, email, ip="192.0.2.10")
    await session_of(services, tenant, first)
    r = await sign_in(tenant, email, ip="192.0.3.10", device=first.json()["deviceToken"])
    stored = await session_of(services, tenant, r)
    assert stored.risk_reasons == ["new_network"] and stored.revoke_token_hash is not None
    (mail,) = mail_to(geo_mails, email)
    body = mail.get_content()
    assert "Place:    unknown place" in body and "a network not seen before" in body


async def test_a_bad_token_is_a_422_naming_it_and_an_unknown_one_a_404(tenant, geo_mails):
    c = tenant.client
    for params in ({}, {"token": "short"}, {"token": "x" * 65}, {"token": "a" * 40 + "%$"}):
        r = await c.get(REVOKE, params=params)
        assert r.status_code == 422, params
        assert [e["field"] for e in r.json()["errors"]] == ["token"]
    for kwargs in ({}, {"data": {"token": "short"}}, {"json": {"token": 5}}, {"json": ["x"]},
                   {"content": b"\xff\xfe", "headers": {"content-type": "text/plain"}},
                   {"data": {"token": ["a" * 43, "b" * 43]}}):  # fmt: skip
        r = await c.post(REVOKE, **kwargs)
        assert r.status_code == 422, kwargs
        assert r.json()["errors"][0]["field"] == "token"
    unknown = "A" * 43
    r = await c.get(REVOKE, params={"token": unknown})
    assert r.status_code == 404 and r.json()["type"].endswith("/not-found")
    r = await c.post(REVOKE, data={"token": unknown}, headers=HTML)
    assert r.status_code == 404 and "no longer valid" in r.text


async def test_a_mail_that_cannot_be_sent_does_not_break_the_sign_in(
    tenant, services, monkeypatch, capsys
):
    class Refusing:
        async def send(self, to: str, subject: str, body: str) -> None:
            raise ConnectionRefusedError("relay down")

    client_addresses(services, monkeypatch)
    monkeypatch.setattr(services, "mailer", Refusing())
    _, email = await new_account(tenant)
    await session_of(services, tenant, await sign_in(tenant, email, ip="192.0.2.10"))
    r = await sign_in(tenant, email, ip="192.0.2.11")  # a new device: notify
    stored = await session_of(services, tenant, r)
    assert stored.risk_reasons == ["new_device"] and stored.is_active
    out = capsys.readouterr().out
    assert "sign_in_mail_not_sent" in out and "ConnectionRefusedError" in out
    assert "token=" not in out


async def test_single_device_mails_that_the_other_sessions_ended(tenant, services, geo_mails):
    await set_policy(tenant, singleDeviceOnly=True)
    _, email = await new_account(tenant)
    first = await sign_in(tenant, email, ip=BERLIN_IP)
    await session_of(services, tenant, first)
    second = await sign_in(tenant, email, ip=BERLIN_IP, device=first.json()["deviceToken"])
    await session_of(services, tenant, second)
    (mail,) = mail_to(geo_mails, email)
    assert mail["Subject"] == "You were signed out elsewhere"
    assert "1 other session ended" in mail.get_content()


async def test_the_revoke_token_reaches_no_log_and_no_audit_entry(
    tenant, services, geo_mails, captured
):
    _, email = await new_account(tenant)
    stored, _, token, _ = await notified_sign_in(tenant, services, geo_mails, email)
    await tenant.client.get(REVOKE, params={"token": token})
    await tenant.client.post(REVOKE, data={"token": token})
    await tenant.client.post(REVOKE, data={"token": token})  # the 404
    await services.audit.drain()
    tenant_key = (
        uuid.UUID(tenant.id).hex if services.db.dialect == "sqlite" else uuid.UUID(tenant.id)
    )
    async with services.db.session(all_tenants=True) as session:
        audit_rows = [
            repr(tuple(row))
            for table in ("audit_logs", "audit_pending")
            for row in await session.execute(
                text(f"SELECT * FROM {table} WHERE tenant_id = :t OR tenant_id IS NULL"),
                {"t": tenant_key},
            )
        ]
    logs = captured.getvalue()
    assert "session_revoked" in logs and "auth_attempt" in logs  # the capture saw the flow
    assert len(audit_rows) > 3
    digest = hashlib.sha256(token.encode()).hexdigest()
    for secret in (token, digest):
        assert secret not in logs
        assert secret not in "\n".join(audit_rows)
    assert token not in repr(stored)
