"""Audit fixtures: a throwaway database to tamper with, chains built directly, a super admin.

Tampering bypasses the append-only triggers the way an attacker with database access would:
on SQLite by dropping the triggers around the statement (then restoring them), on PostgreSQL
as the table owner with ``ALTER TABLE ... DISABLE TRIGGER USER`` inside the transaction.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text

from kanvaro.audit import service as audit
from kanvaro.audit.service import AuditContext
from kanvaro.bootstrap import bootstrap
from kanvaro.db import Database
from kanvaro.migrate import upgrade
from kanvaro.migrations import guards
from tests.conftest import (
    PASSWORD,
    PG_ADMIN_URL,
    Member,
    _create_pg_database,
    _drop_pg_database,
    unique_email,
)

REPO = Path(__file__).resolve().parents[2]
KANVARO = str(Path(sys.executable).with_name("kanvaro"))


@dataclass
class Throwaway:
    url: str
    db: Database

    @property
    def dialect(self) -> str:
        return self.db.dialect

    async def tamper(self, *statements: str, **params: Any) -> None:
        """Run writes on audit_logs in one transaction, the append-only triggers out of the way."""
        async with self.db.engine.connect() as conn:
            if self.dialect == "postgresql":
                await conn.execute(text("SELECT set_config('app.all_tenants', 'on', true)"))
                await conn.exec_driver_sql("ALTER TABLE audit_logs DISABLE TRIGGER USER")
            else:
                await conn.run_sync(_drop_sqlite_guards)
            for sql in statements:
                await conn.execute(text(sql), params)
            if self.dialect == "postgresql":
                await conn.exec_driver_sql("ALTER TABLE audit_logs ENABLE TRIGGER USER")
            else:
                await conn.run_sync(_restore_sqlite_guards)
            await conn.commit()

    async def chain(self, entries: int) -> uuid.UUID:
        """A new tenant chain with ``entries`` entries; returns its tenant id."""
        tenant_id = uuid.uuid4()
        for i in range(entries):
            async with self.db.session(tenant_id=tenant_id) as session:
                await audit.record(
                    session,
                    action="test:entry:create",
                    category="system",
                    tenant_id=tenant_id,
                    context=AuditContext(uuid.uuid4(), "198.51.100.4", "pytest"),
                    resource_type="thing",
                    resource_id=i,
                    changes={"n": i, "name": f"entry {i}"},
                )
        return tenant_id


def _drop_sqlite_guards(conn: Any) -> None:
    for op in ("update", "delete"):
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS audit_logs_no_{op}")


def _restore_sqlite_guards(conn: Any) -> None:
    guards._append_only(conn, "audit_logs")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def throwaway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Throwaway]:
    if PG_ADMIN_URL:
        url, name = await _create_pg_database()
    else:
        url, name = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('tamper') / 'a.db'}", None
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    yield Throwaway(url, db)
    await db.dispose()
    if name:
        await _drop_pg_database(name)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def super_admin(services: Any, app: Any) -> Member:
    email = unique_email("root")
    result = await bootstrap(
        services, tenant_name=None, email=email, password=PASSWORD, super_admin=True
    )
    transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        tokens = r.json()
    return Member(
        result.user_id,
        email,
        PASSWORD,
        "super_admin",
        {"Authorization": f"Bearer {tokens['accessToken']}"},
        tokens,
    )


async def run_cli(
    *args: str, data_dir: Path, database_url: str, limit: float = 120
) -> tuple[int, str, str]:
    """Run the real ``kanvaro`` command in a subprocess (its own event loop and settings)."""
    env = {
        **os.environ,
        "KANVARO_DATA_DIR": str(data_dir),
        "KANVARO_DATABASE_URL": database_url,
        "KANVARO_LOG_JSON": "true",
    }
    proc = await asyncio.create_subprocess_exec(
        KANVARO,
        *args,
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()
