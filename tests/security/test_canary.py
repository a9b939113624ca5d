"""Canary secrets planted through every entry point never reach a log, an error body or the
audit table.

In-process: the app with logging configured as in production (structlog JSON + the standard
library routed through the same redaction), every entry point exercised, then every captured
byte, every error body and every audit row is searched for every canary. In a subprocess:
``kanvaro bootstrap`` and ``kanvaro serve`` (uvicorn's own logs included) at DEBUG level.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from sqlalchemy import text

from kanvaro.app import create_app
from kanvaro.bootstrap import bootstrap
from kanvaro.deps import public
from kanvaro.logging import configure_logging
from kanvaro.services import Services


def canary(kind: str) -> str:
    # Satisfies the password policy (classes, length) and is unique in the whole run.
    return f"Cn{kind}!{secrets.token_hex(8)}Q9"


@pytest.fixture
def captured(settings) -> Iterator[io.StringIO]:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, pii_fields=settings.pii_redaction, stream=stream)
    yield stream
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_kanvaro_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def _app_with_failing_routes(settings, services: Services, secret: str, sql_secret: str):  # type: ignore[no-untyped-def]
    app = create_app(settings, services=services)

    @app.get("/canary/boom", dependencies=[public()])
    async def boom() -> None:
        raise RuntimeError(f"failure while handling {secret}")

    @app.get("/canary/sql", dependencies=[public()])
    async def sql() -> None:
        async with services.db.session(all_tenants=True) as session:
            await session.execute(
                text("SELECT * FROM no_such_table WHERE x = :v"), {"v": sql_secret}
            )

    return app


async def test_no_canary_reaches_logs_errors_or_audit(
    settings, services: Services, captured
) -> None:  # type: ignore[no-untyped-def]
    c = {
        k: canary(k)
        for k in (
            "boot",
            "wrong",
            "member",
            "new",
            "invite",
            "bearer",
            "cookie",
            "refresh",
            "valid",
            "extra",
            "boom",
            "sql",
            "query",
        )
    }
    phone = f"+1415555{secrets.randbelow(10**4):04d}"
    planted = [*c.values(), phone, settings.master_key.get_secret_value()]
    bodies: list[str] = []

    admin_email = f"canary-{uuid.uuid4().hex[:8]}@kanvaro.example"
    result = await bootstrap(
        services,
        tenant_name=f"Canary {uuid.uuid4().hex[:6]}",
        email=admin_email,
        password=c["boot"],
    )
    app = _app_with_failing_routes(settings, services, c["boom"], c["sql"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("198.51.100.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

        async def call(method: str, url: str, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
            r = await client.request(method, url, **kw)
            if r.status_code >= 400:
                bodies.append(r.text)
            return r

        r = await call(
            "POST",
            "/api/v1/auth/login",
            json={"email": admin_email, "password": c["boot"], "tenant": result.tenant_slug},
        )
        assert r.status_code == 200, r.text
        tokens = r.json()
        planted += [tokens["accessToken"], tokens["refreshToken"]]
        auth = {"Authorization": f"Bearer {tokens['accessToken']}"}
        await call(
            "POST",
            "/api/v1/auth/login",
            json={"email": admin_email, "password": c["wrong"], "tenant": result.tenant_slug},
        )
        await call(
            "POST",
            "/api/v1/auth/login",
            json={
                "email": "nobody@kanvaro.example",
                "password": c["wrong"],
                "tenant": result.tenant_slug,
            },
        )

        member_email = f"m-{uuid.uuid4().hex[:8]}@kanvaro.example"
        r = await call(
            "POST",
            "/api/v1/users",
            headers=auth,
            json={
                "email": member_email,
                "firstName": "Can",
                "lastName": "Ary",
                "role": "viewer",
                "password": c["member"],
                "phone": phone,
            },
        )
        assert r.status_code == 201, r.text
        r = await call(
            "POST",
            "/api/v1/users",
            headers=auth,
            json={
                "email": f"i-{uuid.uuid4().hex[:8]}@kanvaro.example",
                "firstName": "In",
                "lastName": "Vited",
                "role": "viewer",
            },
        )
        assert r.status_code == 201, r.text
        r = await call(
            "POST",
            "/api/v1/auth/login",
            json={"email": member_email, "password": c["member"], "tenant": result.tenant_slug},
        )
        member = {"Authorization": f"Bearer {r.json()['accessToken']}"}
        planted += [r.json()["accessToken"], r.json()["refreshToken"]]
        await call(
            "POST",
            "/api/v1/auth/password",
            headers=member,
            json={"currentPassword": c["wrong"], "newPassword": c["new"]},
        )
        r = await call(
            "POST",
            "/api/v1/auth/password",
            headers=member,
            json={"currentPassword": c["member"], "newPassword": c["new"]},
        )
        assert r.status_code == 204, r.text
        await call(
            "POST",
            "/api/v1/auth/invitations/accept",
            json={"token": c["invite"], "password": c["invite"]},
        )

        r = await call(
            "POST", "/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
        )
        assert r.status_code == 200
        planted += [r.json()["accessToken"], r.json()["refreshToken"]]
        await call("POST", "/api/v1/auth/refresh", json={"refreshToken": c["refresh"]})
        await call("GET", "/api/v1/auth/me", headers={"Authorization": f"Bearer {c['bearer']}"})
        await call("GET", "/api/v1/auth/me", headers={**auth, "Cookie": f"session={c['cookie']}"})
        await call("GET", f"/api/v1/users?token={c['query']}", headers=auth)

        r = await call(
            "POST",
            "/api/v1/auth/login",
            json={"email": f"bad {c['valid']}", "password": c["valid"], "extra": c["extra"]},
        )
        assert r.status_code == 422
        r = await call(
            "POST",
            "/api/v1/users",
            headers=auth,
            json={
                "email": member_email,
                "firstName": "X",
                "lastName": "Y",
                "role": "viewer",
                "password": c["valid"],
                "phone": f"not a phone {c['valid']}",
            },
        )
        assert r.status_code == 422
        r = await call("GET", "/canary/boom")
        assert r.status_code == 500
        r = await call("GET", "/canary/sql")
        assert r.status_code == 500

    await services.audit.drain()  # entries are sequenced after commit
    async with services.db.session(all_tenants=True) as session:
        audit_rows = [
            repr(tuple(row))
            for row in await session.execute(
                text("SELECT * FROM audit_logs WHERE tenant_id = :t OR tenant_id IS NULL"),
                {
                    "t": uuid.UUID(result.tenant_id).hex
                    if services.db.dialect == "sqlite"
                    else uuid.UUID(result.tenant_id)
                },
            )
        ]
        users = [repr(tuple(row)) for row in await session.execute(text("SELECT * FROM users"))]
    logs = captured.getvalue()
    assert "login" in logs and "unhandled_error" in logs  # the capture did see the app
    assert len(audit_rows) > 5 and len(bodies) >= 8
    haystacks = {"logs": logs, "error bodies": "\n".join(bodies), "audit": "\n".join(audit_rows)}
    for name, hay in haystacks.items():
        leaked = [p for p in planted if p in hay]
        assert not leaked, f"{len(leaked)} canaries found in {name}"
    assert phone not in "\n".join(users)  # stored encrypted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_canary_in_cli_and_server_output(tmp_path: Path) -> None:
    master = "Cnmaster" + secrets.token_hex(20)
    boot = canary("cliboot")
    wrong, bearer, query = canary("cliwrong"), canary("clibearer"), canary("cliquery")
    master_file = tmp_path / "master"
    master_file.write_text(master)
    env = {
        **os.environ,
        "KANVARO_ENV": "development",
        "KANVARO_DATA_DIR": str(tmp_path / "data"),
        "KANVARO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'canary.db'}",
        "KANVARO_MASTER_KEY_FILE": str(master_file),
        "KANVARO_LOG_LEVEL": "DEBUG",
        "KANVARO_BOOTSTRAP_PASSWORD": boot,
        "KANVARO_KEY_MAINTENANCE_INTERVAL_SECONDS": "0",
    }
    cli = [sys.executable, "-m", "kanvaro.cli"]
    boot_run = subprocess.run(
        [*cli, "bootstrap", "--tenant", "Canary", "--email", "owner@kanvaro.example"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert boot_run.returncode == 0, boot_run.stderr.decode()
    port = _free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            assert server.poll() is None, "server exited"
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=base) as client:
            ok = client.post(
                "/api/v1/auth/login", json={"email": "owner@kanvaro.example", "password": boot}
            )
            assert ok.status_code == 200, ok.text
            tokens = ok.json()
            client.post(
                "/api/v1/auth/login", json={"email": "owner@kanvaro.example", "password": wrong}
            )
            client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {bearer}"})
            client.get(
                f"/api/v1/users?access_token={query}",
                headers={"Authorization": f"Bearer {tokens['accessToken']}"},
            )
            client.post("/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    output = b"\n".join([boot_run.stdout, boot_run.stderr, out, err]).decode()
    assert "uvicorn" in output or "Uvicorn" in output or "Application startup" in output
    planted = [master, boot, wrong, bearer, query, tokens["accessToken"], tokens["refreshToken"]]
    leaked = [p for p in planted if p in output]
    assert not leaked, f"{len(leaked)} canaries in the CLI/server output"
