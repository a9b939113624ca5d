"""A real DNS server on loopback (dnslib) whose TXT records a test controls, and helpers that
claim and verify a tenant's domain through the admin API against it.

Names not in the zone answer NXDOMAIN; a name with no values answers NOERROR without a TXT
record; ``silent`` names get no answer at all (a timeout) and ``failing`` ones SERVFAIL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, RR, TXT, DNSError
from dnslib.server import BaseResolver, DNSServer

from kanvaro.services import Services
from tests.conftest import TenantFixture

DOMAINS = "/api/v1/sso/domains"


class _Quiet:
    """dnslib's logger, silenced (it prints every packet otherwise)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@dataclass
class Zone(BaseResolver):
    txt: dict[str, list[str]] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    port: int = 0

    def publish(self, name: str, *values: str) -> None:
        self.txt[name.lower().rstrip(".")] = list(values)

    def withdraw(self, name: str) -> None:
        self.txt.pop(name.lower().rstrip("."), None)

    def resolve(self, request: Any, handler: Any) -> Any:
        name = str(request.q.qname).rstrip(".").lower()
        if name in self.silent:
            raise DNSError("no answer")  # dnslib sends nothing back
        reply = request.reply()
        if name in self.failing:
            reply.header.rcode = RCODE.SERVFAIL
        elif name not in self.txt:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in self.txt[name]:
                reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(value), ttl=60))
        return reply


@pytest.fixture(scope="session")
def _dns_server() -> Iterator[Zone]:
    zone = Zone()
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=_Quiet())
    server.start_thread()
    zone.port = server.server.server_address[1]
    try:
        yield zone
    finally:
        server.stop()


@pytest.fixture
def dns_zone(_dns_server: Zone, services: Services, monkeypatch: pytest.MonkeyPatch) -> Zone:
    """The loopback server, and the shared services pointed at it for this test."""
    monkeypatch.setattr(services.settings, "dns_nameservers", ["127.0.0.1"])
    monkeypatch.setattr(services.settings, "dns_port", _dns_server.port)
    monkeypatch.setattr(services.settings, "dns_timeout_seconds", 1.0)
    return _dns_server


async def claim(tenant: TenantFixture, domain: str) -> dict[str, Any]:
    r = await tenant.client.post(DOMAINS, headers=tenant.admin.headers, json={"domain": domain})
    assert r.status_code == 201, r.text
    return r.json()


async def check_now(tenant: TenantFixture, claimed: dict[str, Any]) -> dict[str, Any]:
    r = await tenant.client.post(f"{DOMAINS}/{claimed['id']}/verify", headers=tenant.admin.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def verify_domain(tenant: TenantFixture, zone: Zone, domain: str) -> dict[str, Any]:
    """Claim the domain, publish its record, check it: verified."""
    claimed = await claim(tenant, domain)
    zone.publish(claimed["record"]["name"], claimed["record"]["value"])
    checked = await check_now(tenant, claimed)
    assert checked["status"] == "verified", checked
    return checked
