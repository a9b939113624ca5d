"""Migration 0017: a declared ``verifiedDomains`` entry becomes a pending claim (a fresh token,
verified by DNS later) and joins ``allowedDomains``; the declared column is gone; the partial
unique index lets one tenant at most hold a domain verified; downgrading writes the verified
domains back. SQLite and (with the test services) PostgreSQL."""

from __future__ import annotations

import asyncio
import json
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


async def _all_tenants(conn, db: Database) -> None:
    if db.dialect == "postgresql":
        await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))


async def _tenant(conn, db: Database) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    slug = f"m-{tenant_id.hex[:8]}"
    await conn.execute(
        text(
            "INSERT INTO tenants (id, name, slug, status, settings, created_at, updated_at) "
            "VALUES (:id, :slug, :slug, 'active', '{}', :now, :now)"
        ),
        {"id": _id(db, tenant_id), "slug": slug, "now": NOW},
    )
    return tenant_id


async def _domain(conn, db: Database, tenant_id: uuid.UUID, domain: str, status: str) -> None:
    await conn.execute(
        text(
            "INSERT INTO sso_domains (id, tenant_id, domain, token, status, failures, "
            "created_at, updated_at) VALUES (:id, :tid, :d, 't', :s, 0, :now, :now)"
        ),
        {"id": _id(db, uuid.uuid4()), "tid": _id(db, tenant_id), "d": domain, "s": status,
         "now": NOW},
    )  # fmt: skip


def _json(value: object) -> list[str]:
    return json.loads(value) if isinstance(value, str) else list(value)  # type: ignore[arg-type]


async def test_0017_turns_declared_domains_into_claims(tmp_path) -> None:
    if PG_ADMIN_URL:
        url, name = await _create_pg_database()
    else:
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", None
    config = alembic_config(url)
    db = Database(url)
    try:
        await asyncio.to_thread(command.upgrade, config, "0016")
        async with db.engine.begin() as conn:
            await _all_tenants(conn, db)
            acme = await _tenant(conn, db)
            other = await _tenant(conn, db)
            await conn.execute(
                text(
                    "INSERT INTO sso_policies (id, tenant_id, allowed_domains, verified_domains, "
                    "link_existing_accounts, require_sso, break_glass_user_ids, version, "
                    "created_at, updated_at) VALUES (:id, :tid, :allowed, :verified, :f, :f, "
                    "'[]', 1, :now, :now)"
                ),
                {
                    "id": _id(db, uuid.uuid4()),
                    "tid": _id(db, acme),
                    "allowed": json.dumps(["corp.example"]),
                    "verified": json.dumps(["acme.example", "bücher.example"]),
                    "f": False,
                    "now": NOW,
                },
            )
        await asyncio.to_thread(command.upgrade, config, "0017")
        async with db.engine.begin() as conn:
            await _all_tenants(conn, db)
            allowed = (
                await conn.execute(text("SELECT allowed_domains FROM sso_policies"))
            ).scalar_one()
            assert sorted(_json(allowed)) == ["acme.example", "bücher.example", "corp.example"]
            claims = (
                await conn.execute(
                    text("SELECT domain, status, token FROM sso_domains ORDER BY domain")
                )
            ).all()
            assert [(c.domain, c.status) for c in claims] == [
                ("acme.example", "pending"),
                ("xn--bcher-kva.example", "pending"),
            ]
            assert len({c.token for c in claims}) == 2 and all(len(c.token) >= 32 for c in claims)
            columns = (
                await conn.execute(
                    text("SELECT * FROM sso_policies WHERE 1 = 0")  # the column names only
                )
            ).keys()
            assert "verified_domains" not in set(columns)
            await conn.execute(text("UPDATE sso_domains SET status = 'verified'"))
            await _domain(conn, db, other, "acme.example", "pending")  # a claim is fine
        with pytest.raises(IntegrityError):
            async with db.engine.begin() as conn:
                await _all_tenants(conn, db)
                await conn.execute(
                    text("UPDATE sso_domains SET status = 'verified' WHERE tenant_id = :t"),
                    {"t": _id(db, other)},
                )
        if db.dialect == "postgresql":
            async with db.engine.connect() as conn:
                forced = (
                    await conn.execute(
                        text(
                            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class "
                            "WHERE relname = 'sso_domains'"
                        )
                    )
                ).scalar_one()
                assert forced is True
        await asyncio.to_thread(command.downgrade, config, "0016")
        async with db.engine.begin() as conn:
            await _all_tenants(conn, db)
            verified = (
                await conn.execute(text("SELECT verified_domains FROM sso_policies"))
            ).scalar_one()
            assert sorted(_json(verified)) == ["acme.example", "xn--bcher-kva.example"]
    finally:
        await db.dispose()
        if name:
            await _drop_pg_database(name)
