"""Tenant isolation: the ORM scope fails closed, PostgreSQL RLS is a second wall that holds even
when the ORM filter is bypassed, and only a super admin may pick a tenant with X-Tenant-ID."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from kanvaro.bootstrap import bootstrap
from kanvaro.db import MissingTenantContext, TenantScoped
from kanvaro.models import Base, Project
from tests.conftest import PASSWORD, unique_email

on_postgres = pytest.mark.skipif(
    not os.environ.get("KANVARO_TEST_PG_ADMIN_URL"), reason="PostgreSQL only (RLS)"
)


async def _project(tenant, name: str = "Isolated") -> str:
    r = await tenant.client.post(
        "/api/v1/projects", headers=tenant.admin.headers, json={"name": name}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


# --- the ORM scope ---------------------------------------------------------------------------


def test_every_table_with_a_required_tenant_id_is_tenant_scoped():
    unscoped = [
        mapper.local_table.name
        for mapper in Base.registry.mappers
        if "tenant_id" in mapper.local_table.c
        and not mapper.local_table.c.tenant_id.nullable
        and not issubclass(mapper.class_, TenantScoped)
    ]
    assert unscoped == []


@pytest.mark.parametrize(
    "statement",
    [
        lambda: select(Project),
        lambda: select(Project.id, Project.name),
        lambda: update(Project).values(name="Overwritten"),
        lambda: delete(Project),
    ],
    ids=["select-entity", "select-columns", "update", "delete"],
)
async def test_a_query_without_tenant_context_raises(services, tenant, statement):
    await _project(tenant)
    async with services.db.sessionmaker() as session:
        with pytest.raises(MissingTenantContext):
            await session.execute(statement())
        await session.rollback()
    # Nothing was changed by the refused statements.
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        names = (await session.execute(select(Project.name))).scalars().all()
    assert names == ["Isolated"]


async def test_a_tenant_session_sees_only_its_own_rows(services, tenant, other_tenant):
    mine, theirs = await _project(tenant, "Mine"), await _project(other_tenant, "Theirs")
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        ids = {str(i) for i in (await session.execute(select(Project.id))).scalars()}
        assert mine in ids and theirs not in ids
        assert await session.get(Project, uuid.UUID(theirs)) is None
        # A bulk UPDATE is scoped too: the other tenant's row is untouched.
        await session.execute(update(Project).values(description="scoped"))
    async with services.db.session(tenant_id=uuid.UUID(other_tenant.id)) as session:
        row = await session.get(Project, uuid.UUID(theirs))
        assert row is not None and row.description == ""


async def test_writing_a_row_for_another_tenant_raises(services, tenant, other_tenant):
    async with services.db.sessionmaker() as session:
        from kanvaro.db import set_tenant

        set_tenant(session, uuid.UUID(tenant.id))
        session.add(Project(id=uuid.uuid4(), tenant_id=uuid.UUID(other_tenant.id), name="Planted"))
        with pytest.raises(MissingTenantContext):
            await session.flush()
        await session.rollback()
    async with services.db.session(tenant_id=uuid.UUID(other_tenant.id)) as session:
        assert (
            await session.execute(select(Project).where(Project.name == "Planted"))
        ).first() is None


async def test_a_new_row_takes_the_session_tenant_and_unscoped_writes_raise(services, tenant):
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        project = Project(id=uuid.uuid4(), name="Stamped")
        session.add(project)
        await session.flush()
        assert str(project.tenant_id) == tenant.id
    async with services.db.sessionmaker() as session:
        session.add(Project(id=uuid.uuid4(), tenant_id=uuid.UUID(tenant.id), name="No context"))
        with pytest.raises(MissingTenantContext):
            await session.flush()
        await session.rollback()


# --- PostgreSQL row-level security -----------------------------------------------------------


@on_postgres
async def test_every_tenant_owned_table_has_forced_rls(services):
    async with services.db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                           (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
                    FROM pg_class c
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
                      AND (c.relname = 'tenants' OR EXISTS (
                           SELECT 1 FROM pg_attribute a
                           WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                             AND NOT a.attisdropped))
                    """
                )
            )
        ).all()
    tables = {r[0] for r in rows}
    assert {"tenants", "projects", "tasks", "users", "invoices"} <= tables
    weak = sorted(
        f"{name} (enabled={enabled}, forced={forced}, policies={policies})"
        for name, enabled, forced, policies in rows
        if not (enabled and forced and policies)
    )
    assert weak == [], "tables without forced row-level security"


@on_postgres
async def test_the_app_role_cannot_bypass_rls(services):
    async with services.db.engine.connect() as conn:
        role = (
            await conn.execute(
                text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            )
        ).one()
    assert tuple(role) == (False, False), "the suite must connect as a role bound by RLS"


