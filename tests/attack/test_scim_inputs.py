"""SCIM input an attacker (or a broken IdP) controls: filters that try to widen a lookup,
paging values beyond the database's integers, NUL characters, oversized or deeply nested
bodies, an id of another tenant in a group. Each is a SCIM error, never a 500 or a wider
answer."""

from __future__ import annotations

import json

from tests.conftest import unique_email
from tests.identity.scim.conftest import (
    GROUP_SCHEMA,
    ScimClient,
    assert_scim_error,
    scim,  # noqa: F401 - a fixture
    user_body,
)


async def test_a_filter_cannot_widen_the_lookup(scim: ScimClient):  # noqa: F811
    await scim.post("/Users", user_body())
    for text in (
        'userName eq "x" or userName pr',
        "userName pr",
        'not (userName eq "x")',
        'userName ne "x"',
        'userName co ""',
        'emails[value co "@"]',
        'userName eq "x") or (1 eq 1',
        "x" * 2000,
    ):
        assert_scim_error(await scim.get("/Users", filter=text), 400, "invalidFilter")
    # A quote inside the string stays inside it.
    r = await scim.get("/Users", filter='userName eq "x\\" or \\"1\\" eq \\"1"')
    assert r.status_code == 200 and r.json()["totalResults"] == 0


async def test_paging_values_beyond_the_database(scim: ScimClient):  # noqa: F811
    r = await scim.get("/Users", startIndex=10**30, count=10**30)
    assert r.status_code == 200, r.text
    assert r.json()["itemsPerPage"] == 0
    r = await scim.get("/Groups", startIndex=-5, count=-1)
    assert r.status_code == 200 and r.json()["startIndex"] == 1


async def test_nul_and_odd_bodies(scim: ScimClient):  # noqa: F811
    assert_scim_error(
        await scim.post("/Users", user_body(externalId="a\x00b")), 400, "invalidValue"
    )
    r = await scim.client.get("/scim/v2/Users", headers=scim.headers(), params={"filter": "\x00"})
    assert r.status_code in (400, 422) and r.json()["schemas"][0].endswith(":Error")
    deep = "[" * 100_000 + "]" * 100_000
    r = await scim.client.post("/scim/v2/Users", headers=scim.headers(), content=deep)
    assert_scim_error(r, 400)
    for body in ([], "x", 5, None):
        r = await scim.client.post(
            "/scim/v2/Users", headers=scim.headers(), content=json.dumps(body)
        )
        assert_scim_error(r, 400)
    huge = user_body(displayName="x" * 300)
    assert_scim_error(await scim.post("/Users", huge), 400, "invalidValue")
    r = await scim.post("/Users", user_body(userName=unique_email("x") + "y" * 300))
    assert_scim_error(r, 400, "invalidValue")
    ops = [{"op": "replace", "path": "displayName", "value": "A B"}] * 1001
    user_id = (await scim.post("/Users", user_body())).json()["id"]
    assert_scim_error(await scim.patch(f"/Users/{user_id}", ops), 400, "invalidValue")


async def test_ids_and_members_are_checked(scim: ScimClient):  # noqa: F811
    user_id = (await scim.post("/Users", user_body())).json()["id"]
    other = "00000000-0000-0000-0000-000000000001"
    r = await scim.put(f"/Users/{user_id}", {**user_body(), "id": other})
    assert r.status_code == 200 and r.json()["id"] == user_id  # read-only: ignored (RFC 7644)
    r = await scim.post(
        "/Groups",
        {"schemas": [GROUP_SCHEMA], "displayName": "G", "members": [{"value": "not-an-id"}]},
    )
    assert_scim_error(r, 400, "invalidValue")
