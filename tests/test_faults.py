"""Database faults (issue 7, point 12): an unreachable database answers 503 problem+json with
Retry-After, never 500; the outage is logged once; no acknowledged commit is lost.

The PostgreSQL test starts its own server (initdb in a temporary directory, its own port) and
stops it mid-run; the shared test server is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
import structlog
from sqlalchemy.ext.asyncio import create_async_engine

from kanvaro.app import create_app
from kanvaro.bootstrap import bootstrap
from kanvaro.db import Outage, is_unavailable
from kanvaro.migrate import upgrade
from kanvaro.services import Services
from tests.conftest import PASSWORD, PG_ADMIN_URL, make_settings, unique_email


def _assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) > 0
    body = r.json()
    assert body["type"].endswith("/unavailable") and body["status"] == 503
    assert "unexpected" not in body.get("detail", "").lower()


# ---------------------------------------------------------------------------------------------
# SQLite


async def test_an_unopenable_sqlite_database_answers_503(tmp_path):
    # The database "file" is a directory: SQLite cannot open it ("unable to open database").
    bad = tmp_path / "not-a-file.db"
    bad.mkdir()
    settings = make_settings(tmp_path / "data", f"sqlite+aiosqlite:///{bad}", redis_url=None)
    services = Services.build(settings)
    app = create_app(settings, services=services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            body = {"email": unique_email(), "password": PASSWORD, "tenant": "acme"}
            _assert_unavailable(await c.post("/api/v1/auth/login", json=body))
            assert (await c.get("/readyz")).status_code == 503
    finally:
        await services.db.dispose()


def test_a_locked_sqlite_database_is_recognised(tmp_path):
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            other.execute("SELECT 1 FROM sqlite_master")
        assert is_unavailable(locked.value)
        assert not is_unavailable(sqlite3.OperationalError("no such table: projects"))
        assert not is_unavailable(RuntimeError("boom"))
    finally:
        other.close()
        holder.close()


def test_an_outage_is_logged_once_and_its_end_once():
    outage = Outage()
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            outage.down(ConnectionRefusedError())
        outage.up()
        outage.up()
    events = [e["event"] for e in logs]
    assert events == ["database_unavailable", "database_recovered"]
    assert logs[1]["failed_requests"] == 5


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a server of our own, stopped and started again


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnPostgres:
    def __init__(self, base: Path) -> None:
        bin_dir = _pg_bin()
        assert bin_dir is not None
        self.bin, self.dir, self.port = bin_dir, base / "pg", _free_port()
        if os.geteuid() == 0:  # initdb refuses root: the server runs as "postgres"
            shutil.chown(base, "postgres")

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in cmd)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(self.dir / "log"), "-w", "-o", opts,
                  "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/kanvaro"


@pytest.fixture
def own_postgres(tmp_path):
    if not PG_ADMIN_URL:
        pytest.skip("PostgreSQL runs only (KANVARO_TEST_PG_ADMIN_URL)")
    if _pg_bin() is None:
        pytest.skip("no PostgreSQL binaries")
    # Not under pytest's tmp_path: its parents are private to root, and the server's user
    # must reach its data directory.
    base = Path(tempfile.mkdtemp(prefix="kanvaro-faults-"))
    server = OwnPostgres(base)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()  # may be stopped already
        shutil.rmtree(base, ignore_errors=True)


async def _create_database(server: OwnPostgres) -> str:
    admin = create_async_engine(server.url.replace("/kanvaro", "/postgres"),
                                isolation_level="AUTOCOMMIT")  # fmt: skip
    async with admin.connect() as conn:
        await conn.exec_driver_sql("CREATE ROLE kv_app LOGIN NOSUPERUSER NOBYPASSRLS")
        await conn.exec_driver_sql("CREATE DATABASE kanvaro OWNER kv_app")
    await admin.dispose()
    return server.url.replace("postgres@", "kv_app@")


async def test_postgres_stopped_mid_run_answers_503_and_loses_no_commit(own_postgres, tmp_path):
    url = await _create_database(own_postgres)
    await asyncio.to_thread(upgrade, url)
    settings = make_settings(tmp_path / "data", url, redis_url=None)
    services = Services.build(settings)
    await services.startup()
    app = create_app(settings, services=services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    email = unique_email("admin")
    result = await bootstrap(services, tenant_name=f"T {uuid.uuid4().hex[:6]}", email=email,
                             password=PASSWORD)  # fmt: skip
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            login = await c.post("/api/v1/auth/login", json={
                "email": email, "password": PASSWORD, "tenant": result.tenant_slug})  # fmt: skip
            assert login.status_code == 200, login.text
            h = {"Authorization": f"Bearer {login.json()['accessToken']}"}
            acknowledged = []
            for i in range(3):
                r = await c.post("/api/v1/projects", headers=h, json={"name": f"Before {i}"})
                assert r.status_code == 201, r.text
                acknowledged.append(r.json()["id"])

            own_postgres.stop()
            with structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    _assert_unavailable(await c.get("/api/v1/projects", headers=h))
                    _assert_unavailable(
                        await c.post("/api/v1/projects", headers=h, json={"name": "During"})
                    )
                assert (await c.get("/readyz")).status_code == 503
            events = [e["event"] for e in logs]
            assert events.count("database_unavailable") == 1, events
            assert "unhandled_error" not in events

            own_postgres.start()
            with structlog.testing.capture_logs() as logs:
                first = await c.get("/api/v1/projects", headers=h, params={"limit": 100})
                assert first.status_code == 200, first.text
            assert "database_recovered" in [e["event"] for e in logs]
            names = {p["id"]: p["name"] for p in first.json()["items"]}
            assert set(acknowledged) <= set(names)  # no acknowledged commit lost
            assert "During" not in names.values()  # nothing written while it was down
            r = await c.post("/api/v1/projects", headers=h, json={"name": "After"})
            assert r.status_code == 201, r.text
    finally:
        await services.shutdown()
