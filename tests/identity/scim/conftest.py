"""SCIM test helpers: a tenant with a SCIM token, and a client that speaks to /scim/v2 as an
identity provider does (``application/scim+json``, the token as bearer)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.services import Services
from tests.conftest import TenantFixture, unique_email

SCIM = "/scim/v2"
SCIM_JSON = "application/scim+json"
TOKENS = "/api/v1/admin/scim/tokens"
MAPPINGS = "/api/v1/admin/scim/role-mappings"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


@dataclass
class ScimClient:
    """What an IdP holds: the base URL and one tenant's token."""

    client: httpx.AsyncClient
    token: str
    token_id: str
    tenant: TenantFixture

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}", "Content-Type": SCIM_JSON}

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(SCIM + path, headers=self.headers(), params=params or None)

    async def send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        content = None if body is None else json.dumps(body)
        return await self.client.request(
            method, SCIM + path, headers=self.headers(), content=content
        )

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.send("POST", path, body)

    async def patch(self, path: str, operations: list[dict[str, Any]]) -> httpx.Response:
        return await self.send("PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": operations})

    async def put(self, path: str, body: Any) -> httpx.Response:
        return await self.send("PUT", path, body)

    async def delete(self, path: str) -> httpx.Response:
        return await self.send("DELETE", path)


async def new_token(tenant: TenantFixture, name: str = "IdP") -> tuple[str, str]:
    r = await tenant.client.post(TOKENS, headers=tenant.admin.headers, json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["token"], r.json()["id"]


@pytest.fixture
async def scim(tenant: TenantFixture) -> ScimClient:
    token, token_id = await new_token(tenant)
    return ScimClient(tenant.client, token, token_id, tenant)


def user_body(email: str | None = None, **extra: Any) -> dict[str, Any]:
    email = email or unique_email("scim")
    return {
        "schemas": [USER_SCHEMA],
        "userName": email,
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": email, "primary": True, "type": "work"}],
        "active": True,
        **extra,
    }


def assert_scim_error(r: httpx.Response, status: int, scim_type: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(SCIM_JSON), r.headers["content-type"]
    body = r.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body


async def role_of(tenant: TenantFixture, user_id: str) -> str:
    r = await tenant.client.get(f"/api/v1/users/{user_id}", headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()["role"]


async def audit_actions(services: Services, tenant_id: str) -> list[AuditLog]:
    await services.audit.drain()
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as session:
        rows = await session.execute(
            select(AuditLog)
            .where(AuditLog.tenant_id == uuid.UUID(tenant_id))
            .order_by(AuditLog.sequence_number)
        )
        return list(rows.scalars())
