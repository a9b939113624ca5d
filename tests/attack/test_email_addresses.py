"""One email validator everywhere (review finding 7): ``kanvaro bootstrap`` stored
``boss@initech.test``, which sign-in then refused with 422, locking the first admin out."""

from __future__ import annotations

import uuid

import pytest

from kanvaro.bootstrap import bootstrap
from kanvaro.identity.emails import InvalidEmail, normalize_email
from tests.conftest import PASSWORD

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize(
    "address", ["boss@initech.test", "ops@corp.local", "a.b@build.internal", "x@printer.lan"]
)
async def test_internal_domains_bootstrap_and_sign_in(services, client, address):
    local, domain = address.split("@")
    email = f"{local}-{uuid.uuid4().hex[:6]}@{domain}"
    result = await bootstrap(
        services, tenant_name=f"Initech {uuid.uuid4().hex[:6]}", email=email, password=PASSWORD
    )
    r = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": PASSWORD, "tenant": result.tenant_slug},
    )
    assert r.status_code == 200, r.text


async def test_user_creation_accepts_what_sign_in_accepts(tenant):
    email = f"dev-{uuid.uuid4().hex[:6]}@corp.local"
    r = await tenant.client.post(
        "/api/v1/users",
        headers=tenant.admin.headers,
        json={
            "email": email,
            "firstName": "A",
            "lastName": "B",
            "role": "viewer",
            "password": PASSWORD,
        },
    )
    assert r.status_code == 201, r.text
    await tenant.login(email)


async def test_sign_in_never_answers_422_for_an_address(tenant, client):
    for junk in ["no-at-sign", "a@@b", "a@localhost", "x" * 300]:
        r = await client.post(
            "/api/v1/auth/login", json={"email": junk, "password": "x", "tenant": tenant.slug}
        )
        assert r.status_code == 401, (junk, r.text)


async def test_malformed_address_on_creation_names_the_field(tenant):
    r = await tenant.client.post(
        "/api/v1/users",
        headers=tenant.admin.headers,
        json={"email": "a@@b", "firstName": "A", "lastName": "B", "role": "viewer"},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "email"


async def test_deliverable_only_refuses_internal_names():
    assert normalize_email("Ops@Corp.Local") == "ops@corp.local"
    with pytest.raises(InvalidEmail):
        normalize_email("ops@corp.local", deliverable_only=True)
    with pytest.raises(InvalidEmail):
        normalize_email("ops@localhost")
