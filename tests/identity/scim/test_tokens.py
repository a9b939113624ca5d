"""SCIM tokens: shown once and stored hashed, rotated (the old secret stops at once),
revoked; one tenant's token reaches nothing of another's; a user's access token is no SCIM
token; only someone who could assign ``admin`` manages them."""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select

from kanvaro.identity.scim.models import ScimToken
from tests.identity.scim.conftest import (
    MAPPINGS,
    SCIM,
    SCIM_JSON,
    TOKENS,
    ScimClient,
    assert_scim_error,
    audit_actions,
    new_token,
    user_body,
)


async def test_a_token_is_shown_once_and_stored_hashed(scim: ScimClient, services):
    tenant = scim.tenant
    r = await tenant.client.get(TOKENS, headers=tenant.admin.headers)
    assert r.status_code == 200
    (listed,) = [t for t in r.json() if t["id"] == scim.token_id]
    assert "token" not in listed and scim.token not in r.text
    assert listed["isActive"] is True and scim.token.startswith("kvscim_" + listed["hint"])
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        row = (
            await db.execute(select(ScimToken).where(ScimToken.id == uuid.UUID(scim.token_id)))
        ).scalar_one()
        assert row.token_hash == hashlib.sha256(scim.token.encode()).hexdigest()
        assert scim.token not in repr(row)
    assert (await scim.get("/Users")).status_code == 200
    r = await tenant.client.get(TOKENS, headers=tenant.admin.headers)
    (listed,) = [t for t in r.json() if t["id"] == scim.token_id]
    assert listed["lastUsedAt"] is not None


async def test_rotation_and_revocation_take_effect_at_once(scim: ScimClient, services):
    tenant = scim.tenant
    old = scim.token
    r = await tenant.client.post(f"{TOKENS}/{scim.token_id}/rotate", headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    new = r.json()["token"]
    assert new != old and r.json()["id"] == scim.token_id
    assert_scim_error(await scim.client.get(f"{SCIM}/Users", headers=scim.headers(old)), 401)
    assert (await scim.client.get(f"{SCIM}/Users", headers=scim.headers(new))).status_code == 200

    r = await tenant.client.delete(f"{TOKENS}/{scim.token_id}", headers=tenant.admin.headers)
    assert r.status_code == 204
    r = await scim.client.get(f"{SCIM}/Users", headers=scim.headers(new))
    assert_scim_error(r, 401)
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    r = await tenant.client.post(f"{TOKENS}/{scim.token_id}/rotate", headers=tenant.admin.headers)
    assert r.status_code == 409
    actions = [e.action for e in await audit_actions(services, tenant.id)]
    assert {"api:scim_token:create", "api:scim_token:rotate", "api:scim_token:revoke"} <= set(
        actions
    )
    text = "\n".join(str(e.changes) for e in await audit_actions(services, tenant.id))
    assert old not in text and new not in text


async def test_tokens_are_isolated_between_tenants(scim: ScimClient, other_tenant):
    mine = (await scim.post("/Users", user_body())).json()["id"]
    theirs_token, _ = await new_token(other_tenant)
    theirs = ScimClient(scim.client, theirs_token, "", other_tenant)
    assert_scim_error(await theirs.get(f"/Users/{mine}"), 404)
    assert_scim_error(
        await theirs.patch(f"/Users/{mine}", [{"op": "replace", "value": {"active": False}}]), 404
    )
    assert_scim_error(await theirs.delete(f"/Users/{mine}"), 404)
    listed = (await theirs.get("/Users", count=200)).json()
    assert mine not in {u["id"] for u in listed.get("Resources", [])}
    assert (await scim.get(f"/Users/{mine}")).json()["active"] is True
    # A group of one tenant cannot take in a person of another.
    r = await theirs.post(
        "/Groups",
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "X",
         "members": [{"value": mine}]},
    )  # fmt: skip
    assert_scim_error(r, 400, "invalidValue")
    # Another tenant's admin cannot see or revoke this tenant's token.
    r = await other_tenant.client.delete(
        f"{TOKENS}/{scim.token_id}", headers=other_tenant.admin.headers
    )
    assert r.status_code == 404
    assert (await scim.get("/Users")).status_code == 200


async def test_what_is_not_a_scim_token_is_refused(scim: ScimClient):
    tenant = scim.tenant
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer kvscim_forged"},
        tenant.admin.headers,  # a user's access token
    ):
        r = await scim.client.get(f"{SCIM}/Users", headers=headers)
        assert_scim_error(r, 401)
    r = await scim.client.get("/api/v1/auth/me", headers=scim.headers())
    assert r.status_code == 401  # and a SCIM token is no user token


