"""Devices (seed 004 ``trusted_devices``, issue 10 points 7 and 8): recorded at sign-in by the
secret the client holds, trusted until the policy's ``deviceTrustDays``, and removing one ends
every session signed in from it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from kanvaro.identity.models import UserSession
from kanvaro.identity.sessions import devices
from kanvaro.identity.sessions.models import TrustedDevice
from kanvaro.security.tokens import REFRESH
from tests.identity.conftest import audit_entries
from tests.identity.sessions.conftest import set_policy

pytestmark = pytest.mark.asyncio

ME = "/api/v1/auth/me"
FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
DEVICE_FIELDS = {
    "deviceId", "deviceName", "isTrusted", "trustExpiresAt", "createdAt", "lastUsedAt",
    "lastIp", "activeSessions", "current",
}  # fmt: skip


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sid_of(services: Any, tokens: dict[str, Any]) -> str:
    return services.tokens.verify(tokens["refreshToken"], REFRESH)["sid"]


def devices_url(user_id: str, device_id: str | None = None) -> str:
    base = f"/api/v1/users/{user_id}/devices"
    return f"{base}/{device_id}" if device_id else base


async def sign_in(
    tenant: Any, email: str, *, agent: str = FIREFOX, device_token: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": email,
        "password": "Str0ng!Kanvaro-Pass",
        "tenant": tenant.slug,
    }
    if device_token:
        body["deviceToken"] = device_token
    r = await tenant.client.post("/api/v1/auth/login", json=body, headers={"User-Agent": agent})
    assert r.status_code == 200, r.text
    return r.json()


async def device_list(tenant: Any, user_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = await tenant.client.get(devices_url(user_id), headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def session_device(services: Any, tokens: dict[str, Any]) -> str:
    async with services.db.session(all_tenants=True) as db:
        row = await db.get(UserSession, uuid.UUID(sid_of(services, tokens)))
        assert row is not None
        return row.device_id


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- recording ---------------------------------------------------------------------------------


async def test_a_sign_in_records_its_device_and_the_secret_recognises_it(tenant, services):
    m = await tenant.member("viewer")
    first = await sign_in(tenant, m.email)
    assert first["deviceToken"]  # a new device gets its secret
    again = await sign_in(tenant, m.email, agent=IPHONE, device_token=first["deviceToken"])
    assert again.get("deviceToken") is None  # it presented one: same device
    device_id = await session_device(services, first)
    assert await session_device(services, again) == device_id

    listed = await device_list(tenant, m.id, bearer(again["accessToken"]))
    mine = {d["deviceId"]: d for d in listed}[device_id]
    assert set(mine) == DEVICE_FIELDS
    # Named after what it was first seen as; the User-Agent does not make it another device.
    assert mine["deviceName"].startswith("Firefox") and "Ubuntu" in mine["deviceName"]
    assert mine["activeSessions"] == 2 and mine["current"] is True
    assert mine["isTrusted"] is False and mine["trustExpiresAt"] is None
    assert mine["lastIp"] == "203.0.113.7" and mine["lastUsedAt"] is not None
    # The fixture's own sign-in came from another device (no secret presented).
    others = [d for d in listed if d["deviceId"] != device_id]
    assert len(others) == 1 and others[0]["current"] is False
    assert others[0]["activeSessions"] == 1
    # The secret is never shown; only its keyed hash is, as the device id.
    assert first["deviceToken"] not in str(listed)


async def test_two_sign_ins_from_a_new_device_at_once_make_one_row(tenant, services):
    m = await tenant.member("viewer")
    user_id, tenant_id = uuid.UUID(m.id), uuid.UUID(tenant.id)
    device_id = uuid.uuid4().hex * 2
    now = datetime.now(UTC)

    async def record(ip: str) -> None:
        async with services.db.session(all_tenants=True) as db:
            await devices.record_sign_in(
                db,
                user_id=user_id,
                tenant_id=tenant_id,
                device_id=device_id,
                device_info={"browser": "Firefox 128", "os": "Ubuntu", "ip": ip},
                ip_address=ip,
                now=now,
            )

    await asyncio.gather(record("198.51.100.1"), record("198.51.100.2"))
    async with services.db.session(tenant_id=tenant_id) as db:
        count = await db.scalar(
            select(func.count())
            .select_from(TrustedDevice)
            .where(TrustedDevice.user_id == user_id, TrustedDevice.device_id == device_id)
        )
    assert count == 1


# --- trust ---------------------------------------------------------------------------------


async def test_trusting_a_device_sets_its_expiry_from_the_policy(tenant, services, clock):
    m = await tenant.member("team_member")
    await set_policy(tenant, deviceTrustDays=7)
    device_id = await session_device(services, m.tokens)
    before = clock.now()
    r = await tenant.client.post(
        f"{devices_url(m.id, device_id)}/trust",
        headers=m.headers,
        json={"deviceName": "Work laptop"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["isTrusted"] is True and body["deviceName"] == "Work laptop"
    assert body["current"] is True and body["activeSessions"] == 1
    expires = _instant(body["trustExpiresAt"])
    assert before + timedelta(days=7) <= expires <= clock.now() + timedelta(days=7)

    # What the MFA step will ask, now and once the trust has run out.
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        user_id = uuid.UUID(m.id)
        assert await devices.is_trusted(db, user_id, device_id, clock.now())
        assert not await devices.is_trusted(db, user_id, device_id, expires + timedelta(seconds=1))
        assert not await devices.is_trusted(db, user_id, "0" * 64, clock.now())

    [entry] = [
        e
        for e in await audit_entries(services, tenant.id, "auth:device:trust")
        if e.resource_id == device_id
    ]
    assert str(entry.actor_id) == m.id and entry.changes["trustDays"] == 7
    assert entry.changes["deviceName"] == "Work laptop"


async def test_a_given_name_outlives_later_sign_ins_and_trust_shows_past_its_end(tenant, services):
    m = await tenant.member("viewer")
    first = await sign_in(tenant, m.email)
    device_id = await session_device(services, first)
    headers = bearer(first["accessToken"])
    r = await tenant.client.post(
        f"{devices_url(m.id, device_id)}/trust", headers=headers, json={"deviceName": "Home PC"}
    )
    assert r.status_code == 200, r.text
    await sign_in(tenant, m.email, agent=IPHONE, device_token=first["deviceToken"])
    [d] = [d for d in await device_list(tenant, m.id, m.headers) if d["deviceId"] == device_id]
    assert d["deviceName"] == "Home PC" and d["isTrusted"] is True
    # Past its end the device lists as untrusted (the date stays, to show when it ran out).
    async with services.db.session(all_tenants=True) as db:
        await db.execute(
            update(TrustedDevice)
            .where(TrustedDevice.device_id == device_id)
            .values(trust_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    [d] = [d for d in await device_list(tenant, m.id, m.headers) if d["deviceId"] == device_id]
    assert d["isTrusted"] is False and d["trustExpiresAt"] is not None


async def test_trusting_needs_a_recent_sign_in(tenant, services):
    m = await tenant.member("viewer")
    device_id = await session_device(services, m.tokens)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    async with services.db.session(all_tenants=True) as db:
        await db.execute(
            update(UserSession)
            .where(UserSession.id == uuid.UUID(sid_of(services, m.tokens)))
            .values(authenticated_at=long_ago)
        )
    r = await tenant.client.post(f"{devices_url(m.id, device_id)}/trust", headers=m.headers)
    assert r.status_code == 401 and r.json()["type"].endswith("reauth-required"), r.text
    [d] = await device_list(tenant, m.id, m.headers)
    assert d["isTrusted"] is False


async def test_trust_body_is_validated(tenant, services):
    m = await tenant.member("viewer")
    url = f"{devices_url(m.id, await session_device(services, m.tokens))}/trust"
    for body, field in (
        ({"deviceName": "two\nlines"}, "deviceName"),
        ({"deviceName": "x" * 101}, "deviceName"),
        ({"deviceName": "   "}, "deviceName"),
        ({"name": "unknown field"}, "name"),
    ):
        r = await tenant.client.post(url, headers=m.headers, json=body)
        assert r.status_code == 422, (body, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field], r.text
    r = await tenant.client.post(f"{devices_url(m.id, '0' * 64)}/trust", headers=m.headers)
    assert r.status_code == 404


# --- removal -------------------------------------------------------------------------------


async def test_deleting_a_device_ends_its_sessions_and_only_those(tenant, services):
    c = tenant.client
    m = await tenant.member("team_member")
    laptop = await sign_in(tenant, m.email)
    laptop_again = await sign_in(tenant, m.email, device_token=laptop["deviceToken"])
    phone = await sign_in(tenant, m.email, agent=IPHONE)
    device_id = await session_device(services, laptop)
    r = await c.post(f"{devices_url(m.id, device_id)}/trust", headers=bearer(laptop["accessToken"]))
    assert r.status_code == 200

    r = await c.delete(devices_url(m.id, device_id), headers=bearer(phone["accessToken"]))
    assert r.status_code == 204, r.text
    for tokens in (laptop, laptop_again):
        r = await c.get(ME, headers=bearer(tokens["accessToken"]))
        assert r.status_code == 401 and "device was removed" in r.json()["detail"]
        r = await c.post("/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
        assert r.status_code == 401
    assert (await c.get(ME, headers=bearer(phone["accessToken"]))).status_code == 200
    assert device_id not in {d["deviceId"] for d in await device_list(tenant, m.id, m.headers)}
    # Signing in with the old secret starts over: a device that is not trusted.
    back = await sign_in(tenant, m.email, device_token=laptop["deviceToken"])
    [d] = [d for d in await device_list(tenant, m.id, m.headers) if d["deviceId"] == device_id]
    assert d["isTrusted"] is False and d["activeSessions"] == 1
    assert await session_device(services, back) == device_id

    [entry] = [
        e
        for e in await audit_entries(services, tenant.id, "auth:device:remove")
        if e.resource_id == device_id
    ]
    assert str(entry.actor_id) == m.id and entry.changes["wasTrusted"] is True
    assert entry.changes["sessions"] == sorted(sid_of(services, t) for t in (laptop, laptop_again))
    # A device the user never signed in from is unknown.
    assert (await c.delete(devices_url(m.id, "f" * 64), headers=m.headers)).status_code == 404


async def test_an_admin_removes_a_members_device_and_another_member_cannot(tenant, services):
    c = tenant.client
    m = await tenant.member("viewer")
    colleague = await tenant.member("project_manager")
    device_id = await session_device(services, m.tokens)
    r = await c.delete(devices_url(m.id, device_id), headers=colleague.headers)
    assert r.status_code == 404
    r = await c.post(f"{devices_url(m.id, device_id)}/trust", headers=colleague.headers)
    assert r.status_code == 404
    assert (await c.get(devices_url(m.id), headers=colleague.headers)).status_code == 404
    assert (await c.get(ME, headers=m.headers)).status_code == 200
    r = await c.delete(devices_url(m.id, device_id), headers=tenant.admin.headers)
    assert r.status_code == 204
    assert (await c.get(ME, headers=m.headers)).status_code == 401
    [entry] = [
        e
        for e in await audit_entries(services, tenant.id, "auth:device:remove")
        if e.resource_id == device_id
    ]
    assert str(entry.actor_id) == tenant.admin.id and entry.changes["userId"] == m.id


async def test_another_tenants_admin_gets_404_on_devices(tenant, other_tenant, services):
    m = await tenant.member("viewer")
    device_id = await session_device(services, m.tokens)
    headers = other_tenant.admin.headers
    for method, url in (
        ("GET", devices_url(m.id)),
        ("POST", f"{devices_url(m.id, device_id)}/trust"),
        ("DELETE", devices_url(m.id, device_id)),
    ):
        r = await tenant.client.request(method, url, headers=headers)
        assert r.status_code == 404, (method, url, r.text)
    assert (await tenant.client.get(ME, headers=m.headers)).status_code == 200
