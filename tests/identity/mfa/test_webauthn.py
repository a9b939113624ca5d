"""WebAuthn over HTTP with a software authenticator (``webauthn_soft``): registration of
several named authenticators, the second step of a password sign-in, passwordless passkey
sign-in, and what must be refused (UV missing under a UV policy, a counter that went back, a
model not on the allow-list, a replayed or foreign answer). The same ceremonies in a real
browser: ``test_webauthn_browser.py``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update
from webauthn.helpers import bytes_to_base64url

from kanvaro.audit.models import AuditLog
from kanvaro.identity.mfa.models import MfaMethod
from kanvaro.identity.mfa.webauthn_rp import RelyingParty
from kanvaro.services import Services
from tests.conftest import PASSWORD
from tests.identity.conftest import audit_entries
from tests.identity.mfa.policy_support import set_mfa_policy
from tests.identity.mfa.webauthn_soft import SoftAuthenticator, aaguid_text

BASE = "/api/v1/auth/webauthn"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"


@pytest.fixture
def soft(services: Services) -> SoftAuthenticator:
    rp = RelyingParty.of(services.settings)
    return SoftAuthenticator(origin=rp.origin, rp_id=rp.id)


async def register(tenant: Any, soft: SoftAuthenticator, name: str = "Laptop") -> Any:
    r = await tenant.client.post(f"{BASE}/register/options", headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    options = r.json()
    answer = soft.create(options["publicKey"])
    return await tenant.client.post(
        f"{BASE}/register/verify",
        headers=tenant.admin.headers,
        json={"challengeId": options["challengeId"], "credential": answer, "name": name},
    )


async def password_step(tenant: Any) -> str:
    r = await tenant.client.post(
        LOGIN, json={"email": tenant.admin.email, "password": PASSWORD, "tenant": tenant.slug}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["requiresMFA"] is True and "webauthn" in body["methods"], body
    return body["sessionId"]


async def second_step(tenant: Any, soft: SoftAuthenticator, **get: Any) -> Any:
    session_id = await password_step(tenant)
    r = await tenant.client.post(f"{BASE}/authenticate/options", json={"sessionId": session_id})
    assert r.status_code == 200, r.text
    answer = soft.get(r.json()["publicKey"], **get)
    return await tenant.client.post(
        f"{BASE}/authenticate/verify", json={"sessionId": session_id, "credential": answer}
    )


async def passkey(tenant: Any, soft: SoftAuthenticator, **get: Any) -> Any:
    r = await tenant.client.post(f"{BASE}/passkey/options", json={"tenant": tenant.slug})
    assert r.status_code == 200, r.text
    options = r.json()
    assert options["publicKey"]["allowCredentials"] == []
    assert options["publicKey"]["userVerification"] == "required"
    answer = soft.get(options["publicKey"], **get)
    return await tenant.client.post(
        f"{BASE}/passkey/verify", json={"sessionId": options["sessionId"], "credential": answer}
    )


async def methods_of(services: Services, tenant: Any) -> list[MfaMethod]:
    """The admin's authenticators (his backup codes, issued with the first one, aside)."""
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        rows = await db.execute(
            select(MfaMethod).where(
                MfaMethod.user_id == uuid.UUID(tenant.admin.id),
                MfaMethod.method_type == "webauthn",
            )
        )
        return list(rows.scalars())


async def test_registration_stores_several_named_authenticators(services, tenant, soft):
    first = await register(tenant, soft, "Laptop")
    assert first.status_code == 201, first.text
    assert len(first.json()["backupCodes"]) == 10  # the first factor brings the codes
    assert first.json()["method"] == "webauthn" and first.json()["name"] == "Laptop"
    r = await tenant.client.post(f"{BASE}/register/options", headers=tenant.admin.headers)
    options = r.json()["publicKey"]
    # The second ceremony excludes the first credential, prefers a passkey.
    assert [c["id"] for c in options["excludeCredentials"]] == [
        bytes_to_base64url(soft.credentials[0].credential_id)
    ]
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["rp"]["id"] == "localhost"
    second = await register(tenant, soft, "Phone")
    assert second.status_code == 201, second.text

    stored = sorted(await methods_of(services, tenant), key=lambda m: m.device_name or "")
    assert [m.device_name for m in stored] == ["Laptop", "Phone"]
    for method, cred in zip(stored, soft.credentials, strict=True):
        assert method.credential_id == cred.credential_id
        assert method.verified_at is not None and method.public_key
        assert method.aaguid == aaguid_text(soft.aaguid)
        assert method.transports == ["internal"]
        assert method.discoverable is True and method.user_verified is True


