"""Appends to one chain are serialized across processes: three real server processes with
twenty concurrent writers each, against one PostgreSQL database, never fork the chain."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid

import httpx
import pytest
from sqlalchemy import select

from kanvaro.audit.keys import TrustedKeys
from kanvaro.audit.models import AuditChainHead, AuditLog
from kanvaro.audit.verify import verify_chain
from tests.audit.conftest import REPO
from tests.conftest import PG_ADMIN_URL, REDIS_URL

pytestmark = pytest.mark.skipif(
    not PG_ADMIN_URL,
    reason="PostgreSQL only: SQLite has one database-wide write lock, so several processes "
    "on one SQLite file cannot show that the chain-head row lock serializes appends",
)

SERVERS = 3
WRITERS = 20
PER_WRITER = 3
DEADLINE = 240  # seconds; the whole test stops by itself

SERVER = (
    "import os, uvicorn\n"
    "from kanvaro.app import create_app\n"
    "from kanvaro.config import load_settings\n"
    "uvicorn.run(create_app(load_settings()), host='127.0.0.1', port=int(os.environ['PORT']),"
    " log_level='warning', access_log=False)\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _start(port: int, settings, database_url: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PORT": str(port),
        "KANVARO_DATA_DIR": str(settings.data_dir),
        "KANVARO_DATABASE_URL": database_url,
        "KANVARO_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0",
        "KANVARO_LOG_LEVEL": "WARNING",
    }
    if REDIS_URL:
        env["KANVARO_REDIS_URL"] = REDIS_URL
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVER,
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _ready(client: httpx.AsyncClient, base: str) -> None:
    for _ in range(600):
        try:
            if (await client.get(f"{base}/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{base} did not start")


async def _writer(client: httpx.AsyncClient, base: str, headers: dict, tag: str) -> list[str]:
    made = []
    for i in range(PER_WRITER):
        r = await client.post(
            f"{base}/api/v1/projects", headers=headers, json={"name": f"{tag}-{i}"}
        )
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    return made


async def test_three_servers_with_twenty_writers_each_never_fork(
    tenant, services, settings, database_url
):
    ports = [_free_port() for _ in range(SERVERS)]
    servers = [await _start(port, settings, database_url) for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    limits = httpx.Limits(max_connections=SERVERS * WRITERS)
    try:
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            await asyncio.wait_for(asyncio.gather(*(_ready(client, b) for b in bases)), 90)
            jobs = [
                _writer(client, base, tenant.admin.headers, f"s{s}w{w}")
                for s, base in enumerate(bases)
                for w in range(WRITERS)
            ]
            results = await asyncio.wait_for(asyncio.gather(*jobs), DEADLINE)
    finally:
        for proc in servers:
            if proc.returncode is None:
                proc.terminate()
        for proc in servers:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    made = {pid for batch in results for pid in batch}
    assert len(made) == SERVERS * WRITERS * PER_WRITER
    tenant_id = uuid.UUID(tenant.id)
    async with services.db.session(tenant_id=tenant_id) as session:
        sequences = (
            (
                await session.execute(
                    select(AuditLog.sequence_number)
                    .where(AuditLog.chain_id == tenant.id)
                    .order_by(AuditLog.sequence_number)
                )
            )
            .scalars()
            .all()
        )
        head = await session.get(AuditChainHead, tenant.id)
        created = (
            (
                await session.execute(
                    select(AuditLog.resource_id).where(
                        AuditLog.chain_id == tenant.id, AuditLog.action == "api:project:create"
                    )
                )
            )
            .scalars()
            .all()
        )
        report = await verify_chain(session, tenant.id, TrustedKeys([]))
    # every sequence number 1..N exactly once, and the head agrees
    assert sequences == list(range(1, len(sequences) + 1))
    assert head.sequence_number == len(sequences)
    assert set(created) == made and len(created) == len(made)
    assert report.ok, report.to_dict()
    assert report.entries == len(sequences)
