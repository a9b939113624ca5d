"""Behind a reverse proxy: ``X-Forwarded-Proto`` and IPv4-mapped peers (issue 7, point 10).

Old behaviour: HSTS only when the ASGI scheme itself was https (never behind a TLS-terminating
proxy), and a dual-stack listener's ``::ffff:10.0.0.5`` peer did not match ``10.0.0.0/8``, so
the proxy's address was taken as the client's for rate limits and the audit log.
"""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from kanvaro.middleware.security_headers import SecurityHeadersMiddleware
from kanvaro.security.client_ip import client_ip, is_https, parse_networks

PROXIES = parse_networks(["10.0.0.0/8"])


def _app(trusted=None, state_trusted=None) -> Starlette:
    async def ok(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", ok)])
    app.add_middleware(SecurityHeadersMiddleware, trusted_proxies=trusted)
    if state_trusted is not None:
        # What create_app puts there: the services, holding the parsed trusted proxies.
        app.state.services = type("S", (), {"trusted_proxies": state_trusted})()
    return app


async def _get(app, peer: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(peer, 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        return await c.get("/", headers=headers)


@pytest.mark.parametrize("peer", ["10.1.2.3", "::ffff:10.1.2.3"])
async def test_forwarded_https_from_a_trusted_proxy_turns_on_hsts(peer):
    r = await _get(_app(PROXIES), peer, **{"X-Forwarded-Proto": "https"})
    assert "max-age=" in r.headers["strict-transport-security"]


async def test_the_trusted_set_is_read_from_the_app_services_by_default():
    r = await _get(_app(state_trusted=PROXIES), "10.1.2.3", **{"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" in r.headers


@pytest.mark.parametrize(
    ("peer", "proto"),
    [
        ("198.51.100.4", "https"),  # not a proxy of ours: a client cannot claim TLS
        ("::ffff:198.51.100.4", "https"),
        ("10.1.2.3", "http"),
        ("10.1.2.3", "https, http"),  # the last hop (our proxy) spoke plain HTTP
    ],
)
async def test_no_hsts_when_the_claim_is_not_trusted(peer, proto):
    r = await _get(_app(PROXIES), peer, **{"X-Forwarded-Proto": proto})
    assert "strict-transport-security" not in r.headers


def test_is_https_helper():
    assert is_https("https", None, None, ())
    assert is_https("http", "10.0.0.1", "https", PROXIES)
    assert is_https("http", "::ffff:10.0.0.1", "HTTPS", PROXIES)
    assert not is_https("http", "10.0.0.1", "https", ())
    assert not is_https("http", "203.0.113.1", "https", PROXIES)


def test_ipv4_mapped_peer_matches_ipv4_trusted_networks():
    assert client_ip("::ffff:10.0.0.5", "203.0.113.9", PROXIES) == "203.0.113.9"
    assert client_ip("::ffff:10.0.0.5", "203.0.113.9, ::ffff:10.0.0.6", PROXIES) == "203.0.113.9"


def test_mapped_addresses_are_reported_as_ipv4():
    # One client, one rate-limit key, whichever socket family it arrived on.
    assert client_ip("::ffff:198.51.100.4", None, ()) == "198.51.100.4"
    assert client_ip("::ffff:198.51.100.4", "1.2.3.4", PROXIES) == "198.51.100.4"  # untrusted peer
    assert client_ip("2001:db8::1", None, ()) == "2001:db8::1"
