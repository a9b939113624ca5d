# ruff: noqa: F401, F811  (the clock fixture imported from test_totp)
"""Backup codes (issue 11 point 2): the policy's count, from ``secrets``, shown once, stored as
keyed hashes, each usable once; using one mails how many are left; regenerating (own account,
step-up) voids the old set. And the canary: no TOTP secret or backup code in any log line or
audit row."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import inspect, select
from structlog.testing import capture_logs

from kanvaro.audit.models import AuditLog, AuditPending
from kanvaro.identity.mfa import backup_codes
from kanvaro.identity.mfa.models import MfaBackupCode
from kanvaro.services import Services
from tests.conftest import new_tenant
from tests.identity.conftest import audit_entries
from tests.identity.mfa.policy_support import set_mfa_policy
from tests.identity.mfa.test_totp import (
    SETUP,
    VERIFY_SETUP,
    StepClock,
    bearer,
    challenge,
    clock,
    enroll,
    frozen,
    second_step,
    start_setup,
)

CODE = re.compile(r"^[23456789abcdefghjkmnpqrstuvwxyz]{4}-[23456789abcdefghjkmnpqrstuvwxyz]{4}$")


def regenerate_url(user_id: str) -> str:
    return f"/api/v1/users/{user_id}/mfa/regenerate-backup-codes"


async def stored_hashes(services: Services, tenant_id: str, user_id: str) -> list[Any]:
    async with services.db.session(tenant_id=uuid.UUID(tenant_id)) as db:
        rows = await db.execute(
            select(MfaBackupCode).where(MfaBackupCode.user_id == uuid.UUID(user_id))
        )
        return list(rows.scalars())


# --- the codes -------------------------------------------------------------------------------


def test_codes_are_random_unambiguous_and_normalized():
    made = {backup_codes.new_code() for _ in range(200)}
    assert len(made) == 200 and all(CODE.match(c) for c in made)
    assert backup_codes.normalize(" AB2C-d3eF ") == "ab2cd3ef"
    assert backup_codes.normalize("ab2c d3ef") == "ab2cd3ef"
    for bad in ("", "ab2c-d3e", "ab2c-d3efg", "ab0c-d3ef", "abic-d3ef", "123456"):
        assert backup_codes.normalize(bad) is None


async def test_enrollment_shows_the_policys_count_once_and_stores_only_hashes(
    tenant, services, clock
):
    m = await tenant.member("team_member")
    await set_mfa_policy(tenant, backupCodesCount=6)
    setup = await start_setup(tenant, m)
    codes = setup["backupCodes"]
    assert len(codes) == len(set(codes)) == 6 and all(CODE.match(c) for c in codes)
    rows = await stored_hashes(services, tenant.id, m.id)
    assert len(rows) == 6 and len({r.batch for r in rows}) == 1
    stored = {r.code_hash for r in rows}
    assert not stored & {c for c in codes} and not stored & {c.replace("-", "") for c in codes}
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in stored)

    # Confirming shows no codes again; a second method's setup makes no new set.
    body = {"method": "totp", "code": clock.code(setup["secret"])}
    r = await tenant.client.post(VERIFY_SETUP, headers=m.headers, json=body)
    assert r.status_code == 200 and "backupCodes" not in r.json()
    assert (await start_setup(tenant, m))["backupCodes"] == []
    assert {r.code_hash for r in await stored_hashes(services, tenant.id, m.id)} == stored


async def test_backup_codes_are_not_enrolled_on_their_own(tenant):
    m = await tenant.member("team_member")
    for url, body in ((SETUP, {"method": "backup_code"}),
                      (VERIFY_SETUP, {"method": "backup_code", "code": "abcd-efgh"})):  # fmt: skip
        r = await tenant.client.post(url, headers=m.headers, json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "method", r.text


async def test_a_backup_code_works_once(tenant, services, clock):
    m = await tenant.member("team_member")
    setup = await enroll(tenant, m, clock)
    code = setup["backupCodes"][3]
    r = await second_step(tenant, await challenge(tenant, m.email), code.upper(), "backup_code")
    assert r.status_code == 200, r.text
    sessions = await tenant.client.get(
        f"/api/v1/users/{m.id}/sessions", headers=bearer(r.json()["accessToken"])
    )
    [current] = [s for s in sessions.json()["items"] if s["current"]]
    assert current["authMethods"] == ["password", "backup_code"]

    r = await second_step(tenant, await challenge(tenant, m.email), code, "backup_code")
    assert r.status_code == 401
    other = setup["backupCodes"][4].replace("-", "")
    r = await second_step(tenant, await challenge(tenant, m.email), other, "backup_code")
    assert r.status_code == 200
    entries = await audit_entries(services, tenant.id, "auth:mfa:backup_code_used")
    assert [e.changes for e in entries] == [{"remaining": 9}, {"remaining": 8}]


async def test_another_users_code_does_not_work(tenant, clock):
    ana, bob = await tenant.member("team_member"), await tenant.member("team_member")
    await enroll(tenant, ana, clock)
    bobs = await enroll(tenant, bob, clock)
    r = await second_step(
        tenant, await challenge(tenant, ana.email), bobs["backupCodes"][0], "backup_code"
    )
    assert r.status_code == 401


# --- the notice mail -------------------------------------------------------------------------


@pytest.fixture
def mail_clock(smtp_services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[StepClock]:
    yield frozen(smtp_services, monkeypatch)


async def test_using_a_code_mails_how_many_are_left(
    smtp_services, smtp_client, smtp_server, mail_clock
):
    inbox, _ = smtp_server
    tenant = await new_tenant(smtp_services, smtp_client)
    m = await tenant.member("team_member")
    setup = await enroll(tenant, m, mail_clock)
    used = setup["backupCodes"][0]
    r = await second_step(tenant, await challenge(tenant, m.email), used, "backup_code")
    assert r.status_code == 200, r.text
    [mail] = [
        message
        for rcpts, message in zip(inbox.recipients, inbox.messages, strict=True)
        if m.email in rcpts and "backup code" in message["Subject"]
    ]  # (the sign-in alert of issue 10 goes to him too)
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert "9 left" in mail["Subject"] and "9 unused backup codes left" in body
    assert not any(code in body for code in setup["backupCodes"])


# --- regenerating ----------------------------------------------------------------------------


async def test_regenerating_voids_the_old_set(tenant, services, clock):
    m = await tenant.member("team_member")
    old = (await enroll(tenant, m, clock))["backupCodes"]
    r = await tenant.client.post(regenerate_url(m.id), headers=m.headers)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    new = r.json()["backupCodes"]
    assert len(new) == 10 and not set(new) & set(old)
    assert len(await stored_hashes(services, tenant.id, m.id)) == 10

    session_id = await challenge(tenant, m.email)
    assert (await second_step(tenant, session_id, old[0], "backup_code")).status_code == 401
    assert (await second_step(tenant, session_id, new[0], "backup_code")).status_code == 200
    [entry] = await audit_entries(services, tenant.id, "auth:mfa:backup_codes_regenerate")
    assert str(entry.actor_id) == m.id and entry.changes == {"count": 10}


async def test_regenerating_needs_a_recent_sign_in(tenant, clock):
    m = await tenant.member("team_member")
    await enroll(tenant, m, clock)
    clock.advance(minutes=16)  # the default reauthMaxAgeMinutes is 15
    r = await tenant.client.post(regenerate_url(m.id), headers=m.headers)
    assert r.status_code == 401 and r.json()["type"].endswith("reauth-required"), r.text


async def test_only_ones_own_codes_are_regenerated(tenant, other_tenant, clock):
    m = await tenant.member("team_member")
    await enroll(tenant, m, clock)
    for headers in (tenant.admin.headers, other_tenant.admin.headers):
        r = await tenant.client.post(regenerate_url(m.id), headers=headers)
        assert r.status_code == 404, r.text
    nobody = await tenant.member("viewer")  # no second factor: nothing to stand in for
    r = await tenant.client.post(regenerate_url(nobody.id), headers=nobody.headers)
    assert r.status_code == 409


# --- the canary ------------------------------------------------------------------------------


async def test_no_secret_or_code_reaches_a_log_line_or_an_audit_row(tenant, services, clock):
    m = await tenant.member("team_member")
    with capture_logs() as logs:
        setup = await enroll(tenant, m, clock)
        secret, codes = setup["secret"], list(setup["backupCodes"])
        await second_step(tenant, await challenge(tenant, m.email), "000000")  # a failure
        await second_step(tenant, await challenge(tenant, m.email), clock.code(secret))
        await second_step(tenant, await challenge(tenant, m.email), codes[0], "backup_code")
        r = await tenant.client.post(regenerate_url(m.id), headers=m.headers)
        codes += r.json()["backupCodes"]
    await services.audit.drain()
    async with services.db.session(all_tenants=True) as db:
        rows = [
            *(
                await db.execute(select(AuditLog).where(AuditLog.tenant_id == uuid.UUID(tenant.id)))
            ).scalars(),
            *(await db.execute(select(AuditPending))).scalars(),
        ]
    assert any(row.action == "auth:mfa:backup_code_used" for row in rows)
    dumped = " ".join(
        repr({a.key: getattr(row, a.key) for a in inspect(row).mapper.column_attrs}) for row in rows
    )
    dumped += " ".join(repr(line) for line in logs)
    # (TOTP codes are six digits: microseconds and hashes could hold one by chance.)
    canaries = [secret, *codes, *(c.replace("-", "") for c in codes)]
    assert [c for c in canaries if c in dumped] == []
