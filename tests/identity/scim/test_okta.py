"""A provisioning conversation as Okta holds it (Okta's SCIM 2.0 guide): look the person up
by ``userName``, create, read, PATCH ``active`` with a path-less value, PUT the whole user,
deactivate; the person's sessions end at once."""

from __future__ import annotations

from tests.conftest import PASSWORD
from tests.identity.scim.conftest import (
    SCIM_JSON,
    USER_SCHEMA,
    ScimClient,
    assert_scim_error,
    audit_actions,
    role_of,
    user_body,
)


async def test_okta_creates_reads_updates_and_deactivates_a_user(scim: ScimClient, services):
    body = user_body()
    email = body["userName"]
    r = await scim.get("/Users", filter=f'userName eq "{email}"', startIndex=1, count=100)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(SCIM_JSON)
    assert r.json()["totalResults"] == 0 and r.json().get("Resources", []) == []

    r = await scim.post("/Users", {**body, "externalId": "00u1okta", "password": "Canary-Pw-1"})
    assert r.status_code == 201, r.text
    created = r.json()
    user_id = created["id"]
    assert r.headers["location"].endswith(f"/scim/v2/Users/{user_id}")
    assert created["userName"] == email and created["active"] is True
    assert created["externalId"] == "00u1okta"
    assert created["meta"]["resourceType"] == "User"
    assert "password" not in created
    assert await role_of(scim.tenant, user_id) == "viewer"  # the default role

    r = await scim.get(f"/Users/{user_id}")
    assert r.status_code == 200 and r.json()["name"]["familyName"] == "Jensen"
    r = await scim.get("/Users", filter=f'userName eq "{email.upper()}"')  # caseExact: false
    assert r.json()["totalResults"] == 1 and r.json()["Resources"][0]["id"] == user_id

    r = await scim.put(
        f"/Users/{user_id}",
        {**body, "id": user_id, "name": {"givenName": "Babs", "familyName": "Jensen"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"]["givenName"] == "Babs"

    r = await scim.patch(f"/Users/{user_id}", [{"op": "replace", "value": {"active": False}}])
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    r = await scim.get(f"/Users/{user_id}")
    assert r.json()["active"] is False

    entries = await audit_actions(services, scim.tenant.id)
    actions = [e.action for e in entries]
    assert {"scim:user:create", "scim:user:update", "scim:user:deactivate"} <= set(actions)
    text = "\n".join(f"{e.changes}" for e in entries)
    assert "Canary-Pw-1" not in text and scim.token not in text


async def test_deactivation_ends_the_persons_sessions_at_once(scim: ScimClient):
    member = await scim.tenant.member("team_member")
    me = await scim.client.get("/api/v1/auth/me", headers=member.headers)
    assert me.status_code == 200
    # The person predates provisioning: Okta finds him by userName (his email).
    r = await scim.get("/Users", filter=f'userName eq "{member.email}"')
    assert r.json()["totalResults"] == 1
    user_id = r.json()["Resources"][0]["id"]
    assert user_id == member.id

    r = await scim.patch(f"/Users/{user_id}", [{"op": "replace", "value": {"active": False}}])
    assert r.status_code == 200, r.text
    me = await scim.client.get("/api/v1/auth/me", headers=member.headers)
    assert me.status_code == 401
    refresh = await scim.client.post(
        "/api/v1/auth/refresh", json={"refreshToken": member.tokens["refreshToken"]}
    )
    assert refresh.status_code == 401
    login = await scim.client.post(
        "/api/v1/auth/login",
        json={"email": member.email, "password": PASSWORD, "tenant": scim.tenant.slug},
    )
    assert login.status_code == 401

    # Reactivation lets him sign in again.
    r = await scim.patch(f"/Users/{user_id}", [{"op": "replace", "value": {"active": True}}])
    assert r.status_code == 200 and r.json()["active"] is True
    login = await scim.client.post(
        "/api/v1/auth/login",
        json={"email": member.email, "password": PASSWORD, "tenant": scim.tenant.slug},
    )
    assert login.status_code == 200


async def test_delete_deactivates_hides_and_a_new_post_brings_the_account_back(scim: ScimClient):
    body = user_body()
    user_id = (await scim.post("/Users", body)).json()["id"]
    r = await scim.delete(f"/Users/{user_id}")
    assert r.status_code == 204 and r.content == b""
    assert_scim_error(await scim.get(f"/Users/{user_id}"), 404)
    r = await scim.get("/Users", filter=f'userName eq "{body["userName"]}"')
    assert r.json()["totalResults"] == 0
    assert_scim_error(await scim.delete(f"/Users/{user_id}"), 404)

    r = await scim.post("/Users", body)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == user_id and r.json()["active"] is True


async def test_user_errors_are_in_scims_format(scim: ScimClient):
    body = user_body()
    assert (await scim.post("/Users", body)).status_code == 201
    assert_scim_error(await scim.post("/Users", body), 409, "uniqueness")
    assert_scim_error(await scim.get("/Users", filter='userName sw "a"'), 400, "invalidFilter")
    assert_scim_error(await scim.get("/Users", filter="userName eq"), 400, "invalidFilter")
    assert_scim_error(await scim.get("/Users/not-a-uuid"), 404)
    assert_scim_error(await scim.get("/Users/00000000-0000-0000-0000-000000000000"), 404)
    assert_scim_error(await scim.get("/Nope"), 404)
    assert_scim_error(await scim.send("DELETE", "/ServiceProviderConfig"), 405)
    r = await scim.client.post("/scim/v2/Users", headers=scim.headers(), content=b"{not json")
    assert_scim_error(r, 400, "invalidSyntax")
    assert_scim_error(await scim.post("/Users", {"schemas": [USER_SCHEMA]}), 400, "invalidValue")
    bad_name = user_body(name={"givenName": "R2D2", "familyName": "Droid"})
    r = await scim.post("/Users", bad_name)
    assert_scim_error(r, 400, "invalidValue")
    assert "name.givenName" in r.json()["detail"]
    assert_scim_error(await scim.get("/Users", count="many"), 400, "invalidValue")
    r = await scim.patch(
        f"/Users/{(await scim.post('/Users', user_body())).json()['id']}",
        [{"op": "move", "path": "userName", "value": "x"}],
    )
    assert_scim_error(r, 400, "invalidValue")


async def test_audit_entries_name_the_token_and_no_person(scim: ScimClient, services):
    user_id = (await scim.post("/Users", user_body())).json()["id"]
    (entry,) = [
        e
        for e in await audit_actions(services, scim.tenant.id)
        if e.action == "scim:user:create" and e.resource_id == user_id
    ]
    assert entry.changes["via"] == f"scim_token:{scim.token_id}"
    assert entry.actor_id is None


async def test_two_identical_creations_at_once_make_one_account(scim: ScimClient):
    import asyncio

    body = user_body()
    first, second = await asyncio.gather(scim.post("/Users", body), scim.post("/Users", body))
    statuses = sorted([first.status_code, second.status_code])
    assert statuses == [201, 409], (first.text, second.text)
    loser = first if first.status_code == 409 else second
    assert_scim_error(loser, 409, "uniqueness")


async def test_patch_remove_clears_an_attribute(scim: ScimClient):
    r = await scim.post("/Users", user_body(externalId="ext-1" + user_body()["userName"]))
    user_id = r.json()["id"]
    r = await scim.patch(
        f"/Users/{user_id}",
        [
            {"op": "remove", "path": "externalId"},
            {"op": "add", "path": "displayName", "value": "B J"},
        ],
    )
    assert r.status_code == 200, r.text
    assert "externalId" not in r.json() and r.json()["displayName"] == "B J"
    r = await scim.patch(f"/Users/{user_id}", [{"op": "remove", "path": "userName"}])
    assert_scim_error(r, 400)