@on_postgres
async def test_raw_sql_under_another_tenant_cannot_read_or_write_our_rows(
    services, tenant, other_tenant
):
    """Bypass the ORM filter completely: plain SQL through the app's engine and role."""
    mine = await _project(tenant, "Behind RLS")
    await _project(other_tenant, "B's own")

    async def as_tenant(conn, tenant_id: str | None) -> None:
        await conn.execute(
            text(
                "SELECT set_config('app.tenant_id', :t, true), set_config('app.all_tenants', 'off', true)"
            ),
            {"t": tenant_id or ""},
        )

    async with services.db.engine.connect() as conn:
        async with conn.begin():
            await as_tenant(conn, other_tenant.id)
            seen = (
                await conn.execute(text("SELECT id FROM projects WHERE id = :id"), {"id": mine})
            ).all()
            assert seen == []
            everything = (
                (await conn.execute(text("SELECT tenant_id FROM projects"))).scalars().all()
            )
            assert {str(t) for t in everything} <= {other_tenant.id}
            changed = await conn.execute(
                text("UPDATE projects SET name = 'Hijacked' WHERE id = :id"), {"id": mine}
            )
            assert changed.rowcount == 0
            deleted = await conn.execute(text("DELETE FROM projects WHERE id = :id"), {"id": mine})
            assert deleted.rowcount == 0

        with pytest.raises(DBAPIError, match="row-level security"):
            async with conn.begin():
                await as_tenant(conn, other_tenant.id)
                await conn.execute(
                    text(
                        "INSERT INTO projects (id, tenant_id, name, description, status, currency, "
                        "version, created_at, updated_at) VALUES (:id, :tenant, 'Planted', '', "
                        "'planning', 'USD', 1, now(), now())"
                    ),
                    {"id": str(uuid.uuid4()), "tenant": tenant.id},
                )

        with pytest.raises(DBAPIError, match="row-level security"):
            async with conn.begin():
                await as_tenant(conn, other_tenant.id)
                # Moving one's own row into another tenant is refused too (WITH CHECK).
                await conn.execute(
                    text("UPDATE projects SET tenant_id = :a WHERE tenant_id = :b"),
                    {"a": tenant.id, "b": other_tenant.id},
                )

        async with conn.begin():
            await as_tenant(conn, None)  # no context at all: nothing, not everything
            assert (await conn.execute(text("SELECT count(*) FROM projects"))).scalar_one() == 0
            assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0

    # And the owner still has the row, unchanged.
    r = await tenant.client.get(f"/api/v1/projects/{mine}", headers=tenant.admin.headers)
    assert r.status_code == 200 and r.json()["name"] == "Behind RLS"


# --- choosing a tenant: X-Tenant-ID ------------------------------------------------------------


@pytest.fixture
async def super_admin(services, client):
    email = unique_email("root")
    await bootstrap(services, tenant_name=None, email=email, password=PASSWORD, super_admin=True)
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['accessToken']}"}


async def test_a_super_admin_narrows_to_a_tenant_with_x_tenant_id(
    client, super_admin, tenant, other_tenant
):
    mine, theirs = await _project(tenant, "Seen by root"), await _project(other_tenant, "Other")
    r = await client.get("/api/v1/projects", headers={**super_admin, "X-Tenant-ID": tenant.id})
    assert r.status_code == 200, r.text
    ids = {p["id"] for p in r.json()["items"]}
    assert mine in ids and theirs not in ids
    r = await client.get(
        f"/api/v1/projects/{theirs}", headers={**super_admin, "X-Tenant-ID": tenant.id}
    )
    assert r.status_code == 404


async def test_a_super_admin_without_x_tenant_id_gets_400_on_tenant_resources(
    client, super_admin, tenant
):
    await _project(tenant)
    for path in ("/api/v1/projects", "/api/v1/tasks"):
        r = await client.get(path, headers=super_admin)
        assert r.status_code == 400, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/api/v1/projects", headers=super_admin, json={"name": "Nowhere"})
    assert r.status_code == 400


async def test_an_unknown_or_malformed_x_tenant_id_is_refused(client, super_admin):
    r = await client.get(
        "/api/v1/projects", headers={**super_admin, "X-Tenant-ID": str(uuid.uuid4())}
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "X-Tenant-ID"
    r = await client.get("/api/v1/projects", headers={**super_admin, "X-Tenant-ID": "acme"})
    assert r.status_code == 400


async def test_a_normal_users_x_tenant_id_is_ignored(client, tenant, other_tenant):
    mine, theirs = await _project(tenant, "A's"), await _project(other_tenant, "B's")
    headers = {**other_tenant.admin.headers, "X-Tenant-ID": tenant.id}
    r = await client.get("/api/v1/projects", headers=headers)
    assert r.status_code == 200
    ids = {p["id"] for p in r.json()["items"]}
    assert theirs in ids and mine not in ids
    assert (await client.get(f"/api/v1/projects/{mine}", headers=headers)).status_code == 404
    r = await client.post("/api/v1/projects", headers=headers, json={"name": "Where?"})
    assert r.status_code == 201
    owner = await client.get(
        f"/api/v1/projects/{r.json()['id']}", headers=other_tenant.admin.headers
    )
    assert owner.status_code == 200


async def test_a_super_admin_reads_its_own_profile_without_a_tenant(client, super_admin):
    r = await client.get("/api/v1/auth/me", headers=super_admin)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "super_admin" and r.json()["tenantId"] is None


async def test_a_named_tenant_narrows_self_checked_routes_too(
    client, super_admin, tenant, other_tenant
):
    # PATCH /users/{id} declares authenticated() and checks inside: narrowing must still hold.
    victim = other_tenant.admin.id
    headers = {**super_admin, "X-Tenant-ID": tenant.id, "If-Match": '"v1"'}
    r = await client.patch(f"/api/v1/users/{victim}", headers=headers, json={"firstName": "Moved"})
    assert r.status_code == 404, r.text
    r = await client.delete(
        f"/api/v1/users/{victim}", headers={**super_admin, "X-Tenant-ID": tenant.id}
    )
    assert r.status_code == 404, r.text
    me = await client.get("/api/v1/auth/me", headers=other_tenant.admin.headers)
    assert me.status_code == 200 and me.json()["firstName"] != "Moved"


async def test_a_super_admin_logout_with_x_tenant_id_ends_his_session(services, client, tenant):
    email = unique_email("root")
    await bootstrap(services, tenant_name=None, email=email, password=PASSWORD, super_admin=True)
    tokens = (
        await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    ).json()
    headers = {"Authorization": f"Bearer {tokens['accessToken']}", "X-Tenant-ID": tenant.id}
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    r = await client.post("/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert r.status_code == 401