async def test_a_registration_challenge_is_single_use(tenant, soft):
    r = await tenant.client.post(f"{BASE}/register/options", headers=tenant.admin.headers)
    options = r.json()
    body = {"challengeId": options["challengeId"], "credential": soft.create(options["publicKey"])}
    ok = await tenant.client.post(
        f"{BASE}/register/verify", headers=tenant.admin.headers, json=body
    )
    assert ok.status_code == 201, ok.text
    again = await tenant.client.post(
        f"{BASE}/register/verify", headers=tenant.admin.headers, json=body
    )
    assert again.status_code == 422
    assert again.json()["errors"][0]["field"] == "challengeId"


async def test_an_answer_for_another_origin_is_refused(tenant, soft):
    soft.origin = "https://phish.example"
    r = await register(tenant, soft)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "credential"


async def test_password_then_webauthn_gives_the_token_pair(services, tenant, soft):
    assert (await register(tenant, soft)).status_code == 201
    r = await second_step(tenant, soft)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["requiresMFA"] is False and tokens["tokenType"] == "Bearer"
    me = await tenant.client.get(ME, headers={"Authorization": f"Bearer {tokens['accessToken']}"})
    assert me.status_code == 200, me.text
    entries = await audit_entries(services, tenant.id, "auth:login:success")
    assert entries[-1].changes["methods"] == ["password", "webauthn"]
    (method,) = await methods_of(services, tenant)
    assert method.sign_count == soft.credentials[0].counter == 1


async def test_a_replayed_assertion_is_refused(tenant, soft):
    assert (await register(tenant, soft)).status_code == 201
    session_id = await password_step(tenant)
    r = await tenant.client.post(f"{BASE}/authenticate/options", json={"sessionId": session_id})
    answer = soft.get(r.json()["publicKey"])
    body = {"sessionId": session_id, "credential": answer}
    assert (await tenant.client.post(f"{BASE}/authenticate/verify", json=body)).status_code == 200
    replay = await tenant.client.post(f"{BASE}/authenticate/verify", json=body)
    assert replay.status_code == 401


async def test_passkey_sign_in_without_a_password(services, tenant, soft):
    assert (await register(tenant, soft)).status_code == 201
    r = await passkey(tenant, soft)
    assert r.status_code == 200, r.text
    me = await tenant.client.get(ME, headers={"Authorization": f"Bearer {r.json()['accessToken']}"})
    assert me.status_code == 200 and me.json()["email"] == tenant.admin.email
    entries = await audit_entries(services, tenant.id, "auth:login:success")
    assert entries[-1].changes["methods"] == ["webauthn"]


async def test_passkey_of_another_tenant_is_refused(tenant, other_tenant, soft):
    assert (await register(tenant, soft)).status_code == 201
    r = await other_tenant.client.post(
        f"{BASE}/passkey/options", json={"tenant": other_tenant.slug}
    )
    options = r.json()
    answer = soft.get(options["publicKey"])
    refused = await other_tenant.client.post(
        f"{BASE}/passkey/verify", json={"sessionId": options["sessionId"], "credential": answer}
    )
    assert refused.status_code == 401


async def test_without_user_verification_refused_when_the_policy_requires_it(tenant, soft):
    await set_mfa_policy(tenant, requireUserVerification=True)
    assert (await register(tenant, soft)).status_code == 201
    soft.user_verified = False
    assert (await second_step(tenant, soft)).status_code == 401
    assert (await passkey(tenant, soft)).status_code == 401  # a passkey always needs UV
    # ...and a new authenticator without UV cannot be registered.
    assert (await register(tenant, soft, "No UV")).status_code == 422
    soft.user_verified = True
    assert (await second_step(tenant, soft, credential=soft.credentials[0])).status_code == 200


async def test_a_sign_count_regression_is_refused_and_audited(services, tenant, soft):
    assert (await register(tenant, soft)).status_code == 201
    assert (await second_step(tenant, soft, counter=7)).status_code == 200
    refused = await second_step(tenant, soft, counter=7)  # a clone would repeat a count
    assert refused.status_code == 401
    assert (await passkey(tenant, soft, counter=3)).status_code == 401
    events = await audit_entries(services, tenant.id, "auth:webauthn:sign_count_regression")
    assert [(e.changes["storedCount"], e.changes["presentedCount"]) for e in events] == [
        (7, 7),
        (7, 3),
    ]
    (method,) = await methods_of(services, tenant)
    assert method.sign_count == 7
    assert (await second_step(tenant, soft, counter=8)).status_code == 200


async def test_the_aaguid_allow_list_refuses_other_models(services, tenant, soft):
    assert (await register(tenant, soft, "Before")).status_code == 201
    await set_mfa_policy(tenant, allowedAaguids=[str(uuid.uuid4())])
    r = await tenant.client.post(f"{BASE}/register/options", headers=tenant.admin.headers)
    assert r.json()["publicKey"]["attestation"] == "direct"
    refused = await register(tenant, soft, "After")
    assert refused.status_code == 422, refused.text
    assert "not allowed" in refused.json()["errors"][0]["message"]
    # An authenticator registered before the list no longer signs in either.
    assert (await passkey(tenant, soft, credential=soft.credentials[0])).status_code == 401
    await set_mfa_policy(tenant, allowedAaguids=[aaguid_text(soft.aaguid)])
    assert (await register(tenant, soft, "Listed")).status_code == 201


