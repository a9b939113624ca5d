"""Fixtures of the session tests: a clock the test moves, and the tenant's policy API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kanvaro.services import Services

POLICY = "/api/v1/tenant/settings/session-policy"


class ShiftedClock:
    """Real time plus an offset the test moves forward (``services.clock``): session
    timeouts, activity and grace windows read it; token lifetimes keep the real clock."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def clock(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShiftedClock]:
    shifted = ShiftedClock()
    monkeypatch.setattr(services, "clock", shifted)
    yield shifted


async def set_policy(tenant: Any, **changes: Any) -> dict[str, Any]:
    r = await tenant.client.patch(POLICY, headers=tenant.admin.headers, json=changes)
    assert r.status_code == 200, r.text
    return r.json()