async def test_only_an_admin_assigner_manages_tokens_and_mappings(scim: ScimClient):
    tenant = scim.tenant
    manager = await tenant.member("project_manager")
    r = await tenant.client.post(TOKENS, headers=manager.headers, json={"name": "x"})
    assert r.status_code == 403
    # A custom role with user:manage but less than admin may not mint a provisioning token.
    r = await tenant.client.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={"name": f"helpdesk-{uuid.uuid4().hex[:6]}", "permissions": ["user:manage", "team:read"],
              "projectScoped": False},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    helpdesk = await tenant.member(r.json()["name"])
    r = await tenant.client.post(TOKENS, headers=helpdesk.headers, json={"name": "x"})
    assert r.status_code == 403, r.text
    r = await tenant.client.put(MAPPINGS, headers=helpdesk.headers, json={"mappings": []})
    assert r.status_code == 403, r.text
    r = await tenant.client.post(f"{TOKENS}/{scim.token_id}/rotate", headers=helpdesk.headers)
    assert r.status_code == 403


async def test_discovery_endpoints(scim: ScimClient):
    r = await scim.get("/ServiceProviderConfig")
    assert r.status_code == 200 and r.headers["content-type"].startswith(SCIM_JSON)
    config = r.json()
    assert config["patch"]["supported"] is True and config["bulk"]["supported"] is False
    assert config["filter"]["supported"] is True
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    r = await scim.get("/ResourceTypes")
    names = {t["name"] for t in r.json()["Resources"]}
    assert names == {"User", "Group"}
    r = await scim.get("/ResourceTypes/User")
    assert r.json()["endpoint"] == "/Users"
    r = await scim.get("/Schemas")
    ids = {s["id"] for s in r.json()["Resources"]}
    assert "urn:ietf:params:scim:schemas:core:2.0:User" in ids
    r = await scim.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group")
    assert r.status_code == 200 and r.json()["name"] == "Group"
    assert_scim_error(await scim.get("/Schemas/urn:nope"), 404)
    assert_scim_error(await scim.client.get(f"{SCIM}/ServiceProviderConfig"), 401)


async def test_paging(scim: ScimClient):
    made = [(await scim.post("/Users", user_body())).json()["id"] for _ in range(3)]
    r = await scim.get("/Users", startIndex=1, count=2)
    page = r.json()
    assert page["itemsPerPage"] == 2 and page["startIndex"] == 1
    assert page["totalResults"] >= 4  # the admin and the three
    everyone = (await scim.get("/Users", startIndex=1, count=200)).json()["Resources"]
    assert set(made) <= {u["id"] for u in everyone}
    r = await scim.get("/Users", startIndex=0, count=0)
    assert r.json()["startIndex"] == 1 and r.json().get("Resources", []) == []


async def test_no_token_in_logs(scim: ScimClient, capsys):
    forged = "kvscim_" + "Q" * 43
    await scim.get("/Users")
    await scim.client.get(f"{SCIM}/Users", headers=scim.headers(forged))
    r = await scim.tenant.client.post(
        f"{TOKENS}/{scim.token_id}/rotate", headers=scim.tenant.admin.headers
    )
    out = capsys.readouterr()
    logs = out.out + out.err
    assert "scim_token_refused" in logs  # the refusal is logged ...
    for secret in (scim.token, forged, r.json()["token"]):  # ... without the token
        assert secret not in logs


async def test_a_suspended_tenants_token_is_refused(scim: ScimClient, services):
    from kanvaro.tenancy.models import Tenant

    async with services.db.session(all_tenants=True) as db:
        tenant = await db.get(Tenant, uuid.UUID(scim.tenant.id))
        tenant.status = "suspended"
    try:
        assert_scim_error(await scim.get("/Users"), 401)
    finally:
        async with services.db.session(all_tenants=True) as db:
            tenant = await db.get(Tenant, uuid.UUID(scim.tenant.id))
            tenant.status = "active"
    assert (await scim.get("/Users")).status_code == 200


async def test_an_unexpected_error_is_a_scim_500_that_reveals_nothing(
    scim: ScimClient, monkeypatch
):
    from kanvaro.identity.scim import people

    async def broken(*args, **kwargs):
        raise RuntimeError("secret internals kvscim_leak")

    monkeypatch.setattr(people, "list_people", broken)
    r = await scim.get("/Users")
    assert_scim_error(r, 500)
    assert "kvscim_leak" not in r.text and "secret internals" not in r.text
