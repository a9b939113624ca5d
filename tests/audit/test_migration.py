"""Migration 0002 goes down and up again on SQLite and PostgreSQL, keeping the audit guards."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from kanvaro.db import Database
from kanvaro.migrate import alembic_config
from tests.conftest import PG_ADMIN_URL, _create_pg_database, _drop_pg_database


async def _columns(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda c: {col["name"] for col in inspect(c).get_columns("audit_logs")}
        )


async def test_0002_down_and_up(tmp_path):
    if PG_ADMIN_URL:
        url, name = await _create_pg_database()
    else:
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", None
    config = alembic_config(url)
    db = Database(url)
    try:
        await asyncio.to_thread(command.upgrade, config, "0002")
        assert {"content_salt", "content_digest"} <= await _columns(db)
        await asyncio.to_thread(command.downgrade, config, "0001")
        assert not {"content_salt", "content_digest"} & await _columns(db)
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert "audit_checkpoints" not in tables and "audit_signing_keys" not in tables
        await asyncio.to_thread(command.upgrade, config, "0002")
        assert {"content_salt", "content_digest"} <= await _columns(db)
        # the append-only triggers of audit_logs survived the column changes
        async with db.engine.connect() as conn:
            if db.dialect == "postgresql":
                await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))
            await conn.execute(
                text(
                    "INSERT INTO audit_logs (id, chain_id, sequence_number, action, changes, "
                    "category, created_at, previous_hash, record_hash) VALUES ("
                    "'0f0e0d0c0b0a09080706050403020100', 'instance', 1, 'a:b:c', '{}', "
                    "'system', CURRENT_TIMESTAMP, :h, :h)"
                ),
                {"h": "0" * 64},
            )
            with pytest.raises(DBAPIError, match="append-only"):
                await conn.execute(text("DELETE FROM audit_logs"))
    finally:
        await db.dispose()
        if name:
            await _drop_pg_database(name)
