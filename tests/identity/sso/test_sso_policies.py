"""Kanvaro's own second factor after an IdP (point 6), "SSO required" with break-glass admins
(point 5), home-realm discovery and the tenant's sign-in page (point 1), key rotation at the
IdP (point 3)."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs

import pyotp
import pytest
from sqlalchemy import select

from kanvaro.identity.models import User
from kanvaro.identity.sso import oidc
from kanvaro.identity.sso.models import SsoSession
from kanvaro.services import Services
from tests.conftest import PASSWORD, TenantFixture
from tests.identity.mfa.policy_support import add_method
from tests.identity.sso.conftest import make_provider, session_cookies, sso_sign_in
from tests.identity.sso.dns_zone import Zone, verify_domain
from tests.identity.sso.idp import Idp, new_key


async def _user_id(services: Services, tenant_id: str, email: str) -> str:
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as db:
        return str((await db.execute(select(User.id).where(User.email == email))).scalar_one())


async def test_kanvaro_mfa_after_the_idp(
    tenant: TenantFixture, oidc_idp: Idp, services: Services
) -> None:
    setup = await make_provider(tenant, oidc_idp, mfaMode="kanvaro")
    email = f"ida@{setup.domain}"
    first = await sso_sign_in(setup, oidc_idp, "ida-1", email=email, email_verified=True)
    assert first.status_code == 303, first.text  # no factor yet, none required
    user_id = await _user_id(services, tenant.id, email)
    secret = pyotp.random_base32(32)
    await add_method(services, tenant.id, user_id, "totp", secret=secret)
    # The IdP says it did MFA, but this provider wants Kanvaro's own.
    second = await sso_sign_in(
        setup, oidc_idp, "ida-1", email=email, email_verified=True, amr=["pwd", "otp"]
    )
    assert second.status_code == 303, second.text
    location = second.headers["location"]
    assert location.startswith("/sign-in#") and "__Host-kanvaro_access" not in session_cookies(
        second
    )
    step = {k: v[0] for k, v in parse_qs(location.split("#", 1)[1]).items()}
    assert "totp" in step["methods"].split(",")
    r = await tenant.client.post(
        "/api/v1/auth/mfa/verify",
        json={"sessionId": step["mfa"], "method": "totp", "code": pyotp.TOTP(secret).now()},
    )
    assert r.status_code == 200, r.text
    me = await tenant.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json()['accessToken']}"}
    )
    session_id = uuid.UUID(me.json()["sessionId"])
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        linked = (
            await db.execute(select(SsoSession).where(SsoSession.user_session_id == session_id))
        ).scalar_one()
        assert linked.mfa_challenge_id is None


async def test_trusted_idp_mfa_skips_kanvaros_step(
    tenant: TenantFixture, oidc_idp: Idp, services: Services
) -> None:
    setup = await make_provider(tenant, oidc_idp, mfaMode="trust_idp")
    email = f"jon@{setup.domain}"
    assert (
        await sso_sign_in(setup, oidc_idp, "jon-1", email=email, email_verified=True)
    ).status_code == 303
    await add_method(
        services,
        tenant.id,
        await _user_id(services, tenant.id, email),
        "totp",
        secret=pyotp.random_base32(32),
    )
    without = await sso_sign_in(
        setup, oidc_idp, "jon-1", email=email, email_verified=True, amr=["pwd"]
    )
    assert without.headers["location"].startswith("/sign-in#mfa=")
    trusted = await sso_sign_in(
        setup, oidc_idp, "jon-1", email=email, email_verified=True, amr=["pwd", "hwk"]
    )
    assert trusted.headers["location"] == "/after"


async def test_sso_required_leaves_passwords_to_break_glass_admins(tenant: TenantFixture) -> None:
    member = await tenant.member("team_member")
    needs_one = await tenant.client.put(
        "/api/v1/sso/policy", headers=tenant.admin.headers, json={"requireSso": True}
    )
    assert needs_one.status_code == 422
    assert needs_one.json()["errors"][0]["field"] == "breakGlassUserIds"
    r = await tenant.client.put(
        "/api/v1/sso/policy",
        headers=tenant.admin.headers,
        json={"requireSso": True, "breakGlassUserIds": [tenant.admin.id]},
    )
    assert r.status_code == 200, r.text
    refused = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": member.email, "password": PASSWORD, "tenant": tenant.slug},
    )
    assert refused.status_code == 401
    assert refused.json()["type"].endswith("sign-in-refused")
    assert "single sign-on" in refused.json()["detail"]
    wrong = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": member.email, "password": "not-the-password", "tenant": tenant.slug},
    )
    assert "single sign-on" not in wrong.json()["detail"]  # nothing learnt without the password
    admin = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": tenant.admin.email, "password": PASSWORD, "tenant": tenant.slug},
    )
    assert admin.status_code == 200, admin.text


async def test_home_realm_discovery_and_the_sign_in_page(
    tenant: TenantFixture, oidc_idp: Idp, dns_zone: Zone
) -> None:
    setup = await make_provider(tenant, oidc_idp)
    body = {"email": f"kim@{setup.domain}", "tenant": tenant.slug}
    unverified = await tenant.client.post("/api/v1/sso/discover", json=body)
    assert unverified.status_code == 200 and unverified.json()["sso"] is False
    await verify_domain(tenant, dns_zone, setup.domain)  # the TXT record, checked by DNS
    found = await tenant.client.post("/api/v1/sso/discover", json=body)
    assert found.json()["sso"] is True and found.json()["providerId"] == setup.id
    assert found.json()["loginUrl"].endswith(f"/t/{tenant.slug}/sso/{setup.id}/login")
    alike = await tenant.client.post(
        "/api/v1/sso/discover", json={"email": f"nobody-{uuid.uuid4().hex}@{setup.domain}"}
    )
    assert alike.json()["sso"] is True  # the domain decides, never the address
    page = await tenant.client.get(f"/t/{tenant.slug}/auth")
    assert page.status_code == 200, page.text
    listed = page.json()["providers"]
    assert [p["id"] for p in listed] == [setup.id] and "sso" in page.json()["methods"]
    start = await tenant.client.get(f"/t/{tenant.slug}/sso/{setup.id}/login")
    assert start.status_code == 303 and start.headers["location"].startswith(oidc_idp.issuer)
    assert (
        await tenant.client.get(f"/t/wrong-{tenant.slug}/sso/{setup.id}/login")
    ).status_code == 404


async def test_signing_key_rotation_at_the_idp_is_followed(
    tenant: TenantFixture, oidc_idp: Idp, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = await make_provider(tenant, oidc_idp)
    email = f"lea@{setup.domain}"
    assert (
        await sso_sign_in(setup, oidc_idp, "lea-1", email=email, email_verified=True)
    ).status_code == 303
    monkeypatch.setattr(oidc, "JWKS_REFETCH_MIN", 0.0)  # no minute to wait in a test
    old = oidc_idp.keys
    oidc_idp.restart_with([new_key(f"k-{uuid.uuid4().hex[:6]}"), *old])  # signs with the new one
    try:
        # The IdP forgot its registrations (memory): register again, same redirect URI.
        again = await oidc_idp.register(setup.provider["callbackUrl"])
        r = await tenant.client.patch(
            f"/api/v1/sso/providers/{setup.id}",
            headers=tenant.admin.headers,
            json={
                "version": setup.provider["version"],
                "config": {
                    **setup.provider["config"],
                    "clientId": again["client_id"],
                    "clientSecret": again["client_secret"],
                },
            },
        )
        assert r.status_code == 200, r.text
        setup.provider, setup.client = r.json(), again
        # The cached JWKS lacks the new kid: fetched again, and the sign-in goes through.
        r = await sso_sign_in(setup, oidc_idp, "lea-1", email=email, email_verified=True)
        assert r.status_code == 303, r.text
    finally:
        oidc_idp.restart_with(old)
