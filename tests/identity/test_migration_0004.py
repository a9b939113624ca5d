"""Migration 0004 (accounts per tenant) keeps existing people and sessions, lets one address
belong to several tenants, still refuses a duplicate inside one tenant, and leaves row-level
security on ``users`` as it was."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from kanvaro.db import Database
from kanvaro.migrate import alembic_config
from tests.conftest import PG_ADMIN_URL, _create_pg_database, _drop_pg_database

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _id(db: Database, value: uuid.UUID) -> str:
    return str(value) if db.dialect == "postgresql" else value.hex


async def _insert_user(conn, db: Database, user_id: uuid.UUID, tenant_id, email: str) -> None:
    await conn.execute(
        text(
            "INSERT INTO users (id, tenant_id, email, first_name, last_name, is_super_admin, "
            "is_active, version, created_at, updated_at) VALUES (:id, :tid, :email, 'A', 'B', "
            ":sa, :active, 1, :now, :now)"
        ),
        {
            "id": _id(db, user_id),
            "tid": _id(db, tenant_id) if tenant_id else None,
            "email": email,
            "sa": tenant_id is None,
            "active": True,
            "now": NOW,
        },
    )


async def _tenant(conn, db: Database, slug: str) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    await conn.execute(
        text(
            "INSERT INTO tenants (id, name, slug, status, settings, created_at, updated_at) "
            "VALUES (:id, :slug, :slug, 'active', '{}', :now, :now)"
        ),
        {"id": _id(db, tenant_id), "slug": slug, "now": NOW},
    )
    return tenant_id


async def _all_tenants(conn, db: Database) -> None:
    if db.dialect == "postgresql":
        await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))


async def test_0004_keeps_rows_and_scopes_uniqueness_to_the_tenant(tmp_path):
    if PG_ADMIN_URL:
        url, name = await _create_pg_database()
    else:
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", None
    config = alembic_config(url)
    db = Database(url)
    try:
        await asyncio.to_thread(command.upgrade, config, "0003")
        alice = uuid.uuid4()
        async with db.engine.begin() as conn:
            await _all_tenants(conn, db)
            acme = await _tenant(conn, db, "acme")
            globex = await _tenant(conn, db, "globex")
            await _insert_user(conn, db, alice, acme, "alice@corp.example")
            await conn.execute(
                text(
                    "INSERT INTO user_sessions (id, tenant_id, user_id, device_id, device_info, "
                    "auth_methods, last_activity_at, expires_at, is_active, created_at, "
                    "updated_at) VALUES (:id, :tid, :uid, 'd', '{}', '[]', :now, :now, :t, "
                    ":now, :now)"
                ),
                {
                    "id": _id(db, uuid.uuid4()),
                    "tid": _id(db, acme),
                    "uid": _id(db, alice),
                    "now": NOW,
                    "t": True,
                },
            )
        # Before: the address is taken across the instance.
        with pytest.raises(IntegrityError):
            async with db.engine.begin() as conn:
                await _all_tenants(conn, db)
                await _insert_user(conn, db, uuid.uuid4(), globex, "alice@corp.example")

        await asyncio.to_thread(command.upgrade, config, "head")

        async with db.engine.begin() as conn:
            await _all_tenants(conn, db)
            users = (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one()
            sessions = (await conn.execute(text("SELECT count(*) FROM user_sessions"))).scalar_one()
            assert (users, sessions) == (1, 1)
            await _insert_user(conn, db, uuid.uuid4(), globex, "alice@corp.example")
            await _insert_user(conn, db, uuid.uuid4(), None, "alice@corp.example")
        for tenant_id in (acme, None):  # same tenant again, and a second super admin
            with pytest.raises(IntegrityError):
                async with db.engine.begin() as conn:
                    await _all_tenants(conn, db)
                    await _insert_user(conn, db, uuid.uuid4(), tenant_id, "alice@corp.example")
        if db.dialect == "postgresql":
            async with db.engine.connect() as conn:
                forced = (
                    await conn.execute(
                        text(
                            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class "
                            "WHERE relname = 'users'"
                        )
                    )
                ).scalar_one()
                assert forced is True
    finally:
        await db.dispose()
        if name:
            await _drop_pg_database(name)
