"""Rotation: new writes use the new key at once; old rows are re-encrypted in batches; the
job survives being killed; a key is retired only when no row uses it; admins see progress."""

from __future__ import annotations

import asyncio
import signal
import uuid

from sqlalchemy import select, text

from kanvaro.crypto import envelope
from kanvaro.crypto.models import EncryptionKey, KeyRotation
from kanvaro.crypto.rotation import _retire_unused, keys_in_use, reencrypt, start_rotation
from kanvaro.identity.models import User
from kanvaro.services import Services
from tests.crypto.conftest import add_user, stored_phone
from tests.crypto.conftest import cli as _cli


async def _key_state(services: Services, key_id: uuid.UUID) -> str:
    async with services.db.session(all_tenants=True) as session:
        return (await session.get(EncryptionKey, key_id)).state


async def _phones(services: Services, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    async with services.db.session(all_tenants=True) as session:
        users = (await session.execute(select(User).where(User.id.in_(ids)))).scalars().all()
        return {u.id: u.phone for u in users}


async def test_rotate_then_reencrypt(services: Services, tenant) -> None:
    ids = [await add_user(services, tenant.id, f"+1415555{i:04d}") for i in range(5)]
    old_keys = {envelope.key_id_of((await stored_phone(services, i))[0]) for i in ids}

    async with services.db.session(all_tenants=True) as session:
        rotation = await start_rotation(session)
    for key in old_keys:
        assert await _key_state(services, key) == "retiring"

    # New writes take the new key at once, before any re-encryption.
    fresh = await add_user(services, tenant.id, "+14155559999")
    fresh_key = envelope.key_id_of((await stored_phone(services, fresh))[0])
    assert fresh_key not in old_keys and await _key_state(services, fresh_key) == "active"
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        user = await session.get(User, ids[0])
        user.phone = "+14155550000"
    rewritten = envelope.key_id_of((await stored_phone(services, ids[0]))[0])
    assert rewritten not in old_keys

    # Old rows stay readable meanwhile.
    assert (await _phones(services, ids))[ids[1]] == "+14155550001"

    seen: list[tuple[int, int]] = []
    done = await reencrypt(
        services.db, services.keyring, batch_size=3, progress=lambda d, t: seen.append((d, t))
    )
    assert done is not None and done.id == rotation.id and done.state == "completed"
    assert len(seen) > 1 and seen[-1][0] == seen[-1][1]
    for key in old_keys:
        assert await _key_state(services, key) == "retired"
    phones = await _phones(services, ids)
    assert phones == {i: f"+1415555{n:04d}" for n, i in enumerate(ids)}
    async with services.db.session(all_tenants=True) as session:
        assert not (old_keys & await keys_in_use(session))


async def test_key_retired_only_when_no_row_uses_it(services: Services, tenant) -> None:
    user_id = await add_user(services, tenant.id, "+14155551234")
    key = envelope.key_id_of((await stored_phone(services, user_id))[0])
    async with services.db.session(all_tenants=True) as session:
        await start_rotation(session)
    async with services.db.session(all_tenants=True) as session:
        assert key in await _retire_unused(session)  # the row still uses it
    assert await _key_state(services, key) == "retiring"
    await reencrypt(services.db, services.keyring)
    assert await _key_state(services, key) == "retired"


async def _progress(services: Services, rotation_id: uuid.UUID) -> KeyRotation:
    async with services.db.session(all_tenants=True) as session:
        return await session.get(KeyRotation, rotation_id, populate_existing=True)


async def test_reencryption_survives_sigkill(services: Services, settings, tenant) -> None:
    ids = [await add_user(services, tenant.id, f"+4930{i:07d}") for i in range(40)]
    async with services.db.session(all_tenants=True) as session:
        rotation = await start_rotation(session)
    total = rotation.total_rows
    assert total >= 40

    proc = _cli(settings, "keys", "reencrypt", "--batch-size", "4", "--pause", "0.25")
    try:
        # Wait until some batches are committed (read from the database), then kill -9.
        for _ in range(600):
            state = await _progress(services, rotation.id)
            if state.done_rows >= 8:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed = await _progress(services, rotation.id)
    assert killed.state == "running" and 8 <= killed.done_rows < total
    # Mid-rotation, with rows on old and new keys, every row reads.
    phones = await _phones(services, ids)
    assert phones == {i: f"+4930{n:07d}" for n, i in enumerate(ids)}

    again = _cli(settings, "keys", "reencrypt", "--batch-size", "50", "--pause", "0")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    assert b"rotation completed" in out
    finished = await _progress(services, rotation.id)
    assert finished.state == "completed" and finished.done_rows == total
    services.keyring.forget()  # read with keys fetched afresh, as another process would
    assert await _phones(services, ids) == phones
    async with services.db.session(all_tenants=True) as session:
        retiring = set(
            (
                await session.execute(
                    select(EncryptionKey.id).where(EncryptionKey.state == "retiring")
                )
            ).scalars()
        )
        in_use = await keys_in_use(session)
        states = dict(
            (
                await session.execute(
                    select(EncryptionKey.id, EncryptionKey.state).where(
                        EncryptionKey.id.in_(in_use)
                    )
                )
            ).all()
        )
    # Only a key that a tampered row (another test plants one) still names stays retiring.
    skipped = {uuid.UUID(k) for k in finished.cursor.get("_unreadable", {})}
    assert retiring <= skipped
    assert {s for k, s in states.items() if k not in skipped} <= {"active"}


async def test_status_endpoint(services: Services, client, tenant) -> None:
    await add_user(services, tenant.id, "+14155557777")
    async with services.db.session(all_tenants=True) as session:
        await start_rotation(session)
    r = await client.get("/api/v1/admin/keys/status", headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "tenant" and body["provider"] == "local"
    assert body["rotation"]["state"] == "running"
    assert "percent" not in body["rotation"]  # instance-wide figures: the super admin's
    assert any(k["state"] == "retiring" for k in body["keys"])
    assert "wrapped" not in r.text.lower()
    await reencrypt(services.db, services.keyring)
    body = (await client.get("/api/v1/admin/keys/status", headers=tenant.admin.headers)).json()
    assert body["rotation"]["state"] == "completed" and body["rotation"]["finishedAt"]

    member = await tenant.member("team_member")
    r = await client.get("/api/v1/admin/keys/status", headers=member.headers)
    assert r.status_code == 403
    assert (await client.get("/api/v1/admin/keys/status")).status_code == 401


async def test_scheduled_rotation_and_tampered_rows(
    services: Services, tenant, uuid_param, monkeypatch
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from kanvaro.crypto.maintenance import run_key_maintenance
    from kanvaro.db import utcnow

    first = await add_user(services, tenant.id, "+14155552001")
    second = await add_user(services, tenant.id, "+14155552002")
    stolen, _ = await stored_phone(services, first)
    async with services.db.session(all_tenants=True) as session:
        await session.execute(
            text("UPDATE users SET phone_encrypted = :c WHERE id = :id"),
            {"c": stolen, "id": uuid_param(second)},
        )
    monkeypatch.setattr(services.settings, "key_rotation_days", 0)
    await run_key_maintenance(services)  # 0 days: automatic rotation is off
    async with services.db.session(all_tenants=True) as session:
        assert await running_rotation_or_none(session) is None
    monkeypatch.setattr(services.settings, "key_rotation_days", 30)
    key = envelope.key_id_of(stolen)
    async with services.db.session(all_tenants=True) as session:
        await session.execute(
            update(EncryptionKey)
            .where(EncryptionKey.id == key)
            .values(created_at=utcnow() - timedelta(days=31))
        )
    await run_key_maintenance(services)
    async with services.db.session(all_tenants=True) as session:
        latest = (
            await session.execute(
                select(KeyRotation).order_by(KeyRotation.started_at.desc()).limit(1)
            )
        ).scalar_one()
    assert latest.reason == "scheduled" and latest.state == "completed"
    assert latest.unreadable_rows >= 1  # the tampered copy: skipped, not re-encrypted
    assert await _key_state(services, key) == "retiring"  # still named by the tampered row
    assert (await _phones(services, [first]))[first] == "+14155552001"


async def running_rotation_or_none(session):  # type: ignore[no-untyped-def]
    from kanvaro.crypto.rotation import running_rotation

    return await running_rotation(session)
