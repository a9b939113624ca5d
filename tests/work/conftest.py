"""Fixtures of the work-domain tests: members of any role, projects, audit lookups.

Members come from ``TenantFixture.member`` like everywhere else: created by the tenant admin
through POST /api/v1/users, then signed in through POST /api/v1/auth/login.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.services import Services
from tests.conftest import Member, TenantFixture

MakeMember = Callable[..., Awaitable[Member]]


@pytest.fixture
def make_member() -> MakeMember:
    # One way to create members: TenantFixture.member (tests/conftest.py), through the API.
    async def make(tenant: TenantFixture, role: str) -> Member:
        return await tenant.member(role)

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
    await services.audit.drain()  # entries are sequenced after commit
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
