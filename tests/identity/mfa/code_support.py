"""Helpers of the email and SMS code tests (scope M2): a movable clock, a fixed code for the
canary tests, and the enrollment and sign-in calls over HTTP."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.identity.mfa import codes
from kanvaro.identity.mfa.models import MfaChallenge
from kanvaro.services import Services
from tests.identity.sessions.conftest import ShiftedClock

SETUP = "/api/v1/auth/mfa/setup"
VERIFY_SETUP = "/api/v1/auth/mfa/verify-setup"
SEND = "/api/v1/auth/mfa/send"
VERIFY = "/api/v1/auth/mfa/verify"
LOGIN = "/api/v1/auth/login"
CANARY = "917253"  # the code every send makes in the canary tests


@pytest.fixture
def clock(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShiftedClock]:
    shifted = ShiftedClock()
    monkeypatch.setattr(services, "clock", shifted)
    yield shifted


@pytest.fixture
def canary_code(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(codes, "new_code", lambda: CANARY)
    return CANARY


async def login(tenant: Any, member: Any) -> dict[str, Any]:
    r = await tenant.client.post(
        LOGIN, json={"email": member.email, "password": member.password, "tenant": tenant.slug}
    )
    assert r.status_code == 200, r.text
    return r.json()


async def send(tenant: Any, session_id: str, method: str) -> Any:
    return await tenant.client.post(SEND, json={"sessionId": session_id, "method": method})


async def verify(tenant: Any, session_id: str, method: str, code: str) -> Any:
    body = {"sessionId": session_id, "method": method, "code": code}
    return await tenant.client.post(VERIFY, json=body)


async def challenge_row(services: Services, session_id: str) -> MfaChallenge:
    async with services.db.session(all_tenants=True) as db:
        row = await db.get(MfaChallenge, uuid.UUID(session_id))
        assert row is not None
        db.expunge(row)
        return row


async def audit_text(services: Services, tenant_id: str) -> str:
    """Every audit entry of the tenant, as text (for canary searches)."""
    await services.audit.drain()
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as db:
        rows = await db.execute(select(AuditLog).where(AuditLog.tenant_id == uuid.UUID(tenant_id)))
        return "\n".join(
            f"{e.action} {e.changes} {e.resource_id} {e.user_agent}" for e in rows.scalars()
        )


def kanvaro_logs(captured: Any) -> str:
    """The captured log lines but the test SMTP server's own (aiosmtpd logs what it
    receives: the mail, code included, as any relay may)."""
    return "\n".join(line for line in captured.getvalue().splitlines() if '"mail.log"' not in line)


def problem_field(r: Any) -> str | None:
    errors = r.json().get("errors") or [{}]
    return errors[0].get("field")


CODE_LINE = re.compile(r"\b(\d{6})\b")
