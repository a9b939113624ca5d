"""The provider admin API (point 1): create with a validated config (422 naming the field),
secrets encrypted at rest and never shown, update keeping secrets, the "test" action in
words, no role escalation through a group mapping, disable and delete."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from kanvaro.services import Services
from tests.conftest import TenantFixture
from tests.identity.sso.conftest import make_provider, sso_sign_in
from tests.identity.sso.idp import Idp

PROVIDERS = "/api/v1/sso/providers"


def _oidc(issuer: str, **config: object) -> dict:
    return {
        "providerType": "oidc",
        "name": f"OIDC {uuid.uuid4().hex[:6]}",
        "config": {"issuer": issuer, "clientId": "kanvaro", **config},
    }


async def test_bad_config_is_a_422_naming_the_field(tenant: TenantFixture) -> None:
    for config, field in (
        ({"clientId": "x"}, "config.issuer"),
        ({"issuer": "not a url", "clientId": "x"}, "config.issuer"),
        ({"issuer": "https://idp.example", "clientId": "x", "scopes": ["email"]}, "config.scopes"),
        ({"issuer": "https://idp.example", "clientId": "x", "surprise": 1}, "config.surprise"),
        (
            {"issuer": "https://idp.example", "clientId": "x", "idTokenSigningAlgs": ["none"]},
            "config.idTokenSigningAlgs.0",
        ),
        (
            {"issuer": "https://idp.example", "clientId": "x", "idTokenSigningAlgs": ["HS256"]},
            "config.idTokenSigningAlgs.0",
        ),
        (
            {"issuer": "https://idp.example", "clientId": "x", "defaultRole": "no-such-role"},
            "config.defaultRole",
        ),
    ):
        r = await tenant.client.post(
            PROVIDERS,
            headers=tenant.admin.headers,
            json={"providerType": "oidc", "name": "Bad", "config": config},
        )
        assert r.status_code == 422, (config, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], r.text
    r = await tenant.client.post(
        PROVIDERS,
        headers=tenant.admin.headers,
        json={"providerType": "ldap", "name": "x", "config": {}},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "providerType"


async def test_client_secret_is_encrypted_at_rest_and_never_shown(
    tenant: TenantFixture, services: Services, capsys: object
) -> None:
    canary = f"secret-canary-{uuid.uuid4().hex}"
    r = await tenant.client.post(
        PROVIDERS,
        headers=tenant.admin.headers,
        json=_oidc("https://idp.example", clientSecret=canary),
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert canary not in r.text and created["secretsSet"] == ["clientSecret"]
    listed = await tenant.client.get(PROVIDERS, headers=tenant.admin.headers)
    assert canary not in listed.text
    async with services.db.session(all_tenants=True) as db:
        stored = (
            await db.execute(
                text("SELECT config, secrets_encrypted FROM sso_providers WHERE id = :id"),
                {
                    "id": created["id"]
                    if services.db.engine.dialect.name == "postgresql"
                    else uuid.UUID(created["id"]).hex
                },
            )
        ).one()
        assert canary not in str(stored.config) and canary not in str(stored.secrets_encrypted)
        assert str(stored.secrets_encrypted).startswith("kv1:")
        audit = (await db.execute(text("SELECT changes FROM audit_logs"))).scalars().all()
        assert not any(canary in str(a) for a in audit)
    # A change that leaves the secret out keeps it.
    r = await tenant.client.patch(
        f"{PROVIDERS}/{created['id']}",
        headers=tenant.admin.headers,
        json={
            "version": created["version"],
            "config": {"issuer": "https://idp.example", "clientId": "kanvaro2"},
        },
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["secretsSet"] == ["clientSecret"] and r.json()["config"]["clientId"] == "kanvaro2"
    )
    stale = await tenant.client.patch(
        f"{PROVIDERS}/{created['id']}",
        headers=tenant.admin.headers,
        json={"version": created["version"], "enabled": False},
    )
    assert stale.status_code == 412
    out = capsys.readouterr()  # type: ignore[attr-defined]
    assert canary not in out.out and canary not in out.err


async def test_test_action_says_what_is_wrong(tenant: TenantFixture, oidc_idp: Idp) -> None:
    r = await tenant.client.post(
        PROVIDERS, headers=tenant.admin.headers, json=_oidc("http://127.0.0.1:9/nothing-here")
    )
    assert r.status_code == 201, r.text
    report = await tenant.client.post(
        f"{PROVIDERS}/{r.json()['id']}/test", headers=tenant.admin.headers
    )
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["ok"] is False
    assert any("could not be reached" in p for p in body["problems"]), body
    assert any("No email domain" in p for p in body["problems"]), body
    good = await make_provider(tenant, oidc_idp)
    report = await tenant.client.post(f"{PROVIDERS}/{good.id}/test", headers=tenant.admin.headers)
    problems = report.json()["problems"]
    # Only the home-realm note (its domain is not verified yet): the IdP itself is fine.
    assert [p for p in problems if "Home-realm" not in p] == [], problems


async def test_no_role_escalation_through_the_mapping(tenant: TenantFixture) -> None:
    """A custom role holding more than the admin may assign cannot be handed out by an IdP:
    here the instance-only ``super_admin`` role does not exist in the tenant at all, and the
    admin's own ``admin`` role is assignable (it is built in)."""
    r = await tenant.client.post(
        PROVIDERS,
        headers=tenant.admin.headers,
        json=_oidc("https://idp.example", roleMapping={"x": "super_admin"}),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "config.roleMapping"


async def test_a_disabled_or_deleted_provider_signs_nobody_in(
    tenant: TenantFixture, oidc_idp: Idp
) -> None:
    setup = await make_provider(tenant, oidc_idp)
    email = f"max@{setup.domain}"
    ok = await sso_sign_in(setup, oidc_idp, "max-1", email=email, email_verified=True)
    token = ok.headers.get_list("set-cookie")
    access = next(
        v.split(";")[0].split("=", 1)[1] for v in token if v.startswith("__Host-kanvaro_access=")
    )
    r = await tenant.client.patch(
        f"{PROVIDERS}/{setup.id}",
        headers=tenant.admin.headers,
        json={"version": setup.provider["version"], "enabled": False},
    )
    assert r.status_code == 200, r.text
    assert (await tenant.client.get(f"/api/v1/sso/{setup.id}/login")).status_code == 404
    r = await tenant.client.delete(f"{PROVIDERS}/{setup.id}", headers=tenant.admin.headers)
    assert r.status_code == 204
    me = await tenant.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 401  # the sessions it opened ended with it
    assert (
        await tenant.client.get(f"{PROVIDERS}/{setup.id}", headers=tenant.admin.headers)
    ).status_code == 404


async def test_another_tenants_provider_is_invisible(
    tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    r = await tenant.client.post(
        PROVIDERS, headers=tenant.admin.headers, json=_oidc("https://idp.example")
    )
    pid = r.json()["id"]
    theirs = await other_tenant.client.get(f"{PROVIDERS}/{pid}", headers=other_tenant.admin.headers)
    assert theirs.status_code == 404
    assert (
        pid
        not in (await other_tenant.client.get(PROVIDERS, headers=other_tenant.admin.headers)).text
    )
    wrong_address = await tenant.client.get(f"/t/{other_tenant.slug}/sso/{pid}/login")
    assert wrong_address.status_code == 404


async def test_the_sweep_forgets_spent_and_expired_requests(
    tenant: TenantFixture, oidc_idp: Idp, services: Services
) -> None:
    from datetime import timedelta

    from sqlalchemy import func, select

    from kanvaro.identity.sso import requests
    from kanvaro.identity.sso.models import SsoRequest

    assert "sso.requests.expire" in services.jobs.jobs
    setup = await make_provider(tenant, oidc_idp)
    r = await tenant.client.get(f"/api/v1/sso/{setup.id}/login")
    assert r.status_code == 303
    count = (
        select(func.count())
        .select_from(SsoRequest)
        .where(SsoRequest.provider_id == uuid.UUID(setup.id))
    )
    async with services.db.session(all_tenants=True) as db:
        assert (await db.execute(count)).scalar_one() == 1
    async with services.db.session(all_tenants=True) as db:  # the job's work, an hour on
        assert await requests.sweep(db, services.clock.now() + timedelta(hours=1)) >= 1
    async with services.db.session(all_tenants=True) as db:
        assert (await db.execute(count)).scalar_one() == 0
