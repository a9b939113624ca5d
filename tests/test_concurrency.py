"""Optimistic concurrency under real concurrency: two writers with the same version in flight
at once; exactly one wins, the other is told (412/409), and nothing of the winner is lost."""

from __future__ import annotations

import asyncio

import pytest


@pytest.mark.parametrize("precondition", ["body-version", "if-match"])
async def test_two_concurrent_patches_with_the_same_version(tenant, precondition):
    c, h = tenant.client, tenant.admin.headers
    for round_ in range(4):
        r = await c.post("/api/v1/projects", headers=h, json={"name": f"Race {round_}"})
        pid, version = r.json()["id"], r.json()["version"]

        def patch(name: str):
            if precondition == "if-match":
                return c.patch(
                    f"/api/v1/projects/{pid}",
                    headers={**h, "If-Match": f'"v{version}"'},
                    json={"name": name},
                )
            return c.patch(
                f"/api/v1/projects/{pid}", headers=h, json={"name": name, "version": version}
            )

        first, second = await asyncio.gather(patch("Writer A"), patch("Writer B"))
        statuses = sorted([first.status_code, second.status_code])
        assert statuses[0] == 200 and statuses[1] in (409, 412), (first.text, second.text)
        winner, loser = (first, second) if first.status_code == 200 else (second, first)
        assert loser.headers["content-type"].startswith("application/problem+json")
        final = (await c.get(f"/api/v1/projects/{pid}", headers=h)).json()
        assert final["name"] == winner.json()["name"]
        assert final["version"] == version + 1


async def test_many_concurrent_writers_exactly_one_wins(tenant):
    c, h = tenant.client, tenant.admin.headers
    pid = (await c.post("/api/v1/projects", headers=h, json={"name": "Crowd"})).json()["id"]
    results = await asyncio.gather(
        *(
            c.patch(f"/api/v1/projects/{pid}", headers=h, json={"name": f"W{i}", "version": 1})
            for i in range(6)
        )
    )
    winners = [r for r in results if r.status_code == 200]
    assert len(winners) == 1, [r.status_code for r in results]
    assert all(r.status_code in (409, 412) for r in results if r.status_code != 200)
    final = (await c.get(f"/api/v1/projects/{pid}", headers=h)).json()
    assert final["name"] == winners[0].json()["name"] and final["version"] == 2
