"""Reports generated in the background (issue 15): one claimant wins, a report whose process
died is taken over once its heartbeat is stale (and the dead claimant can no longer write), a
report is given up after three claims, a failing builder leaves the error's type only, and the
sweep is one shared job."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta

from sqlalchemy import select, update

from kanvaro import background
from kanvaro.audit.models import AuditLog
from kanvaro.compliance import reports as report_types
from kanvaro.compliance.models import ComplianceReport
from kanvaro.compliance.reports import worker
from kanvaro.jobs import ManualClock

CANARY = "REPORT-CANARY-7f3a9c"


async def _asked(client, tenant, monkeypatch, kind: str = "sox") -> tuple[uuid.UUID, uuid.UUID]:
    """A report asked for through the API whose background start is held back."""
    monkeypatch.setattr(worker, "start", lambda *args: None)
    r = await client.post(
        "/api/v1/compliance/reports",
        headers=tenant.admin.headers,
        json={
            "reportType": kind,
            "periodStart": "2026-01-01",
            "periodEnd": date.today().isoformat(),
        },
    )
    assert r.status_code == 202, r.text
    return uuid.UUID(tenant.id), uuid.UUID(r.json()["id"])


async def _row(services, tenant_id, report_id) -> ComplianceReport:
    async with services.db.session(tenant_id=tenant_id) as db:
        row = await db.get(ComplianceReport, report_id)
        db.expunge(row)
        return row


async def _actions(services, tenant_id, report_id) -> list[tuple[str, dict]]:
    await services.audit.drain()
    async with services.db.session(tenant_id=tenant_id) as db:
        rows = await db.execute(
            select(AuditLog.action, AuditLog.changes)
            .where(AuditLog.resource_id == str(report_id))
            .order_by(AuditLog.created_at)
        )
        return [(action, changes or {}) for action, changes in rows.all()]


async def test_a_report_is_generated_once_however_many_try(services, client, tenant, monkeypatch):
    tenant_id, report_id = await _asked(client, tenant, monkeypatch)
    results = await asyncio.gather(
        *(worker.run_one(services, tenant_id, report_id) for _ in range(3))
    )
    assert sorted(results) == [False, False, True]
    row = await _row(services, tenant_id, report_id)
    assert row.status == "completed" and row.attempts == 1 and row.claim_token is None
    assert (row.progress_done, row.progress_total, row.progress_step) == (3, 3, "completed")
    actions = [a for a, _ in await _actions(services, tenant_id, report_id)]
    assert actions == ["api:compliance_report:create", "job:compliance_report:complete"]


async def test_the_kick_after_commit_generates_it(services, client, tenant):
    r = await client.post(
        "/api/v1/compliance/reports",
        headers=tenant.admin.headers,
        json={"reportType": "gdpr", "periodStart": "2026-01-01", "periodEnd": "2026-01-31"},
    )
    assert r.status_code == 202
    await background.drain()
    row = await _row(services, uuid.UUID(tenant.id), uuid.UUID(r.json()["id"]))
    assert row.status == "completed" and row.report_data["reportDigest"]


async def test_a_dead_claimants_report_is_taken_over_when_its_heartbeat_is_stale(
    services, client, tenant, monkeypatch
):
    tenant_id, report_id = await _asked(client, tenant, monkeypatch)
    clock = ManualClock()
    monkeypatch.setattr(services, "clock", clock)
    dead = await worker.claim(services, tenant_id, report_id)  # ...and its process dies
    assert dead is not None
    # Alive as far as anyone can tell: nobody takes it.
    assert await worker.run_one(services, tenant_id, report_id) is False
    await worker.sweep(services)
    assert (await _row(services, tenant_id, report_id)).status == "running"
    clock.advance(worker.STALE_AFTER.total_seconds() + 1)
    await worker.sweep(services)
    row = await _row(services, tenant_id, report_id)
    assert row.status == "completed" and row.attempts == 2
    # The first claimant wakes up: its claim is gone, it cannot write.
    async with services.db.session(tenant_id=tenant_id) as db:
        try:
            await worker._advance(services, db, report_id, dead, 1)
        except worker.ClaimLost:
            pass
        else:
            raise AssertionError("a lost claim still moved the progress")
    assert (await _row(services, tenant_id, report_id)).progress_done == 3


async def test_a_report_claimed_three_times_is_given_up(services, client, tenant, monkeypatch):
    tenant_id, report_id = await _asked(client, tenant, monkeypatch)
    clock = ManualClock()
    monkeypatch.setattr(services, "clock", clock)
    async with services.db.session(tenant_id=tenant_id) as db:
        await db.execute(
            update(ComplianceReport)
            .where(ComplianceReport.id == report_id)
            .values(
                status="running",
                attempts=worker.MAX_ATTEMPTS,
                heartbeat_at=clock.now() - timedelta(hours=1),
                claim_token=uuid.uuid4(),
            )
        )
    assert await worker.run_one(services, tenant_id, report_id) is False
    await worker.sweep(services)
    row = await _row(services, tenant_id, report_id)
    assert row.status == "failed" and row.error == "Abandoned" and row.report_data is None
    assert (await _actions(services, tenant_id, report_id))[-1] == (
        "job:compliance_report:fail",
        {"status": "failed", "error": "Abandoned"},
    )


async def test_a_failing_builder_leaves_its_type_and_nothing_of_its_message(
    services, client, tenant, monkeypatch, capsys
):
    async def broken(ctx, period):
        raise ValueError(f"cannot read {CANARY}")

    monkeypatch.setitem(report_types.BUILDERS, "sox", broken)
    tenant_id, report_id = await _asked(client, tenant, monkeypatch)
    assert await worker.run_one(services, tenant_id, report_id) is True
    row = await _row(services, tenant_id, report_id)
    assert row.status == "failed" and row.error == "ValueError"
    assert row.progress_done == 0 and row.progress_step == "failed"
    r = await client.get(f"/api/v1/compliance/reports/{report_id}", headers=tenant.admin.headers)
    assert r.json()["status"] == "failed" and CANARY not in r.text
    actions = await _actions(services, tenant_id, report_id)
    assert actions[-1] == (
        "job:compliance_report:fail",
        {"status": "failed", "error": "ValueError"},
    )
    captured = capsys.readouterr()
    assert CANARY not in captured.out + captured.err


async def test_a_report_whose_process_restarted_is_picked_up_by_the_sweep(
    services, client, tenant, monkeypatch
):
    tenant_id, report_id = await _asked(client, tenant, monkeypatch, "hipaa")
    assert (await _row(services, tenant_id, report_id)).status == "pending"
    assert await worker.sweep(services) >= 1
    assert (await _row(services, tenant_id, report_id)).status == "completed"


async def test_the_sweep_is_one_shared_job(services):
    job = services.jobs.jobs[worker.JOB]
    assert job.per_process is False
    assert job.interval_seconds == services.settings.report_sweep_interval_seconds


async def test_a_step_longer_than_the_stale_time_is_not_taken_for_dead(
    services, client, tenant, monkeypatch
):
    tenant_id, report_id = await _asked(client, tenant, monkeypatch)
    clock = ManualClock()
    monkeypatch.setattr(services, "clock", clock)
    monkeypatch.setattr(worker, "HEARTBEAT_EVERY", 0.01)
    builder = report_types.BUILDERS["sox"]
    seen: list[uuid.UUID | None] = []

    async def slow(ctx, period):
        clock.advance(worker.STALE_AFTER.total_seconds() + 60)  # the step takes "long"...
        await asyncio.sleep(0.2)  # ...and its claimant beats meanwhile
        seen.append(await worker.claim(services, tenant_id, report_id))
        return await builder(ctx, period)

    monkeypatch.setitem(report_types.BUILDERS, "sox", slow)
    assert await worker.run_one(services, tenant_id, report_id) is True
    assert seen == [None]  # nobody could take it over
    row = await _row(services, tenant_id, report_id)
    assert row.status == "completed" and row.attempts == 1


async def test_one_reports_trouble_does_not_stop_the_sweep(services, client, tenant, monkeypatch):
    first = await _asked(client, tenant, monkeypatch)
    second = await _asked(client, tenant, monkeypatch)
    real = worker.run_one

    async def flaky(services_, tenant_id, report_id):
        if report_id == first[1]:
            raise ConnectionError("database went away")
        return await real(services_, tenant_id, report_id)

    monkeypatch.setattr(worker, "run_one", flaky)
    await worker.sweep(services)
    assert (await _row(services, *first)).status == "pending"  # the next sweep retries it
    assert (await _row(services, *second)).status == "completed"


async def test_the_command_line_waits_for_a_report_another_process_claimed(
    services, tenant, monkeypatch
):
    """``kanvaro report generate`` loses the claim to a server's sweep, whose process then
    dies: the command waits, takes the report over once the heartbeat is stale, and exits
    with it completed (not 'running')."""
    from kanvaro.acting import Acting
    from kanvaro.compliance.reports import service as reports

    clock = ManualClock()
    monkeypatch.setattr(services, "clock", clock)
    monkeypatch.setattr(worker, "WAIT_POLL_SECONDS", 0.01)
    real_claim = worker.claim
    others: list[uuid.UUID] = []

    async def a_server_first(services_, tenant_id, report_id):
        if not others:
            others.append(await real_claim(services_, tenant_id, report_id))  # ...and it dies
            clock.advance(worker.STALE_AFTER.total_seconds() + 1)
            return None
        return await real_claim(services_, tenant_id, report_id)

    monkeypatch.setattr(worker, "claim", a_server_first)
    tenant_id = uuid.UUID(tenant.id)
    async with services.db.session(tenant_id=tenant_id) as db:
        ctx = Acting.system(services, db, tenant_id=tenant_id, name="cli")
        row = await reports.generate_now(ctx, "sox", date(2026, 1, 1), date.today())
        assert others and others[0] is not None
        assert row.status == "completed" and row.attempts == 2
