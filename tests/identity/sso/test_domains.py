"""Email domains verified by DNS (issue 13 point 1): the TXT record to publish, a check that
verifies only with exactly that value and says in words why not (NXDOMAIN, no TXT record,
another value, a timeout, SERVFAIL), one tenant per verified domain, discovery routing only
verified domains, the periodic re-check that demotes a domain after failures in a row, and
the policy's ``verifiedDomains`` turned read-only. Every lookup goes to a real DNS server on
loopback (``dns_zone``)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.identity.sso import domains
from kanvaro.identity.sso import jobs as sso_jobs
from kanvaro.identity.sso.models import SsoDomain
from kanvaro.jobs import JobRegistry, ManualClock
from kanvaro.services import Services
from tests.conftest import TenantFixture, new_tenant
from tests.identity.sso.conftest import make_provider, unique_domain
from tests.identity.sso.dns_zone import DOMAINS, Zone, check_now, claim, verify_domain
from tests.identity.sso.idp import Idp


async def _actions(services: Services, tenant_id: str, resource_id: str) -> list[str]:
    await services.audit.drain()
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as db:
        rows = await db.execute(
            select(AuditLog.action)
            .where(AuditLog.resource_id == resource_id)
            .order_by(AuditLog.sequence_number)
        )
        return list(rows.scalars())


async def test_claim_answers_the_record_to_publish(tenant: TenantFixture) -> None:
    domain = unique_domain()
    claimed = await claim(tenant, f"  {domain.upper()}. ")
    assert claimed["domain"] == domain and claimed["status"] == "pending"
    record = claimed["record"]
    assert record["type"] == "TXT" and record["name"] == f"_kanvaro-challenge.{domain}"
    token = record["value"].removeprefix("kanvaro-domain-verification=")
    assert len(token) >= 32 and token != record["value"]
    again = await tenant.client.post(DOMAINS, headers=tenant.admin.headers, json={"domain": domain})
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "domain"
    listed = await tenant.client.get(DOMAINS, headers=tenant.admin.headers)
    assert [d["id"] for d in listed.json() if d["domain"] == domain] == [claimed["id"]]
    idn = await claim(tenant, f"Bücher-{uuid.uuid4().hex[:6]}.example")
    assert idn["domain"].startswith("xn--")  # IDNA A-labels, as DNS is asked
    for bad in ("gmail", "192.0.2.1", "a..example", "-x.example", "x_y.example"):
        r = await tenant.client.post(DOMAINS, headers=tenant.admin.headers, json={"domain": bad})
        assert r.status_code == 422, bad
        assert r.json()["errors"][0]["field"] == "domain"


async def test_only_the_right_record_verifies(
    tenant: TenantFixture, dns_zone: Zone, services: Services
) -> None:
    claimed = await claim(tenant, unique_domain())
    name, value = claimed["record"]["name"], claimed["record"]["value"]

    missing = await check_now(tenant, claimed)  # not in the zone at all
    assert missing["status"] == "pending" and "NXDOMAIN" in missing["lastError"]
    assert missing["lastCheckedAt"] is not None

    dns_zone.publish(name)  # the name exists, without a TXT record
    assert "no TXT record" in (await check_now(tenant, claimed))["lastError"]

    other = f"kanvaro-domain-verification={'x' * 32}"
    dns_zone.publish(name, "v=spf1 -all", other, value + "x")
    wrong = await check_now(tenant, claimed)
    assert wrong["status"] == "pending" and "do not hold" in wrong["lastError"]
    assert value not in wrong["lastError"]

    dns_zone.failing.add(name)
    failing = await check_now(tenant, claimed)
    assert failing["status"] == "pending" and "SERVFAIL" in failing["lastError"]
    dns_zone.failing.discard(name)

    dns_zone.silent.add(name)
    try:
        timed_out = await check_now(tenant, claimed)
    finally:
        dns_zone.silent.discard(name)
    assert timed_out["status"] == "pending" and "timed out" in timed_out["lastError"]

    dns_zone.publish(name, "v=spf1 -all", value)  # among other records, as zones are
    good = await check_now(tenant, claimed)
    assert good["status"] == "verified" and good["lastError"] is None
    assert good["verifiedAt"] is not None
    policy = await tenant.client.get("/api/v1/sso/policy", headers=tenant.admin.headers)
    assert claimed["domain"] in policy.json()["verifiedDomains"]
    actions = await _actions(services, tenant.id, claimed["id"])
    assert actions[0] == "api:sso_domain:create"
    assert actions[1:] == ["api:sso_domain:verify"] * 6


async def test_a_record_split_into_strings_counts_as_one_value(
    tenant: TenantFixture, dns_zone: Zone
) -> None:
    claimed = await claim(tenant, unique_domain())
    value = claimed["record"]["value"]
    # One TXT record of two character-strings (RFC 7208 §3.3 reads them joined).
    dns_zone.publish(claimed["record"]["name"], [value[:20], value[20:]])  # type: ignore[arg-type]
    assert (await check_now(tenant, claimed))["status"] == "verified"


async def test_a_dns_failure_never_verifies_and_no_server_fails_closed(
    tenant: TenantFixture, services: Services
) -> None:
    """With the suite's default settings the resolver is a loopback port nobody answers on."""
    claimed = await claim(tenant, unique_domain())
    checked = await check_now(tenant, claimed)
    assert checked["status"] == "pending" and "timed out" in checked["lastError"]
    async with services.db.session(tenant_id=uuid.UUID(tenant.id)) as db:
        assert await domains.verified(db) == ()


