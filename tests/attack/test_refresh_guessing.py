"""Refresh throttling counts refused refreshes only: forged, unknown and spent tokens from one
address meet 429 past the limit, while a client spending its own chain is never counted (and
so never meets the throttle's store on the hot path)."""

from __future__ import annotations

import pytest

from kanvaro.security.throttle import LoginThrottle, make_storage

pytestmark = pytest.mark.asyncio

REFRESH_URL = "/api/v1/auth/refresh"
FORGED = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJub2JvZHkifQ.bm90LWEtc2lnbmF0dXJl"


def limited(storage_url: str | None = None, per_minute: int = 2) -> LoginThrottle:
    return LoginThrottle(
        make_storage(storage_url),
        per_account=5,
        per_ip=10_000,
        window_seconds=60,
        refresh_per_minute=per_minute,
    )


async def refresh(tenant, token: str):
    return await tenant.client.post(REFRESH_URL, json={"refreshToken": token})


async def test_a_client_spending_its_own_chain_is_never_throttled(tenant, services, monkeypatch):
    monkeypatch.setattr(services, "throttle", limited(per_minute=2))
    m = await tenant.member("viewer")
    token = m.tokens["refreshToken"]
    for _ in range(6):  # three times the limit
        r = await refresh(tenant, token)
        assert r.status_code == 200, r.text
        token = r.json()["refreshToken"]


async def test_forged_tokens_meet_429_past_the_limit_and_a_valid_chain_still_refreshes(
    tenant, services, monkeypatch
):
    monkeypatch.setattr(services, "throttle", limited(per_minute=2))
    m = await tenant.member("viewer")
    statuses = [(await refresh(tenant, FORGED)).status_code for _ in range(4)]
    assert statuses == [401, 401, 429, 429], statuses
    throttled = await refresh(tenant, FORGED)
    assert int(throttled.headers["Retry-After"]) > 0
    assert throttled.headers["content-type"].startswith("application/problem+json")
    # The address is over its count of refusals, yet a token signed here is no guess.
    assert (await refresh(tenant, m.tokens["refreshToken"])).status_code == 200


async def test_a_spent_token_presented_again_is_counted_as_a_refusal(tenant, services, monkeypatch):
    monkeypatch.setattr(services, "throttle", limited(per_minute=1))
    m = await tenant.member("viewer")
    first = m.tokens["refreshToken"]
    second = await refresh(tenant, first)
    assert second.status_code == 200
    # Its successor spent too, the first token is a plain reuse (no grace): refused, counted.
    assert (await refresh(tenant, second.json()["refreshToken"])).status_code == 200
    assert (await refresh(tenant, first)).status_code == 401
    assert (await refresh(tenant, first)).status_code == 429


async def test_while_the_store_is_away_a_refusal_stays_401_and_a_valid_refresh_passes(
    tenant, services, monkeypatch
):
    m = await tenant.member("viewer")  # signed in while the store is there
    # Nothing listens on port 1: every call to the store fails at once.
    monkeypatch.setattr(services, "throttle", limited("redis://127.0.0.1:1/0"))
    assert (await refresh(tenant, FORGED)).status_code == 401
    assert (await refresh(tenant, m.tokens["refreshToken"])).status_code == 200
