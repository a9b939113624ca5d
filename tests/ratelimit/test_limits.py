"""Rate limits at every level (seed 004): per address, per user, global, per endpoint rule with
a burst, per role; the headers; IP lists; violations, blocks and their lifting."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kanvaro.audit.models import AuditLog
from kanvaro.ratelimit.guard import _GATE
from kanvaro.ratelimit.models import RateLimitViolation
from tests.ratelimit.conftest import fresh_ipv4, fresh_ipv6_64

ME = "/api/v1/auth/me"
HEALTH = "/healthz"
RULES = "/api/v1/admin/rate-limits/rules"
BLOCKS = "/api/v1/admin/rate-limits/blocks"
IP_LISTS = "/api/v1/admin/rate-limits/ip-lists"


async def _statuses(client, path, n, **kw):
    return [(await client.get(path, **kw)).status_code for _ in range(n)]


async def test_per_address_limit_answers_429_with_every_header(limited):
    async with limited(rate_limit_per_ip_per_minute=3) as inst, inst.client() as c:
        answers = [await c.get(HEALTH) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    ok, refused = answers[0], answers[3]
    # Answers under the limit carry the headers too.
    assert ok.headers["RateLimit-Limit"] == ok.headers["X-RateLimit-Limit"] == "3"
    assert ok.headers["RateLimit-Remaining"] == "2"
    assert int(ok.headers["RateLimit-Reset"]) <= 60
    assert int(ok.headers["X-RateLimit-Reset"]) > 1_700_000_000  # epoch seconds
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/rate-limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["x-content-type-options"] == "nosniff"  # security headers still on


async def test_ipv6_clients_share_their_64(limited):
    prefix = fresh_ipv6_64()
    async with limited(rate_limit_per_ip_per_minute=2) as inst:
        async with inst.client(f"{prefix}::1") as a, inst.client(f"{prefix}::ffff:2") as b:
            assert (await a.get(HEALTH)).status_code == 200
            assert (await b.get(HEALTH)).status_code == 200
            assert (await a.get(HEALTH)).status_code == 429
        async with inst.client(f"{fresh_ipv6_64()}::1") as other:
            assert (await other.get(HEALTH)).status_code == 200


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(limited):
    proxy = fresh_ipv4()
    async with limited(rate_limit_per_ip_per_minute=2, trusted_proxies=[f"{proxy}/32"]) as inst:
        # Behind the proxy, two clients have two allowances.
        async with inst.client(proxy) as c:
            for client in (fresh_ipv4(), fresh_ipv4()):
                got = await _statuses(c, HEALTH, 2, headers={"X-Forwarded-For": client})
                assert got == [200, 200]
        # From anywhere else the header is ignored: rotating it buys nothing.
        async with inst.client() as c:
            got = [
                (await c.get(HEALTH, headers={"X-Forwarded-For": fresh_ipv4()})).status_code
                for _ in range(3)
            ]
        assert got == [200, 200, 429]


async def test_the_user_agent_is_not_part_of_the_key(limited):
    async with limited(rate_limit_per_ip_per_minute=2) as inst, inst.client() as c:
        got = [
            (await c.get(HEALTH, headers={"User-Agent": f"agent-{i}"})).status_code
            for i in range(3)
        ]
    assert got == [200, 200, 429]


async def test_per_user_limit_is_per_user(limited):
    async with limited(rate_limit_per_user_per_minute=3) as inst:
        _, slug, admin = await inst.tenant_admin()
        _, alice = await inst.member(admin, slug, "viewer")
        _, bob = await inst.member(admin, slug, "viewer")
        async with inst.client() as c:  # one address, two users
            assert await _statuses(c, ME, 4, headers=alice) == [200, 200, 200, 429]
            assert await _statuses(c, ME, 1, headers=bob) == [200]


async def test_global_limit_counts_every_client(limited):
    async with limited(rate_limit_global_per_minute=3) as inst:
        got = []
        for _ in range(4):
            async with inst.client() as c:
                got.append((await c.get(HEALTH)).status_code)
    assert got == [200, 200, 200, 429]


async def test_an_endpoint_rule_with_a_burst_applies_without_a_restart(limited):
    async with limited() as inst:
        _tenant_id, _slug, admin = await inst.tenant_admin()
        async with inst.client() as c:
            r = await c.post(
                RULES,
                headers=admin,
                json={"endpointPattern": "/api/v1/projects", "method": "GET",
                      "requestsPerMinute": 2, "burstAllowance": 2, "perUser": True},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            assert r.json()["scope"] == "tenant"
            got = await _statuses(c, "/api/v1/projects", 5, headers=admin)
            assert got == [200, 200, 200, 200, 429]  # the rate, plus its burst
            # Other endpoints and methods are not touched by it.
            assert (await c.get(ME, headers=admin)).status_code == 200
            listed = (await c.get(RULES, headers=admin)).json()
            assert [x["endpointPattern"] for x in listed] == ["/api/v1/projects"]
            rule_id = listed[0]["id"]
            assert (await c.delete(f"{RULES}/{rule_id}", headers=admin)).status_code == 204


async def test_a_rule_for_one_role_leaves_the_others_alone(limited):
    async with limited() as inst:
        _, slug, admin = await inst.tenant_admin()
        _, viewer = await inst.member(admin, slug, "viewer")
        _, manager = await inst.member(admin, slug, "project_manager")
        async with inst.client() as c:
            r = await c.post(
                RULES,
                headers=admin,
                json={"endpointPattern": "/api/v1/auth/*", "requestsPerMinute": 1,
                      "perUser": True, "role": "viewer"},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            assert await _statuses(c, ME, 2, headers=viewer) == [200, 429]
            assert await _statuses(c, ME, 2, headers=manager) == [200, 200]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"endpointPattern": "api/v1", "requestsPerMinute": 5}, "endpointPattern"),
        ({"endpointPattern": "/a/**/b", "requestsPerMinute": 5}, "endpointPattern"),
        ({"endpointPattern": "/a", "requestsPerMinute": 0}, "requestsPerMinute"),
        ({"endpointPattern": "/a", "requestsPerMinute": 5, "method": "BREW"}, "method"),
        ({"endpointPattern": "/a", "requestsPerMinute": 5, "role": "wizard"}, "role"),
        ({"endpointPattern": "/a", "requestsPerMinute": 5, "colour": "red"}, "colour"),
    ],
)
async def test_a_bad_rule_is_refused_naming_the_field(limited, body, field):
    async with limited() as inst:
        _, _, admin = await inst.tenant_admin()
        async with inst.client() as c:
            r = await c.post(RULES, headers=admin, json=body)
    assert r.status_code == 422, r.text
    assert field in r.text


async def test_a_denied_network_gets_403_before_any_other_work(limited):
    bad = fresh_ipv4()
    async with limited(ip_deny_list=[f"{bad}/32"]) as inst:
        async with inst.client(bad) as c:
            for path in (HEALTH, "/no/such/route", ME):
                r = await c.get(path, headers={"Authorization": "Bearer not-a-token"})
                assert r.status_code == 403, path
                assert r.json()["type"].endswith("/ip-denied")
        async with inst.client() as c:
            assert (await c.get(HEALTH)).status_code == 200


async def test_a_tenant_allow_list_shuts_out_other_networks_of_that_tenant_only(limited):
    office = fresh_ipv4()
    async with limited() as inst:
        _, _slug, admin = await inst.tenant_admin(office)
        _, other_admin = (await inst.tenant_admin())[1:]
        async with inst.client(office) as c:
            # Refused when it would lock the admin himself out...
            r = await c.post(
                IP_LISTS, headers=admin, json={"network": "192.0.2.0/24", "action": "allow"}
            )
            assert r.status_code == 422 and "network" in r.text
            # ... accepted with his own network in it.
            r = await c.post(
                IP_LISTS, headers=admin, json={"network": f"{office}/32", "action": "allow"}
            )
            assert r.status_code == 201, r.text
            assert (await c.get(ME, headers=admin)).status_code == 200
        async with inst.client() as elsewhere:
            r = await elsewhere.get(ME, headers=admin)
            assert r.status_code == 403 and r.json()["type"].endswith("/ip-denied")
            assert (await elsewhere.get(ME, headers=other_admin)).status_code == 200


async def test_repeated_violations_block_the_client_until_an_admin_lifts_it(limited):
    noisy, office = fresh_ipv4(), fresh_ipv4()
    async with limited(
        rate_limit_per_ip_per_minute=1,
        rate_limit_block_after_violations=1,
        ip_exempt_list=[f"{office}/32"],  # the admin's own network: no per-address limit
    ) as inst:
        guard = inst.services.rate_limits
        per_ip = guard._per_ip[False][0]

        async def next_minute() -> None:
            """What a minute's wait does: the address's count and the once-a-minute
            violation gate start afresh."""
            guard.limiter.forget_leases()
            await guard.limiter.clear(per_ip, noisy)
            await guard.limiter.clear(_GATE, f"ip:{noisy}")

        async with inst.client(noisy) as c:
            assert await _statuses(c, HEALTH, 3) == [200, 429, 429]  # one violation minute
            await guard.settled()
            await next_minute()
            assert await _statuses(c, HEALTH, 2) == [200, 429]  # a second: over the threshold
            await guard.settled()
            await next_minute()
            r = await c.get(HEALTH)
            assert r.status_code == 429 and r.json()["type"].endswith("/rate-limit-blocked")
            assert int(r.headers["Retry-After"]) > 60  # the block's minutes, not the window
        async with inst.services.db.session(all_tenants=True) as s:
            rows = (
                await s.scalars(
                    select(RateLimitViolation).where(RateLimitViolation.ip_address == noisy)
                )
            ).all()
            assert len(rows) == 2 and sum(r.blocked_until is not None for r in rows) == 1
            block = next(r for r in rows if r.blocked_until is not None)
        await inst.services.audit.drain()
        # The instance admin lists and lifts it; the client gets in again; both are audited.
        root = await _super_admin(inst, office)
        async with inst.client(office) as admin_client:
            got = await admin_client.get(BLOCKS, headers=root)
            assert got.status_code == 200, got.text
            listed = got.json()
            assert str(block.id) in [b["id"] for b in listed]
            lifted = await admin_client.delete(f"{BLOCKS}/{block.id}", headers=root)
            assert lifted.status_code == 200 and lifted.json()["liftedAt"]
            active = (await admin_client.get(BLOCKS, headers=root)).json()
            assert str(block.id) not in [b["id"] for b in active]
        await next_minute()
        async with inst.client(noisy) as c:
            again = await c.get(HEALTH)
            assert again.status_code == 200, again.text
        await inst.services.audit.drain()
        async with inst.services.db.session(all_tenants=True) as s:
            actions = (
                await s.scalars(
                    select(AuditLog.action).where(AuditLog.resource_id == str(block.id))
                )
            ).all()
        assert sorted(actions) == ["api:rate_limit_block:lift", "system:rate_limit_block:imposed"]


async def _super_admin(inst, ip: str | None = None) -> dict[str, str]:
    from kanvaro.bootstrap import bootstrap
    from tests.conftest import PASSWORD, unique_email

    email = unique_email("root")
    await bootstrap(
        inst.services, tenant_name=None, super_admin=True, email=email, password=PASSWORD
    )
    async with inst.client(ip) as c:
        r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['accessToken']}"}


async def test_super_admin_is_limited_unless_the_exemption_is_on(limited):
    async with limited(rate_limit_per_user_per_minute=2) as inst:
        root = await _super_admin(inst)
        async with inst.client() as c:
            assert await _statuses(c, ME, 3, headers=root) == [200, 200, 429]
    async with limited(
        rate_limit_per_user_per_minute=2, rate_limit_exempt_super_admin=True
    ) as inst:
        root = await _super_admin(inst)
        async with inst.client() as c:
            assert await _statuses(c, ME, 3, headers=root) == [200, 200, 200]


async def test_deny_entries_through_the_api_apply_at_once_per_scope(limited):
    office, bad = fresh_ipv4(), fresh_ipv4()
    async with limited() as inst:
        _, _, admin = await inst.tenant_admin(office)
        _, _, bystander = await inst.tenant_admin(bad)
        root = await _super_admin(inst, office)
        async with inst.client(office) as c:
            # A tenant may not exempt networks, nor deny its admin's own address.
            r = await c.post(
                IP_LISTS, headers=admin, json={"network": "10.0.0.0/8", "action": "exempt"}
            )
            assert r.status_code == 422 and "action" in r.text
            r = await c.post(
                IP_LISTS, headers=admin, json={"network": f"{office}/32", "action": "deny"}
            )
            assert r.status_code == 422 and "network" in r.text
            r = await c.post(
                IP_LISTS, headers=admin, json={"network": "10.0.0.1/8", "action": "deny"}
            )
            assert r.status_code == 422 and "network" in r.text  # host bits: a typo
            # The tenant denies the other address: its own members are refused from there...
            r = await c.post(
                IP_LISTS, headers=admin, json={"network": f"{bad}/32", "action": "deny"}
            )
            assert r.status_code == 201, r.text
        async with inst.client(bad) as c:
            assert (await c.get(ME, headers=admin)).status_code == 403
            # ... other tenants' members are not.
            assert (await c.get(ME, headers=bystander)).status_code == 200
        # The instance's deny list shuts the address out of everything, signed in or not.
        async with inst.client(office) as c:
            r = await c.post(
                IP_LISTS, headers=root, json={"network": f"{bad}/32", "action": "deny"}
            )
            assert r.status_code == 201 and r.json()["scope"] == "instance"
            entry = r.json()["id"]
            listed = (await c.get(IP_LISTS, headers=root)).json()
            assert [e["id"] for e in listed] == [entry]  # the tenant's entry is not the instance's
        async with inst.client(bad) as c:
            assert (await c.get(HEALTH)).status_code == 403
        async with inst.client(office) as c:
            assert (await c.delete(f"{IP_LISTS}/{entry}", headers=root)).status_code == 204
        async with inst.client(bad) as c:
            assert (await c.get(HEALTH)).status_code == 200


async def test_a_tenant_admin_sees_and_changes_only_his_tenants_rules(limited):
    async with limited() as inst:
        _, _, a = await inst.tenant_admin()
        _, _, b = await inst.tenant_admin()
        async with inst.client() as c:
            r = await c.post(
                RULES, headers=a, json={"endpointPattern": "/api/v1/x", "requestsPerMinute": 5}
            )
            rule = r.json()["id"]
            assert (await c.get(RULES, headers=b)).json() == []
            assert (
                await c.patch(f"{RULES}/{rule}", headers=b, json={"requestsPerMinute": 9})
            ).status_code == 404
            assert (await c.delete(f"{RULES}/{rule}", headers=b)).status_code == 404
            r = await c.patch(
                f"{RULES}/{rule}", headers=a, json={"requestsPerMinute": 9, "enabled": False}
            )
            assert (
                r.status_code == 200
                and r.json()["requestsPerMinute"] == 9
                and not r.json()["enabled"]
            )
