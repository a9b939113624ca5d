"""The two-role PostgreSQL set-up of docs/deployment.md: an owner role runs the migrations,
the server runs as an application role that owns nothing and holds only row privileges (given
by default privileges, so tables of later migrations are covered too). The server works as
that role, and that role cannot switch row-level security off, which the owner could.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import PG_ADMIN_URL
from tests.serving import Serve, clean_env, run_cli

pytestmark = pytest.mark.skipif(not PG_ADMIN_URL, reason="needs PostgreSQL (KANVARO_TEST_*)")

PASSWORD = "Role!Split-Pass-2024"


async def _sql(url: str, *statements: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def roles() -> Iterator[tuple[str, str]]:
    """(owner URL, application URL) of a fresh database."""
    suffix = secrets.token_hex(4)
    owner, app, database = f"kv_owner_{suffix}", f"kv_app_{suffix}", f"kv_roles_{suffix}"
    owner_pw, app_pw = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    admin = make_url(PG_ADMIN_URL)
    asyncio.run(
        _sql(
            PG_ADMIN_URL,
            f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{owner_pw}'",
            f"CREATE ROLE {app} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{app_pw}'",
            f"CREATE DATABASE {database} OWNER {owner}",
        )
    )
    owner_url = admin.set(database=database, username=owner, password=owner_pw)
    app_url = admin.set(database=database, username=app, password=app_pw)
    try:
        yield (
            owner_url.render_as_string(hide_password=False),
            app_url.render_as_string(hide_password=False),
        )
    finally:
        asyncio.run(
            _sql(
                PG_ADMIN_URL,
                f"DROP DATABASE IF EXISTS {database} WITH (FORCE)",
                f"DROP ROLE IF EXISTS {app}",
                f"DROP ROLE IF EXISTS {owner}",
            )
        )


def test_the_server_runs_as_a_role_that_owns_nothing(roles, tmp_path):
    owner_url, app_url = roles
    app_role = make_url(app_url).username
    # What docs/deployment.md tells the admin to run as the owner, before the first migration.
    asyncio.run(
        _sql(
            owner_url,
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            f"GRANT USAGE ON SCHEMA public TO {app_role}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app_role}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {app_role}",
        )
    )
    env = clean_env(
        KANVARO_ENV="production",
        KANVARO_MASTER_KEY=secrets.token_urlsafe(48),
        KANVARO_DATA_DIR=str(tmp_path / "data"),
        KANVARO_PUBLIC_URL="https://kanvaro.test",
        KANVARO_WORKERS="1",
    )
    migrated = run_cli(["migrate"], {**env, "KANVARO_DATABASE_URL": owner_url})
    assert migrated.returncode == 0, migrated.stderr
    # The audit log's history is append-only for the server: not even a grant to change it.
    asyncio.run(
        _sql(
            owner_url,
            "REVOKE UPDATE, DELETE, TRUNCATE ON audit_logs, audit_checkpoints, "
            f"audit_checkpoint_cosignatures FROM {app_role}",
        )
    )
    env["KANVARO_DATABASE_URL"] = app_url
    boot = run_cli(
        ["bootstrap", "--tenant", "Roles", "--email", "admin@roles.example"],
        {**env, "KANVARO_BOOTSTRAP_PASSWORD": PASSWORD},
    )
    assert boot.returncode == 0, boot.stderr
    server = Serve([], env, tmp_path / "serve.log")
    try:
        server.wait_ready()
        r = httpx.post(
            f"{server.url}/api/v1/auth/login",
            json={"email": "admin@roles.example", "password": PASSWORD},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['accessToken']}"}
        created = httpx.post(
            f"{server.url}/api/v1/projects", headers=auth, json={"name": "Split"}, timeout=30
        )
        assert created.status_code == 201, created.text
    finally:
        assert server.stop() in (0, -15)
    verified = run_cli(["audit", "verify"], env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "BROKEN" not in verified.stdout

    with pytest.raises(DBAPIError, match="must be owner"):
        asyncio.run(_sql(app_url, "ALTER TABLE projects NO FORCE ROW LEVEL SECURITY"))
    with pytest.raises(DBAPIError, match="permission denied"):
        asyncio.run(_sql(app_url, "UPDATE audit_logs SET action = action"))