async def test_one_tenant_per_verified_domain(
    tenant: TenantFixture, dns_zone: Zone, services: Services
) -> None:
    domain = unique_domain()
    await verify_domain(tenant, dns_zone, domain)
    other = await new_tenant(services, tenant.client)
    rival = await claim(other, domain)  # a claim alone is allowed: it proves nothing
    assert rival["status"] == "pending"
    # Even with its own record published too, the second tenant does not get the domain.
    dns_zone.publish(
        rival["record"]["name"],
        *dns_zone.txt[rival["record"]["name"]],
        rival["record"]["value"],
    )
    refused = await check_now(other, rival)
    assert refused["status"] == "pending"
    assert "Another organization" in refused["lastError"]
    assert (await _actions(services, other.id, rival["id"]))[-1] == "api:sso_domain:verify"
    async with services.db.session(all_tenants=True) as db:
        holders = (
            await db.execute(
                select(SsoDomain.tenant_id).where(
                    SsoDomain.domain == domain, SsoDomain.status == "verified"
                )
            )
        ).all()
    assert [str(h.tenant_id) for h in holders] == [tenant.id]
    # The first tenant gives it up: now the second one can prove it.
    first = next(
        d
        for d in (await tenant.client.get(DOMAINS, headers=tenant.admin.headers)).json()
        if d["domain"] == domain
    )
    gone = await tenant.client.delete(f"{DOMAINS}/{first['id']}", headers=tenant.admin.headers)
    assert gone.status_code == 204
    assert (await check_now(other, rival))["status"] == "verified"


async def test_tenants_do_not_see_each_others_domains(
    tenant: TenantFixture, services: Services
) -> None:
    claimed = await claim(tenant, unique_domain())
    other = await new_tenant(services, tenant.client)
    listed = await other.client.get(DOMAINS, headers=other.admin.headers)
    assert claimed["id"] not in {d["id"] for d in listed.json()}
    for method, path in (
        ("GET", f"{DOMAINS}/{claimed['id']}"),
        ("POST", f"{DOMAINS}/{claimed['id']}/verify"),
        ("DELETE", f"{DOMAINS}/{claimed['id']}"),
    ):
        r = await other.client.request(method, path, headers=other.admin.headers)
        assert r.status_code == 404, (method, r.text)
    member = await tenant.member("team_member")
    r = await tenant.client.post(DOMAINS, headers=member.headers, json={"domain": "x.example"})
    assert r.status_code == 403


async def test_discovery_routes_only_verified_domains(
    tenant: TenantFixture, oidc_idp: Idp, dns_zone: Zone
) -> None:
    setup = await make_provider(tenant, oidc_idp)
    body = {"email": f"ana@{setup.domain}"}
    claimed = await claim(tenant, setup.domain)
    assert (await tenant.client.post("/api/v1/sso/discover", json=body)).json()["sso"] is False
    dns_zone.publish(claimed["record"]["name"], claimed["record"]["value"])
    assert (await check_now(tenant, claimed))["status"] == "verified"
    found = await tenant.client.post("/api/v1/sso/discover", json=body)
    assert found.json()["sso"] is True and found.json()["providerId"] == setup.id
    r = await tenant.client.delete(f"{DOMAINS}/{claimed['id']}", headers=tenant.admin.headers)
    assert r.status_code == 204
    assert (await tenant.client.post("/api/v1/sso/discover", json=body)).json()["sso"] is False


