"""Helpers of the sign-in and account page tests: a member with TOTP enrolled through the API,
the frozen TOTP clock, mails kept in memory, and a scan for secrets on pages."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp

from kanvaro.notify.email import NullMailer

SETUP = "/api/v1/auth/mfa/setup"
VERIFY_SETUP = "/api/v1/auth/mfa/verify-setup"


class StepClock:
    """A fixed instant mid-step that the test moves (``services.clock``)."""

    def __init__(self) -> None:
        step = int(time.time()) // 30
        self.at = datetime.fromtimestamp(step * 30 + 15, UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)

    def code(self, secret: str) -> str:
        return pyotp.TOTP(secret).at(self.at)


def mailbox(services: Any, monkeypatch: Any) -> NullMailer:
    mailer = NullMailer()
    monkeypatch.setattr(services, "mailer", mailer)
    return mailer


def mail_text(mailer: NullMailer, to: str) -> list[str]:
    out = []
    for m in mailer.sent:
        if to in str(m["To"]):
            body = m.get_body(preferencelist=("plain",))
            out.append((body or m).get_content())
    return out


def token_in(text: str) -> str:
    found = re.search(r"#token=([A-Za-z0-9_-]+)", text)
    assert found, "no link in the mail"
    return found.group(1)


async def enroll_totp(tenant: Any, member: Any, clock: StepClock) -> dict[str, Any]:
    """TOTP for ``member`` through the API; the setup answer. The clock moves a step on."""
    r = await tenant.client.post(SETUP, headers=member.headers, json={"method": "totp"})
    assert r.status_code == 200, r.text
    setup = r.json()
    body = {"method": "totp", "code": clock.code(setup["secret"]), "methodId": setup["methodId"]}
    r = await tenant.client.post(VERIFY_SETUP, headers=member.headers, json=body)
    assert r.status_code == 200, r.text
    clock.advance(seconds=30)
    return setup


def assert_no_secret(page: httpx.Response, *secrets: str) -> None:
    for secret in secrets:
        assert secret and secret not in page.text, "a secret is on a page a GET fetches"
