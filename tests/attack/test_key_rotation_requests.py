"""A tenant admin's key rotation (``POST /api/v1/admin/keys/rotations``) must not reach past
his tenant: while any rotation runs, his request is refused instead of restarting the
instance's re-encryption scan (a loop of requests from many tenants would keep it from ever
finishing), and two requests at once start one rotation."""

from __future__ import annotations

import asyncio

from kanvaro import background
from kanvaro.crypto.rotation import reencrypt, running_rotation
from tests.crypto.conftest import add_user

ROTATE = "/api/v1/admin/keys/rotations"


def _hold(monkeypatch) -> list[str]:
    held: list[str] = []

    def spawn(work, *, name):
        work.close()
        held.append(name)

    monkeypatch.setattr(background, "spawn", spawn)
    return held


async def test_another_tenant_cannot_restart_the_scan_under_way(
    services, client, tenant, other_tenant, monkeypatch
):
    await add_user(services, tenant.id, "+14155550901")
    await add_user(services, other_tenant.id, "+14155550902")
    _hold(monkeypatch)
    assert (await client.post(ROTATE, headers=tenant.admin.headers)).status_code == 202
    async with services.db.session(all_tenants=True) as session:
        run = await running_rotation(session)
        run.cursor, run.done_rows = {"users.phone": "part-way"}, 7
    theirs = await client.post(ROTATE, headers=other_tenant.admin.headers)
    assert theirs.status_code == 409
    async with services.db.session(all_tenants=True) as session:
        run = await running_rotation(session)
        assert (run.cursor, run.done_rows) == ({"users.phone": "part-way"}, 7)
        run.cursor, run.done_rows = {}, 0
    await reencrypt(services.db, services.keyring)


async def test_two_requests_at_once_start_one_rotation(services, client, tenant, monkeypatch):
    await add_user(services, tenant.id, "+14155550903")
    held = _hold(monkeypatch)
    answers = await asyncio.gather(
        *(client.post(ROTATE, headers=tenant.admin.headers) for _ in range(2))
    )
    assert sorted(r.status_code for r in answers) == [202, 409], [r.text for r in answers]
    assert len(held) == 1
    await reencrypt(services.db, services.keyring)
