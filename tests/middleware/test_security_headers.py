"""Security headers on every response: success, refusals, errors, and the 413 and 500 paths."""

from __future__ import annotations

import pytest

from tests.middleware.faults import client_for


def _assert_security_headers(r, *, tls: bool) -> None:
    csp = r.headers["content-security-policy"]
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";")}
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "frame-ancestors 'none'"
    assert directives["default-src"] == "default-src 'self'"
    assert directives["object-src"] == "object-src 'none'"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] in ("no-referrer", "strict-origin-when-cross-origin")
    assert "camera=()" in r.headers["permissions-policy"]
    assert r.headers["x-request-id"]
    if tls:
        hsts = r.headers["strict-transport-security"]
        assert "max-age=" in hsts and int(hsts.split("max-age=")[1].split(";")[0]) >= 15552000
    else:
        assert "strict-transport-security" not in r.headers


async def _responses(client):
    """One response of each kind: 200, 401, 404, 405, 413, 422, 500."""
    big = b"x" * (client._transport.app.state.services.settings.max_body_bytes + 1)
    yield 200, await client.get("/healthz")
    yield 401, await client.get("/api/v1/auth/me")
    yield 404, await client.get("/nowhere")
    yield 405, await client.delete("/healthz")
    yield 413, await client.post("/_test/echo", content=big)
    yield 422, await client.post("/api/v1/auth/login", json={})
    yield 500, await client.get("/_test/boom")


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_every_response_carries_the_security_headers(faulty_app, tls):
    async with client_for(faulty_app, "https://testserver" if tls else "http://testserver") as c:
        seen = []
        async for status, r in _responses(c):
            assert r.status_code == status, (status, r.text)
            _assert_security_headers(r, tls=tls)
            seen.append(status)
    assert seen == [200, 401, 404, 405, 413, 422, 500]


async def test_api_responses_are_not_cached(faulty):
    r = await faulty.get("/api/v1/auth/me")
    assert r.headers["cache-control"] == "no-store"


async def test_a_handler_cannot_weaken_the_policy_by_accident(faulty):
    # JWKS sets its own Cache-Control; the security headers are still there.
    r = await faulty.get("/api/v1/auth/jwks.json")
    assert r.status_code == 200
    assert r.headers["cache-control"].startswith("public")
    _assert_security_headers(r, tls=False)
