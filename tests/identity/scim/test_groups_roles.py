"""Groups map to roles: the tenant's ordered mapping, first match wins; leaving every mapped
group falls back to ``viewer`` for people SCIM manages; the last admin is never demoted;
Okta's way of changing members and names."""

from __future__ import annotations

import uuid

from tests.conftest import TenantFixture
from tests.identity.scim.conftest import (
    GROUP_SCHEMA,
    MAPPINGS,
    ScimClient,
    assert_scim_error,
    audit_actions,
    role_of,
    user_body,
)


async def put_mappings(tenant: TenantFixture, mappings: list[dict[str, str]]):
    return await tenant.client.put(
        MAPPINGS, headers=tenant.admin.headers, json={"mappings": mappings}
    )


async def group(scim: ScimClient, name: str, members: list[str] = ()) -> str:
    r = await scim.post(
        "/Groups",
        {
            "schemas": [GROUP_SCHEMA],
            "displayName": name,
            "members": [{"value": m} for m in members],
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_group_membership_gives_the_mapped_role(scim: ScimClient, services):
    tag = uuid.uuid4().hex[:6]
    r = await put_mappings(
        scim.tenant,
        [
            {"group": f"Kanvaro PMs {tag}", "role": "project_manager"},
            {"group": f"Kanvaro Members {tag}", "role": "team_member"},
        ],
    )
    assert r.status_code == 200, r.text
    assert r.json()["defaultRole"] == "viewer"
    user_id = (await scim.post("/Users", user_body())).json()["id"]
    assert await role_of(scim.tenant, user_id) == "viewer"

    members = await group(scim, f"kanvaro members {tag}", [user_id])  # names ignore case
    assert await role_of(scim.tenant, user_id) == "team_member"
    pms = await group(scim, f"Kanvaro PMs {tag}")
    r = await scim.patch(
        f"/Groups/{pms}", [{"op": "add", "path": "members", "value": [{"value": user_id}]}]
    )
    assert r.status_code == 204, r.text
    assert await role_of(scim.tenant, user_id) == "project_manager"  # the first mapping wins

    # Okta removes with a filter in the path.
    r = await scim.patch(
        f"/Groups/{pms}", [{"op": "remove", "path": f'members[value eq "{user_id}"]'}]
    )
    assert r.status_code == 204, r.text
    assert await role_of(scim.tenant, user_id) == "team_member"
    # Okta renames with a path-less replace that repeats the group's id.
    r = await scim.patch(
        f"/Groups/{members}",
        [{"op": "replace", "value": {"id": members, "displayName": f"Renamed {tag}"}}],
    )
    assert r.status_code == 204, r.text
    assert await role_of(scim.tenant, user_id) == "viewer"  # no mapped group any more
    assert (await scim.get(f"/Groups/{members}")).json()["displayName"] == f"Renamed {tag}"
    r = await scim.patch(
        f"/Groups/{members}",
        [{"op": "replace", "value": {"id": str(uuid.uuid4()), "displayName": "x"}}],
    )
    assert_scim_error(r, 400, "mutability")

    # A mapping change reaches people already in the group.
    r = await put_mappings(scim.tenant, [{"group": f"Renamed {tag}", "role": "client"}])
    assert r.status_code == 200, r.text
    assert await role_of(scim.tenant, user_id) == "client"
    r = await scim.delete(f"/Groups/{members}")
    assert r.status_code == 204
    assert await role_of(scim.tenant, user_id) == "viewer"
    assert_scim_error(await scim.get(f"/Groups/{members}"), 404)

    actions = [e.action for e in await audit_actions(services, scim.tenant.id)]
    for tag_ in ("scim:group:create", "scim:group:update", "scim:group:delete", "scim:user:role",
                 "api:scim_role_mapping:update"):  # fmt: skip
        assert tag_ in actions, tag_


async def test_an_account_from_before_scim_keeps_its_role_until_a_mapped_group_decides(
    scim: ScimClient,
):
    member = await scim.tenant.member("project_manager")
    tag = uuid.uuid4().hex[:6]
    other = await group(scim, f"Unmapped {tag}", [member.id])
    assert await role_of(scim.tenant, member.id) == "project_manager"
    await put_mappings(scim.tenant, [{"group": f"Clients {tag}", "role": "client"}])
    await group(scim, f"Clients {tag}", [member.id])
    assert await role_of(scim.tenant, member.id) == "client"
    r = await scim.delete(f"/Groups/{other}")
    assert r.status_code == 204
    assert await role_of(scim.tenant, member.id) == "client"


async def test_the_last_admin_is_not_demoted_or_deactivated(scim: ScimClient):
    tag = uuid.uuid4().hex[:6]
    await put_mappings(scim.tenant, [{"group": f"Viewers {tag}", "role": "viewer"}])
    r = await scim.post(
        "/Groups",
        {
            "schemas": [GROUP_SCHEMA],
            "displayName": f"Viewers {tag}",
            "members": [{"value": scim.tenant.admin.id}],
        },
    )
    assert_scim_error(r, 409)
    assert await role_of(scim.tenant, scim.tenant.admin.id) == "admin"
    r = await scim.patch(
        f"/Users/{scim.tenant.admin.id}", [{"op": "replace", "path": "active", "value": False}]
    )
    assert_scim_error(r, 409)


async def test_mapping_refusals(scim: ScimClient):
    r = await put_mappings(scim.tenant, [{"group": "A", "role": "no-such-role"}])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "mappings.0.role"
    r = await put_mappings(
        scim.tenant, [{"group": "A", "role": "viewer"}, {"group": "a", "role": "client"}]
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "mappings.1.group"
    r = await scim.tenant.client.get(MAPPINGS, headers=scim.tenant.admin.headers)
    assert r.status_code == 200


async def test_group_errors(scim: ScimClient):
    name = f"Dup {uuid.uuid4().hex[:6]}"
    await group(scim, name)
    r = await scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": name.upper()})
    assert_scim_error(r, 409, "uniqueness")
    assert_scim_error(await scim.post("/Groups", {"schemas": [GROUP_SCHEMA]}), 400, "invalidValue")
    assert_scim_error(await scim.get("/Groups", filter='members eq "x"'), 400, "invalidFilter")


async def test_deleting_a_mapped_custom_role_takes_its_mapping_along(scim: ScimClient):
    tenant = scim.tenant
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    r = await tenant.client.post(
        "/api/v1/roles",
        headers=tenant.admin.headers,
        json={"name": name, "permissions": ["project:read"], "projectScoped": True},
    )
    assert r.status_code == 201, r.text
    role_id = r.json()["id"]
    assert (await put_mappings(tenant, [{"group": "Auditors", "role": name}])).status_code == 200
    r = await tenant.client.delete(f"/api/v1/roles/{role_id}", headers=tenant.admin.headers)
    assert r.status_code == 204, r.text
    r = await tenant.client.get(MAPPINGS, headers=tenant.admin.headers)
    assert r.json()["mappings"] == []


async def test_put_replaces_a_groups_name_and_members(scim: ScimClient):
    a = (await scim.post("/Users", user_body())).json()["id"]
    b = (await scim.post("/Users", user_body())).json()["id"]
    gid = await group(scim, f"Team {uuid.uuid4().hex[:6]}", [a])
    name = f"Team B {uuid.uuid4().hex[:6]}"
    r = await scim.put(
        f"/Groups/{gid}",
        {"schemas": [GROUP_SCHEMA], "displayName": name, "members": [{"value": b}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["displayName"] == name
    assert [m["value"] for m in r.json()["members"]] == [b]
    assert (await scim.get(f"/Users/{a}")).json().get("groups") is None
