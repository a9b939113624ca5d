"""Login answers the same for every kind of failure, and upgrades imported bcrypt hashes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import bcrypt
import pytest
from sqlalchemy import update

from kanvaro.audit.service import AuditContext
from kanvaro.errors import Unauthorized
from kanvaro.identity import auth
from kanvaro.identity.models import RefreshToken, User, UserSession
from kanvaro.identity.sessions.signin import SignInRequest
from kanvaro.tenancy.models import Tenant
from tests.conftest import PASSWORD, new_tenant, unique_email

pytestmark = pytest.mark.asyncio

LOGIN = "/api/v1/auth/login"
# The rate-limit headers count the client's requests, whatever their outcome.
RATE_HEADERS = {
    "ratelimit-remaining",
    "x-ratelimit-remaining",
    "ratelimit-reset",
    "x-ratelimit-reset",
}
VOLATILE_HEADERS = {"x-request-id", "date", *RATE_HEADERS}
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


CHROME_ON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


async def test_sign_in_stores_the_session_with_its_device_and_methods(tenant, services):
    """A sign-in without a device secret is handed one (``deviceToken``); the session stores
    its keyed hash, never the secret, and presenting the secret again names the same device."""
    m = await tenant.member("viewer")
    body = {"email": m.email, "password": m.password, "tenant": tenant.slug}
    r = await tenant.client.post(LOGIN, headers={"User-Agent": CHROME_ON_MAC}, json=body)
    assert r.status_code == 200, r.text
    device_token = r.json()["deviceToken"]
    assert len(device_token) >= 32
    claims = services.tokens.verify(r.json()["refreshToken"], "refresh")
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        stored = await session.get(UserSession, uuid.UUID(claims["sid"]))
        token = await session.get(RefreshToken, claims["jti"])
        user = await session.get(User, uuid.UUID(m.id))
    assert stored is not None and token is not None
    assert (str(stored.user_id), str(stored.tenant_id)) == (m.id, tenant.id)
    assert stored.device_id and device_token not in stored.device_id
    assert device_token not in str(stored.device_info)
    assert stored.device_info["userAgent"] == CHROME_ON_MAC
    assert stored.device_info["browser"] == "Chrome 120"
    assert stored.device_info["os"] == "macOS 10.15.7"
    assert stored.device_info["name"] == "Chrome 120 on macOS"
    assert stored.auth_methods == ["password"] and stored.is_active
    assert stored.ip_address == "203.0.113.7"
    assert stored.network == "203.0.113.0/24"
    policy = await auth.session_policy(services, uuid.UUID(tenant.id))
    assert abs(stored.expires_at - stored.created_at - policy.absolute_timeout) < timedelta(
        seconds=5
    )
    assert token.session_id == stored.id and token.used_at is None
    assert user.last_login_at == stored.created_at

    for again in (
        {"json": {**body, "deviceToken": device_token}},
        {"json": body, "headers": {"X-Device-Token": device_token}},
    ):
        r = await tenant.client.post(LOGIN, **again)
        assert r.status_code == 200, r.text
        assert r.json().get("deviceToken") is None  # it presented one: nothing new to keep
        sid = services.tokens.verify(r.json()["refreshToken"], "refresh")["sid"]
        async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
            repeat = await session.get(UserSession, uuid.UUID(sid))
        assert repeat.device_id == stored.device_id

    r = await tenant.client.post(LOGIN, json=body)  # no secret: another device
    sid = services.tokens.verify(r.json()["refreshToken"], "refresh")["sid"]
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        other = await session.get(UserSession, uuid.UUID(sid))
    assert r.json()["deviceToken"] != device_token and other.device_id != stored.device_id


async def test_a_change_between_the_password_check_and_the_session_voids_the_sign_in(
    tenant, services
):
    """Step 1 (the hash) runs with no lock held; step 2 re-checks under the row lock that the
    account may still sign in with the password just verified."""
    m = await tenant.member("viewer")
    context = AuditContext(None, "203.0.113.7", "test")

    async def first_factor():
        factor, _ = await auth.verify_password(
            services, email=m.email, password=m.password, tenant=tenant.slug, context=context
        )
        return factor

    async def open_session(factor) -> None:
        async with services.db.session(all_tenants=True) as session:
            await auth.open_session(
                services, session, factor, context=context, client=SignInRequest(None, None)
            )

    user_id = uuid.UUID(m.id)
    for changed, restore in (
        ({"password_hash": services.hasher.hash("N3w!Other-Secret")}, None),
        ({"is_active": False}, {"is_active": True}),
    ):
        factor = await first_factor()
        async with services.db.session(all_tenants=True) as session:
            before = (await session.get(User, user_id)).password_hash
            await session.execute(update(User).where(User.id == user_id).values(**changed))
        with pytest.raises(Unauthorized):
            await open_session(factor)
        async with services.db.session(all_tenants=True) as session:
            await session.execute(
                update(User)
                .where(User.id == user_id)
                .values(password_hash=before, **(restore or {}))
            )
    await open_session(await first_factor())  # unchanged: the session opens


async def test_sign_ins_are_counted_by_outcome(tenant) -> None:  # type: ignore[no-untyped-def]
    """``kanvaro_sign_ins_total``: a success once its session committed, a refusal as a
    failure (whatever the reason, like the answer itself)."""
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("kanvaro_sign_ins_total", {"outcome": outcome}) or 0.0

    ok, bad = count("success"), count("failure")
    await tenant.login(tenant.admin.email)
    r = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": tenant.admin.email, "password": "wrong-Pass-123!", "tenant": tenant.slug},
    )
    assert r.status_code == 401
    assert count("success") == ok + 1 and count("failure") == bad + 1


async def test_the_risk_reads_run_while_the_password_is_hashed(tenant, services, monkeypatch):
    """On PostgreSQL the sign-in's reads (SSO requirement, device and risk) run during the
    hash, not after it: the hash here waits for the risk assessment to have begun."""
    if not services.db.writes_in_one_statement:
        pytest.skip("SQLite reads after the hash (its transaction would hold the write lock)")
    m = await tenant.member("viewer")
    began = asyncio.Event()
    real_assess = auth.signin.assess

    async def assess(*args, **kwargs):
        began.set()
        return await real_assess(*args, **kwargs)

    real_verify = services.hasher.verify_async
    overlapped: list[bool] = []

    async def verify(password, stored):
        outcome = await real_verify(password, stored)
        try:
            await asyncio.wait_for(began.wait(), 5)
            overlapped.append(True)
        except TimeoutError:
            overlapped.append(False)
        return outcome

    monkeypatch.setattr(auth.signin, "assess", assess)
    monkeypatch.setattr(services.hasher, "verify_async", verify)
    body = {"email": m.email, "password": m.password, "tenant": tenant.slug}
    r = await tenant.client.post("/api/v1/auth/login", json=body)
    assert r.status_code == 200, r.text
    assert overlapped == [True]
    # A wrong password: the reads ran and are thrown away; the answer is the usual 401.
    began.clear()
    r = await tenant.client.post("/api/v1/auth/login", json={**body, "password": "wrong-Pass-1"})
    assert r.status_code == 401 and r.json()["detail"] == auth.INVALID_CREDENTIALS


async def test_the_mfa_methods_are_read_during_the_hash_and_not_again(
    tenant, services, monkeypatch
):
    """Issue 9: what the second step is decided from (the user's MFA duty and methods) is read
    during the hash on PostgreSQL; after the hash only the decision remains (and, for a user
    who must enroll, noting when that became due)."""
    if not services.db.writes_in_one_statement:
        pytest.skip("SQLite reads after the hash (its transaction would hold the write lock)")
    from kanvaro.identity.mfa import flow as mfa_flow
    from kanvaro.identity.mfa import requirement

    m = await tenant.member("viewer")
    began = asyncio.Event()
    hashed = False
    after_hash: list[str] = []
    real_counted = requirement.counted_methods

    async def counted_methods(*args, **kwargs):
        began.set()
        if hashed:
            after_hash.append("counted_methods")
        return await real_counted(*args, **kwargs)

    real_verify = services.hasher.verify_async

    async def verify(password, stored):
        nonlocal hashed
        outcome = await real_verify(password, stored)
        await asyncio.wait_for(began.wait(), 5)  # times out if the read waits for the hash
        hashed = True
        return outcome

    monkeypatch.setattr(requirement, "counted_methods", counted_methods)
    monkeypatch.setattr(mfa_flow, "counted_methods", counted_methods)
    monkeypatch.setattr(services.hasher, "verify_async", verify)
    body = {"email": m.email, "password": m.password, "tenant": tenant.slug}
    r = await tenant.client.post("/api/v1/auth/login", json=body)
    assert r.status_code == 200, r.text
    assert hashed and after_hash == []
