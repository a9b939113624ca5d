"""The lean read path (``kanvaro.reads``): compiled once, tenant context never leaks between
uses of a pooled connection, RLS binds it on PostgreSQL."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import bindparam, select, text, update

from kanvaro.db import Database, utcnow
from kanvaro.reads import RLS_KEY, Query, transaction_driver
from kanvaro.services import Services
from kanvaro.work.models import Project
from tests.conftest import TenantFixture

SRC = Path(__file__).resolve().parents[1] / "src" / "kanvaro"


def test_query_compiles_once_per_dialect() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    query = Query(select(Project.id).where(Project.name == bindparam("name")))
    pg = postgresql.asyncpg.dialect()
    sql, names = query.for_dialect(pg)
    assert "$1" in sql and names == ("name",)
    assert query._compiled_for(pg) is query._compiled_for(pg)  # compiled once, then cached
    assert query.for_dialect(sqlite.aiosqlite.dialect())[0] != sql


async def test_reader_needs_a_tenant_or_all_tenants(services: Services) -> None:
    with pytest.raises(ValueError):
        async with services.db.reader():
            pass


def test_only_readers_touch_pooled_connections_outside_the_orm() -> None:
    """A reader leaves its RLS context on the connection (session level); that is safe only
    because every other use of a pooled connection is an ORM transaction, which sets its own
    context at BEGIN. A new ``engine.connect()`` elsewhere would break that rule."""
    allowed = {"reads.py", "health.py", "env.py"}  # health: SELECT 1; env: migrations' engine
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name not in allowed
        and re.search(r"engine\.(connect|begin|raw_connection)\(", p.read_text())
    ]
    assert offenders == []


ALL_PROJECTS = Query(select(Project.id, Project.tenant_id))  # no tenant filter: RLS only
RAW_PROJECTS = text("SELECT id FROM projects")  # no ORM scoping either: RLS only


async def _project(tenant: TenantFixture, name: str) -> str:
    r = await tenant.client.post(
        "/api/v1/projects", headers=tenant.admin.headers, json={"name": name}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_context_follows_the_reader_and_never_the_orm(
    services: Services, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    if services.db.dialect != "postgresql":
        pytest.skip("row-level security is PostgreSQL's")
    mine, theirs = await _project(tenant, "Mine"), await _project(other_tenant, "Theirs")
    a, b = uuid.UUID(tenant.id), uuid.UUID(other_tenant.id)
    # One connection, so every use below reuses the same one.
    db = Database(services.db.url, pool_size=1, max_overflow=0)
    try:
        async with db.reader(tenant_id=a) as reader:
            seen = {str(r["id"]) for r in await reader.rows(ALL_PROJECTS)}
        assert mine in seen and theirs not in seen
        assert {str(r["tenant_id"]) for r in await _rows(db, a)} == {tenant.id}
        # The ORM on the same connection works in its own tenant, whatever the reader left
        # (``with_loader_criteria`` would hide the rows anyway: read unfiltered, RLS only).
        async with db.session(tenant_id=b) as session:
            ids = {str(i) for i in (await session.execute(RAW_PROJECTS)).scalars()}
        assert theirs in ids and mine not in ids
        # The same tenant as the reader's: the ORM relies on the connection's context.
        async with db.session(tenant_id=a) as session:
            ids = {str(i) for i in (await session.execute(RAW_PROJECTS)).scalars()}
        assert mine in ids and theirs not in ids
        # ... and a switch of reader tenant is sent, not assumed.
        assert {str(r["tenant_id"]) for r in await _rows(db, b)} == {other_tenant.id}
        async with db.reader(all_tenants=True) as reader:
            everywhere = {str(r["id"]) for r in await reader.rows(ALL_PROJECTS)}
        assert {mine, theirs} <= everywhere
        assert {str(r["tenant_id"]) for r in await _rows(db, a)} == {tenant.id}
    finally:
        await db.dispose()


async def _rows(db: Database, tenant_id: uuid.UUID) -> list:  # type: ignore[type-arg]
    async with db.reader(tenant_id=tenant_id) as reader:
        return list(await reader.rows(ALL_PROJECTS))


async def test_context_is_remembered_per_connection(services: Services, tenant: TenantFixture):
    if services.db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    db = Database(services.db.url, pool_size=1, max_overflow=0)
    try:
        async with db.reader(tenant_id=uuid.UUID(tenant.id)):
            pass
        pooled = await db.engine.raw_connection()
        try:
            assert pooled.info[RLS_KEY] == (tenant.id, "off")
        finally:
            pooled.close()
    finally:
        await db.dispose()


async def test_driver_statements_stay_in_the_sessions_transaction(
    services: Services, tenant: TenantFixture
) -> None:
    """On a connection that already carries the tenant's context the ORM sends nothing at
    BEGIN, and SQLAlchemy's adapter sends BEGIN only with its own first statement: a write sent
    straight to the driver must still roll back with the session."""
    if services.db.dialect != "postgresql":
        pytest.skip("the driver path is PostgreSQL's")
    mine = uuid.UUID(await _project(tenant, "Before"))
    a = uuid.UUID(tenant.id)
    db = Database(services.db.url, pool_size=1, max_overflow=0)
    try:
        async with db.reader(tenant_id=a):
            pass  # the only connection now carries tenant a's context
        with pytest.raises(RuntimeError):
            async with db.session(tenant_id=a) as session:
                driver = await transaction_driver(session)
                assert driver.is_in_transaction()
                await driver.execute("UPDATE projects SET name = 'After' WHERE id = $1", mine)
                raise RuntimeError("the request fails")
        async with db.reader(tenant_id=a) as reader:
            row = await reader.row(NAME_OF, project_id=mine)
        assert row is not None and row["name"] == "Before"
    finally:
        await db.dispose()


NAME_OF = Query(select(Project.name).where(Project.id == bindparam("project_id")))


async def test_the_pool_is_fixed_and_hands_out_the_warmest_connection(services: Services):
    """Issue 9: an overflow connection was closed on return and reopened under load, and a
    first-in-first-out pool cycled every request through all its connections, each
    preparing every statement again. The default pool keeps its connections (no overflow)
    and hands out the one returned last."""
    if services.db.dialect != "postgresql":
        pytest.skip("SQLite has no pool of server connections")
    db = Database(services.db.url)
    try:
        assert db.engine.pool.size() == 30
        assert db.engine.pool.overflow() == -30  # no connection beyond the kept 30
        first = await db.engine.raw_connection()
        second = await db.engine.raw_connection()
        first_driver, second_driver = first.driver_connection, second.driver_connection
        first.close()
        second.close()  # returned last
        again = await db.engine.raw_connection()
        try:
            assert again.driver_connection is second_driver
            assert again.driver_connection is not first_driver
        finally:
            again.close()
    finally:
        await db.dispose()


FIRST_NAME = Query(select(Project.name).where(Project.id == bindparam("project_id")).limit(1))


async def test_a_value_written_into_a_query_needs_no_parameter(
    services: Services, tenant: TenantFixture
) -> None:
    """``.limit(1)`` is a bind parameter of its own, which the caller does not name: the
    driver path sends its value (the sequencer's queries have such values)."""
    mine = uuid.UUID(await _project(tenant, "Written in"))
    async with services.db.reader(tenant_id=uuid.UUID(tenant.id)) as reader:
        row = await reader.row(FIRST_NAME, project_id=mine)
    assert row is not None and row["name"] == "Written in"


async def test_a_reader_writes_in_a_transaction_of_its_own(
    services: Services, tenant: TenantFixture
) -> None:
    """``Reader.transaction``: what the sequencer's connection uses. An error inside rolls
    back every statement of it."""
    mine = uuid.UUID(await _project(tenant, "Kept"))
    rename = Query(
        update(Project)
        .where(Project.id == bindparam("project_id"))
        .values(name=bindparam("new_name"), updated_at=bindparam("at"))
    )
    a = uuid.UUID(tenant.id)
    now = utcnow()
    with pytest.raises(RuntimeError):
        async with services.db.reader(tenant_id=a) as reader, reader.transaction():
            await reader.execute(rename, project_id=mine, new_name="Lost", at=now)
            raise RuntimeError("the work fails")
    async with services.db.reader(tenant_id=a) as reader:
        assert (await reader.row(NAME_OF, project_id=mine))["name"] == "Kept"
        async with reader.transaction():
            await reader.execute_many(
                rename, [{"project_id": mine, "new_name": "Renamed", "at": now}]
            )
        assert (await reader.row(NAME_OF, project_id=mine))["name"] == "Renamed"


def test_a_column_default_is_never_sent_as_null_on_the_driver_path() -> None:
    """``onupdate=utcnow`` is called by SQLAlchemy, which the driver path bypasses: a caller
    that does not name ``updated_at`` gets an error, not a NULL (or a stale) timestamp."""
    from sqlalchemy.dialects import postgresql

    rename = Query(
        update(Project).where(Project.id == bindparam("project_id")).values(name=bindparam("n"))
    )
    with pytest.raises(KeyError):
        rename.driver_args(postgresql.asyncpg.dialect(), {"project_id": uuid.uuid4(), "n": "x"})
