"""Password reset: 202 alike for every address, a single-use 30-minute link by mail (sent
after commit), the tenant's password policy, every session ended, audited, and limited per
address and per client."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from kanvaro.db import utcnow
from kanvaro.identity.password_reset import service as reset
from kanvaro.identity.password_reset.models import PasswordResetToken
from kanvaro.notify.smtp import SmtpMailer
from kanvaro.security.throttle import LoginThrottle, make_storage
from tests.conftest import unique_email
from tests.identity.conftest import Inbox, audit_entries

pytestmark = pytest.mark.asyncio

REQUEST = "/api/v1/auth/password-reset"
CONFIRM = "/api/v1/auth/password-reset/confirm"
NEW = "N3w!Reset-Passphrase-9"


@pytest.fixture
def inbox(services, smtp_server, monkeypatch) -> Inbox:
    received, port = smtp_server
    mailer = SmtpMailer("127.0.0.1", port, "kanvaro@localhost", security="none", timeout=5)
    monkeypatch.setattr(services, "mailer", mailer)
    return received


async def mails_to(inbox: Inbox, address: str) -> list:
    await reset.drain()
    return [
        m
        for r, m in zip(inbox.recipients, inbox.messages, strict=True)
        if address in r and m["Subject"] == reset.SUBJECT
    ]


def token_of(mail) -> str:
    found = re.search(r"#token=([A-Za-z0-9_-]+)", mail.get_content())
    assert found, "no link in the mail"
    return found.group(1)


async def ask(tenant, email: str):
    return await tenant.client.post(REQUEST, json={"email": email, "tenant": tenant.slug})


async def test_every_address_gets_the_same_answer_and_only_an_account_a_mail(tenant, inbox):
    m = await tenant.member("viewer")
    known = await ask(tenant, m.email)
    unknown = await ask(tenant, unique_email("nobody"))
    malformed = await ask(tenant, "not an address")
    assert known.status_code == unknown.status_code == malformed.status_code == 202
    assert known.content == unknown.content == malformed.content
    mails = await mails_to(inbox, m.email)
    assert len(mails) == 1
    body = mails[0].get_content()
    assert "30 minutes" in body and "/password-reset#token=" in body


async def test_the_link_sets_a_new_password_once_and_ends_every_session(tenant, services, inbox):
    m = await tenant.member("viewer")
    assert (await tenant.client.get("/api/v1/auth/me", headers=m.headers)).status_code == 200
    await ask(tenant, m.email)
    token = token_of((await mails_to(inbox, m.email))[0])
    async with services.db.session(all_tenants=True) as session:
        stored = (
            await session.execute(
                select(PasswordResetToken).where(PasswordResetToken.user_id == uuid.UUID(m.id))
            )
        ).scalar_one()
    assert stored.token_hash == reset.token_hash(token) and token not in stored.token_hash

    weak = await tenant.client.post(CONFIRM, json={"token": token, "newPassword": "short"})
    assert weak.status_code == 422 and "newPassword" in weak.text
    ok = await tenant.client.post(CONFIRM, json={"token": token, "newPassword": NEW})
    assert ok.status_code == 204, ok.text
    # Every session ended: the old access token is refused.
    assert (await tenant.client.get("/api/v1/auth/me", headers=m.headers)).status_code == 401
    login = {"email": m.email, "tenant": tenant.slug}
    r = await tenant.client.post("/api/v1/auth/login", json={**login, "password": m.password})
    assert r.status_code == 401
    r = await tenant.client.post("/api/v1/auth/login", json={**login, "password": NEW})
    assert r.status_code == 200, r.text
    # Spent: the same link again is refused, naming the field.
    again = await tenant.client.post(CONFIRM, json={"token": token, "newPassword": NEW + "x"})
    assert again.status_code == 400 and again.json()["errors"][0]["field"] == "token"
    assert again.headers["content-type"].startswith("application/problem+json")

    requested = await audit_entries(services, tenant.id, "auth:password:reset_request")
    done = await audit_entries(services, tenant.id, "auth:password:reset")
    assert [str(e.resource_id) for e in requested] == [m.id]
    assert [str(e.resource_id) for e in done] == [m.id]
    assert token not in str(requested[0].changes) + str(done[0].changes)


async def test_two_confirms_at_once_spend_the_token_once(tenant, inbox):
    m = await tenant.member("viewer")
    await ask(tenant, m.email)
    token = token_of((await mails_to(inbox, m.email))[0])
    answers = await asyncio.gather(
        *(
            tenant.client.post(CONFIRM, json={"token": token, "newPassword": f"{NEW}-{i}"})
            for i in range(2)
        )
    )
    assert sorted(r.status_code for r in answers) == [204, 400]


async def test_an_expired_or_superseded_link_is_refused(tenant, services, inbox):
    m = await tenant.member("viewer")
    await ask(tenant, m.email)
    first = token_of((await mails_to(inbox, m.email))[0])
    await ask(tenant, m.email)
    second = token_of((await mails_to(inbox, m.email))[1])
    r = await tenant.client.post(CONFIRM, json={"token": first, "newPassword": NEW})
    assert r.status_code == 400  # a newer request voided it
    async with services.db.session(all_tenants=True) as session:
        await session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.token_hash == reset.token_hash(second))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    r = await tenant.client.post(CONFIRM, json={"token": second, "newPassword": NEW})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "token"


async def test_requests_are_limited_per_address_and_confirms_per_client(
    tenant, services, inbox, monkeypatch
):
    limited = LoginThrottle(
        make_storage(None),
        per_account=5,
        per_ip=100,
        window_seconds=60,
        reset_per_address_per_hour=2,
        reset_per_client_per_hour=3,
    )
    monkeypatch.setattr(services, "throttle", limited)
    m = await tenant.member("viewer")
    answers = [(await ask(tenant, m.email)).status_code for _ in range(3)]
    assert answers == [202, 202, 202]  # the answer never changes ...
    assert len(await mails_to(inbox, m.email)) == 2  # ... but the third mailed nothing
    bad = {"token": "not-a-real-token-at-all", "newPassword": NEW}
    statuses = [(await tenant.client.post(CONFIRM, json=bad)).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
