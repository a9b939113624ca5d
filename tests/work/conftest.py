"""Fixtures of the work-domain tests: members of any role, projects, audit lookups.

Members are created with the identity service directly (not through POST /api/v1/users), so
these tests depend only on the login route, and they sign in through POST /api/v1/auth/login.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.identity.users import create_user
from kanvaro.security.passwords import PasswordPolicy
from kanvaro.services import Services
from kanvaro.tenancy.models import Role
from tests.conftest import PASSWORD, Member, TenantFixture, unique_email

MakeMember = Callable[..., Awaitable[Member]]


@pytest.fixture
def make_member(services: Services) -> MakeMember:
    async def make(tenant: TenantFixture, role: str) -> Member:
        tenant_id = uuid.UUID(tenant.id)
        email = unique_email(role)
        async with services.db.session(tenant_id=tenant_id) as session:
            role_row = (await session.execute(select(Role).where(Role.name == role))).scalar_one()
            user = await create_user(
                session,
                services.hasher,
                tenant_id=tenant_id,
                email=email,
                first_name="Test",
                last_name="Person",
                role=role_row,
                password=PASSWORD,
                policy=PasswordPolicy(),
            )
        tokens = await tenant.login(email)
        return Member(
            str(user.id),
            email,
            PASSWORD,
            role,
            {"Authorization": f"Bearer {tokens['accessToken']}"},
            tokens,
        )

    return make


async def new_project(tenant: TenantFixture, **fields: Any) -> dict[str, Any]:
    body = {"name": f"Project {uuid.uuid4().hex[:6]}", **fields}
    r = await tenant.client.post("/api/v1/projects", headers=tenant.admin.headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def join(tenant: TenantFixture, project_id: str, member: Member) -> None:
    r = await tenant.client.post(
        f"/api/v1/projects/{project_id}/members",
        headers=tenant.admin.headers,
        json={"userId": member.id},
    )
    assert r.status_code == 201, r.text


async def audit_entries(services: Services, resource_id: str) -> list[AuditLog]:
    async with services.db.session(all_tenants=True) as session:
        rows = await session.execute(
            select(AuditLog)
            .where(AuditLog.resource_id == resource_id)
            .order_by(AuditLog.sequence_number)
        )
        return list(rows.scalars().all())


async def actions_for(services: Services, resource_id: str) -> list[str]:
    return [e.action for e in await audit_entries(services, resource_id)]


async def walk(client: Any, url: str, headers: dict[str, str], **params: Any) -> list[dict]:
    """Every item of a cursor-paginated listing."""
    items: list[dict] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await client.get(url, headers=headers, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["nextCursor"]
        if not cursor:
            return items
