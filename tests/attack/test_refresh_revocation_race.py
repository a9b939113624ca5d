"""A refresh that waits on its session's row lock while the session is revoked is refused
and writes nothing (the one-statement rotation re-checks the locked row's newest version)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text, update

from kanvaro.identity.models import UserSession
from kanvaro.services import Services
from tests.conftest import TenantFixture
from tests.identity.test_refresh_statement import _refresh, _sid, _state

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def _postgresql_only(services: Services) -> None:
    if not services.db.writes_in_one_statement:
        pytest.skip("row locks and pg_stat_activity are PostgreSQL's")


async def test_a_refresh_waiting_on_a_revocation_is_refused(
    tenant: TenantFixture, services: Services
) -> None:
    """The session is revoked while a refresh waits for its row lock: when the lock is
    released, PostgreSQL checks the row's newest version, the refresh matches nothing and
    writes nothing."""
    m = await tenant.member("viewer")
    sid = _sid(services, m.tokens["refreshToken"])
    before = await _state(services, sid)
    async with services.db.session(all_tenants=True) as holder:
        await holder.execute(select(UserSession.id).where(UserSession.id == sid).with_for_update())
        waiting = asyncio.ensure_future(_refresh(tenant, m.tokens["refreshToken"]))
        for _ in range(500):  # until the refresh waits for the lock (or has answered)
            await asyncio.sleep(0.01)
            async with services.db.session(all_tenants=True) as probe:
                blocked = await probe.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE 'WITH touched AS%'"
                    )
                )
            if blocked or waiting.done():
                break
        assert blocked, "the refresh never waited for the session's lock"
        await holder.execute(
            update(UserSession).where(UserSession.id == sid).values(is_active=False)
        )
    r = await waiting
    assert r.status_code == 401, r.text
    after = await _state(services, sid)
    assert after["tokens"] == before["tokens"] and after["entries"] == before["entries"]
