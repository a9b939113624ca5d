"""RBAC: the built-in roles carry exactly the seed's sets plus the documented extensions, and
a refusal is a 403 problem+json, an audit entry and a security log event."""

from __future__ import annotations

import uuid

import pytest
import structlog
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.bootstrap import bootstrap
from kanvaro.security.permissions import (
    EXTENSION_PERMISSIONS,
    EXTENSIONS,
    ROLE_PERMISSIONS,
    SEED_ROLE_PERMISSIONS,
    BuiltinRole,
    Permission,
    parse_permissions,
)
from tests.conftest import PASSWORD, unique_email

# Seed 000, `enum Permission` and `ROLE_PERMISSIONS`, copied literally.
SEED_PERMISSION_VALUES = {
    "project:create", "project:read", "project:update", "project:delete", "project:admin",
    "task:create", "task:read", "task:update", "task:delete", "task:assign",
    "team:read", "team:invite", "team:remove", "team:admin",
    "budget:read", "budget:update", "invoice:create", "invoice:read",
    "system:admin", "user:manage", "settings:update",
}  # fmt: skip
SEED_ROLES = {
    "super_admin": SEED_PERMISSION_VALUES,
    "admin": {
        "project:create", "project:read", "project:update", "project:delete",
        "task:create", "task:read", "task:update", "task:delete",
        "team:read", "team:invite", "team:remove",
        "budget:read", "budget:update", "invoice:create", "invoice:read",
        "user:manage", "settings:update",
    },
    "project_manager": {
        "project:create", "project:read", "project:update",
        "task:create", "task:read", "task:update", "task:assign",
        "team:read", "team:invite",
        "budget:read", "budget:update", "invoice:create", "invoice:read",
    },
    "team_member": {"project:read", "task:create", "task:read", "task:update", "team:read"},
    "client": {"project:read", "task:read"},
    "viewer": {"project:read", "task:read", "team:read"},
}  # fmt: skip
# The documented extensions (docs/api.md), for resources the seed names no permission for.
DOCUMENTED_EXTENSIONS = {
    "super_admin": {
        "comment:create", "comment:read", "comment:delete", "time:create", "time:read",
        "time:manage", "role:read", "role:manage", "audit:read", "compliance:read",
        "compliance:manage",
    },
    "admin": {
        "comment:create", "comment:read", "comment:delete", "time:create", "time:read",
        "time:manage", "role:read", "role:manage", "audit:read", "compliance:read",
        "compliance:manage",
    },
    "project_manager": {
        "comment:create", "comment:read", "comment:delete", "time:create", "time:read",
        "time:manage", "role:read",
    },
    "team_member": {"comment:create", "comment:read", "time:create", "time:read"},
    "client": {"comment:create", "comment:read"},
    "viewer": {"comment:read"},
}  # fmt: skip
EXTENSION_RESOURCES = {"comment", "time", "role", "audit", "compliance"}


def values(perms) -> set[str]:
    return {p.value if isinstance(p, Permission) else p for p in perms}


def test_permission_vocabulary_is_the_seeds_plus_extensions():
    assert values(Permission) - values(EXTENSION_PERMISSIONS) == SEED_PERMISSION_VALUES
    # Extensions only where the seed names no permission for the resource.
    seed_resources = {p.split(":")[0] for p in SEED_PERMISSION_VALUES}
    ext_resources = {p.split(":")[0] for p in values(EXTENSION_PERMISSIONS)}
    assert ext_resources == EXTENSION_RESOURCES and not ext_resources & seed_resources


@pytest.mark.parametrize("role", [r.value for r in BuiltinRole])
def test_builtin_role_is_exactly_seed_plus_documented_extensions(role):
    builtin = BuiltinRole(role)
    assert values(SEED_ROLE_PERMISSIONS[builtin]) == SEED_ROLES[role]
    assert values(EXTENSIONS[builtin]) - SEED_PERMISSION_VALUES == DOCUMENTED_EXTENSIONS[role]
    assert values(ROLE_PERMISSIONS[builtin]) == SEED_ROLES[role] | DOCUMENTED_EXTENSIONS[role]


def test_parse_permissions_names_unknown_ones():
    assert parse_permissions(["task:read"]) == {Permission.TASK_READ}
    with pytest.raises(ValueError, match="task:fly"):
        parse_permissions(["task:read", "task:fly"])


@pytest.mark.asyncio
@pytest.mark.parametrize("role", ["admin", "project_manager", "team_member", "client", "viewer"])
async def test_members_receive_exactly_their_roles_permissions(tenant, role):
    m = tenant.admin if role == "admin" else await tenant.member(role)
    me = (await tenant.client.get("/api/v1/auth/me", headers=m.headers)).json()
    assert me["role"] == role
    assert set(me["permissions"]) == SEED_ROLES[role] | DOCUMENTED_EXTENSIONS[role]


@pytest.mark.asyncio
async def test_super_admin_holds_everything(services, client):
    email = unique_email("root")
    await bootstrap(services, tenant_name=None, email=email, password=PASSWORD, super_admin=True)
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    token = r.json()["accessToken"]
    r = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["role"] == "super_admin"
    assert (
        set(me["permissions"]) == SEED_ROLES["super_admin"] | DOCUMENTED_EXTENSIONS["super_admin"]
    )


@pytest.mark.asyncio
async def test_refusal_is_problem_json_audited_and_logged(tenant, services):
    viewer = await tenant.member("viewer")
    with structlog.testing.capture_logs() as logs:
        r = await tenant.client.post(
            "/api/v1/projects", headers=viewer.headers, json={"name": "Nope"}
        )
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 403 and problem["title"] == "Forbidden"
    assert "project:create" in problem["detail"]
    events = [e for e in logs if e["event"] == "permission_denied"]
    assert len(events) == 1
    assert events[0]["user_id"] == viewer.id and events[0]["permission"] == "project:create"
    await services.audit.drain()  # entries are sequenced after commit
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        rows = await session.execute(
            select(AuditLog).where(
                AuditLog.tenant_id == uuid.UUID(tenant.id),
                AuditLog.action == "api:permission:denied",
                AuditLog.actor_id == uuid.UUID(viewer.id),
            )
        )
        entries = list(rows.scalars())
    assert len(entries) == 1
    entry = entries[0]
    assert entry.category == "permissions"
    assert entry.changes == {
        "permission": "project:create",
        "method": "POST",
        "path": "/api/v1/projects",
    }
    # Nothing of the refused request was written.
    listed = await tenant.client.get("/api/v1/projects", headers=tenant.admin.headers)
    assert "Nope" not in [p["name"] for p in listed.json()["items"]]
