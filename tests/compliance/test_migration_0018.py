"""Migration 0018: reports stored before it are finished (their progress all done, nothing to
claim); a new row starts at zero; downgrading drops the columns again. SQLite and (with the
test services) PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

from alembic import command
from sqlalchemy import inspect, text

from kanvaro.db import Database
from kanvaro.migrate import alembic_config
from tests.conftest import PG_ADMIN_URL, _create_pg_database, _drop_pg_database

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _id(db: Database, value: uuid.UUID) -> str:
    return str(value) if db.dialect == "postgresql" else value.hex


async def _report(conn, db: Database, tenant_id: uuid.UUID, status: str) -> uuid.UUID:
    report_id = uuid.uuid4()
    await conn.execute(
        text(
            "INSERT INTO compliance_reports (id, tenant_id, report_type, period_start, "
            "period_end, status, created_at) VALUES (:id, :tid, 'sox', :d, :d, :s, :now)"
        ),
        {"id": _id(db, report_id), "tid": _id(db, tenant_id), "d": date(2026, 1, 1),
         "s": status, "now": NOW},
    )  # fmt: skip
    return report_id


async def test_0018_marks_stored_reports_finished(tmp_path) -> None:
    if PG_ADMIN_URL:
        url, name = await _create_pg_database()
    else:
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", None
    config = alembic_config(url)
    db = Database(url)
    try:
        await asyncio.to_thread(command.upgrade, config, "0017")
        tenant_id = uuid.uuid4()
        async with db.engine.begin() as conn:
            if db.dialect == "postgresql":
                await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))
            await conn.execute(
                text(
                    "INSERT INTO tenants (id, name, slug, status, settings, created_at, "
                    "updated_at) VALUES (:id, 'm', :slug, 'active', '{}', :now, :now)"
                ),
                {"id": _id(db, tenant_id), "slug": f"m-{tenant_id.hex[:8]}", "now": NOW},
            )
            done = await _report(conn, db, tenant_id, "completed")
            failed = await _report(conn, db, tenant_id, "failed")
        await asyncio.to_thread(command.upgrade, config, "0018")
        async with db.engine.begin() as conn:
            if db.dialect == "postgresql":
                await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))
            rows = {
                row.id: row
                for row in (
                    await conn.execute(
                        text(
                            "SELECT id, progress_done, progress_total, progress_step, attempts, "
                            "claim_token FROM compliance_reports"
                        )
                    )
                ).all()
            }
            fresh = await _report(conn, db, tenant_id, "pending")
            (new,) = (
                await conn.execute(
                    text("SELECT progress_done, progress_total, attempts FROM compliance_reports "
                         "WHERE id = :id"),
                    {"id": _id(db, fresh)},
                )
            ).all()  # fmt: skip
        by_id = {str(k).replace("-", ""): v for k, v in rows.items()}
        for report_id, step in ((done, "completed"), (failed, "failed")):
            row = by_id[report_id.hex]
            assert (row.progress_done, row.progress_total, row.progress_step) == (3, 3, step)
            assert row.attempts == 0 and row.claim_token is None
        assert tuple(new) == (0, 0, 0)
        await asyncio.to_thread(command.downgrade, config, "0017")
        async with db.engine.connect() as conn:
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("compliance_reports")}
            )
        assert "progress_done" not in columns and "claim_token" not in columns
    finally:
        await db.dispose()
        if name:
            await _drop_pg_database(name)
