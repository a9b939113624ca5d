"""Helpers of the MFA policy, enforcement and management tests (scope M4): the policy API,
methods placed straight in the database (these tests are about who must use which method, not
about any one factor), and a stand-in factor for the attempt limits."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from kanvaro.identity.mfa import factors
from kanvaro.identity.mfa.models import MfaMethod
from kanvaro.services import Services

POLICY = "/api/v1/tenant/settings/mfa-policy"
LOGIN = "/api/v1/auth/login"
VERIFY = "/api/v1/auth/mfa/verify"
PASSWORD = "Str0ng!Kanvaro-Pass"
GOOD_CODE = "246810"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def set_mfa_policy(tenant: Any, **changes: Any) -> dict[str, Any]:
    r = await tenant.client.patch(POLICY, headers=tenant.admin.headers, json=changes)
    assert r.status_code == 200, r.text
    return r.json()


async def sign_in(tenant: Any, email: str, **extra: Any) -> Any:
    body = {"email": email, "password": PASSWORD, "tenant": tenant.slug, **extra}
    return await tenant.client.post(LOGIN, json=body)


async def add_method(
    services: Services,
    tenant_id: str,
    user_id: str,
    method_type: str = "totp",
    *,
    name: str | None = None,
    verified: bool = True,
    secret: str | None = None,
) -> str:
    """A method of the user as enrollment would leave it (verified unless told otherwise)."""
    now = services.clock.now()
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as db:
        method = MfaMethod(
            tenant_id=uuid.UUID(tenant_id),
            user_id=uuid.UUID(user_id),
            method_type=method_type,
            device_name=name,
            verified_at=now if verified else None,
        )
        if secret is not None:
            method.secret = secret
        if method_type == "webauthn":
            method.credential_id = uuid.uuid4().bytes
            method.public_key = b"public-key"
        db.add(method)
        await db.flush()
        return str(method.id)


async def method_ids(services: Services, tenant_id: str, user_id: str) -> list[str]:
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as db:
        rows = await db.execute(select(MfaMethod.id).where(MfaMethod.user_id == uuid.UUID(user_id)))
        return [str(i) for i in rows.scalars()]


class StandInFactor:
    """Accepts ``GOOD_CODE`` for the user's verified method of its type, nothing else."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    async def setup(self, ctx: Any, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def confirm(self, ctx: Any, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def verify(
        self,
        services: Any,
        db: Any,
        *,
        challenge: Any,
        user_id: uuid.UUID,
        code: str,
        now: datetime,
    ) -> MfaMethod | None:
        self.calls += 1
        if code != GOOD_CODE:
            return None
        statement = select(MfaMethod).where(
            MfaMethod.user_id == user_id,
            MfaMethod.method_type == self.name,
            MfaMethod.verified_at.is_not(None),
        )
        return (await db.execute(statement)).scalars().first()


@pytest.fixture
def stand_in_totp(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInFactor]:
    """The ``totp`` factor replaced for one test (the real one, if built, comes back)."""
    factors.names()  # the built-in factors register first, so none registers over this one
    stand_in = StandInFactor("totp")
    monkeypatch.setitem(factors._FACTORS, "totp", stand_in)
    yield stand_in
