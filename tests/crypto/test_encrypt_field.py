"""``kanvaro keys encrypt-field``: a field listed encrypted later is converted in place,
in batches, surviving SIGKILL, with mixed rows readable meanwhile (users.ssn)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from kanvaro.bootstrap import bootstrap
from kanvaro.crypto.conversion import FieldNotConvertible, encrypt_field, remaining
from kanvaro.crypto.fields import REGISTRY
from kanvaro.crypto.search import blind_index_for
from kanvaro.identity.models import User
from kanvaro.services import Services
from tests.conftest import make_settings
from tests.crypto.conftest import add_user, cli

SSN = "123-45-{:04d}"


async def _raw_ssns(services: Services) -> list[str]:
    async with services.db.session(all_tenants=True) as session:
        rows = await session.execute(text("SELECT ssn FROM users WHERE ssn IS NOT NULL"))
        return [r[0] for r in rows]


async def _ssns(services: Services, ids: list[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    services.keyring.forget()
    async with services.db.session(all_tenants=True) as session:
        users = (await session.execute(select(User).where(User.id.in_(ids)))).scalars()
        return {u.id: u.ssn for u in users}


async def _set_ssn(services: Services, user_id: uuid.UUID, value: str) -> None:
    async with services.db.session(all_tenants=True) as session:
        user = await session.get(User, user_id)
        user.ssn = value


async def _started(settings: Any) -> Services:
    services = Services.build(settings)
    await services.startup()
    return services


async def test_encrypt_field_later_survives_sigkill(fresh_db: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    common = {"key_maintenance_interval_seconds": 0}
    # 1. An instance that does not list users.ssn: SSNs are stored as they are.
    plain_settings = make_settings(data, fresh_db, encrypted_fields="users.phone", **common)
    services = await _started(plain_settings)
    try:
        result = await bootstrap(
            services, tenant_name="Later", email="a@kanvaro.example", password="Str0ng!Kanvaro-Pass"
        )
        tenant_id = uuid.UUID(result.tenant_id)
        ids = [await add_user(services, tenant_id, None) for _ in range(30)]
        for n, user_id in enumerate(ids):
            await _set_ssn(services, user_id, SSN.format(n))
        assert sorted(await _raw_ssns(services)) == sorted(SSN.format(n) for n in range(30))
    finally:
        await services.shutdown()

    # 2. The admin lists it (the default): new writes are encrypted, old rows still read.
    settings = make_settings(data, fresh_db, **common)
    services = await _started(settings)
    try:
        newcomer = await add_user(services, tenant_id, None)
        await _set_ssn(services, newcomer, "987-65-4321")
        raw = await _raw_ssns(services)
        assert sum(v.startswith("kv1:") for v in raw) == 1 and "987-65-4321" not in raw
        expected = {i: SSN.format(n) for n, i in enumerate(ids)} | {newcomer: "987-65-4321"}
        assert await _ssns(services, [*ids, newcomer]) == expected
        assert await remaining(services.db, REGISTRY["users.ssn"]) == 30

        # 3. The conversion, killed -9 after a few committed batches ...
        proc = cli(settings, "keys", "encrypt-field", "users.ssn", "--batch-size", "3",
                   "--pause", "0.3")  # fmt: skip
        try:
            for _ in range(600):
                if await remaining(services.db, REGISTRY["users.ssn"]) <= 24:
                    break
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        left = await remaining(services.db, REGISTRY["users.ssn"])
        assert 0 < left <= 24
        # ... leaves every row readable, converted or not.
        assert await _ssns(services, [*ids, newcomer]) == expected

        # 4. Run again: it resumes and finishes; a third run has nothing to do.
        again = cli(settings, "keys", "encrypt-field", "users.ssn", "--batch-size", "50")
        out, err = await asyncio.to_thread(again.communicate, None, 120)
        assert again.returncode == 0, err.decode()
        assert f"users.ssn: {left} values encrypted".encode() in out
        assert await remaining(services.db, REGISTRY["users.ssn"]) == 0
        assert all(v.startswith("kv1:") for v in await _raw_ssns(services))
        assert await _ssns(services, [*ids, newcomer]) == expected
        run = await encrypt_field(services.db, services.keyring, "users.ssn")
        assert run.converted == 0 and run.total == 0

        # Equality search through the blind index, in any spelling.
        digest = blind_index_for(services.keyring, "users.ssn", tenant_id, "123 45 0007")
        async with services.db.session(all_tenants=True) as session:
            found = (
                await session.execute(select(User.id).where(User.ssn_bidx == digest))
            ).scalars()
            assert list(found) == [ids[7]]
    finally:
        await services.shutdown()


async def test_encrypt_field_refusals(fresh_db: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", fresh_db, encrypted_fields="users.phone")
    services = Services.build(settings)
    try:
        for name, reason in (
            ("users.ssn", "add it to KANVARO_ENCRYPTED_FIELDS"),
            ("users.phone", "encrypted always"),
            ("users.nothing", "no model declares"),
        ):
            try:
                await encrypt_field(services.db, services.keyring, name)
            except FieldNotConvertible as exc:
                assert reason in str(exc)
            else:
                raise AssertionError(f"{name} was converted")
        proc = cli(settings, "keys", "encrypt-field", "users.ssn",
                   KANVARO_ENCRYPTED_FIELDS="users.phone")  # fmt: skip
        _, err = await asyncio.to_thread(proc.communicate, None, 120)
        assert proc.returncode == 2 and b"KANVARO_ENCRYPTED_FIELDS" in err
    finally:
        await services.shutdown()
