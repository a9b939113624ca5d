"""Fixtures for the encryption tests: users with phones, raw access to stored values."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from kanvaro.identity.users import create_user
from kanvaro.security.passwords import PasswordPolicy
from kanvaro.services import Services


async def add_user(services: Services, tenant_id: Any, phone: str | None, **kw: Any) -> uuid.UUID:
    tid = uuid.UUID(str(tenant_id)) if tenant_id else None
    async with services.db.session(tenant_id=tid, all_tenants=tid is None) as session:
        user = await create_user(
            session,
            services.hasher,
            tenant_id=tid,
            email=f"p-{uuid.uuid4().hex[:10]}@kanvaro.example",
            first_name="Ana",
            last_name="Lima",
            role=None,
            password=None,
            policy=PasswordPolicy(),
            phone=phone,
            **kw,
        )
        return user.id


async def stored_phone(services: Services, user_id: uuid.UUID) -> tuple[Any, Any]:
    async with services.db.session(all_tenants=True) as session:
        row = (
            await session.execute(
                text("SELECT phone_encrypted, phone_bidx FROM users WHERE id = :id"),
                {"id": _uuid_param(services, user_id)},
            )
        ).one()
        return row[0], row[1]


def _uuid_param(services: Services, value: uuid.UUID) -> Any:
    # SQLite stores UUIDs as 32 hex characters; PostgreSQL takes the UUID object.
    return value.hex if services.db.dialect == "sqlite" else value


@pytest.fixture
def uuid_param(services: Services):  # type: ignore[no-untyped-def]
    return lambda value: _uuid_param(services, value)


def cli(settings: Any, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """``python -m kanvaro.cli ...`` in another process, on the suite's database and secrets."""
    return subprocess.Popen(
        [sys.executable, "-m", "kanvaro.cli", *args],
        env={
            **os.environ,
            "KANVARO_ENV": "development",
            "KANVARO_DATA_DIR": str(Path(settings.data_dir).resolve()),
            "KANVARO_DATABASE_URL": settings.resolved_database_url,
            "KANVARO_LOG_LEVEL": "WARNING",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


# -- real key-provider peers on loopback, started once per run when a test asks for one ---------


@pytest.fixture(scope="session")
def bao_peer(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.crypto.peers import openbao

    with openbao(tmp_path_factory.mktemp("bao")) as peer:
        yield peer


@pytest.fixture(scope="session")
def kms_peer(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.crypto.peers import moto_kms

    with moto_kms(tmp_path_factory.mktemp("moto")) as peer:
        yield peer


@pytest.fixture(scope="session")
def azure_peer(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.crypto.peers import azure_standin

    with azure_standin(tmp_path_factory.mktemp("azure")) as peer:
        yield peer


@pytest.fixture
def fresh_db(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A migrated database of the test's own (PostgreSQL when the suite runs on it)."""
    import asyncio

    from kanvaro.migrate import upgrade
    from tests.conftest import PG_ADMIN_URL

    if PG_ADMIN_URL:
        from tests.conftest import _create_pg_database, _drop_pg_database

        url, name = asyncio.run(_create_pg_database())
        upgrade(url)
        yield url
        asyncio.run(_drop_pg_database(name))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'own.db'}"
        upgrade(url)
        yield url
