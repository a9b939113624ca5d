"""A provisioning conversation as Microsoft Entra ID holds it: the enterprise extension in
POST, ``filter=externalId eq``, PATCH with capitalised ``Replace``/``Add``, path-less value
objects with dotted keys, ``"False"`` as a string; group members removed by value."""

from __future__ import annotations

import uuid

from tests.conftest import unique_email
from tests.identity.scim.conftest import (
    ENTERPRISE,
    GROUP_SCHEMA,
    USER_SCHEMA,
    ScimClient,
    assert_scim_error,
)


def entra_user(external_id: str) -> dict:
    email = unique_email("entra")
    return {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": external_id,
        "userName": email,
        "active": True,
        "displayName": "Ana Souza",
        "emails": [{"primary": True, "type": "work", "value": email}],
        "name": {"formatted": "Ana Souza", "familyName": "Souza", "givenName": "Ana"},
        ENTERPRISE: {"employeeNumber": "701984", "department": "Finance"},
    }


async def test_entra_provisions_and_updates_a_user(scim: ScimClient):
    external_id = str(uuid.uuid4())
    r = await scim.get("/Users", filter=f'externalId eq "{external_id}"')
    assert r.status_code == 200 and r.json()["totalResults"] == 0
    body = entra_user(external_id)
    r = await scim.post("/Users", body)
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = await scim.get("/Users", filter=f'externalId eq "{external_id}"')
    assert [u["id"] for u in r.json()["Resources"]] == [user_id]

    new_email = unique_email("entra-renamed")
    r = await scim.patch(
        f"/Users/{user_id}",
        [
            {"op": "Replace", "path": "displayName", "value": "Ana Maria Souza"},
            {"op": "Replace", "value": {"name.givenName": "Ana Maria", "name.familyName": "Souza"}},
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": new_email},
            {"op": "Replace", "path": "userName", "value": new_email},
            {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Treasury"},
        ],
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["displayName"] == "Ana Maria Souza"
    assert got["name"]["givenName"] == "Ana Maria"
    assert got["userName"] == new_email and got["emails"][0]["value"] == new_email

    r = await scim.patch(
        f"/Users/{user_id}", [{"op": "Replace", "path": "active", "value": "False"}]
    )
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False


async def test_entra_manages_group_members(scim: ScimClient):
    ana = (await scim.post("/Users", entra_user(str(uuid.uuid4())))).json()["id"]
    bob = (await scim.post("/Users", entra_user(str(uuid.uuid4())))).json()["id"]
    name = f"Finance {uuid.uuid4().hex[:6]}"
    r = await scim.post(
        "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": name, "externalId": "g-1" + name}
    )
    assert r.status_code == 201, r.text
    group_id = r.json()["id"]
    r = await scim.get("/Groups", filter=f'displayName eq "{name}"', excludedAttributes="members")
    assert [g["id"] for g in r.json()["Resources"]] == [group_id]
    assert "members" not in r.json()["Resources"][0]

    r = await scim.patch(
        f"/Groups/{group_id}",
        [{"op": "Add", "path": "members", "value": [{"value": ana}, {"value": bob}]}],
    )
    assert r.status_code == 204, r.text
    members = (await scim.get(f"/Groups/{group_id}")).json()["members"]
    assert {m["value"] for m in members} == {ana, bob}
    # Entra's removal: the members to remove as a value list, no filter in the path.
    r = await scim.patch(
        f"/Groups/{group_id}", [{"op": "Remove", "path": "members", "value": [{"value": ana}]}]
    )
    assert r.status_code == 204, r.text
    members = (await scim.get(f"/Groups/{group_id}")).json()["members"]
    assert [m["value"] for m in members] == [bob]
    user = (await scim.get(f"/Users/{bob}")).json()
    assert [g["value"] for g in user["groups"]] == [group_id]

    r = await scim.patch(
        f"/Groups/{group_id}", [{"op": "Add", "path": "members", "value": [{"value": "nope"}]}]
    )
    assert_scim_error(r, 400, "invalidValue")
