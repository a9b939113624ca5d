"""The ``kanvaro`` command: help everywhere, migrate, bootstrap, production refusals, and a real
first run of ``kanvaro serve`` over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import typer
from typer.testing import CliRunner

from kanvaro.app import create_app
from kanvaro.cli import app as cli
from kanvaro.config import Settings
from kanvaro.services import Services

PASSWORD = "Bootstrap!Pass-2024x"
STRONG_KEY = "k3y-" + "a1B2c3D4" * 6
KANVARO = Path(sys.executable).with_name("kanvaro")

runner = CliRunner()


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A clean KANVARO_* environment: nothing leaks in from the shell running the tests."""
    env = {k: None for k in os.environ if k.startswith("KANVARO_")}  # type: ignore[misc]
    env.update({"KANVARO_DATA_DIR": str(data_dir), "KANVARO_LOG_JSON": "false", **extra})
    return env  # type: ignore[return-value]


def _invoke(args: list[str], env: dict[str, str], **kw: Any):
    return runner.invoke(cli, args, env=env, catch_exceptions=False, **kw)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in group.commands.items():
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out += _commands(command, (*prefix, name))
    return out


COMMANDS = _commands(typer.main.get_command(cli))  # type: ignore[arg-type]


# --- help ------------------------------------------------------------------------------------


def test_the_contract_commands_exist():
    assert {("serve",), ("migrate",), ("bootstrap",)} <= set(COMMANDS)


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "kanvaro")
def test_every_command_has_help(command, tmp_path):
    result = _invoke([*command, "--help"], _env(tmp_path))
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert not (tmp_path / "kanvaro.db").exists(), "--help must not touch the database"


def test_bootstrap_help_names_its_options(tmp_path):
    out = _invoke(["bootstrap", "--help"], _env(tmp_path)).output
    for option in ("--tenant", "--email", "--super-admin"):
        assert option in out


# --- migrate and bootstrap ---------------------------------------------------------------------


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_migrate_on_a_fresh_data_dir_creates_the_schema_and_is_idempotent(tmp_path):
    data = tmp_path / "fresh"
    result = _invoke(["migrate"], _env(data))
    assert result.exit_code == 0, result.output
    assert {"tenants", "users", "projects", "alembic_version"} <= _tables(data / "kanvaro.db")
    assert _invoke(["migrate"], _env(data)).exit_code == 0


def _can_log_in(
    data_dir: Path,
    email: str,
    password: str,
    database_url: str | None = None,
    tenant: str | None = None,
):
    """Sign in through the app on the data the CLI wrote; returns /auth/me or None."""
    return asyncio.run(_log_in(data_dir, email, password, database_url, tenant))


def _slug(output: str) -> str:
    return output.split("created tenant ", 1)[1].split()[0]


