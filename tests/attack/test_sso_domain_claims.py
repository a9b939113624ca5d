"""A tenant that claims another organization's email domain does not capture its users'
home-realm discovery (issue 13 point 1): not by declaring it in the SSO policy, not by a
claim without the DNS record, not with the other tenant's record, and not with a look-alike
domain it does control. The DNS answers come from a real server on loopback."""

from __future__ import annotations

import uuid
from typing import Any

from kanvaro.services import Services
from tests.conftest import TenantFixture, new_tenant
from tests.identity.sso import dns_zone as zone_fixtures
from tests.identity.sso.dns_zone import Zone, check_now, claim, verify_domain

# The loopback DNS server's fixtures, as the SSO tests have them.
_dns_server = zone_fixtures._dns_server
dns_zone = zone_fixtures.dns_zone

DISCOVER = "/api/v1/sso/discover"


async def _provider(tenant: TenantFixture, domain: str) -> str:
    """An OAuth2 provider serving the domain (explicit URLs: no IdP has to answer)."""
    r = await tenant.client.post(
        "/api/v1/sso/providers",
        headers=tenant.admin.headers,
        json={
            "providerType": "oauth2",
            "name": f"IdP {uuid.uuid4().hex[:6]}",
            "config": {
                "clientId": "c",
                "authorizationURL": "https://idp.example/authorize",
                "tokenURL": "https://idp.example/token",
                "userInfoURL": "https://idp.example/userinfo",
                "domains": [domain],
            },
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def _discover(tenant: TenantFixture, email: str, slug: str | None = None) -> Any:
    body = {"email": email} | ({"tenant": slug} if slug else {})
    r = await tenant.client.post(DISCOVER, json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_claim_without_the_dns_record_does_not_capture_discovery(
    tenant: TenantFixture, dns_zone: Zone, services: Services
) -> None:
    domain = f"victim-{uuid.uuid4().hex[:8]}.example"
    victim_provider = await _provider(tenant, domain)
    await verify_domain(tenant, dns_zone, domain)
    attacker = await new_tenant(services, tenant.client)
    await _provider(attacker, domain)

    # 1. Declaring it, as the policy once allowed: refused, naming the field.
    declared = await attacker.client.put(
        "/api/v1/sso/policy", headers=attacker.admin.headers, json={"verifiedDomains": [domain]}
    )
    assert declared.status_code == 422
    assert declared.json()["errors"][0]["field"] == "verifiedDomains"

    # 2. Claiming it and asking for a check: the zone holds only the victim's record.
    for spelling in (domain.upper(), domain + ".", "@" + domain):
        r = await attacker.client.post(
            "/api/v1/sso/domains", headers=attacker.admin.headers, json={"domain": spelling}
        )
        assert r.status_code in (201, 409), r.text
    claims = (
        await attacker.client.get("/api/v1/sso/domains", headers=attacker.admin.headers)
    ).json()
    assert [c["domain"] for c in claims] == [domain]  # one claim, however it was spelt
    rival = claims[0]
    checked = await check_now(attacker, rival)
    assert checked["status"] == "pending" and "do not hold" in checked["lastError"]

    # 3. Publishing the victim's value under the attacker's claim proves nothing either:
    #    each claim has its own token (the attacker cannot write the zone anyway).
    assert rival["record"]["value"] != dns_zone.txt[rival["record"]["name"]][0]

    for email in (f"ceo@{domain}", f"CEO@{domain.upper()}"):
        assert (await _discover(tenant, email))["providerId"] == victim_provider
        assert (await _discover(tenant, email, attacker.slug))["sso"] is False
    attacker_policy = await attacker.client.get(
        "/api/v1/sso/policy", headers=attacker.admin.headers
    )
    assert attacker_policy.json()["verifiedDomains"] == []


async def test_a_second_verification_never_splits_discovery(
    tenant: TenantFixture, dns_zone: Zone, services: Services
) -> None:
    """Even when the domain's zone carries both tenants' records (a careless DNS admin), the
    first verification holds and discovery names one tenant."""
    domain = f"shared-{uuid.uuid4().hex[:8]}.example"
    victim_provider = await _provider(tenant, domain)
    first = await verify_domain(tenant, dns_zone, domain)
    attacker = await new_tenant(services, tenant.client)
    await _provider(attacker, domain)
    rival = await claim(attacker, domain)
    dns_zone.publish(first["record"]["name"], first["record"]["value"], rival["record"]["value"])
    assert (await check_now(attacker, rival))["status"] == "pending"
    assert (await _discover(tenant, f"x@{domain}"))["providerId"] == victim_provider


async def test_a_look_alike_domain_the_attacker_controls_stays_its_own(
    tenant: TenantFixture, dns_zone: Zone, services: Services
) -> None:
    stem = f"bank{uuid.uuid4().hex[:6]}"
    domain = f"{stem}.example"
    victim_provider = await _provider(tenant, domain)
    await verify_domain(tenant, dns_zone, domain)
    attacker = await new_tenant(services, tenant.client)
    cyrillic_a = "\u0430"
    look_alike = stem.replace("a", cyrillic_a, 1) + ".example"
    await _provider(attacker, look_alike)
    verified = await verify_domain(attacker, dns_zone, look_alike)
    assert verified["domain"].startswith("xn--") and verified["domain"] != domain
    assert (await _discover(tenant, f"ceo@{domain}"))["providerId"] == victim_provider


async def test_a_consumer_mail_domain_cannot_be_captured(
    tenant: TenantFixture, dns_zone: Zone
) -> None:
    """No tenant can publish under gmail.com: its claim stays pending (NXDOMAIN here) and
    the addresses there are never routed to it."""
    await _provider(tenant, "gmail.com")
    r = await tenant.client.post(
        "/api/v1/sso/domains", headers=tenant.admin.headers, json={"domain": "gmail.com"}
    )
    assert r.status_code in (201, 409), r.text
    claimed = next(
        d
        for d in (
            await tenant.client.get("/api/v1/sso/domains", headers=tenant.admin.headers)
        ).json()
        if d["domain"] == "gmail.com"
    )
    checked = await check_now(tenant, claimed)
    assert checked["status"] == "pending" and "NXDOMAIN" in checked["lastError"]
    assert (await _discover(tenant, "someone@gmail.com", tenant.slug))["sso"] is False
