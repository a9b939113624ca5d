"""``kanvaro keys move-provider``: from local to aws-kms (moto's KMS server), every data key
re-wrapped, no field re-encrypted, and the data readable through the new provider only."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from kanvaro.bootstrap import bootstrap
from kanvaro.crypto.models import EncryptionKey
from kanvaro.identity.models import User
from kanvaro.services import Services
from tests.conftest import make_settings
from tests.crypto.conftest import add_user, cli
from tests.crypto.peers import MOTO_CREDENTIALS


async def test_move_from_local_to_aws_kms(
    kms_peer: str, fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    settings = make_settings(data, fresh_db, key_maintenance_interval_seconds=0)
    services = Services.build(settings)
    await services.startup()
    try:
        result = await bootstrap(
            services,
            tenant_name="Moving",
            email="a@kanvaro.example",
            password="Str0ng!Kanvaro-Pass",
        )
        ids = [await add_user(services, result.tenant_id, f"+49301234{n:04d}") for n in range(5)]
        async with services.db.session(all_tenants=True) as session:
            before = dict(
                (await session.execute(text("SELECT id, phone_encrypted FROM users"))).all()
            )
    finally:
        await services.shutdown()

    prefix = f"mv-{uuid.uuid4().hex[:8]}-"
    aws = {
        "KANVARO_AWS_REGION": "eu-central-1",
        "KANVARO_AWS_KMS_ENDPOINT": kms_peer,
        "KANVARO_AWS_KMS_ALIAS_PREFIX": prefix,
        "AWS_ACCESS_KEY_ID": MOTO_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": MOTO_CREDENTIALS["aws_secret_access_key"],
    }
    proc = cli(settings, "keys", "move-provider", "aws-kms", "--yes", **aws)
    out, err = await asyncio.to_thread(proc.communicate, None, 120)
    assert proc.returncode == 0, err.decode()
    assert b"now set KANVARO_KEY_PROVIDER=aws-kms" in out

    moved = make_settings(
        data,
        fresh_db,
        key_provider="aws-kms",
        aws_region="eu-central-1",
        aws_kms_endpoint=kms_peer,
        aws_kms_alias_prefix=prefix,
        key_maintenance_interval_seconds=0,
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, aws[name])
    services = Services.build(moved)
    await services.startup()
    try:
        async with services.db.session(all_tenants=True) as session:
            keys = (await session.execute(select(EncryptionKey))).scalars().all()
            assert keys and all(k.wrapped_key.startswith("aws-kms:v1:") for k in keys)
            assert all(k.key_identifier.startswith("aws-kms:") for k in keys)
            after = dict(
                (await session.execute(text("SELECT id, phone_encrypted FROM users"))).all()
            )
            assert after == before  # the fields were not touched
            users = (await session.execute(select(User).where(User.id.in_(ids)))).scalars()
            assert sorted(u.phone for u in users) == [f"+49301234{n:04d}" for n in range(5)]
    finally:
        await services.shutdown()

    # Back on the old provider nothing unwraps: the move is complete, not partial.
    proc = cli(settings, "keys", "move-provider", "aws-kms", "--yes", **aws)
    _, err = await asyncio.to_thread(proc.communicate, None, 120)
    assert proc.returncode == 1 and b"nothing moved" in err
