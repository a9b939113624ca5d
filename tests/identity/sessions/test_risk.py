"""Sign-in risk: new device, new network, new country, impossible travel, and what the tenant's
policy makes of the score (allow, notify, require MFA, deny).

Sign-ins come through the real login route; the client address is set with
``X-Forwarded-For`` from the suite's client (203.0.113.7), made a trusted proxy for the test.
Places come from a GeoIP file each test writes (``test_geoip.write_geoip``).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from kanvaro.identity.models import UserSession
from kanvaro.identity.sessions import risk
from kanvaro.identity.sessions.geoip import Place
from kanvaro.identity.sessions.policy import NEVER, SessionPolicy
from kanvaro.notify.email import NullMailer
from kanvaro.security.client_ip import parse_networks
from kanvaro.services import Services
from tests.conftest import PASSWORD, TenantFixture, unique_email
from tests.identity.conftest import audit_entries
from tests.identity.sessions.conftest import set_policy
from tests.identity.sessions.test_geoip import CITIES, write_geoip

LOGIN = "/api/v1/auth/login"
CHROME_ON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
SUITE_CLIENT = "203.0.113.7"  # the suite's ASGI client address (tests/conftest.py)
BERLIN_IP, NEW_YORK_IP = "203.0.113.10", "198.51.100.20"
QUIET = {"riskNotifyAt": NEVER, "riskMfaAt": NEVER, "riskDenyAt": NEVER}  # every score allowed


def client_addresses(services: Services, monkeypatch: pytest.MonkeyPatch) -> NullMailer:
    """Sign-ins may name their address (the suite's client is a trusted proxy); mails are
    kept in memory."""
    monkeypatch.setattr(services, "trusted_proxies", parse_networks([f"{SUITE_CLIENT}/32"]))
    monkeypatch.setattr(services.settings, "public_url", "https://kanvaro.example")
    mailer = NullMailer()
    monkeypatch.setattr(services, "mailer", mailer)
    return mailer


def geoip_on(services: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> NullMailer:
    path = write_geoip(tmp_path / "city.mmdb", CITIES)
    monkeypatch.setattr(services.settings, "geoip_database", path)
    return client_addresses(services, monkeypatch)


@pytest.fixture
def mails(services, monkeypatch) -> NullMailer:
    return client_addresses(services, monkeypatch)


@pytest.fixture
def geo_mails(services, monkeypatch, tmp_path) -> NullMailer:
    return geoip_on(services, monkeypatch, tmp_path)


async def new_account(tenant: TenantFixture) -> tuple[str, str]:
    """A member who has never signed in: (id, email)."""
    email = unique_email("risk")
    r = await tenant.client.post(
        "/api/v1/users",
        headers=tenant.admin.headers,
        json={"email": email, "firstName": "Rita", "lastName": "Risk", "role": "viewer",
              "password": PASSWORD},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["id"], email


async def sign_in(
    tenant: TenantFixture,
    email: str,
    *,
    ip: str,
    device: str | None = None,
    user_agent: str = CHROME_ON_MAC,
) -> httpx.Response:
    body: dict[str, Any] = {"email": email, "password": PASSWORD, "tenant": tenant.slug}
    if device is not None:
        body["deviceToken"] = device
    return await tenant.client.post(
        LOGIN, json=body, headers={"X-Forwarded-For": ip, "User-Agent": user_agent}
    )


async def session_of(services: Services, tenant: TenantFixture, r: httpx.Response) -> UserSession:
    assert r.status_code == 200, r.text
    sid = services.tokens.verify(r.json()["refreshToken"], "refresh")["sid"]
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        stored = await session.get(UserSession, uuid.UUID(sid))
    assert stored is not None
    return stored


async def sessions_of(services: Services, tenant: TenantFixture, user_id: str) -> int:
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as session:
        return await session.scalar(
            select(func.count()).where(UserSession.user_id == uuid.UUID(user_id))
        )


# -- the signals -----------------------------------------------------------------------------


async def test_a_first_sign_in_scores_zero(tenant, services, geo_mails):
    _, email = await new_account(tenant)
    stored = await session_of(services, tenant, await sign_in(tenant, email, ip=BERLIN_IP))
    assert (stored.risk_score, stored.risk_reasons) == (0, ["first_sign_in"])
    assert stored.network == "203.0.113.0/24"
    assert stored.location == {"country": "DE", "city": "Berlin", "latitude": 52.52,
                               "longitude": 13.405}  # fmt: skip
    assert stored.device_info["location"] == "Berlin, DE"
    assert stored.device_info["name"] == "Chrome 120 on macOS"
    assert geo_mails.sent == []  # 0 is below every default threshold


async def test_a_new_device_scores_and_a_known_one_does_not(tenant, services, mails):
    _, email = await new_account(tenant)
    first = await sign_in(tenant, email, ip="192.0.2.10")
    device = first.json()["deviceToken"]
    await session_of(services, tenant, first)

    fresh = await session_of(services, tenant, await sign_in(tenant, email, ip="192.0.2.11"))
    assert (fresh.risk_score, fresh.risk_reasons) == (30, ["new_device"])

    known = await sign_in(tenant, email, ip="192.0.2.12", device=device)
    assert known.json().get("deviceToken") is None
    again = await session_of(services, tenant, known)
    assert (again.risk_score, again.risk_reasons) == (0, [])


async def test_a_new_network_is_another_ipv4_24_or_ipv6_48(tenant, services, mails):
    _, email = await new_account(tenant)
    first = await sign_in(tenant, email, ip="192.0.2.10")
    device = first.json()["deviceToken"]
    await session_of(services, tenant, first)

    async def reasons(ip: str) -> list[str]:
        stored = await session_of(
            services, tenant, await sign_in(tenant, email, ip=ip, device=device)
        )
        assert stored.network == risk.network_of(ip)
        return stored.risk_reasons

    assert await reasons("192.0.2.250") == []  # the same /24
    assert await reasons("192.0.3.1") == ["new_network"]
    assert await reasons("2001:db8:5:1::1") == ["new_network"]
    assert await reasons("2001:db8:5:ffff::2") == []  # the same /48
    assert await reasons("2001:db8:6::1") == ["new_network"]
    assert await reasons("::ffff:192.0.2.77") == []  # an IPv4-mapped address is its IPv4 /24


async def test_new_country_and_impossible_travel_with_geoip(tenant, services, geo_mails, clock):
    await set_policy(tenant, **QUIET)
    _, email = await new_account(tenant)
    first = await sign_in(tenant, email, ip=BERLIN_IP)
    device = first.json()["deviceToken"]
    await session_of(services, tenant, first)

    clock.advance(hours=1)  # Berlin to New York (6,385 km) in an hour
    jump = await session_of(services, tenant, await sign_in(tenant, email, ip=NEW_YORK_IP,
                                                            device=device))  # fmt: skip
    assert jump.risk_reasons == ["new_network", "new_country", "impossible_travel"]
    assert jump.risk_score == 100  # 20 + 30 + 60, capped
    assert jump.location["country"] == "US"

    clock.advance(hours=10)  # back at 640 km/h: possible; both countries and networks known
    back = await session_of(services, tenant, await sign_in(tenant, email, ip="203.0.113.99",
                                                            device=device))  # fmt: skip
    assert (back.risk_score, back.risk_reasons) == (0, [])


async def test_travel_at_a_possible_speed_is_a_new_country_only(tenant, services, geo_mails, clock):
    await set_policy(tenant, **QUIET)
    _, email = await new_account(tenant)
    first = await sign_in(tenant, email, ip=BERLIN_IP)
    await session_of(services, tenant, first)
    clock.advance(hours=9)  # 710 km/h
    later = await sign_in(tenant, email, ip=NEW_YORK_IP, device=first.json()["deviceToken"])
    stored = await session_of(services, tenant, later)
    assert (stored.risk_score, stored.risk_reasons) == (50, ["new_network", "new_country"])


async def test_without_geoip_there_is_no_place_and_no_place_based_reason(tenant, services, mails):
    _, email = await new_account(tenant)
    first = await sign_in(tenant, email, ip=BERLIN_IP)
    await session_of(services, tenant, first)
    later = await sign_in(tenant, email, ip=NEW_YORK_IP, device=first.json()["deviceToken"])
    stored = await session_of(services, tenant, later)
    assert stored.location is None and "location" not in stored.device_info
    assert stored.risk_reasons == ["new_network"]


def test_network_of_and_the_distance():
    assert risk.network_of("203.0.113.77") == "203.0.113.0/24"
    assert risk.network_of("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert risk.network_of("::ffff:203.0.113.77") == "203.0.113.0/24"
    assert risk.network_of(None) is None and risk.network_of("junk") is None
    berlin, new_york = Place("DE", "Berlin", 52.52, 13.405), Place("US", "NY", 40.7128, -74.006)
    assert 6350 < risk.distance_km(berlin, new_york) < 6420
    assert risk.distance_km(berlin, berlin) == 0


# -- what the policy makes of the score ------------------------------------------------------


def test_the_policy_thresholds_map_a_score_to_a_decision():
    default = SessionPolicy()
    assert [risk.decide(s, default) for s in (0, 29, 30, 59, 60, 100)] == [
        "allow", "allow", "notify", "notify", "mfa", "mfa",
    ]  # fmt: skip
    strict = SessionPolicy(risk_notify_at=10, risk_mfa_at=40, risk_deny_at=80)
    assert [risk.decide(s, strict) for s in (9, 10, 40, 80, 100)] == [
        "allow", "notify", "mfa", "deny", "deny",
    ]  # fmt: skip


async def test_a_risky_sign_in_needs_mfa_and_opens_no_session(tenant, services, geo_mails, clock):
    """Default policy: 60 and up needs a second factor; none exists yet, so it is refused."""
    user_id, email = await new_account(tenant)
    first = await sign_in(tenant, email, ip=BERLIN_IP)
    await session_of(services, tenant, first)
    clock.advance(minutes=30)
    r = await sign_in(tenant, email, ip=NEW_YORK_IP, device=first.json()["deviceToken"])
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/mfa-required")
    assert "accessToken" not in r.json()
    assert await sessions_of(services, tenant, user_id) == 1
    assert geo_mails.sent == []
    refused = await audit_entries(services, tenant.id, "auth:login:risk_refused")
    mine = [e for e in refused if e.resource_id == user_id]
    assert len(mine) == 1
    assert mine[0].changes["decision"] == "mfa" and mine[0].changes["riskScore"] == 100
    assert mine[0].changes["riskReasons"] == ["new_network", "new_country", "impossible_travel"]


async def test_the_policy_can_deny_a_sign_in(tenant, services, mails):
    await set_policy(tenant, riskNotifyAt=20, riskMfaAt=20, riskDenyAt=20)
    user_id, email = await new_account(tenant)
    first = await sign_in(tenant, email, ip="192.0.2.10")
    await session_of(services, tenant, first)
    r = await sign_in(tenant, email, ip="192.0.3.10", device=first.json()["deviceToken"])
    assert r.status_code == 401, r.text
    assert r.json()["type"].endswith("/sign-in-refused")
    assert await sessions_of(services, tenant, user_id) == 1
    refused = await audit_entries(services, tenant.id, "auth:login:risk_refused")
    assert [e.changes["decision"] for e in refused if e.resource_id == user_id] == ["deny"]
    # The same device from a known network is still let in.
    ok = await sign_in(tenant, email, ip="192.0.2.11", device=first.json()["deviceToken"])
    assert ok.status_code == 200, ok.text
