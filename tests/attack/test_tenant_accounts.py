"""Accounts belong to their tenant (review finding 1).

Before: emails were unique across the instance, so inviting an address answered 409 when it
had an account in *any* tenant (an oracle for other tenants' people), a tenant could reserve
another's addresses, and a consultant could not be a member of two client tenants.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kanvaro.identity import tenant_lookup
from tests.conftest import PASSWORD, new_tenant, unique_email

pytestmark = pytest.mark.asyncio

LOGIN = "/api/v1/auth/login"
VOLATILE = {"instance", "requestId"}


def shape(r):
    return r.status_code, {k: v for k, v in r.json().items() if k not in VOLATILE}


async def _create(tenant, email, role="viewer", password=PASSWORD):
    return await tenant.client.post(
        "/api/v1/users",
        headers=tenant.admin.headers,
        json={
            "email": email,
            "firstName": "Con",
            "lastName": "Sultant",
            "role": role,
            "password": password,
        },
    )


async def test_one_address_is_a_member_of_two_tenants(tenant, other_tenant, client):
    email = unique_email("consultant")
    first = await _create(tenant, email)
    second = await _create(other_tenant, email)
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert first.json()["id"] != second.json()["id"]
    # Each tenant's sign-in reaches that tenant's account, and only that one.
    a = await client.post(LOGIN, json={"email": email, "password": PASSWORD, "tenant": tenant.slug})
    b = await client.post(
        LOGIN, json={"email": email, "password": PASSWORD, "tenant": other_tenant.slug}
    )
    assert a.status_code == b.status_code == 200
    me_a = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {a.json()['accessToken']}"}
    )
    me_b = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {b.json()['accessToken']}"}
    )
    assert me_a.json()["tenantId"] == tenant.id
    assert me_b.json()["tenantId"] == other_tenant.id
    # Inside one tenant the address is still unique: 409 naming the field.
    again = await _create(tenant, email.upper())
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "email"


async def test_inviting_reveals_nothing_about_other_tenants(tenant, other_tenant):
    taken_elsewhere = unique_email("elsewhere")
    assert (await _create(other_tenant, taken_elsewhere)).status_code == 201
    fresh = unique_email("fresh")
    body = {"firstName": "In", "lastName": "Vitee", "role": "viewer"}
    inviter = tenant.admin.headers
    r1 = await tenant.client.post(
        "/api/v1/users", headers=inviter, json={**body, "email": taken_elsewhere}
    )
    r2 = await tenant.client.post("/api/v1/users", headers=inviter, json={**body, "email": fresh})
    # Both are created (an invitation mail each, to the outbox in development): no 409 oracle,
    # and the other tenant cannot reserve the address.
    assert (r1.status_code, r2.status_code) == (201, 201), r1.text


async def test_unknown_address_in_a_tenant_answers_like_a_wrong_password(
    tenant, other_tenant, client
):
    member = await tenant.member("viewer")
    outsider = await other_tenant.member("viewer")
    attempts = {
        "wrong password": {
            "email": member.email,
            "password": PASSWORD + "x",
            "tenant": tenant.slug,
        },
        "unknown address": {
            "email": unique_email("ghost"),
            "password": PASSWORD,
            "tenant": tenant.slug,
        },
        "member of another tenant": {
            "email": outsider.email,
            "password": PASSWORD,
            "tenant": tenant.slug,
        },
        "unknown tenant": {
            "email": member.email,
            "password": PASSWORD,
            "tenant": f"no-{uuid.uuid4().hex[:8]}",
        },
        "no tenant on a multi-tenant instance": {"email": member.email, "password": PASSWORD},
        "not an address at all": {
            "email": "boss@@initech",
            "password": PASSWORD,
            "tenant": tenant.slug,
        },
    }
    shapes = {name: shape(await client.post(LOGIN, json=b)) for name, b in attempts.items()}
    first = shapes["wrong password"]
    assert first[0] == 401
    for name, got in shapes.items():
        assert got == first, name


async def test_per_tenant_sign_in_address(tenant, client):
    member = await tenant.member("viewer")
    info = await client.get(f"/t/{tenant.slug}/auth")
    assert info.status_code == 200
    assert info.json()["loginUrl"].endswith(f"/t/{tenant.slug}/auth/login")
    r = await client.post(
        f"/t/{tenant.slug}/auth/login", json={"email": member.email, "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    mismatch = await client.post(
        f"/t/{tenant.slug}/auth/login",
        json={"email": member.email, "password": PASSWORD, "tenant": "another"},
    )
    assert mismatch.status_code == 422
    assert mismatch.json()["errors"][0]["field"] == "tenant"
    assert (await client.get(f"/t/no-{uuid.uuid4().hex[:8]}/auth")).status_code == 404


async def test_which_tenants_answers_alike_and_mails_the_list(
    smtp_services, smtp_client, smtp_server
):
    inbox, _ = smtp_server
    one = await new_tenant(smtp_services, smtp_client)
    two = await new_tenant(smtp_services, smtp_client)
    email = unique_email("multi")
    assert (await _create(one, email)).status_code == 201
    assert (await _create(two, email)).status_code == 201
    known = await smtp_client.post("/api/v1/auth/tenants", json={"email": email})
    unknown = await smtp_client.post("/api/v1/auth/tenants", json={"email": unique_email("nobody")})
    junk = await smtp_client.post("/api/v1/auth/tenants", json={"email": "not-an-address"})
    assert known.status_code == unknown.status_code == junk.status_code == 202
    assert known.json() == unknown.json() == junk.json()
    await tenant_lookup.drain()
    for _ in range(50):
        if any(email in r for r in inbox.recipients):
            break
        await asyncio.sleep(0.05)
    text = inbox.last_to(email).get_body(preferencelist=("plain",)).get_content()
    assert f"/t/{one.slug}/auth/login" in text and f"/t/{two.slug}/auth/login" in text
    assert PASSWORD not in text


async def test_same_address_as_super_admin_and_member_keeps_them_apart(services, client, tenant):
    from kanvaro.bootstrap import bootstrap

    email = unique_email("root")
    await bootstrap(services, tenant_name=None, email=email, password=PASSWORD, super_admin=True)
    assert (await _create(tenant, email)).status_code == 201
    root = await client.post(LOGIN, json={"email": email, "password": PASSWORD})
    member = await client.post(
        LOGIN, json={"email": email, "password": PASSWORD, "tenant": tenant.slug}
    )
    assert root.status_code == member.status_code == 200
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {root.json()['accessToken']}"}
    )
    assert me.json()["tenantId"] is None
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {member.json()['accessToken']}"}
    )
    assert me.json()["tenantId"] == tenant.id


async def test_naming_the_tenant_or_not_shares_one_guess_budget(data_dir, tmp_path):
    """On a single-tenant instance the tenant may be left out; both spellings of the same
    account must count against one budget, or an attacker doubles his guesses."""
    import httpx

    from kanvaro.app import create_app
    from kanvaro.bootstrap import bootstrap
    from kanvaro.migrate import upgrade
    from kanvaro.services import Services
    from tests.conftest import make_settings

    url = f"sqlite+aiosqlite:///{tmp_path / 'single.db'}"
    upgrade(url)
    settings = make_settings(tmp_path, url, login_max_failures_per_account=4)
    services = Services.build(settings)
    await services.startup()
    try:
        email = unique_email("solo")
        result = await bootstrap(services, tenant_name="Solo", email=email, password=PASSWORD)
        transport = httpx.ASGITransport(app=create_app(settings, services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            statuses = []
            for i in range(6):
                body = {"email": email, "password": "Wrong!Pass-1"}
                if i % 2:
                    body["tenant"] = result.tenant_slug
                statuses.append((await c.post(LOGIN, json=body)).status_code)
    finally:
        await services.shutdown()
    assert statuses == [401, 401, 401, 401, 429, 429]
