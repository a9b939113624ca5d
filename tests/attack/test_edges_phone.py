"""A co-member's phone number is shown only to its owner and to ``user:manage`` (issue 7, 11).

Old behaviour: every holder of ``team:read`` read everyone's phone in GET /users and
/users/{id}, and could find who owns a number with ``?phone=``.
"""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, unique_email

pytestmark = pytest.mark.asyncio

USERS = "/api/v1/users"
PHONE = "+442071838750"


async def _with_phone(tenant, role: str):
    email = unique_email(role)
    r = await tenant.client.post(
        USERS,
        headers=tenant.admin.headers,
        json={
            "email": email,
            "firstName": "Pat",
            "lastName": "Doe",
            "role": role,
            "password": PASSWORD,
            "phone": PHONE,
        },
    )
    assert r.status_code == 201, r.text
    tokens = await tenant.login(email, PASSWORD)
    return r.json()["id"], {"Authorization": f"Bearer {tokens['accessToken']}"}


async def test_a_co_member_does_not_see_the_phone(tenant):
    owner_id, _ = await _with_phone(tenant, "project_manager")
    _, peer_headers = await _with_phone(tenant, "project_manager")  # team:read, no user:manage
    one = await tenant.client.get(f"{USERS}/{owner_id}", headers=peer_headers)
    assert one.status_code == 200 and one.json()["phone"] is None
    listed = await tenant.client.get(USERS, headers=peer_headers, params={"limit": 200})
    by_id = {u["id"]: u for u in listed.json()["items"]}
    assert by_id[owner_id]["phone"] is None
    # Nor can the peer find the owner by searching for the number.
    found = await tenant.client.get(USERS, headers=peer_headers, params={"phone": PHONE})
    assert owner_id not in {u["id"] for u in found.json()["items"]}


async def test_the_owner_and_user_managers_see_it(tenant):
    owner_id, owner_headers = await _with_phone(tenant, "project_manager")
    mine = await tenant.client.get(f"{USERS}/{owner_id}", headers=owner_headers)
    assert mine.json()["phone"] == PHONE
    admin = await tenant.client.get(f"{USERS}/{owner_id}", headers=tenant.admin.headers)
    assert admin.json()["phone"] == PHONE
    found = await tenant.client.get(USERS, headers=tenant.admin.headers, params={"phone": PHONE})
    assert owner_id in {u["id"] for u in found.json()["items"]}
