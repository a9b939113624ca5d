"""Email codes (issue 11 point 3): enrollment and the sign-in's second step, with a real SMTP
server (aiosmtpd) receiving the mail; expiry on a movable clock, single use, the attempt limit,
the resend limit, a refusing mail server, and the code never in logs or audit (canary)."""

# ruff: noqa: F811 - fixtures imported from their modules are named again as parameters

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from kanvaro.notify.smtp import SmtpMailer
from tests.identity.conftest import Inbox, free_port
from tests.identity.mfa.code_support import (
    CODE_LINE,
    SETUP,
    VERIFY_SETUP,
    audit_text,
    canary_code,  # noqa: F401 - a fixture
    challenge_row,
    clock,  # noqa: F401 - a fixture
    kanvaro_logs,
    login,
    problem_field,
    send,
    verify,
)
from tests.identity.sessions.test_alerts import captured  # noqa: F401 - a fixture
from tests.identity.sessions.test_risk import session_of

SIGN_IN_SUBJECT = "Your Kanvaro sign-in code"
SETUP_SUBJECT = "Your Kanvaro confirmation code"


@pytest.fixture
def inbox(services, smtp_server, monkeypatch) -> Inbox:
    """The instance's mail goes to the test's SMTP server (aiosmtpd on loopback)."""
    received, port = smtp_server
    mailer = SmtpMailer("127.0.0.1", port, "kanvaro@localhost", security="none", timeout=5)
    monkeypatch.setattr(services, "mailer", mailer)
    return received


def code_in(inbox: Inbox, address: str, subject: str) -> str:
    """The code of the last mail with ``subject`` to ``address``."""
    for rcpts, message in zip(reversed(inbox.recipients), reversed(inbox.messages), strict=True):
        if address in rcpts and message["Subject"] == subject:
            found = CODE_LINE.search(message.get_content())
            assert found, message.get_content()
            return found.group(1)
    raise AssertionError(f"no {subject!r} mail to {address}")


def mails_to(inbox: Inbox, address: str, subject: str) -> list[Any]:
    return [m for r, m in zip(inbox.recipients, inbox.messages, strict=True)
            if address in r and m["Subject"] == subject]  # fmt: skip


async def enroll_email(tenant, member, inbox, identifier: str | None = None) -> str:
    body = {"method": "email"} | ({"identifier": identifier} if identifier else {})
    r = await tenant.client.post(SETUP, headers=member.headers, json=body)
    assert r.status_code == 200, r.text
    code = code_in(inbox, identifier or member.email, SETUP_SUBJECT)
    r = await tenant.client.post(
        VERIFY_SETUP, headers=member.headers, json={"method": "email", "code": code}
    )
    assert r.status_code == 200, r.text
    return r.json()["methodId"]


async def email_step(tenant, member, inbox, address: str | None = None) -> tuple[str, str]:
    """A password sign-in of a user with email MFA, and the code mailed for it."""
    step = await login(tenant, member)
    assert step["requiresMFA"] is True and "email" in step["methods"], step
    r = await send(tenant, step["sessionId"], "email")
    assert r.status_code == 202, r.text
    return step["sessionId"], code_in(inbox, address or member.email, SIGN_IN_SUBJECT)


async def test_sign_in_with_an_email_code_end_to_end(tenant, services, inbox):
    member = await tenant.member("viewer")
    r = await tenant.client.post(SETUP, headers=member.headers, json={"method": "email"})
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["method"] == "email" and started["codeExpiresInSeconds"] == 600
    assert started["sentTo"] == member.email[0] + "***@kanvaro.example"
    code = code_in(inbox, member.email, SETUP_SUBJECT)
    r = await tenant.client.post(
        VERIFY_SETUP, headers=member.headers, json={"method": "email", "code": code}
    )
    assert r.status_code == 200, r.text
    assert r.json()["methodId"] == started["methodId"]
    assert len(r.json()["backupCodes"]) == 10  # the first method: shown this once

    session_id, code = await email_step(tenant, member, inbox)
    (mail,) = [m for m in mails_to(inbox, member.email, SIGN_IN_SUBJECT)]
    assert mail.get_content_type() == "text/plain" and not mail.is_multipart()
    assert CODE_LINE.findall(mail.get_content()) == [code]  # the one secret in it
    r = await verify(tenant, session_id, "email", code)
    assert r.status_code == 200, r.text
    assert (await session_of(services, tenant, r)).auth_methods == ["password", "email"]
    r = await tenant.client.post(SETUP, headers=member.headers, json={"method": "email"})
    assert r.status_code == 409, r.text  # that address is set up already


async def test_setup_to_another_address_must_be_a_valid_one(tenant, inbox):
    member = await tenant.member("viewer")
    r = await tenant.client.post(
        SETUP, headers=member.headers, json={"method": "email", "identifier": "no-at-sign"}
    )
    assert r.status_code == 422, r.text
    assert problem_field(r) == "identifier"
    other = f"second-{uuid.uuid4().hex[:8]}@kanvaro.example"
    await enroll_email(tenant, member, inbox, identifier=other)
    await email_step(tenant, member, inbox, other)  # codes go to the proved address
    assert not mails_to(inbox, member.email, SIGN_IN_SUBJECT)


async def test_enrollments_to_new_addresses_are_limited_per_hour(tenant, inbox):
    member = await tenant.member("viewer")
    for n in range(11):
        other = f"n{n}-{uuid.uuid4().hex[:6]}@kanvaro.example"
        r = await tenant.client.post(
            SETUP, headers=member.headers, json={"method": "email", "identifier": other}
        )
        assert r.status_code == (200 if n < 10 else 429), r.text
    assert r.headers["Retry-After"] == "3600"


