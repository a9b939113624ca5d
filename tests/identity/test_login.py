"""Login answers the same for every kind of failure, and upgrades imported bcrypt hashes."""

from __future__ import annotations

import uuid

import bcrypt
import pytest
from sqlalchemy import update

from kanvaro.identity.models import User
from kanvaro.tenancy.models import Tenant
from tests.conftest import PASSWORD, new_tenant, unique_email

pytestmark = pytest.mark.asyncio

LOGIN = "/api/v1/auth/login"
VOLATILE_HEADERS = {"x-request-id", "date"}
VOLATILE_FIELDS = {"instance", "requestId"}


def shape(r):
    body = {k: v for k, v in r.json().items() if k not in VOLATILE_FIELDS}
    headers = sorted((k, v) for k, v in r.headers.items() if k not in VOLATILE_HEADERS)
    return r.status_code, body, headers


async def test_every_failure_answers_identically(tenant, services, client):
    c = tenant.client
    inactive = await tenant.member("viewer")
    r = await c.delete(f"/api/v1/users/{inactive.id}", headers=tenant.admin.headers)
    assert r.status_code == 204
    suspended = await new_tenant(services, client)
    async with services.db.session(all_tenants=True) as session:
        await session.execute(
            update(Tenant).where(Tenant.id == uuid.UUID(suspended.id)).values(status="suspended")
        )
    member = await tenant.member("viewer")

    attempts = {
        "unknown email": {
            "email": unique_email("ghost"),
            "password": PASSWORD,
            "tenant": tenant.slug,
        },
        "wrong password": {
            "email": member.email,
            "password": PASSWORD + "x",
            "tenant": tenant.slug,
        },
        "deactivated user, right password": {
            "email": inactive.email,
            "password": PASSWORD,
            "tenant": tenant.slug,
        },
        "suspended tenant, right password": {
            "email": suspended.admin.email,
            "password": PASSWORD,
            "tenant": suspended.slug,
        },
    }
    shapes = {name: shape(await c.post(LOGIN, json=body)) for name, body in attempts.items()}
    first = next(iter(shapes.values()))
    assert first[0] == 401
    assert first[1]["detail"] == "The email address, password or tenant is wrong."
    for name, got in shapes.items():
        assert got == first, name
    # ... and the suspended tenant's existing session ends too.
    assert (await c.get("/api/v1/auth/me", headers=suspended.admin.headers)).status_code == 401


async def test_bcrypt_hash_is_accepted_and_rehashed_to_argon2id(tenant, services):
    m = await tenant.member("viewer")
    imported = bcrypt.hashpw(m.password.encode(), bcrypt.gensalt(rounds=10)).decode()
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        await session.execute(
            update(User).where(User.id == uuid.UUID(m.id)).values(password_hash=imported)
        )

    async def stored() -> str:
        async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
            return (await session.get(User, uuid.UUID(m.id))).password_hash

    assert (await stored()).startswith("$2b$")
    bad = await tenant.client.post(
        LOGIN, json={"email": m.email, "password": "Wrong!Pass123", "tenant": tenant.slug}
    )
    assert bad.status_code == 401
    assert (await stored()) == imported  # a failed attempt changes nothing
    ok = await tenant.client.post(
        LOGIN, json={"email": m.email, "password": m.password, "tenant": tenant.slug}
    )
    assert ok.status_code == 200, ok.text
    upgraded = await stored()
    assert upgraded.startswith("$argon2id$")
    again = await tenant.client.post(
        LOGIN, json={"email": m.email, "password": m.password, "tenant": tenant.slug}
    )
    assert again.status_code == 200
    assert (await stored()) == upgraded  # no needless rehash


async def test_login_refuses_unknown_fields_and_never_echoes_the_password(client):
    secret = "Sup3r!Secret-Value"
    r = await client.post(
        LOGIN, json={"email": unique_email(), "password": secret, "remember": True}
    )
    assert r.status_code == 422 and secret not in r.text


async def test_signing_in_does_not_bump_the_persons_version(tenant):
    m = await tenant.member("viewer")
    before = await tenant.client.get(f"/api/v1/users/{m.id}", headers=tenant.admin.headers)
    await tenant.login(m.email, m.password)
    after = await tenant.client.get(f"/api/v1/users/{m.id}", headers=tenant.admin.headers)
    assert after.json()["lastLoginAt"] != before.json()["lastLoginAt"]
    assert after.headers["etag"] == before.headers["etag"]
    r = await tenant.client.patch(
        f"/api/v1/users/{m.id}",
        headers={**tenant.admin.headers, "If-Match": before.headers["etag"]},
        json={"firstName": "Renamed"},
    )
    assert r.status_code == 200, r.text
