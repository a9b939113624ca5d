"""``User.phone``: stored encrypted, read as plaintext, bound to its row, searchable by phone."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text

from kanvaro.config import ConfigError
from kanvaro.crypto.errors import DecryptionError
from kanvaro.crypto.maintenance import check_encrypted_fields
from kanvaro.crypto.search import blind_index_for
from kanvaro.db import Database
from kanvaro.identity.models import User
from kanvaro.services import Services
from tests.crypto.conftest import add_user, stored_phone


async def test_phone_is_encrypted_at_rest_and_read_as_plaintext(services: Services, tenant) -> None:
    user_id = await add_user(services, tenant.id, "+49 151 12345678")
    ciphertext, bidx = await stored_phone(services, user_id)
    assert ciphertext.startswith("kv1:")
    assert "12345678" not in ciphertext and "12345678" not in bidx
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        user = await session.get(User, user_id)
        assert user.phone == "+49 151 12345678"
    # Detached (the session is closed): the value decrypted at load is still readable.
    assert user.phone == "+49 151 12345678"


async def test_update_and_clear(services: Services, tenant) -> None:
    user_id = await add_user(services, tenant.id, "+14155550100")
    before, _ = await stored_phone(services, user_id)
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        user = await session.get(User, user_id)
        user.phone = "+14155550199"
    after, _ = await stored_phone(services, user_id)
    assert after != before
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        user = await session.get(User, user_id)
        assert user.phone == "+14155550199"
        user.phone = None
    assert await stored_phone(services, user_id) == (None, None)


async def test_ciphertext_copied_to_another_row_fails(
    services: Services, tenant, uuid_param
) -> None:
    victim = await add_user(services, tenant.id, "+14155550111")
    other = await add_user(services, tenant.id, "+14155550122")
    stolen, _ = await stored_phone(services, victim)
    async with services.db.session(all_tenants=True) as session:
        await session.execute(
            text("UPDATE users SET phone_encrypted = :c WHERE id = :id"),
            {"c": stolen, "id": uuid_param(other)},
        )
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        user = await session.get(User, other)  # loading the row works ...
        with pytest.raises(DecryptionError) as info:
            _ = user.phone  # ... reading the moved value does not
    assert str(info.value).startswith("users.phone:")
    assert "4155550111" not in str(info.value)


async def test_plaintext_cannot_reach_the_column_without_a_keyring(
    services: Services, tenant
) -> None:
    bare = Database(services.db.url)  # a session factory without the keyring
    try:
        with pytest.raises(Exception, match="plaintext reached an encrypted column"):
            async with bare.session(tenant_id=uuid.UUID(tenant.id)) as session:
                user = await session.get(User, uuid.UUID(tenant.admin.id))
                user.phone = "+14155550133"
                await session.flush()
    finally:
        await bare.dispose()
    async with services.db.session(all_tenants=True) as session:
        raw = (
            await session.execute(
                text("SELECT count(*) FROM users WHERE phone_encrypted LIKE '%4155550133%'")
            )
        ).scalar()
    assert raw == 0


async def test_find_by_phone_through_blind_index(services: Services, tenant, other_tenant) -> None:
    wanted = await add_user(services, tenant.id, "+44 20 7946 0958")
    await add_user(services, tenant.id, "+44 20 7946 0959")
    foreign = await add_user(services, other_tenant.id, "+442079460958")
    _, bidx_here = await stored_phone(services, wanted)
    _, bidx_there = await stored_phone(services, foreign)
    assert bidx_here != bidx_there  # per-tenant index keys: no cross-tenant correlation
    tid = uuid.UUID(tenant.id)

    async def find(session, phone):
        # identity runs the query; crypto only computes the digest
        digest = blind_index_for(services.keyring, "users.phone", tid, phone)
        rows = await session.execute(select(User).where(User.phone_bidx == digest))
        return rows.scalars().all()

    async with services.db.session(tenant_id=tid) as session:
        found = await find(session, "+442079460958")
        assert [u.id for u in found] == [wanted]
        assert found[0].phone == "+44 20 7946 0958"
        assert await find(session, "+442079460000") == []


def test_configured_encrypted_fields_must_be_declared() -> None:
    check_encrypted_fields(["users.phone", "users.ssn"])
    with pytest.raises(ConfigError, match=r"users\.first_name"):
        check_encrypted_fields(["users.phone", "users.first_name"])


async def test_users_route_filters_by_phone(
    services: Services, client, tenant, other_tenant
) -> None:
    r = await client.post(
        "/api/v1/users",
        headers=tenant.admin.headers,
        json={
            "email": f"ph-{uuid.uuid4().hex[:8]}@kanvaro.example",
            "firstName": "José",
            "lastName": "李",
            "role": "viewer",
            "phone": "+819012345678",
        },
    )
    assert r.status_code == 201, r.text
    wanted = r.json()["id"]
    await add_user(services, other_tenant.id, "+819012345678")
    r = await client.get(
        "/api/v1/users", params={"phone": "+81 90 1234 5678"}, headers=tenant.admin.headers
    )
    assert r.status_code == 200, r.text
    assert [u["id"] for u in r.json()["items"]] == [wanted]
    assert r.json()["items"][0]["phone"] == "+819012345678"
    r = await client.get(
        "/api/v1/users", params={"phone": "+819099999999"}, headers=tenant.admin.headers
    )
    assert r.json()["items"] == []
