"""/api/v1/users: create (with a password or by invitation), read, change, deactivate, delete."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, unique_email
from tests.identity.conftest import audit_entries

pytestmark = pytest.mark.asyncio

USERS = "/api/v1/users"


def person(**extra):
    body = {"email": unique_email(), "firstName": "Ada", "lastName": "Lovelace", "role": "viewer"}
    body.update(extra)
    return body


async def version(tenant, user_id, headers=None):
    r = await tenant.client.get(f"{USERS}/{user_id}", headers=headers or tenant.admin.headers)
    return r.json()["version"]


def fields(r):
    return {e["field"] for e in r.json().get("errors") or []}


@pytest.mark.parametrize(
    ("first", "last"),
    [("José", "Núñez"), ("李", "小龍"), ("Seán", "O'Brien"), ("Anne-Marie", "Saint-Exupéry")],
)
async def test_unicode_names_are_accepted(tenant, first, last):
    r = await tenant.client.post(
        USERS,
        headers=tenant.admin.headers,
        json=person(firstName=first, lastName=last, password=PASSWORD),
    )
    assert r.status_code == 201, r.text
    assert (r.json()["firstName"], r.json()["lastName"]) == (first, last)
    got = await tenant.client.get(f"{USERS}/{r.json()['id']}", headers=tenant.admin.headers)
    assert got.json()["firstName"] == first


@pytest.mark.parametrize("bad", ["R2D2", "<script>alert(1)</script>", "Bob<b>", "", "x" * 51])
async def test_names_with_digits_or_markup_are_refused(tenant, bad):
    r = await tenant.client.post(USERS, headers=tenant.admin.headers, json=person(firstName=bad))
    assert r.status_code == 422
    assert "firstName" in fields(r)


async def test_phone_must_be_e164(tenant):
    h = tenant.admin.headers
    ok = await tenant.client.post(USERS, headers=h, json=person(phone="+442071838750"))
    assert ok.status_code == 201, ok.text
    assert ok.json()["phone"] == "+442071838750"
    for bad in ("020 7183 8750", "+1234", "+99912345678", "phone"):
        r = await tenant.client.post(USERS, headers=h, json=person(phone=bad))
        assert r.status_code == 422, bad
        assert fields(r) == {"phone"}


async def test_email_is_validated_and_unique_across_case(tenant, other_tenant):
    h = tenant.admin.headers
    r = await tenant.client.post(USERS, headers=h, json=person(email="not-an-email"))
    assert r.status_code == 422 and fields(r) == {"email"}
    address = unique_email("dup")
    assert (
        await tenant.client.post(USERS, headers=h, json=person(email=address))
    ).status_code == 201
    again = await tenant.client.post(USERS, headers=h, json=person(email=address.upper()))
    assert again.status_code == 409
    assert fields(again) == {"email"}
    # Emails are unique per tenant: another tenant may have its own account at this address.
    other = await other_tenant.client.post(
        USERS, headers=other_tenant.admin.headers, json=person(email=address)
    )
    assert other.status_code == 201


async def test_password_is_checked_against_policy_and_blocklist(tenant):
    h = tenant.admin.headers
    for weak in ("short1!", "alllowercase1!", "Password123!", "Qwerty2024!"):
        r = await tenant.client.post(USERS, headers=h, json=person(password=weak))
        assert r.status_code == 422, weak
        assert fields(r) == {"password"}
        assert weak not in r.text  # never echoed


async def test_unknown_role_is_named(tenant):
    for role in ("wizard", "super_admin"):
        r = await tenant.client.post(USERS, headers=tenant.admin.headers, json=person(role=role))
        assert r.status_code == 422 and fields(r) == {"role"}


async def test_unknown_field_is_refused(tenant):
    r = await tenant.client.post(
        USERS, headers=tenant.admin.headers, json=person(isSuperAdmin=True, password=PASSWORD)
    )
    assert r.status_code == 422 and fields(r) == {"isSuperAdmin"}


async def test_create_is_audited_without_secrets(tenant, services):
    r = await tenant.client.post(
        USERS, headers=tenant.admin.headers, json=person(password=PASSWORD, role="team_member")
    )
    entries = await audit_entries(services, tenant.id, "api:user:create")
    entry = next(e for e in entries if e.resource_id == r.json()["id"])
    assert entry.changes["after"]["role"] == "team_member"
    assert entry.actor_id is not None and str(entry.actor_id) == tenant.admin.id
    assert PASSWORD not in str(entry.changes) and "hash" not in str(entry.changes)


async def test_list_filters_and_pagination(tenant):
    c, h = tenant.client, tenant.admin.headers
    made = []
    for first, role in (("Zoë", "viewer"), ("Zoltán", "client"), ("Ingrid", "viewer")):
        r = await c.post(
            USERS, headers=h, json=person(firstName=first, role=role, password=PASSWORD)
        )
        made.append(r.json()["id"])
    viewers = (await c.get(USERS, headers=h, params={"role": "viewer"})).json()["items"]
    assert {u["id"] for u in viewers} == {made[0], made[2]}
    assert all(u["role"] == "viewer" for u in viewers)
    zo = (await c.get(USERS, headers=h, params={"q": "ZO"})).json()["items"]
    assert {u["firstName"] for u in zo} == {"Zoë", "Zoltán"}
    by_mail = (await c.get(USERS, headers=h, params={"q": tenant.admin.email[:12]})).json()
    assert [u["id"] for u in by_mail["items"]] == [tenant.admin.id]
    assert (await c.get(USERS, headers=h, params={"q": "%"})).json()["items"] == []
    await c.delete(f"{USERS}/{made[1]}", headers=h)
    inactive = (await c.get(USERS, headers=h, params={"isActive": "false"})).json()["items"]
    assert [u["id"] for u in inactive] == [made[1]]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await c.get(USERS, headers=h, params=params)).json()
        seen += [u["id"] for u in page["items"]]
        if not (cursor := page["nextCursor"]):
            break
    assert len(seen) == len(set(seen)) == 4 and set(made) <= set(seen)


async def test_other_tenant_sees_404(tenant, other_tenant):
    uid = tenant.admin.id
    oc, oh = other_tenant.client, other_tenant.admin.headers
    assert (await oc.get(f"{USERS}/{uid}", headers=oh)).status_code == 404
    assert (
        await oc.patch(f"{USERS}/{uid}", headers=oh, json={"version": 1, "firstName": "X"})
    ).status_code == 404
    assert (await oc.delete(f"{USERS}/{uid}", headers=oh)).status_code == 404
    listed = (await oc.get(USERS, headers=oh)).json()["items"]
    assert uid not in {u["id"] for u in listed}


async def test_project_scoped_roles_see_only_people_they_share_a_project_with(tenant):
    c, h = tenant.client, tenant.admin.headers
    viewer = await tenant.member("viewer")
    mate = await tenant.member("team_member")
    stranger = await tenant.member("team_member")
    pid = (await c.post("/api/v1/projects", headers=h, json={"name": "Shared"})).json()["id"]
    for uid in (viewer.id, mate.id):
        r = await c.post(f"/api/v1/projects/{pid}/members", headers=h, json={"userId": uid})
        assert r.status_code == 201, r.text
    seen = {u["id"] for u in (await c.get(USERS, headers=viewer.headers)).json()["items"]}
    assert seen == {viewer.id, mate.id}
    assert (await c.get(f"{USERS}/{stranger.id}", headers=viewer.headers)).status_code == 404
    assert (await c.get(f"{USERS}/{mate.id}", headers=viewer.headers)).status_code == 200


# --- who may create whom -------------------------------------------------------------------


async def test_project_manager_invites_but_cannot_set_passwords_or_escalate(tenant, services):
    pm = await tenant.member("project_manager")
    c = tenant.client
    invited = await c.post(USERS, headers=pm.headers, json=person(role="team_member"))
    assert invited.status_code == 201, invited.text
    assert invited.json()["invitationPending"] is True
    with_password = await c.post(USERS, headers=pm.headers, json=person(password=PASSWORD))
    assert with_password.status_code == 403
    assert with_password.headers["content-type"].startswith("application/problem+json")
    admin = await c.post(USERS, headers=pm.headers, json=person(role="admin"))
    assert admin.status_code == 403
    denied = await audit_entries(services, tenant.id, "api:permission:denied")
    mine = [e for e in denied if str(e.actor_id) == pm.id and e.changes["path"] == USERS]
    # the password needs user:manage; the admin role grants audit:read (first it lacks)
    assert sorted(e.changes["permission"] for e in mine) == ["audit:read", "user:manage"]
    assert len(mine) == 2


async def test_members_without_invite_rights_cannot_create(tenant):
    for role in ("team_member", "viewer", "client"):
        m = await tenant.member(role)
        r = await tenant.client.post(USERS, headers=m.headers, json=person())
        assert r.status_code == 403, role


async def test_custom_role_holder_can_only_assign_roles_within_his_permissions(tenant):
    c, h = tenant.client, tenant.admin.headers
    for name, perms in (
        ("people-ops", ["user:manage", "team:read", "team:invite"]),
        ("directory", ["team:read"]),
    ):
        r = await c.post(
            "/api/v1/roles",
            headers=h,
            json={"name": name, "permissions": perms, "projectScoped": False},
        )
        assert r.status_code == 201, r.text
    ops = await tenant.member("people-ops")
    ok = await c.post(USERS, headers=ops.headers, json=person(role="directory", password=PASSWORD))
    assert ok.status_code == 201, ok.text
    for role in ("viewer", "admin", "people-ops-x"):
        r = await c.post(USERS, headers=ops.headers, json=person(role=role))
        assert r.status_code == (422 if role == "people-ops-x" else 403), role
    # ... and cannot touch a person whose role he could not assign.
    target = await tenant.member("viewer")
    r = await c.patch(
        f"{USERS}/{target.id}",
        headers=ops.headers,
        json={"version": await version(tenant, target.id), "firstName": "Eve"},
    )
    assert r.status_code == 403
    r = await c.patch(
        f"{USERS}/{ok.json()['id']}",
        headers=ops.headers,
        json={"version": await version(tenant, ok.json()["id"]), "role": "viewer"},
    )
    assert r.status_code == 403


async def test_admin_may_appoint_every_builtin_role(tenant):
    for role in ("admin", "project_manager", "team_member", "client", "viewer"):
        m = await tenant.member(role)
        me = (await tenant.client.get("/api/v1/auth/me", headers=m.headers)).json()
        assert me["role"] == role


# --- change ----------------------------------------------------------------------------------


async def test_patch_needs_the_version_and_refuses_a_stale_one(tenant):
    c, h = tenant.client, tenant.admin.headers
    m = await tenant.member("viewer")
    url = f"{USERS}/{m.id}"
    v = await version(tenant, m.id)
    assert (await c.patch(url, headers=h, json={"firstName": "Ann"})).status_code == 428
    r = await c.patch(url, headers={**h, "If-Match": f'"v{v}"'}, json={"firstName": "Ann"})
    assert r.status_code == 200 and r.json()["version"] == v + 1
    assert r.headers["etag"] == f'"v{v + 1}"'
    stale = await c.patch(url, headers=h, json={"version": v, "lastName": "Other"})
    assert stale.status_code == 412 and stale.json()["currentVersion"] == v + 1
    got = (await c.get(url, headers=h)).json()
    assert (got["firstName"], got["lastName"]) == ("Ann", "Person")
    phone = await c.patch(url, headers=h, json={"version": v + 1, "phone": "12"})
    assert phone.status_code == 422 and fields(phone) == {"phone"}
    null = await c.patch(url, headers=h, json={"version": v + 1, "role": None})
    assert null.status_code == 422 and fields(null) == {"role"}


async def test_role_change_takes_effect_and_is_audited(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    m = await tenant.member("viewer")
    assert (
        await c.post("/api/v1/projects", headers=m.headers, json={"name": "P"})
    ).status_code == 403
    v = await version(tenant, m.id)
    r = await c.patch(f"{USERS}/{m.id}", headers=h, json={"version": v, "role": "project_manager"})
    assert r.status_code == 200 and r.json()["role"] == "project_manager"
    assert (
        await c.post("/api/v1/projects", headers=m.headers, json={"name": "P"})
    ).status_code == 201
    entry = (await audit_entries(services, tenant.id, "api:user:update"))[-1]
    assert entry.category == "permissions"
    assert entry.changes["before"]["role"] == "viewer"
    assert entry.changes["after"]["role"] == "project_manager"
    bad = await c.patch(f"{USERS}/{m.id}", headers=h, json={"version": v + 1, "role": "nope"})
    assert bad.status_code == 422 and fields(bad) == {"role"}


async def test_project_manager_cannot_change_people(tenant):
    pm = await tenant.member("project_manager")
    m = await tenant.member("viewer")
    r = await tenant.client.patch(
        f"{USERS}/{m.id}", headers=pm.headers, json={"version": 9, "firstName": "X"}
    )
    assert r.status_code == 403
    assert (await tenant.client.delete(f"{USERS}/{m.id}", headers=pm.headers)).status_code == 403


# --- deactivate and delete -------------------------------------------------------------------


async def test_deactivation_ends_sessions_and_keeps_the_row(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    m = await tenant.member("team_member")
    assert (await c.get("/api/v1/auth/me", headers=m.headers)).status_code == 200
    v = await version(tenant, m.id)
    r = await c.patch(f"{USERS}/{m.id}", headers=h, json={"version": v, "isActive": False})
    assert r.status_code == 200 and r.json()["isActive"] is False
    assert (await c.get("/api/v1/auth/me", headers=m.headers)).status_code == 401
    refresh = await c.post("/api/v1/auth/refresh", json={"refreshToken": m.tokens["refreshToken"]})
    assert refresh.status_code == 401
    login = await c.post(
        "/api/v1/auth/login", json={"email": m.email, "password": m.password, "tenant": tenant.slug}
    )
    assert login.status_code == 401
    assert [e.resource_id for e in await audit_entries(services, tenant.id, "api:user:deactivate")][
        -1
    ] == m.id
    back = await c.patch(f"{USERS}/{m.id}", headers=h, json={"version": v + 1, "isActive": True})
    assert back.status_code == 200 and back.json()["isActive"] is True
    assert (
        await c.post(
            "/api/v1/auth/login",
            json={"email": m.email, "password": m.password, "tenant": tenant.slug},
        )
    ).status_code == 200


async def test_delete_is_soft_and_revokes_sessions(tenant, services):
    c, h = tenant.client, tenant.admin.headers
    m = await tenant.member("client")
    assert (await c.delete(f"{USERS}/{m.id}", headers=h)).status_code == 204
    assert (await c.get("/api/v1/auth/me", headers=m.headers)).status_code == 401
    kept = await c.get(f"{USERS}/{m.id}", headers=h)
    assert kept.status_code == 200 and kept.json()["isActive"] is False
    entries = await audit_entries(services, tenant.id, "api:user:delete")
    assert entries[-1].resource_id == m.id and entries[-1].changes["after"]["is_active"] is False


async def test_nobody_deactivates_or_deletes_himself_or_the_last_admin(tenant):
    c, h = tenant.client, tenant.admin.headers
    me = f"{USERS}/{tenant.admin.id}"
    v = await version(tenant, tenant.admin.id)
    assert (await c.patch(me, headers=h, json={"version": v, "isActive": False})).status_code == 409
    assert (await c.delete(me, headers=h)).status_code == 409
    # The only admin cannot demote himself either: the tenant would have no admin left.
    assert (await c.patch(me, headers=h, json={"version": v, "role": "viewer"})).status_code == 409
    second = await tenant.member("admin")
    r = await c.patch(me, headers=second.headers, json={"version": v, "isActive": False})
    assert r.status_code == 200
    # Now the second admin is the last active one.
    v2 = await version(tenant, second.id, second.headers)
    r = await c.patch(
        f"{USERS}/{second.id}", headers=second.headers, json={"version": v2, "role": "viewer"}
    )
    assert r.status_code == 409
    assert (await c.get(f"{USERS}/{second.id}", headers=second.headers)).json()["role"] == "admin"


async def test_team_remove_may_remove_members_but_not_admins(tenant):
    c, h = tenant.client, tenant.admin.headers
    r = await c.post(
        "/api/v1/roles",
        headers=h,
        json={
            "name": "remover",
            "permissions": [
                "team:read",
                "team:remove",
                "project:read",
                "task:read",
                "comment:read",
            ],
            "projectScoped": False,
        },
    )
    assert r.status_code == 201, r.text
    remover = await tenant.member("remover")
    viewer = await tenant.member("viewer")
    admin = await tenant.member("admin")
    assert (await c.delete(f"{USERS}/{viewer.id}", headers=remover.headers)).status_code == 204
    assert (await c.delete(f"{USERS}/{admin.id}", headers=remover.headers)).status_code == 403
    other = await tenant.member("viewer")
    v = await version(tenant, other.id)
    ok = await c.patch(
        f"{USERS}/{other.id}", headers=remover.headers, json={"version": v, "isActive": False}
    )
    assert ok.status_code == 200
    # team:remove is not user:manage: no other change.
    no = await c.patch(
        f"{USERS}/{other.id}", headers=remover.headers, json={"version": v + 1, "isActive": True}
    )
    assert no.status_code == 403