async def _log_in(
    data_dir: Path, email: str, password: str, database_url: str | None, tenant: str | None
):
    settings = Settings(data_dir=data_dir, database_url=database_url).prepare()
    services = Services.build(settings)
    await services.startup()
    try:
        transport = httpx.ASGITransport(app=create_app(settings, services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = {"email": email, "password": password}
            if tenant:  # several tenants: sign-in names the tenant
                body["tenant"] = tenant
            r = await client.post("/api/v1/auth/login", json=body)
            if r.status_code != 200:
                return None
            me = await client.get(
                "/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json()['accessToken']}"}
            )
            return me.json()
    finally:
        await services.shutdown()


@pytest.fixture(params=["sqlite-data-dir", "suite-database"])
def target(request, tmp_path, data_dir, database_url) -> tuple[Path, dict[str, str], str | None]:
    """A fresh SQLite data dir, and the suite's own database (PostgreSQL when configured) with
    the suite's data dir (its master key seals the signing keys already in that database)."""
    if request.param == "sqlite-data-dir":
        data = tmp_path / "data"
        return data, _env(data), None
    return data_dir, _env(data_dir, KANVARO_DATABASE_URL=database_url), database_url


async def test_bootstrap_creates_a_tenant_and_an_admin_who_can_log_in(target):
    # Off the event loop: the suite's shared app keeps running its background work (activity
    # writes, the audit sequencer) while the command writes, instead of sitting paused inside
    # a transaction that holds the lock the command needs (SQLite "database is locked",
    # PostgreSQL a hang).
    await asyncio.to_thread(_bootstrap_two_tenants, target)


def _bootstrap_two_tenants(target):
    data, env, url = target
    acme, globex = f"Acme {uuid.uuid4().hex[:6]}", f"Globex {uuid.uuid4().hex[:6]}"
    first, second = f"a-{uuid.uuid4().hex[:6]}@x.example", f"b-{uuid.uuid4().hex[:6]}@x.example"
    env = {**env, "KANVARO_BOOTSTRAP_PASSWORD": PASSWORD}

    result = _invoke(["bootstrap", "--tenant", acme, "--email", first], env)
    assert result.exit_code == 0, result.output
    assert "created tenant" in result.output and first in result.output
    assert PASSWORD not in result.output
    me = _can_log_in(data, first, PASSWORD, url, _slug(result.output))
    assert me and me["role"] == "admin" and me["tenantId"]

    # Again with another tenant name: a second tenant, its own admin.
    result = _invoke(["bootstrap", "--tenant", globex, "--email", second], env)
    assert result.exit_code == 0, result.output
    other = _can_log_in(data, second, PASSWORD, url, _slug(result.output))
    assert other and other["role"] == "admin" and other["tenantId"] != me["tenantId"]

    # Accounts belong to their tenant (issue 7 point 1): the same email may be the admin of
    # a third tenant, as a separate account.
    result = _invoke(
        ["bootstrap", "--tenant", f"Third {uuid.uuid4().hex[:6]}", "--email", first], env
    )
    assert result.exit_code == 0, result.output


async def test_bootstrap_super_admin(target):
    await asyncio.to_thread(_bootstrap_super_admin, target)  # off the loop: see above


def _bootstrap_super_admin(target):
    data, env, url = target
    email = f"root-{uuid.uuid4().hex[:6]}@x.example"
    env = {**env, "KANVARO_BOOTSTRAP_PASSWORD": PASSWORD}
    result = _invoke(["bootstrap", "--super-admin", "--email", email], env)
    assert result.exit_code == 0, result.output
    assert "super admin" in result.output
    me = _can_log_in(data, email, PASSWORD, url)
    assert me and me["role"] == "super_admin" and me["tenantId"] is None


def test_bootstrap_refuses_a_weak_password_naming_the_password(tmp_path):
    env = _env(tmp_path, KANVARO_BOOTSTRAP_PASSWORD="password123")
    result = _invoke(["bootstrap", "--tenant", "Weak", "--email", "w@x.example"], env)
    assert result.exit_code == 1
    assert "password" in result.output.lower()
    assert "password123" not in result.output
    with sqlite3.connect(tmp_path / "kanvaro.db") as conn:  # nothing half-made
        assert conn.execute("SELECT count(*) FROM tenants").fetchone()[0] == 0


def test_bootstrap_prompts_for_the_password_when_not_in_the_environment(tmp_path):
    result = _invoke(
        ["bootstrap", "--tenant", "Prompted", "--email", "p@x.example"],
        _env(tmp_path),
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output


def test_bootstrap_needs_a_tenant_or_super_admin(tmp_path):
    result = _invoke(["bootstrap", "--email", "x@x.example"], _env(tmp_path))
    assert result.exit_code == 2 and "--tenant" in result.output


# --- production refuses unsafe secrets ---------------------------------------------------------


def _production(tmp_path: Path, **extra: str) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}"
    return _env(tmp_path / "data", KANVARO_ENV="production", KANVARO_DATABASE_URL=url, **extra)


@pytest.mark.parametrize("command", [["migrate"], ["serve", "--port", "1"]])
def test_production_refuses_to_start_without_the_master_key(tmp_path, command):
    result = _invoke(command, _production(tmp_path))
    assert result.exit_code == 2
    assert "KANVARO_MASTER_KEY" in result.output
    assert not (tmp_path / "data" / "secrets").exists(), "production never generates secrets"


@pytest.mark.parametrize("value", ["changeme", "CHANGEME", "secret", "   ", "short-but-real-7f3a"])
def test_production_refuses_a_placeholder_or_short_key_without_printing_it(tmp_path, value):
    result = _invoke(["migrate"], _production(tmp_path, KANVARO_MASTER_KEY=value))
    assert result.exit_code == 2
    assert "KANVARO_MASTER_KEY" in result.output
    if value.strip():
        assert value not in result.output


def test_production_accepts_the_master_key_from_a_file(tmp_path):
    key_file = tmp_path / "master_key"
    key_file.write_text(STRONG_KEY + "\n")
    result = _invoke(["migrate"], _production(tmp_path, KANVARO_MASTER_KEY_FILE=str(key_file)))
    assert result.exit_code == 0, result.output
    assert STRONG_KEY not in result.output
    missing = _invoke(
        ["migrate"], _production(tmp_path, KANVARO_MASTER_KEY_FILE=str(tmp_path / "nope"))
    )
    assert missing.exit_code == 2 and "KANVARO_MASTER_KEY_FILE" in missing.output


def test_production_refuses_to_run_without_a_database_url(tmp_path):
    env = _env(tmp_path, KANVARO_ENV="production", KANVARO_MASTER_KEY=STRONG_KEY)
    result = _invoke(["migrate"], env)
    assert result.exit_code == 2 and "KANVARO_DATABASE_URL" in result.output


def test_a_bad_setting_names_the_variable_not_the_value(tmp_path):
    result = _invoke(["migrate"], _env(tmp_path, KANVARO_ACCESS_TOKEN_TTL_SECONDS="s3cr3t-ish"))
    assert result.exit_code == 2
    assert "KANVARO_ACCESS_TOKEN_TTL_SECONDS" in result.output
    assert "s3cr3t-ish" not in result.output


# --- kanvaro serve: the first run, over real HTTP -----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``kanvaro serve`` in a subprocess; stdout goes to a file we can read while it runs."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("KANVARO_")}
        env.update(KANVARO_DATA_DIR=str(data_dir), KANVARO_LOG_JSON="false")
        self.stdout = log.open("wb")
        self.proc = subprocess.Popen(
            [str(KANVARO), "serve", "--port", str(self.port)],
            stdout=self.stdout,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        # A wait for start-up, not a timed assertion: the deadline only bounds a hang.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"kanvaro serve exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail(f"kanvaro serve did not start: {self.log.read_text()}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.stdout.close()
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _credentials(output: str) -> tuple[str, str]:
    lines = {
        k.strip(): v.strip()
        for k, _, v in (line.partition(":") for line in output.splitlines())
        if k.strip() in ("email", "password")
    }
    return lines["email"], lines["password"]


def test_serve_first_run_prints_credentials_once_and_they_work(tmp_path):
    data = tmp_path / "data"
    server = Server(data, tmp_path / "first.log")
    try:
        server.wait_ready()
        email, password = _credentials(server.output())
        r = httpx.post(
            f"{server.url}/api/v1/auth/login",
            json={"email": email, "password": password},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        me = httpx.get(
            f"{server.url}/api/v1/auth/me",
            headers={"Authorization": f"Bearer {r.json()['accessToken']}"},
            timeout=30,
        )
        assert me.json()["role"] == "admin"
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200
    finally:
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    first_output = server.output()
    assert first_output.count(password) == 1, "the password is printed exactly once"
    assert oct((data / "secrets" / "master_key").stat().st_mode & 0o777) == "0o600"
    key = (data / "secrets" / "master_key").read_text()

    again = Server(data, tmp_path / "second.log")
    try:
        again.wait_ready()
        r = httpx.post(
            f"{again.url}/api/v1/auth/login",
            json={"email": email, "password": password},
            timeout=30,
        )
        assert r.status_code == 200, "the same secrets and database are reused"
    finally:
        again.stop()
    second_output = again.output()
    assert "password:" not in second_output and password not in second_output
    assert "First run" not in second_output
    assert (data / "secrets" / "master_key").read_text() == key
    with sqlite3.connect(data / "kanvaro.db") as conn:
        assert conn.execute("SELECT count(*) FROM tenants").fetchone()[0] == 1


# --- ergonomics (issue 7 point 13) ----------------------------------------------------------


def test_version_prints_the_package_version(tmp_path):
    from kanvaro import __version__

    result = _invoke(["--version"], _env(tmp_path))
    assert result.exit_code == 0
    assert result.output.strip() == f"kanvaro {__version__}"


def test_help_shows_flags_as_flags_and_the_defaults(tmp_path):
    shred = _invoke(["keys", "shred-user", "--help"], _env(tmp_path)).output
    assert "--yes" in shred and "<bool>" not in shred
    boot = _invoke(["bootstrap", "--help"], _env(tmp_path)).output
    assert "[default: Admin]" in boot
    assert "<bool>" not in boot


@pytest.mark.parametrize("command", [["audit", "verify"], ["keys", "status"]])
def test_a_read_only_command_outside_an_instance_says_where_it_looked_and_creates_nothing(
    tmp_path, command
):
    nowhere = tmp_path / "not-an-instance"
    result = runner.invoke(cli, command, env=_env(nowhere))
    assert result.exit_code == 3, result.output
    assert str(nowhere.resolve()) in result.output
    assert "no Kanvaro instance found" in result.output
    assert not nowhere.exists(), "a read-only command created an instance"


def test_a_read_only_command_works_on_an_existing_instance(tmp_path):
    data = tmp_path / "data"
    assert _invoke(["migrate"], _env(data)).exit_code == 0
    result = _invoke(["keys", "status"], _env(data))
    assert result.exit_code == 0, result.output
    assert '"provider"' in result.output


def test_migrate_prints_no_alembic_chatter(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KANVARO_")}
    env.update(KANVARO_DATA_DIR=str(tmp_path / "d"), KANVARO_LOG_JSON="false")
    done = subprocess.run(
        [str(KANVARO), "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "database is at the newest schema" in output
    assert "alembic" not in output.lower()
    assert "Running upgrade" not in output
