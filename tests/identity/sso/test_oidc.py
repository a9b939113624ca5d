"""OpenID Connect sign-in against a real provider (npm oidc-provider on loopback): discovery,
code + PKCE S256, state and nonce, ID token and userinfo, JIT provisioning, the role from the
group mapping, linking rules, MFA per provider, sso_sessions and back-channel logout."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from sqlalchemy import select

from kanvaro.identity.models import User, UserSession
from kanvaro.identity.sso.models import SsoIdentity, SsoSession
from kanvaro.services import Services
from tests.conftest import TenantFixture
from tests.identity.sso.conftest import make_provider, session_cookies, sso_sign_in
from tests.identity.sso.idp import Idp


async def _user(services: Services, tenant_id: str, email: str) -> User | None:
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as db:
        return (await db.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def test_first_sign_in_creates_the_user_and_opens_a_session(
    tenant: TenantFixture, oidc_idp: Idp, services: Services
) -> None:
    setup = await make_provider(tenant, oidc_idp, roleMapping={"pm-group": "project_manager"})
    email = f"ann@{setup.domain}"
    r = await sso_sign_in(
        setup,
        oidc_idp,
        "ann-1",
        email=email,
        email_verified=True,
        given_name="Ann",
        family_name="Lee",
        groups=["pm-group"],
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/after"
    cookies = session_cookies(r)
    assert "__Host-kanvaro_access" in cookies
    user = await _user(services, tenant.id, email)
    assert user is not None and user.password_hash is None
    assert (user.first_name, user.last_name) == ("Ann", "Lee")
    me = await tenant.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {cookies['__Host-kanvaro_access']}"}
    )
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "project_manager"
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        link = (
            await db.execute(select(SsoIdentity).where(SsoIdentity.user_id == user.id))
        ).scalar_one()
        assert link.subject == "ann-1"
        row = (
            await db.execute(select(SsoSession).where(SsoSession.user_id == user.id))
        ).scalar_one()
        assert row.user_session_id == uuid.UUID(me.json()["sessionId"])
        assert row.session_id  # the IdP's sid, for logout
        ours = await db.get(UserSession, row.user_session_id)
        assert ours is not None and "sso" in ours.auth_methods


async def test_later_sign_in_updates_name_and_role(
    tenant: TenantFixture, oidc_idp: Idp, services: Services
) -> None:
    setup = await make_provider(tenant, oidc_idp, roleMapping={"pm": "project_manager"})
    email = f"bob@{setup.domain}"
    r = await sso_sign_in(
        setup, oidc_idp, "bob-1", email=email, email_verified=True, given_name="Bob", groups=["pm"]
    )
    assert r.status_code == 303, r.text
    r = await sso_sign_in(
        setup, oidc_idp, "bob-1", email=email, email_verified=True, given_name="Robert", groups=[]
    )
    assert r.status_code == 303, r.text
    user = await _user(services, tenant.id, email)
    assert user is not None and user.first_name == "Robert"
    token = session_cookies(r)["__Host-kanvaro_access"]
    me = await tenant.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["role"] == "viewer"  # no mapped group: the default


async def test_domain_not_allowed_is_refused(tenant: TenantFixture, oidc_idp: Idp) -> None:
    setup = await make_provider(tenant, oidc_idp)
    r = await sso_sign_in(
        setup, oidc_idp, "eve-1", email="eve@elsewhere.example", email_verified=True
    )
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "elsewhere.example" in r.json()["detail"]


async def test_existing_account_is_linked_only_when_allowed_and_vouched(
    tenant: TenantFixture, oidc_idp: Idp
) -> None:
    setup = await make_provider(tenant, oidc_idp)
    email = f"carol@{setup.domain}"
    r = await tenant.client.post(
        "/api/v1/users",
        headers=tenant.admin.headers,
        json={
            "email": email,
            "firstName": "Carol",
            "lastName": "Local",
            "role": "team_member",
            "password": "Str0ng!Kanvaro-Pass",
        },
    )
    assert r.status_code == 201, r.text
    refused = await sso_sign_in(setup, oidc_idp, "carol-1", email=email, email_verified=True)
    assert refused.status_code == 403 and "link" in refused.json()["detail"]
    policy = await tenant.client.put(
        "/api/v1/sso/policy", headers=tenant.admin.headers, json={"linkExistingAccounts": True}
    )
    assert policy.status_code == 200, policy.text
    unverified = await sso_sign_in(setup, oidc_idp, "carol-1", email=email, email_verified=False)
    assert unverified.status_code == 403
    linked = await sso_sign_in(setup, oidc_idp, "carol-1", email=email, email_verified=True)
    assert linked.status_code == 303, linked.text


async def test_idp_mfa_is_trusted_or_kanvaro_asks(tenant: TenantFixture, oidc_idp: Idp) -> None:
    trusting = await make_provider(tenant, oidc_idp, requireIdpMfa=True)
    email = f"dan@{trusting.domain}"
    no_mfa = await sso_sign_in(
        trusting, oidc_idp, "dan-1", email=email, email_verified=True, amr=["pwd"]
    )
    assert no_mfa.status_code == 403 and "second factor" in no_mfa.json()["detail"]
    with_mfa = await sso_sign_in(
        trusting, oidc_idp, "dan-1", email=email, email_verified=True, amr=["pwd", "otp"]
    )
    assert with_mfa.status_code == 303, with_mfa.text


async def test_state_is_single_use_and_bound_to_the_browser(
    tenant: TenantFixture, oidc_idp: Idp
) -> None:
    setup = await make_provider(tenant, oidc_idp)
    email = f"fay@{setup.domain}"
    seen: dict[str, str] = {}

    def keep(stage: str, url: str) -> str:
        seen[stage] = url
        return url

    ok = await sso_sign_in(setup, oidc_idp, "fay-1", email=email, email_verified=True, mutate=keep)
    assert ok.status_code == 303
    from tests.identity.sso.idp import path_of

    again = await tenant.client.get(
        path_of(seen["callback"]), headers={"Cookie": "__Host-kanvaro_sso=" + "x" * 43}
    )
    assert again.status_code == 403


async def test_wrong_state_and_wrong_nonce_are_refused(
    tenant: TenantFixture, oidc_idp: Idp
) -> None:
    setup = await make_provider(tenant, oidc_idp)
    email = f"gil@{setup.domain}"

    def other_state(stage: str, url: str) -> str:
        if stage != "callback":
            return url
        return url.replace("state=", "state=tampered")

    r = await sso_sign_in(
        setup, oidc_idp, "gil-1", email=email, email_verified=True, mutate=other_state
    )
    assert r.status_code == 403 and r.json()["reason"] == "state"

    def other_nonce(stage: str, url: str) -> str:
        if stage != "auth":
            return url
        parts = urlsplit(url)
        nonce = parse_qs(parts.query)["nonce"][0]
        return url.replace(f"nonce={nonce}", "nonce=attacker-chosen-nonce")

    r = await sso_sign_in(
        setup, oidc_idp, "gil-1", email=email, email_verified=True, mutate=other_nonce
    )
    assert r.status_code == 403, r.text
    assert r.json()["reason"] == "id_token_claims" and "nonce" in r.json()["detail"]


@pytest.mark.parametrize("tenant_path", [True])
async def test_tenant_address_and_back_channel_logout(
    tenant: TenantFixture, oidc_idp: Idp, services: Services, tenant_path: bool
) -> None:
    setup = await make_provider(tenant, oidc_idp)
    email = f"hal@{setup.domain}"
    r = await sso_sign_in(setup, oidc_idp, "hal-1", email=email, email_verified=True)
    assert r.status_code == 303, r.text
    token = session_cookies(r)["__Host-kanvaro_access"]
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        row = (
            await db.execute(
                select(SsoSession).where(
                    SsoSession.subject == "hal-1", SsoSession.provider_id == uuid.UUID(setup.id)
                )
            )
        ).scalar_one()
        sid = row.session_id
    # The IdP's logout token, signed with its key (as oidc-provider sends it on logout).
    import time

    from joserfc import jwt

    now = int(time.time())
    logout_token = jwt.encode(
        {"alg": "RS256", "kid": oidc_idp.signing_key.kid, "typ": "logout+jwt"},
        {
            "iss": oidc_idp.issuer,
            "aud": setup.client["client_id"],
            "iat": now,
            "jti": uuid.uuid4().hex,
            "sid": sid,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        },
        oidc_idp.signing_key,
    )
    r = await tenant.client.post(
        f"/api/v1/sso/{setup.id}/backchannel-logout", data={"logout_token": logout_token}
    )
    assert r.status_code == 200, r.text
    me = await tenant.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401
    replay = await tenant.client.post(
        f"/api/v1/sso/{setup.id}/backchannel-logout", data={"logout_token": logout_token}
    )
    assert replay.status_code == 400


async def test_logout_at_the_idp_ends_the_session_here(
    tenant: TenantFixture, oidc_idp: Idp, services: Services
) -> None:
    """The real thing: the user signs out at oidc-provider (RP-initiated logout, confirmed),
    the IdP sends its back-channel logout token, and Kanvaro ends the session it names."""
    import re

    import httpx

    from kanvaro.identity.sso.requests import BROWSER_COOKIE
    from tests.identity.sso.conftest import start_login
    from tests.identity.sso.idp import path_of, through_idp

    setup = await make_provider(tenant, oidc_idp)
    email = f"ivy@{setup.domain}"
    http = tenant.client
    auth_url, secret = await start_login(http, setup.id)
    await oidc_idp.next_account("ivy-1", email=email, email_verified=True)
    async with httpx.AsyncClient() as browser:  # keeps the IdP's session cookie
        back = await through_idp(browser, auth_url, setup.provider["callbackUrl"])
        signed_in = await http.get(path_of(back), headers={"Cookie": f"{BROWSER_COOKIE}={secret}"})
        assert signed_in.status_code == 303, signed_in.text
        token = session_cookies(signed_in)["__Host-kanvaro_access"]
        await oidc_idp.logout_tokens()  # nothing stale from earlier tests
        confirm = await browser.get(
            f"{oidc_idp.issuer}/session/end", params={"client_id": setup.client["client_id"]}
        )
        assert confirm.status_code == 200, confirm.text
        xsrf = re.search(r'name="xsrf" value="([^"]+)"', confirm.text)
        action = re.search(r'action="([^"]+)"', confirm.text)
        assert xsrf and action, confirm.text
        done = await browser.post(
            urljoin(oidc_idp.issuer, action.group(1)), data={"xsrf": xsrf.group(1), "logout": "yes"}
        )
        assert done.status_code in (200, 302, 303), done.text
    delivered = await oidc_idp.logout_tokens()
    assert len(delivered) == 1, delivered
    r = await http.post(
        f"/api/v1/sso/{setup.id}/backchannel-logout", data={"logout_token": delivered[0]}
    )
    assert r.status_code == 200, r.text
    me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401


async def test_plain_oauth2_with_explicit_urls(
    tenant: TenantFixture, oidc_idp: Idp, services: Services
) -> None:
    """Seed 004's OAuth2Config: authorization, token and userinfo URLs named explicitly, the
    user read from userinfo (no ID token is looked at)."""
    from tests.identity.sso.conftest import OidcSetup, unique_domain

    domain = unique_domain()
    config = {
        "authorizationURL": f"{oidc_idp.issuer}/auth",
        "tokenURL": f"{oidc_idp.issuer}/token",
        "userInfoURL": f"{oidc_idp.issuer}/me",
        "scopes": ["openid", "email", "profile"],
        "subjectField": "sub",
        "emailVerifiedField": "email_verified",
        "domains": [domain],
        "clientId": "pending",
    }
    http = tenant.client
    r = await http.post(
        "/api/v1/sso/providers",
        headers=tenant.admin.headers,
        json={"providerType": "oauth2", "name": f"OAuth2 {uuid.uuid4().hex[:6]}", "config": config},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    client = await oidc_idp.register(created["callbackUrl"])
    r = await http.patch(
        f"/api/v1/sso/providers/{created['id']}",
        headers=tenant.admin.headers,
        json={
            "version": created["version"],
            "config": {
                **config,
                "clientId": client["client_id"],
                "clientSecret": client["client_secret"],
            },
        },
    )
    assert r.status_code == 200, r.text
    setup = OidcSetup(tenant, r.json(), client, domain)
    email = f"oli@{domain}"
    signed_in = await sso_sign_in(setup, oidc_idp, "oli-1", email=email, email_verified=True)
    assert signed_in.status_code == 303, signed_in.text
    assert "__Host-kanvaro_access" in session_cookies(signed_in)
    assert (await _user(services, tenant.id, email)) is not None


async def test_sign_ins_and_refusals_are_audited(
    tenant: TenantFixture, oidc_idp: Idp, services: Services
) -> None:
    from kanvaro.audit.models import AuditLog

    setup = await make_provider(tenant, oidc_idp)
    ok = await sso_sign_in(
        setup, oidc_idp, "pat-1", email=f"pat@{setup.domain}", email_verified=True
    )
    assert ok.status_code == 303
    bad = await sso_sign_in(
        setup, oidc_idp, "pat-2", email="pat@not-allowed.example", email_verified=True
    )
    assert bad.status_code == 403
    await services.audit.drain()
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        rows = await db.execute(select(AuditLog).where(AuditLog.tenant_id == uuid.UUID(tenant.id)))
        entries = list(rows.scalars())
    actions = [e.action for e in entries]
    assert "auth:sso:provision" in actions and "auth:sso:refused" in actions
    logins = [e.changes for e in entries if e.action == "auth:login:success"]
    assert any(c.get("methods") == ["sso"] for c in logins)
    refused = next(e for e in entries if e.action == "auth:sso:refused")
    assert refused.changes["reason"] == "domain_not_allowed"