async def test_a_setup_code_expires_after_ten_minutes(tenant, inbox, clock):
    member = await tenant.member("viewer")
    r = await tenant.client.post(SETUP, headers=member.headers, json={"method": "email"})
    assert r.status_code == 200, r.text
    first = code_in(inbox, member.email, SETUP_SUBJECT)
    clock.advance(minutes=10, seconds=1)
    r = await tenant.client.post(
        VERIFY_SETUP, headers=member.headers, json={"method": "email", "code": first}
    )
    assert r.status_code == 422, r.text
    assert problem_field(r) == "code"
    # The enrollment itself is still open: a new code (resent to the same address) works.
    r = await tenant.client.post(SETUP, headers=member.headers, json={"method": "email"})
    assert r.status_code == 200, r.text
    second = code_in(inbox, member.email, SETUP_SUBJECT)
    clock.advance(seconds=30)
    r = await tenant.client.post(
        VERIFY_SETUP, headers=member.headers, json={"method": "email", "code": second}
    )
    assert r.status_code == 200, r.text


async def test_a_used_code_is_refused(tenant, services, inbox):
    member = await tenant.member("viewer")
    await enroll_email(tenant, member, inbox)
    session_id, code = await email_step(tenant, member, inbox)
    assert (await verify(tenant, session_id, "email", code)).status_code == 200
    assert (await verify(tenant, session_id, "email", code)).status_code == 401
    # Nor does it fit the next sign-in's challenge (a hash is bound to its challenge).
    step = await login(tenant, member)
    assert (await verify(tenant, step["sessionId"], "email", code)).status_code == 401
    assert (await challenge_row(services, session_id)).code_hash is None  # cleared when used


async def test_five_wrong_codes_burn_the_challenge(tenant, services, inbox):
    member = await tenant.member("viewer")
    await enroll_email(tenant, member, inbox)
    session_id, code = await email_step(tenant, member, inbox)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert (await verify(tenant, session_id, "email", wrong)).status_code == 401
    r = await verify(tenant, session_id, "email", code)
    assert r.status_code == 401, r.text  # the right code, too late
    assert (await challenge_row(services, session_id)).attempts == 5


async def test_a_code_is_resent_at_most_once_a_minute(tenant, inbox, clock):
    member = await tenant.member("viewer")
    await enroll_email(tenant, member, inbox)
    session_id, first = await email_step(tenant, member, inbox)
    r = await send(tenant, session_id, "email")
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 61
    assert len(mails_to(inbox, member.email, SIGN_IN_SUBJECT)) == 1
    clock.advance(seconds=61)
    assert (await send(tenant, session_id, "email")).status_code == 202
    second = code_in(inbox, member.email, SIGN_IN_SUBJECT)
    if second != first:  # the old code was replaced (1 in a million they are equal)
        assert (await verify(tenant, session_id, "email", first)).status_code == 401
    assert (await verify(tenant, session_id, "email", second)).status_code == 200


async def test_two_sends_at_once_mail_one_code(tenant, inbox):
    member = await tenant.member("viewer")
    await enroll_email(tenant, member, inbox)
    step = await login(tenant, member)
    answers = await asyncio.gather(*(send(tenant, step["sessionId"], "email") for _ in range(2)))
    assert sorted(r.status_code for r in answers) == [202, 429]
    assert len(mails_to(inbox, member.email, SIGN_IN_SUBJECT)) == 1


async def test_a_refusing_mail_server_is_a_502_without_the_code(
    tenant, services, inbox, smtp_server, canary_code, captured, monkeypatch
):
    member = await tenant.member("viewer")
    await enroll_email(tenant, member, inbox)
    step = await login(tenant, member)
    closed = SmtpMailer("127.0.0.1", free_port(), "kanvaro@localhost", security="none", timeout=2)
    monkeypatch.setattr(services, "mailer", closed)
    r = await send(tenant, step["sessionId"], "email")
    assert r.status_code == 502, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "mail server" in r.json()["detail"] and canary_code not in r.text
    logs = kanvaro_logs(captured)
    assert "mfa_code_not_sent" in logs and canary_code not in logs
    # The failed send took no resend slot: with the mail server back, a code goes out now.
    working = SmtpMailer("127.0.0.1", smtp_server[1], "kanvaro@localhost", security="none")
    monkeypatch.setattr(services, "mailer", working)
    assert (await send(tenant, step["sessionId"], "email")).status_code == 202


async def test_codes_never_reach_logs_audit_or_the_database(
    tenant, services, inbox, canary_code, captured
):
    member = await tenant.member("viewer")
    await enroll_email(tenant, member, inbox)
    step = await login(tenant, member)
    assert (await send(tenant, step["sessionId"], "email")).status_code == 202
    assert (await verify(tenant, step["sessionId"], "email", "000000")).status_code == 401
    r = await verify(tenant, step["sessionId"], "email", canary_code)
    assert r.status_code == 200, r.text
    row = await challenge_row(services, step["sessionId"])
    assert canary_code not in repr(row.__dict__)
    logs = kanvaro_logs(captured)
    assert "mfa_code_sent" in logs and "mfa_failure" in logs  # the capture works
    assert canary_code not in logs
    assert canary_code not in await audit_text(services, tenant.id)