async def test_u2f_is_an_alias_and_the_appid_is_offered(services, tenant, soft, monkeypatch):
    monkeypatch.setattr(services.settings, "webauthn_u2f_appid", "https://localhost/u2f.json")
    r = await tenant.client.post(
        "/api/v1/auth/mfa/setup", headers=tenant.admin.headers, json={"method": "u2f"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["publicKey"]["rp"]["id"] == "localhost"
    answer = soft.create(r.json()["publicKey"])
    ok = await tenant.client.post(
        f"{BASE}/register/verify",
        headers=tenant.admin.headers,
        json={"challengeId": r.json()["challengeId"], "credential": answer},
    )
    assert ok.status_code == 201, ok.text
    session_id = await password_step(tenant)
    options = await tenant.client.post(
        f"{BASE}/authenticate/options", json={"sessionId": session_id}
    )
    assert options.json()["publicKey"]["extensions"] == {"appid": "https://localhost/u2f.json"}
    # A legacy U2F key signs for the AppID, and the browser says it used the extension.
    soft.rp_id = "https://localhost/u2f.json"
    answer = soft.get(options.json()["publicKey"])
    body = {"sessionId": session_id, "credential": answer}
    unflagged = await tenant.client.post(f"{BASE}/authenticate/verify", json=body)
    assert unflagged.status_code == 401  # signed for the AppID but not claiming it
    answer["clientExtensionResults"] = {"appid": True}
    signed_in = await tenant.client.post(f"{BASE}/authenticate/verify", json=body)
    assert signed_in.status_code == 200, signed_in.text


async def test_no_credential_material_in_audit_or_answers(services, tenant, soft):
    created = await register(tenant, soft)
    assert (await second_step(tenant, soft)).status_code == 200
    assert (await second_step(tenant, soft, counter=1)).status_code == 401
    (method,) = await methods_of(services, tenant)
    secrets = [bytes_to_base64url(method.credential_id), bytes_to_base64url(method.public_key)]
    await services.audit.drain()
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        rows = await db.execute(select(AuditLog).where(AuditLog.tenant_id == uuid.UUID(tenant.id)))
        stored = json.dumps([e.changes for e in rows.scalars()], default=str)
    for secret in secrets:
        assert secret not in stored
        assert secret not in created.text


async def test_bad_input_is_a_problem_naming_the_field(tenant):
    r = await tenant.client.post(
        f"{BASE}/register/verify",
        headers=tenant.admin.headers,
        json={"challengeId": str(uuid.uuid4()), "credential": {"rawId": 5}},
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "credential"
    r = await tenant.client.post(f"{BASE}/passkey/verify", json={"sessionId": "nope"})
    assert r.status_code == 422
    unknown = await tenant.client.post(
        f"{BASE}/authenticate/options", json={"sessionId": str(uuid.uuid4())}
    )
    assert unknown.status_code == 401


async def test_editing_the_stored_count_makes_the_next_assertion_a_regression(
    services, tenant, soft
):
    assert (await register(tenant, soft)).status_code == 201
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        await db.execute(update(MfaMethod).values(sign_count=100))
    assert (await second_step(tenant, soft)).status_code == 401  # counter 1 <= 100


async def _set_column(services: Services, tenant: Any, statement: Any) -> None:
    async with services.db.session(all_tenants=True) as db:
        await db.execute(statement)


async def test_passkey_refused_for_a_deactivated_user_a_suspended_tenant_or_a_policy_without_it(
    services, tenant, soft
):
    from kanvaro.identity.models import User
    from kanvaro.tenancy.models import Tenant

    assert (await register(tenant, soft)).status_code == 201
    assert (await passkey(tenant, soft)).status_code == 200

    await set_mfa_policy(tenant, allowedMethods=["totp", "backup_code"])
    assert (await passkey(tenant, soft)).status_code == 401
    await set_mfa_policy(tenant, allowedMethods=["totp", "webauthn", "backup_code"])

    user = uuid.UUID(tenant.admin.id)
    await _set_column(services, tenant, update(User).where(User.id == user).values(is_active=False))
    assert (await passkey(tenant, soft)).status_code == 401
    await _set_column(services, tenant, update(User).where(User.id == user).values(is_active=True))

    tid = uuid.UUID(tenant.id)
    await _set_column(
        services, tenant, update(Tenant).where(Tenant.id == tid).values(status="suspended")
    )
    assert (await passkey(tenant, soft)).status_code == 401