async def test_the_recheck_job_demotes_after_failures_in_a_row(
    tenant: TenantFixture, dns_zone: Zone, services: Services, oidc_idp: Idp
) -> None:
    setup = await make_provider(tenant, oidc_idp)
    checked = await verify_domain(tenant, dns_zone, setup.domain)
    name, value = checked["record"]["name"], checked["record"]["value"]
    body = {"email": f"bo@{setup.domain}"}
    job = services.jobs.jobs["sso.domains.recheck"]
    assert not job.per_process  # shared: once across instances

    dns_zone.withdraw(name)
    await job.run()
    await job.run()
    state = await tenant.client.get(f"{DOMAINS}/{checked['id']}", headers=tenant.admin.headers)
    assert state.json()["status"] == "verified"  # two failures: still verified
    assert "NXDOMAIN" in state.json()["lastError"]
    dns_zone.publish(name, value)
    await job.run()  # a success in between starts the count again
    state = await tenant.client.get(f"{DOMAINS}/{checked['id']}", headers=tenant.admin.headers)
    assert state.json()["status"] == "verified" and state.json()["lastError"] is None

    dns_zone.publish(name, "kanvaro-domain-verification=someone-elses")
    for _ in range(services.settings.sso_domain_max_failures):
        await job.run()
    state = await tenant.client.get(f"{DOMAINS}/{checked['id']}", headers=tenant.admin.headers)
    assert state.json()["status"] == "pending" and state.json()["verifiedAt"] is None
    assert "No longer verified after 3 failed checks" in state.json()["lastError"]
    assert (await tenant.client.post("/api/v1/sso/discover", json=body)).json()["sso"] is False
    actions = await _actions(services, tenant.id, checked["id"])
    assert actions.count("job:sso_domain:check_failed") == 4
    assert actions[-1] == "job:sso_domain:unverified"


async def test_the_job_is_in_the_registry_and_runs_when_due(
    services: Services, tenant: TenantFixture, dns_zone: Zone
) -> None:
    """Registered by ``sso.jobs.register_jobs`` in the one registry, due once a day by
    default; driven here by a ManualClock instead of waiting."""
    checked = await verify_domain(tenant, dns_zone, unique_domain())
    dns_zone.withdraw(checked["record"]["name"])
    clock = ManualClock()
    registry = JobRegistry(clock=clock, db=services.db)
    driven = SimpleNamespace(jobs=registry, settings=services.settings, db=services.db, clock=clock)
    sso_jobs.register_jobs(driven)  # type: ignore[arg-type]
    assert registry.jobs["sso.domains.recheck"].interval_seconds == 24 * 3600
    clock.advance(24 * 3600 - 1)
    assert "sso.domains.recheck" not in await registry.run_due()
    clock.advance(1)
    assert "sso.domains.recheck" in await registry.run_due()
    state = await tenant.client.get(f"{DOMAINS}/{checked['id']}", headers=tenant.admin.headers)
    assert state.json()["lastCheckedAt"] != checked["lastCheckedAt"]
    assert "NXDOMAIN" in state.json()["lastError"]


async def test_verified_domains_are_read_only_in_the_policy(
    tenant: TenantFixture, dns_zone: Zone
) -> None:
    r = await tenant.client.put(
        "/api/v1/sso/policy",
        headers=tenant.admin.headers,
        json={"verifiedDomains": [unique_domain()]},
    )
    assert r.status_code == 422
    error = r.json()["errors"][0]
    assert error["field"] == "verifiedDomains" and "/api/v1/sso/domains" in error["message"]
    domain = unique_domain()
    await verify_domain(tenant, dns_zone, domain)
    current = (await tenant.client.get("/api/v1/sso/policy", headers=tenant.admin.headers)).json()
    assert current["verifiedDomains"] == [domain]
    # A client that sends back what it read is not refused (backward compatible).
    same = await tenant.client.put("/api/v1/sso/policy", headers=tenant.admin.headers, json=current)
    assert same.status_code == 200, same.text
    assert same.json()["verifiedDomains"] == [domain]


async def test_a_verified_domain_is_allowed_for_sso_sign_in(
    tenant: TenantFixture, oidc_idp: Idp, dns_zone: Zone
) -> None:
    from tests.identity.sso.conftest import sso_sign_in

    domain = unique_domain()
    setup = await make_provider(tenant, oidc_idp, domain="unrelated-" + domain)
    email = f"cy@{domain}"
    refused = await sso_sign_in(setup, oidc_idp, "cy-1", email=email, email_verified=True)
    assert refused.status_code == 403 and "may not sign in" in refused.json()["detail"]
    await verify_domain(tenant, dns_zone, domain)
    allowed = await sso_sign_in(setup, oidc_idp, "cy-1", email=email, email_verified=True)
    assert allowed.status_code == 303, allowed.text
