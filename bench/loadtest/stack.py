"""The processes of a run: databases on the bench's own PostgreSQL, and the three servers.

PostgreSQL and Redis are started by ``bench/run`` (``scripts/test-services``) and reached
through ``KANVARO_TEST_PG_ADMIN_URL``/``KANVARO_TEST_REDIS_URL``. Every server is pinned to
``SERVER_CORE`` with ``taskset``; this process and wrk run on the other core.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SERVER_CORE = 0
CLIENT_CORE = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Databases:
    """Kanvaro's database owned by a role RLS binds; Django's auth tables in their own."""

    host: str
    port: int
    superuser: str
    app_role: str
    app_password: str
    kanvaro_db: str = "kanvaro_bench"
    django_db: str = "bench_django"
    server_version: str = ""

    @property
    def kanvaro_url(self) -> str:
        """As the app connects: NOSUPERUSER NOBYPASSRLS, so row-level security binds it."""
        return (
            f"postgresql+asyncpg://{self.app_role}:{self.app_password}"
            f"@{self.host}:{self.port}/{self.kanvaro_db}"
        )

    @property
    def bare_url(self) -> str:
        """The baselines connect as the superuser, whom row-level security does not bind."""
        return f"postgresql+asyncpg://{self.superuser}@{self.host}:{self.port}/{self.kanvaro_db}"


async def create_databases(admin_url: str) -> Databases:
    url = make_url(admin_url)
    dbs = Databases(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        superuser=url.username or "postgres",
        app_role="kv_bench_app",
        app_password=secrets.token_urlsafe(16),
    )
    conn = await asyncpg.connect(
        host=dbs.host, port=dbs.port, user=dbs.superuser, database=url.database or "postgres"
    )
    try:
        # The same role the test suite makes (tests/conftest.py): it owns the tables and is
        # bound by their FORCEd row-level security policies.
        await conn.execute(
            f"CREATE ROLE {dbs.app_role} LOGIN NOSUPERUSER NOBYPASSRLS "
            f"PASSWORD '{dbs.app_password}'"
        )
        await conn.execute(f"CREATE DATABASE {dbs.kanvaro_db} OWNER {dbs.app_role}")
        await conn.execute(f"CREATE DATABASE {dbs.django_db}")
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return dataclasses.replace(dbs, server_version=str(version))


def write_secret(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    return path


def kanvaro_env(state: Path, dbs: Databases, redis_url: str) -> dict[str, str]:
    """Production settings; the master key is generated into a file, as a deployment mounts it."""
    return {
        "KANVARO_ENV": "production",
        "KANVARO_DATA_DIR": str(state / "kanvaro"),
        "KANVARO_MASTER_KEY_FILE": str(
            write_secret(state / "secrets" / "master_key", secrets.token_urlsafe(48))
        ),
        "KANVARO_DATABASE_URL": dbs.kanvaro_url,
        "KANVARO_REDIS_URL": redis_url,
        "KANVARO_LOG_LEVEL": "INFO",  # Kanvaro's access log (kanvaro.access) is on at INFO
        "KANVARO_WORKERS": "1",  # one process on its one core, like each baseline
        # The changes from the defaults: the run signs in a few hundred times from one
        # address (refresh chains, sign-in timing), and sends tens of thousands of requests a
        # minute with one user's token from one address. The rate limiter stays on and counts
        # every request (in Redis, as deployed); only its limits are out of the load's reach.
        "KANVARO_LOGIN_MAX_FAILURES_PER_IP": "1000000",
        # The refresh load sends hundreds of refreshes a second from one address; the
        # per-address refresh throttle (300 a minute by default) would answer most with 429.
        "KANVARO_REFRESH_PER_CLIENT_PER_MINUTE": "100000000",
        "KANVARO_RATE_LIMIT_PER_IP_PER_MINUTE": "100000000",
        "KANVARO_RATE_LIMIT_PER_USER_PER_MINUTE": "100000000",
        "KANVARO_RATE_LIMIT_PER_USER_PER_HOUR": "1000000000",
    }


def kanvaro_cli(args: list[str], env: dict[str, str], **extra: str) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "kanvaro"), *args],
        env={**os.environ, **env, **extra},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kanvaro {args[0]} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self.process.pid

    def start(self) -> None:
        self._log_file = self.log.open("ab")
        self.process = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CORE), *self.argv],
            env={**os.environ, **self.env},
            cwd=REPO,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, path: str, headers: dict[str, str] | None = None) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}; see {self.log}")
            try:
                r = httpx.get(self.base_url + path, headers=headers, timeout=2)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after 60 s; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_file is not None:
            self._log_file.close()


def kanvaro_server(state: Path, env: dict[str, str]) -> Server:
    port = free_port()
    argv = [str(VENV_BIN / "kanvaro"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    return Server("kanvaro", argv, env, port, state / "kanvaro.log")


def kanvaro_pool() -> tuple[int, int]:
    """Kanvaro's pool per process (its settings' defaults; the run sets neither variable)."""
    from kanvaro.config import Settings

    settings = Settings()
    # Older settings had no pool fields: create_engine then used 10 + 20.
    return getattr(settings, "db_pool_size", 10), getattr(settings, "db_max_overflow", 20)


def bare_server(state: Path, dbs: Databases) -> Server:
    port = free_port()
    pool_size, max_overflow = kanvaro_pool()
    argv = [
        sys.executable,
        "-m",
        "bench.baselines.bare_orm",
        "--port",
        str(port),
        "--pool-size",
        str(pool_size),
        "--max-overflow",
        str(max_overflow),
    ]
    env = {"BENCH_BARE_DATABASE_URL": dbs.bare_url}
    return Server("bare", argv, env, port, state / "bare.log")


def drf_env(dbs: Databases) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "bench.baselines.drf.settings",
        "BENCH_PG_HOST": dbs.host,
        "BENCH_PG_PORT": str(dbs.port),
        "BENCH_PG_USER": dbs.superuser,
        "BENCH_DRF_AUTH_DATABASE": dbs.django_db,
        "BENCH_DRF_TASK_DATABASE": dbs.kanvaro_db,
        "BENCH_DRF_SECRET_KEY": secrets.token_urlsafe(48),
    }


def drf_prepare(env: dict[str, str]) -> str:
    """Django's migrate on its own database, one user; returns a SimpleJWT access token."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.baselines.drf.prepare"],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"DRF prepare failed: {done.stderr.strip()[-2000:]}")
    return str(json.loads(done.stdout.strip().splitlines()[-1])["accessToken"])


def drf_server(state: Path, env: dict[str, str]) -> Server:
    port = free_port()
    argv = [
        str(VENV_BIN / "gunicorn"),
        "--workers",
        "1",
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(REPO),
        "--no-control-socket",  # else gunicorn 27 puts a socket in ~/.gunicorn
        "bench.baselines.drf.wsgi:application",
    ]
    return Server("drf", argv, env, port, state / "drf.log")
