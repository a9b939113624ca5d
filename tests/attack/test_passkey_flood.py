"""An anonymous passwordless sign-in start stores a challenge row: a flood from one address is
held to the per-address sign-in limit (429), and the rows are swept a day after their end."""

from __future__ import annotations

import pytest

from kanvaro.security.throttle import LoginThrottle, make_storage

pytestmark = pytest.mark.asyncio


async def test_passkey_starts_are_limited_per_address():
    throttle = LoginThrottle(make_storage(None), per_account=5, per_ip=3, window_seconds=60)
    verdicts = [await throttle.attempt_passkey_start("198.51.100.7") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].retry_after > 0
    assert (await throttle.attempt_passkey_start("198.51.100.8")).allowed  # another address


async def test_the_route_answers_429_past_the_limit(tenant, services, monkeypatch):
    limited = LoginThrottle(make_storage(None), per_account=5, per_ip=2, window_seconds=60)
    monkeypatch.setattr(services, "throttle", limited)
    url = "/api/v1/auth/webauthn/passkey/options"
    statuses = [(await tenant.client.post(url, json={})).status_code for _ in range(3)]
    assert statuses == [200, 200, 429], statuses
