"""Token signing key rotation, done by another process, seen through the HTTP API."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
from sqlalchemy import update

from kanvaro.app import create_app
from kanvaro.db import utcnow
from kanvaro.identity.models import SigningKey
from kanvaro.services import Services
from tests.crypto.conftest import cli as _cli


def _kid(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


async def test_rotate_signing_key(
    services: Services, settings, client, tenant, monkeypatch
) -> None:
    # This test shows the reload on an unknown kid; the periodic reload of the suite's shared
    # instance (a per-process job on wall time) must not do it first, behind the test's back.
    monkeypatch.delitem(services.jobs.jobs, "keys.signing-reload", raising=False)
    old_token = tenant.admin.tokens["accessToken"]
    old_kid = _kid(old_token)
    me = await client.get("/api/v1/auth/me", headers=tenant.admin.headers)
    assert me.status_code == 200

    # Another process rotates (the CLI, against the same database).
    proc = _cli(settings, "keys", "rotate-signing")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    new_kid = out.decode().split()[-1]
    assert new_kid != old_kid

    # A second instance starts after the rotation and signs with the new key.
    other = Services.build(settings.model_copy(update={"key_maintenance_interval_seconds": 0}))
    await other.startup()
    try:
        transport = httpx.ASGITransport(
            app=create_app(settings, services=other), client=("203.0.113.8", 1)
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as second:
            r = await second.post(
                "/api/v1/auth/login",
                json={
                    "email": tenant.admin.email,
                    "password": tenant.admin.password,
                    "tenant": tenant.slug,
                },
            )
            assert r.status_code == 200, r.text
            new_token = r.json()["accessToken"]
            assert _kid(new_token) == new_kid
            # The old token still works on the new instance.
            r = await second.get(
                "/api/v1/auth/me", headers={"Authorization": f"Bearer {old_token}"}
            )
            assert r.status_code == 200
    finally:
        await other.shutdown()

    # This instance has never seen the new kid: it reloads on demand and accepts the token.
    monkeypatch.setattr(services, "key_reload_min_interval", 0.0)
    assert new_kid not in {k["kid"] for k in services.tokens.jwks()["keys"]}
    r = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {new_token}"})
    assert r.status_code == 200, r.text
    assert services.tokens.signing_kid == new_kid
    r = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {old_token}"})
    assert r.status_code == 200  # old kid: verifies until its tokens have expired
    kids = {k["kid"] for k in (await client.get("/api/v1/auth/jwks.json")).json()["keys"]}
    assert {old_kid, new_kid} <= kids

    # Once verify_until has passed, the old key is gone from the JWKS and its tokens fail.
    async with services.db.session(all_tenants=True) as session:
        await session.execute(
            update(SigningKey)
            .where(SigningKey.kid == old_kid)
            .values(verify_until=utcnow() - timedelta(seconds=1))
        )
    await services.reload_keys()
    kids = {k["kid"] for k in (await client.get("/api/v1/auth/jwks.json")).json()["keys"]}
    assert old_kid not in kids and new_kid in kids
    r = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {old_token}"})
    assert r.status_code == 401


async def test_unknown_kid_reloads_are_rate_limited(services: Services, client, tenant) -> None:
    calls = 0
    real = services.reload_keys

    async def counting() -> None:
        nonlocal calls
        calls += 1
        await real()

    services.reload_keys = counting  # type: ignore[method-assign]
    try:
        forged = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": "nope"})
        _header, payload, sig = forged.split(".")
        eddsa = jwt.utils.base64url_encode(b'{"alg":"EdDSA","kid":"nope","typ":"at+jwt"}').decode()
        token = f"{eddsa}.{payload}.{sig}"
        for _ in range(5):
            r = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
        assert calls <= 1
    finally:
        del services.reload_keys


async def test_periodic_reload_picks_up_rotation(services: Services, settings) -> None:
    import asyncio

    from kanvaro.identity.keys import rotate_signing_key

    watcher = Services.build(
        settings.model_copy(
            update={"key_maintenance_interval_seconds": 0, "signing_key_reload_seconds": 1}
        )
    )
    await watcher.startup()
    try:
        before = watcher.tokens.signing_kid
        async with services.db.session(all_tenants=True) as session:
            new_kid = await rotate_signing_key(session, services.master_key, max_token_ttl=900)
        for _ in range(600):  # the background task reloads every second
            if watcher.tokens.signing_kid == new_kid:
                break
            await asyncio.sleep(0.05)
        assert before != new_kid and watcher.tokens.signing_kid == new_kid
        assert before in {k["kid"] for k in watcher.tokens.jwks()["keys"]}
    finally:
        await watcher.shutdown()
    await services.reload_keys()
